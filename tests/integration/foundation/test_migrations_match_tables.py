"""Every table the code declares is exactly what the migrations build, on SQLite and PostgreSQL.

One check for all services: Alembic's autogenerate comparison of the declared metadata against
a freshly migrated database must find nothing to change.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import guardian
from guardian.store import Store, metadata


def _import_every_module() -> None:
    # Tables are declared where each service uses them; importing the package tree
    # registers them all on the shared metadata.
    for info in pkgutil.walk_packages(guardian.__path__, "guardian."):
        if info.name.startswith(("guardian.airflow", "guardian.store.migrations")):
            continue
        importlib.import_module(info.name)


def _diff(url: str) -> list[Any]:
    _import_every_module()
    store = Store(url)
    try:
        store.migrate()
        with store.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return [d for d in compare_metadata(ctx, metadata) if not _ignorable(d)]
    finally:
        store.dispose()


def _ignorable(diff: Any) -> bool:
    # Alembic's own version table is not ours to declare.
    text = repr(diff)
    return "alembic_version" in text


def test_sqlite_schema_matches_the_declared_tables(tmp_path: Any) -> None:
    assert _diff(f"sqlite:///{tmp_path / 'g.db'}") == []
    assert len(metadata.tables) >= 8


@pytest.mark.postgres
def test_postgres_schema_matches_the_declared_tables(pg_url: str) -> None:
    assert _diff(pg_url) == []
