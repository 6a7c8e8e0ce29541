"""guardian_health end to end with dag.test(): runs from the Airflow metadata DB, snapshots, alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _forget_task_context() -> Iterator[None]:
    # dag.test() runs tasks in this process and leaves AIRFLOW_CTX_* set; later tests would
    # then look as if they ran inside a task.
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CTX_")}
    yield
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:
        del os.environ[key]
    os.environ.update(before)


def _load_dag():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("guardian_health_dag", REPO / "dags" / "guardian_health.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.guardian_health()


@pytest.mark.usefixtures("airflow_db")
def test_health_dag_snapshots_runs_and_opens_a_deduplicated_alert() -> None:
    from guardian.monitoring.alerts import open_alerts
    from guardian.monitoring.health import RunRecord, latest_snapshots, upsert_runs
    from guardian.settings import load_settings
    from guardian.store import get_store

    store = get_store(load_settings())
    now = datetime.now(UTC)
    upsert_runs(
        store,
        [
            RunRecord(
                "nightly_export", f"r{i}", "failed", now - timedelta(hours=i, minutes=5), now - timedelta(hours=i)
            )
            for i in range(1, 6)
        ],
        source="test",
    )

    dag = _load_dag()
    first = dag.test()
    assert first.state == "success"
    snapshots = latest_snapshots(store)
    assert "nightly_export" in snapshots and snapshots["nightly_export"]["failed_7d"] == 5
    assert "guardian_health" in snapshots
    opened = [a["key"] for a in open_alerts(store)]
    assert "failure_rate:nightly_export" in opened

    second = dag.test()
    assert second.state == "success"
    # Still failing: the same one open alert, not a second one.
    assert [a["key"] for a in open_alerts(store)].count("failure_rate:nightly_export") == 1
    # The first health run is now a finished run in the metadata DB, collected as one.
    latest = latest_snapshots(store)["guardian_health"]
    assert latest["runs_7d"] >= 1
    # The guardian listener (plugin) recorded each task try's resource use.
    assert set(latest["tasks"]) == {"collect_runs", "evaluate_alerts"}
    assert all(usage["peak_rss_mb"] > 10 for usage in latest["tasks"].values())
