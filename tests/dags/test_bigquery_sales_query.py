"""bigquery_sales_query end to end with dag.test() on the embedded defaults (DuckDB + file:// storage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CONF: dict[str, Any] = {
    "start_date": "2026-01-01",
    "end_date": "2026-03-31",
    "countries": ["TH"],
    "brands": ["X"],
    "granularity": "entry",
    "format": "parquet",
}


def _load_dag():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("bigquery_sales_query_dag", REPO / "dags" / "bigquery_sales_query.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bigquery_sales_query()


@pytest.fixture
def warehouse(guardian_env: Path) -> Path:
    from guardian.sales.demo import generate
    from guardian.sales.service import source_table
    from guardian.settings import load_settings

    settings = load_settings()
    generate(settings.duckdb_path, source_table(settings), rows=20_000)
    return settings.duckdb_path


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances()}


@pytest.mark.usefixtures("airflow_db", "warehouse")
def test_dag_exports_checked_parquet_with_manifest_and_records_the_run() -> None:
    import pyarrow.parquet as pq

    from guardian.quality.results import latest_results
    from guardian.sales.runs import list_runs
    from guardian.settings import load_settings
    from guardian.store import get_store

    run = _load_dag().test(run_conf=CONF)
    assert str(getattr(run.state, "value", run.state)) == "success", _states(run)
    settings = load_settings()
    store = get_store(settings)
    record = list_runs(store, 1)[0]
    assert record["status"] == "succeeded" and record["run_id"] == run.run_id
    assert record["bytes_processed"] > 0 and "_run_query_" in record["job_id"]
    # Every task's jobs are on the record, each labelled with its task and capped by the run's budget.
    assert {j["step"] for j in record["jobs"]} >= {"run_query", "quality_gate", "export"}
    assert all(j["maximum_bytes_billed"] <= settings.sales.max_bytes_billed for j in record["jobs"])
    manifest_path = Path(record["output_uri"].removeprefix("file://"))
    manifest = json.loads(manifest_path.read_text())
    assert manifest["rows"] == record["rows"] > 0
    root = manifest_path.parent
    (file_entry,) = manifest["files"]
    assert file_entry["path"].startswith("country=TH/brand=X/part-")
    table = pq.read_table(root / file_entry["path"])
    assert table.num_rows == manifest["rows"]
    assert set(table.column("country_code").to_pylist()) == {"TH"}
    checks = {r["check_name"]: r["passed"] for r in latest_results(store, subject=run.run_id)}
    assert checks["schema"] and checks["unique_entry_no"] and checks["sign_consistent"]


@pytest.mark.usefixtures("airflow_db", "warehouse")
def test_dag_fails_on_bad_params_before_any_query_and_writes_nothing() -> None:
    from guardian.sales.runs import list_runs
    from guardian.settings import load_settings
    from guardian.store import get_store

    run = _load_dag().test(run_conf={**CONF, "end_date": "2025-12-01"})
    states = _states(run)
    assert str(getattr(run.state, "value", run.state)) == "failed", states
    assert states["validate_params"] == "failed"
    assert states["finish"] == "failed"
    assert states["run_query"] in {"upstream_failed", "skipped"}
    settings = load_settings()
    record = list_runs(get_store(settings), 1)[0]
    assert record["status"] == "failed" and "end_date" in record["error"]
    storage_root = Path(settings.storage_root.removeprefix("file://"))
    assert not list(storage_root.rglob("*.parquet"))


@pytest.mark.usefixtures("airflow_db", "warehouse")
def test_dry_run_estimates_and_writes_nothing() -> None:
    from guardian.sales.runs import list_runs
    from guardian.settings import load_settings
    from guardian.store import get_store

    run = _load_dag().test(run_conf={**CONF, "dry_run": True})
    assert str(getattr(run.state, "value", run.state)) == "success", _states(run)
    settings = load_settings()
    record = list_runs(get_store(settings), 1)[0]
    assert record["status"] == "estimated" and record["bytes_estimated"] > 0 and record["job_id"] is None
    storage_root = Path(settings.storage_root.removeprefix("file://"))
    assert not storage_root.exists() or not list(storage_root.rglob("_manifest.json"))


@pytest.mark.usefixtures("airflow_db", "warehouse")
def test_conf_keys_airflow_injects_are_not_user_params() -> None:
    """A run started by TriggerDagRunOperator with OpenLineage on carries an 'openlineage' conf key."""
    parent = {
        "parentRunId": "0195d5b6-0000-7000-8000-000000000000",
        "parentJobName": "google_sheet_trigger_dag.trigger",
    }
    run = _load_dag().test(run_conf={**CONF, "openlineage": parent})
    assert str(getattr(run.state, "value", run.state)) == "success", _states(run)


def test_only_airflow_injected_keys_are_dropped() -> None:
    from guardian.airflow.sales import user_params

    assert user_params({**CONF, "openlineage": {}, "colour": "red"}) == {**CONF, "colour": "red"}


def test_tasks_waiting_on_bigquery_share_the_pool_and_the_rest_never_queue_behind_it() -> None:
    """Only the tasks that wait on BigQuery jobs take a slot of the bigquery_sales pool.

    finish must stay out of it (it always runs and reports), and so must the cheap steps before
    the query; the pool's name is the one the docs tell operators to create.
    """
    dag = _load_dag()
    pools = {task.task_id: task.pool for task in dag.tasks}
    waiting = {"run_query", "quality_gate", "export", "sheet_output"}
    assert {t for t, pool in pools.items() if pool == "bigquery_sales"} == waiting
    assert all(pools[t] == "default_pool" for t in set(pools) - waiting)
    assert "airflow pools set bigquery_sales" in (REPO / "docs" / "services" / "sales.md").read_text()
