"""The sales_runs table definition and its migration agree, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sales_runs_table_matches_its_migration(backend: str, request: pytest.FixtureRequest) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    import guardian.sales.runs as sales_runs_module
    from guardian.settings import load_settings
    from guardian.store import get_store

    if backend == "postgresql":
        request.getfixturevalue("pg_env")
    store = get_store(load_settings())
    store.ensure_migrated()
    assert store.dialect == backend
    only = MetaData(naming_convention=sales_runs_module.metadata.naming_convention)
    sales_runs_module.sales_runs.to_metadata(only)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diffs = [
            d
            for d in compare_metadata(context, only)
            if "sales_runs" in repr(d) and not (isinstance(d, tuple) and d[0] == "remove_table")
        ]
    assert diffs == []
