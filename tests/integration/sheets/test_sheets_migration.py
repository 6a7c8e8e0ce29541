"""The sheets tables and their migration agree, on SQLite and PostgreSQL; the ledger's unique key holds."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sheets_tables_match_their_migration(backend: str, request: pytest.FixtureRequest) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    from guardian.settings import load_settings
    from guardian.sheets import ledger
    from guardian.store import get_store

    if backend == "postgresql":
        request.getfixturevalue("pg_env")
    store = get_store(load_settings())
    store.ensure_migrated()
    assert store.dialect == backend
    only = MetaData(naming_convention=ledger.metadata.naming_convention)
    ledger.sheets_requests.to_metadata(only)
    ledger.sheets_poll_state.to_metadata(only)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        diffs = [
            d
            for d in compare_metadata(context, only)
            if "sheets_" in repr(d) and not (isinstance(d, tuple) and d[0] == "remove_table")
        ]
    assert diffs == []


def test_the_same_request_key_cannot_be_recorded_twice(pg_env: str) -> None:
    from sqlalchemy.exc import IntegrityError

    from guardian.settings import load_settings
    from guardian.sheets import ledger
    from guardian.store import get_store

    store = get_store(load_settings())
    args = {
        "key": "a" * 64,
        "base": "b" * 64,
        "gen": 0,
        "spreadsheet_id": "s",
        "tab": "Requests",
        "row_number": 2,
        "target": "bigquery_sales_query",
        "conf": {"countries": ["TH"]},
        "requested_by": None,
        "at": ledger.now_utc(),
    }
    with store.write() as conn:
        ledger.insert(conn, **args)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), store.write() as conn:
        ledger.insert(conn, **args)  # type: ignore[arg-type]
    assert len(ledger.list_requests(store)) == 1
