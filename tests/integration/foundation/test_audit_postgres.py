"""The audit log on real PostgreSQL: append-only for the application user, tamper detection,
and 8 concurrent writer processes that must not fork the chain."""

from __future__ import annotations

import multiprocessing
import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from guardian import audit
from guardian.store import get_store, reset_stores

pytestmark = pytest.mark.postgres

APP_ROLE = "guardian_app"


def _as_app_user(pg_url: str):  # type: ignore[no-untyped-def]
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", future=True)
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": APP_ROLE}).first()
        if not exists:
            conn.execute(text(f"CREATE ROLE {APP_ROLE} LOGIN"))
        # What an application role gets: it can read and write the table, nothing more.
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_log TO {APP_ROLE}"))
    admin.dispose()
    return create_engine(make_url(pg_url).set(username=APP_ROLE), future=True)


def test_app_user_cannot_update_or_delete(pg_env: str) -> None:
    for i in range(3):
        audit.record("test.pg", f"row:{i}")
    app = _as_app_user(pg_env)
    for statement in (
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(DatabaseError, match="append-only"), app.begin() as conn:
            conn.execute(text(statement))
    # Even with its own INSERT grant the app user goes through the chain like everyone else.
    with app.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 3
    app.dispose()
    assert audit.verify().ok


def test_verify_names_the_first_tampered_row(pg_env: str) -> None:
    for i in range(6):
        audit.record("test.pg", f"row:{i}", after={"n": i})
    admin = create_engine(pg_env, future=True)
    with admin.begin() as conn:
        # Only a superuser disabling the guard can rewrite history; verify still catches it.
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete"))
        conn.execute(text("UPDATE audit_log SET after = '{\"n\": 42}' WHERE seq = 4"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"))
    admin.dispose()
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 4 and "edited" in (report.reason or "")


def _writer(url: str, worker: int, rows: int) -> None:
    os.environ["GUARDIAN_STORE__URL"] = url
    reset_stores()
    store = get_store()
    for i in range(rows):
        audit.record("test.concurrent", f"worker:{worker}/row:{i}", after={"i": i}, store=store)


def test_eight_processes_do_not_fork_the_chain(pg_env: str) -> None:
    get_store().migrate()  # migrate once up front; the writers also race on first use safely
    reset_stores()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(pg_env, w, 500)) for w in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0] * 8
    report = audit.verify()
    assert report.ok, report.reason
    assert report.rows == 4000
    per_worker = {}
    for event in audit.iter_events():
        worker = event.target.split("/")[0]
        per_worker[worker] = per_worker.get(worker, 0) + 1
    assert per_worker == {f"worker:{w}": 500 for w in range(8)}


def test_concurrent_first_use_migrates_once(pg_env: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(pg_env, w, 3)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert audit.verify().rows == 12
