"""The listener keys a task try by map index: the first mapped instance (0) is not the unmapped task (-1)."""

from __future__ import annotations

from types import SimpleNamespace

from guardian.airflow.listener import _key


def test_map_index_zero_stays_distinct_from_unmapped() -> None:
    def ti(map_index: int | None) -> SimpleNamespace:
        return SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=map_index)

    assert _key(ti(0)) != _key(ti(-1))
    assert _key(ti(0))[3] == 0 and _key(ti(-1))[3] == -1 and _key(ti(None))[3] == -1 and _key(ti(3))[3] == 3
