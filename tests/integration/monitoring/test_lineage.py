"""OpenLineage events from real task runs (`airflow dags test`, file transport), read back and checked.

The OpenLineage provider turns what tasks report through guardian.airflow.lineage.report() into
the inputs and outputs of each task's COMPLETE event: BigQuery tables, storage paths, sheets,
Looker dashboards and the guardian store.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
PROBE = """
from __future__ import annotations
import pendulum
from airflow.providers.common.compat.sdk import dag, task

@dag(dag_id="lineage_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def lineage_probe():
    @task
    def export_sales():
        from guardian.airflow import lineage
        lineage.report(
            inputs=["bigquery://demo-project/sales/orders", "gsheets://1AbCdEf/Control"],
            outputs=["gs://exports-bucket/sales/2026-11/part-0.parquet", "file:///srv/exports/sales.csv",
                     "looker://default/dashboards"],
        )
    export_sales()
lineage_probe()
"""


def _events(folder: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(folder.glob("ol*.json*")):
        for line in path.read_text().splitlines():
            if line.strip():
                events.append(json.loads(line))
    return events


def _datasets(event: dict[str, Any], key: str) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in event.get(key, [])}


@pytest.fixture
def lineage_run(tmp_path: Path, airflow_db: Path) -> Any:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "guardian_health.py", dags / "guardian_health.py")
    (dags / "lineage_probe.py").write_text(PROBE)
    out = tmp_path / "ol"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__OPENLINEAGE__DISABLED="False",
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps({"type": "file", "log_file_path": str(out / "ol.jsonl")}),
    )

    def run(dag_id: str) -> list[dict[str, Any]]:
        for old in out.iterdir():
            old.unlink()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return _events(out)

    return run


def test_task_events_name_tables_paths_sheets_and_dashboards(lineage_run: Any) -> None:
    events = lineage_run("lineage_probe")
    [complete] = [
        e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"] == "lineage_probe.export_sales"
    ]
    assert _datasets(complete, "inputs") == {
        ("bigquery", "demo-project.sales.orders"),
        ("gsheets://1AbCdEf", "Control"),
    }
    assert _datasets(complete, "outputs") == {
        ("gs://exports-bucket", "sales/2026-11/part-0.parquet"),
        ("file", "/srv/exports/sales.csv"),
        ("looker://default", "dashboards"),
    }
    assert complete["job"]["namespace"] and complete["run"]["runId"]
    starts = [e for e in events if e["eventType"] == "START" and e["job"]["name"] == "lineage_probe.export_sales"]
    assert starts and starts[0]["run"]["runId"] == complete["run"]["runId"]


def test_guardian_health_reports_its_store_lineage(lineage_run: Any) -> None:
    events = lineage_run("guardian_health")
    by_job = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    collect, evaluate = by_job["guardian_health.collect_runs"], by_job["guardian_health.evaluate_alerts"]
    assert _datasets(collect, "inputs") == {("guardian://airflow-metadb", "dag_run")}
    assert _datasets(collect, "outputs") == {("guardian://store", "monitoring_dag_runs")}
    assert ("guardian://store", "audit_log") in _datasets(evaluate, "inputs")
    # `dags test` runs every task in one process, whose hook-lineage collector keeps what the
    # earlier task reported; under an executor each task has its own process (exact sets).
    assert _datasets(evaluate, "outputs") >= {
        ("guardian://store", "monitoring_health_snapshots"),
        ("guardian://store", "monitoring_alerts"),
    }
