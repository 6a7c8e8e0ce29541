"""Audit chain on the embedded SQLite store: record, verify, tamper detection, export."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.exc import DatabaseError

from guardian import audit
from guardian.errors import AlreadyExists
from guardian.settings import load_settings
from guardian.store import get_store


def _sqlite_path(data_dir: Path) -> Path:
    return data_dir / "guardian.db"


def _record_some(n: int = 5) -> None:
    for i in range(n):
        audit.record("test.action", f"thing:{i}", before={"i": i}, after={"i": i + 1, "tags": ["a", "ü"]})


def test_chain_links_rows_and_verifies(guardian_env: Path) -> None:
    _record_some(5)
    events = list(audit.iter_events())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    report = audit.verify()
    assert report.ok and report.rows == 5 and report.head_hash == events[-1].hash


def test_cli_context_names_the_os_user(guardian_env: Path) -> None:
    event = audit.record("test.ctx", "x")
    assert event.context["runtime"] == "cli"
    assert event.context["os_user"]
    assert event.actor.startswith("cli:")


def test_airflow_context_is_taken_from_the_task_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "looker_dashboard_deletion")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__1")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "apply")
    monkeypatch.setenv("AIRFLOW_CTX_TRY_NUMBER", "2")
    event = audit.record("test.ctx", "x")
    assert event.actor == "airflow:looker_dashboard_deletion"
    assert {k: event.context[k] for k in ("dag_id", "run_id", "task_id", "try_number")} == {
        "dag_id": "looker_dashboard_deletion",
        "run_id": "manual__1",
        "task_id": "apply",
        "try_number": "2",
    }


def test_database_refuses_update_and_delete(guardian_env: Path) -> None:
    _record_some(2)
    store = get_store()
    for statement in ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 1"):
        with pytest.raises(DatabaseError, match="append-only"), store.read() as conn:
            conn.exec_driver_sql(statement)
    assert audit.verify().ok


def _tamper(db: Path, *statements: str) -> None:
    # An attacker with file access drops the guard first; verify must still catch it.
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


def test_verify_names_an_edited_row(guardian_env: Path) -> None:
    _record_some(5)
    _tamper(_sqlite_path(guardian_env), "UPDATE audit_log SET after = '{\"i\": 99}' WHERE seq = 3")
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in (report.reason or "")


def test_verify_names_a_deleted_row(guardian_env: Path) -> None:
    _record_some(5)
    _tamper(_sqlite_path(guardian_env), "DELETE FROM audit_log WHERE seq = 2")
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 2 and "missing" in (report.reason or "")


def test_verify_names_reordered_rows(guardian_env: Path) -> None:
    _record_some(5)
    # Swap rows 2 and 4 wholesale, hashes included: each row is intact, the order is not.
    _tamper(
        _sqlite_path(guardian_env),
        "UPDATE audit_log SET seq = -2 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -2",
    )
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 2 and "does not follow" in (report.reason or "")


def test_export_writes_json_lines_once(guardian_env: Path, tmp_path: Path) -> None:
    _record_some(3)
    target = f"file://{tmp_path / 'exports' / 'audit.jsonl'}"
    uri, written = audit.export(date(2000, 1, 1), target)
    assert uri == target and written == 3
    lines = (tmp_path / "exports" / "audit.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    with pytest.raises(AlreadyExists):
        audit.export(date(2000, 1, 1), target)
    # A folder URI gets a generated name; nothing since a future day exports zero rows.
    uri, written = audit.export(date(2999, 1, 1), f"file://{tmp_path / 'exports'}/")
    assert written == 0 and uri.endswith(".jsonl") and os.path.exists(uri.removeprefix("file://"))


def test_store_is_created_on_first_use(guardian_env: Path) -> None:
    assert not _sqlite_path(guardian_env).exists()
    audit.record("first.use", "x")
    store = get_store(load_settings())
    assert store.is_current()
    assert "0001_foundation" in store.current_revisions() or store.current_revisions()
