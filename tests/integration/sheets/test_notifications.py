"""Emails over real SMTP (aiosmtpd): the requester hears once when the run ends; a failing
poll alerts once until it recovers; the CLI and guardian doctor over the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from guardian.cli import app
from guardian.monitoring.receivers import SmtpReceiver
from guardian.settings import load_settings
from guardian.sheets.client import SheetsClient
from guardian.sheets.completion import report_run
from guardian.sheets.poll import run_poll
from guardian.store import get_store

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpReceiver]:
    server = SmtpReceiver().start()
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(server.port))
    monkeypatch.setenv("GUARDIAN_NOTIFY__EMAIL_TO", "oncall@example.com")
    yield server
    server.stop()


def poll() -> Any:
    settings = load_settings()
    return run_poll(settings, get_store(settings), lambda: SheetsClient.from_settings(settings))


def test_requester_gets_one_email_when_the_run_ends(
    sheets_sandbox: Sandbox, smtp: SmtpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__REQUESTER_EMAIL_DOMAINS", "example.com")
    req = poll().new[0]
    for _ in range(2):  # a retried final task must not email twice
        report_run(
            load_settings(),
            request_id=req.request_id,
            dag_run_id=req.dag_run_id,
            ok=True,
            rows=42,
            output_uri="gs://exports/sales/x.parquet",
            error=None,
        )
    assert len(smtp.messages) == 1
    msg = smtp.messages[0]
    assert msg["To"] == "analyst@example.com"
    assert "completed" in msg["Subject"]
    assert "42 rows" in msg.get_content()


def test_requester_outside_the_allowed_domains_gets_no_email(
    sheets_sandbox: Sandbox, smtp: SmtpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anyone may type any address into a shared sheet; mail goes only to the organisation's domains.
    monkeypatch.setenv("GUARDIAN_SHEETS__REQUESTER_EMAIL_DOMAINS", "corp.example")
    req = poll().new[0]
    report_run(
        load_settings(),
        request_id=req.request_id,
        dag_run_id=req.dag_run_id,
        ok=False,
        rows=None,
        output_uri=None,
        error="boom",
    )
    assert smtp.messages == []


def test_poll_failure_alerts_once_then_recovery_once(
    sheets_sandbox: Sandbox, smtp: SmtpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "0")
    sheets_sandbox.fault(status=503, count=3, method="spreadsheets.get")
    for _ in range(3):
        with pytest.raises(Exception, match="HTTP 503"):
            poll()
    assert [m["Subject"] for m in smtp.messages] == ["[guardian] Sheets poll failing: demo-control-sheet!Requests!A1:Z"]
    poll()
    poll()
    assert len(smtp.messages) == 2 and "recovered" in smtp.messages[1]["Subject"]


def test_cli_poll_requests_show_and_doctor(sheets_sandbox: Sandbox) -> None:
    runner = CliRunner()
    dry = runner.invoke(app, ["sheets", "poll", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["to_trigger"][0]["trigger_dag_id"] == "bigquery_sales_query"
    assert json.loads(runner.invoke(app, ["sheets", "requests", "--json"]).output) == []
    real = runner.invoke(app, ["sheets", "poll"])
    assert real.exit_code == 0 and "1 new request(s), 2 invalid" in real.output
    listed = json.loads(runner.invoke(app, ["sheets", "requests", "--json"]).output)
    assert [r["row_status"] for r in listed] == ["queued"]
    shown = runner.invoke(app, ["sheets", "show", "--columns", "Status,Run ID"])
    assert shown.exit_code == 0 and listed[0]["dag_run_id"][:12] in shown.output
    doctor = runner.invoke(app, ["doctor", "--only", "sheets"])
    assert "Guardian demo control sheet" in doctor.output, doctor.output


def test_cli_poll_error_is_one_line(sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", "no-such-sheet")
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "0")
    guardian = str(Path(sys.prefix) / "bin" / "guardian")
    result = subprocess.run([guardian, "sheets", "poll"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "HTTP 404" in result.stderr and "GUARDIAN_SHEETS__SPREADSHEET_ID" in result.stderr
    assert "Traceback" not in result.stderr
