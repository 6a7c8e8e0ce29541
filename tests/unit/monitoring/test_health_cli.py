"""`guardian health ...` over the real store and an Airflow metadata database."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from guardian.cli import app

runner = CliRunner()


def _airflow_db(path: Path) -> str:
    # The columns the collector reads, as Airflow 2.11 and 3.x both have them.
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE dag (dag_id TEXT PRIMARY KEY);
        CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, state TEXT, start_date TEXT, end_date TEXT, run_type TEXT);
        CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, state TEXT, try_number INTEGER);
        INSERT INTO dag VALUES ('google_sheet_trigger_dag');
        """
    )
    now = datetime.now(UTC).replace(tzinfo=None)

    def ts(minutes_ago: float) -> str:
        return (now - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S.%f")

    rows = [
        (
            "google_sheet_trigger_dag",
            f"scheduled__{i}",
            "failed" if i >= 3 else "success",
            ts(5 * i + 1),
            ts(5 * i),
            "scheduled",
        )
        for i in range(6)
    ]
    conn.executemany("INSERT INTO dag_run VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO task_instance VALUES (?, ?, ?, ?, ?)",
        [("google_sheet_trigger_dag", f"scheduled__{i}", "poll", "failed", 2) for i in range(3, 6)],
    )
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_check_from_the_metadata_db_then_show(tmp_path: Path) -> None:
    url = _airflow_db(tmp_path / "airflow.db")
    result = runner.invoke(app, ["health", "check", "--airflow-db", url, "--no-notify", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["collected"] == 6
    [dag] = report["dags"]
    assert dag["dag_id"] == "google_sheet_trigger_dag"
    assert dag["runs_7d"] == 6 and dag["failed_7d"] == 3 and dag["retries_7d"] == 3
    assert dag["failing_tasks"] == {"poll": 3} and dag["p50_7d"] == 60.0
    assert report["started"] == ["failure_rate:google_sheet_trigger_dag"]
    shown = runner.invoke(app, ["health", "show"])
    assert shown.exit_code == 0 and "google_sheet_trigger_dag" in shown.output


def test_test_alert_without_configuration_says_what_to_set() -> None:
    result = runner.invoke(app, ["health", "test-alert"])
    assert result.exit_code == 1 and "GUARDIAN_NOTIFY__SMTP_HOST" in result.output
