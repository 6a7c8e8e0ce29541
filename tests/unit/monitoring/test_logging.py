"""Structured logging and the masker."""

from __future__ import annotations

import io
import json
import logging

import pytest

from guardian.logging import configure, mask_text, register_secret, register_settings_secrets


def test_patterns_mask_credentials_without_registration() -> None:
    text = (
        "posting to https://hooks.slack.com/services/T1/B2/abcDEF123 with xoxb-1234567890-abcdef "
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig password=hunter2hunter "
        "db postgresql://svc:pa55w0rd@db:5432/x"
    )
    masked = mask_text(text)
    for leaked in ("abcDEF123", "xoxb-1234567890", "eyJhbGciOiJIUzI1NiJ9", "hunter2hunter", "pa55w0rd"):
        assert leaked not in masked
    assert "postgresql://svc:***@db:5432/x" in masked


def test_registered_and_settings_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.settings import load_settings

    monkeypatch.setenv("MY_LOOKER_SECRET", "looker-client-secret-xyz")
    monkeypatch.setenv("GUARDIAN_LOOKER__CLIENT_SECRET_REF", "env:MY_LOOKER_SECRET")
    names = register_settings_secrets(load_settings())
    assert "GUARDIAN_LOOKER__CLIENT_SECRET_REF" in names
    register_secret("another-known-value")
    assert mask_text("a looker-client-secret-xyz and another-known-value") == "a *** and ***"
    register_secret("abc")  # too short to mask safely: ignored
    assert mask_text("abcdef") == "abcdef"


def test_json_lines_carry_airflow_context_and_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "bigquery_sales_query")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__1")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "export")
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")
    register_secret("super-secret-token-42")
    stream = io.StringIO()
    handler = configure(stream=stream, loggers=("guardian.test",))
    try:
        log = logging.getLogger("guardian.test")
        log.info("calling with %s", "super-secret-token-42", extra={"rows": 12})
        try:
            raise ValueError("bad token super-secret-token-42")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger("guardian.test").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "calling with ***"
    assert lines[0]["dag_id"] == "bigquery_sales_query" and lines[0]["try_number"] == "2"
    assert lines[0]["rows"] == 12 and lines[0]["level"] == "info"
    assert "super-secret-token-42" not in stream.getvalue()
    assert "bad token ***" in lines[1]["exc"]
