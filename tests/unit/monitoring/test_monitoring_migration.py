"""The monitoring tables and migration 0006 agree, on SQLite and PostgreSQL; a health check runs on both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

TABLES = (
    "monitoring_dag_runs",
    "monitoring_task_usage",
    "monitoring_alerts",
    "monitoring_health_snapshots",
    "monitoring_notifications",
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tables_match_the_migration_and_a_check_runs(backend: str, request: pytest.FixtureRequest) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    from guardian.monitoring import tables
    from guardian.monitoring.health import RunRecord, latest_snapshots
    from guardian.monitoring.service import run_health_check
    from guardian.settings import load_settings
    from guardian.store import get_store
    from guardian.store.schema import metadata

    if backend == "postgresql":
        request.getfixturevalue("pg_env")
    settings = load_settings()
    store = get_store(settings)
    store.ensure_migrated()
    assert store.dialect == backend
    only = MetaData(naming_convention=metadata.naming_convention)
    for table in (tables.dag_runs, tables.task_usage, tables.alerts, tables.health_snapshots, tables.notifications):
        table.to_metadata(only)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diffs = [
            d
            for d in compare_metadata(context, only)
            if any(name in repr(d) for name in TABLES) and not (isinstance(d, tuple) and d[0] == "remove_table")
        ]
    assert diffs == []

    now = datetime.now(UTC)
    runs = [
        RunRecord("d", f"r{i}", "failed", now - timedelta(minutes=i + 1), now - timedelta(minutes=i)) for i in range(4)
    ]
    report = run_health_check(settings, store, runs, notify=False)
    assert [t.condition.key for t in report.transitions] == ["failure_rate:d"]
    assert latest_snapshots(store)["d"]["failed_7d"] == 4
