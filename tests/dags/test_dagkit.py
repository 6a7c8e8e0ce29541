"""The Airflow glue every DAG shares: the one store setting, callbacks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from guardian import audit
from guardian.airflow import dagkit
from guardian.errors import ConfigError


def test_store_url_from_a_postgres_connection_keeps_the_password_out() -> None:
    conn = SimpleNamespace(conn_type="postgres", login="guardian", password="pw!", host="db", port=5432, schema="g")
    url, password = dagkit.connection_store_url(conn)
    assert url == "postgresql+psycopg2://guardian@db:5432/g"
    assert password == "pw!"
    with pytest.raises(ConfigError, match="connection guardian_db has type 'mysql'"):
        dagkit.connection_store_url(SimpleNamespace(conn_type="mysql"))


def test_the_store_has_one_setting_and_a_leftover_connection_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_GUARDIAN_DB",
        json.dumps(
            {
                "conn_type": "postgres",
                "login": "postgres",
                "password": "sekret",
                "host": "127.0.0.1",
                "port": 5432,
                "schema": "test",
            }
        ),
    )
    with pytest.raises(ConfigError, match=r"GUARDIAN_STORE__URL=postgresql\+psycopg2://postgres@127.0.0.1:5432/test"):
        dagkit.task_settings()
    monkeypatch.setenv("GUARDIAN_STORE__URL", "postgresql+psycopg2://app@db:5432/guardian?sslmode=verify-full")
    monkeypatch.setenv("STORE_PW", "sekret")
    monkeypatch.setenv("GUARDIAN_STORE__PASSWORD_REF", "env:STORE_PW")
    settings = dagkit.task_settings()
    assert settings.store_url.endswith("?sslmode=verify-full") and settings.store_password() == "sekret"


def test_task_settings_fall_back_to_guardian_settings(guardian_env: Path) -> None:
    assert dagkit.task_settings().store_url == f"sqlite:///{guardian_env / 'guardian.db'}"


def test_failure_callback_audits_the_failure_and_never_raises(guardian_env: Path) -> None:
    ti = SimpleNamespace(dag_id="bigquery_sales_query", task_id="export", run_id="manual__x", try_number=3)
    context = {"task_instance": ti, "exception": ValueError("first line\nbytes estimated 12 GiB over limit")}
    dagkit.on_failure(context)
    [event] = list(audit.iter_events(action_prefix="airflow.failure"))
    assert event.target == "dag:bigquery_sales_query/task:export"
    assert event.outcome == "failed"
    assert "bytes estimated 12 GiB over limit" in json.dumps(event.after)
    assert event.after["try_number"] == 3
    # A broken context is logged, not raised: the task's own error must stay visible.
    dagkit.on_failure({})


def test_default_args_are_bounded_retries_with_callbacks() -> None:
    args = dagkit.default_args(retries=3)
    assert args["owner"] == dagkit.OWNER
    assert args["retries"] == 3 and args["retry_exponential_backoff"] is True
    assert args["on_failure_callback"] is dagkit.on_failure
