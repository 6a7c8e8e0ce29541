"""The looker tables declared in guardian.looker.tables match migrations 0003_looker, 0007_looker_trust and 0014."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from guardian.looker import tables


def _diff(url: str) -> list[Any]:
    from guardian.store import Store

    store = Store(url)
    store.migrate()
    wanted = MetaData(naming_convention=tables.looker_plans.metadata.naming_convention)
    for table in (
        tables.looker_plans,
        tables.looker_actions,
        tables.looker_backups,
        tables.looker_restores,
        tables.looker_warnings,
        tables.looker_keeps,
    ):
        table.to_metadata(wanted)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={"include_name": lambda name, type_, parent: type_ != "table" or name.startswith("looker_")},
        )
        diff = compare_metadata(context, wanted)
    store.dispose()
    return [d for d in diff if "looker" in repr(d)]


def test_sqlite_matches(tmp_path: Any) -> None:
    assert _diff(f"sqlite:///{tmp_path / 'g.db'}") == []


@pytest.mark.usefixtures("pg_env")
def test_postgresql_matches(pg_url: str) -> None:
    assert _diff(pg_url) == []
