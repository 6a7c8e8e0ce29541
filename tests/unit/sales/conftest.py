"""A small seeded demo warehouse per test (generated once, copied into each test's data dir)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROWS = 30_000


@pytest.fixture(scope="session")
def demo_warehouse_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from guardian.sales.demo import generate
    from guardian.sales.sql import TableRef

    path = tmp_path_factory.mktemp("warehouse") / "warehouse.duckdb"
    generate(path, TableRef("guardian-demo", "sales", "sales_entries"), rows=ROWS)
    return path


@pytest.fixture
def warehouse(guardian_env: Path, demo_warehouse_file: Path) -> Path:
    """The demo warehouse at this test's GUARDIAN_DATA_DIR/warehouse.duckdb."""
    guardian_env.mkdir(parents=True, exist_ok=True)
    target = guardian_env / "warehouse.duckdb"
    shutil.copyfile(demo_warehouse_file, target)
    return target


@pytest.fixture
def raw() -> Callable[..., dict[str, Any]]:
    """Raw params for one country x brand x quarter, with overrides."""

    def make(**overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "start_date": "2026-01-01",
            "end_date": "2026-03-31",
            "countries": ["TH"],
            "brands": ["X"],
        }
        base.update(overrides)
        return base

    return make


@pytest.fixture
def execute() -> Callable[[Path, str], None]:
    """Change the warehouse (to plant bad data)."""

    def run(path: Path, sql: str) -> None:
        import duckdb

        with duckdb.connect(str(path)) as con:
            con.execute(sql)

    return run
