"""What each guardian DAG must do on the local topology, and the sandboxes it runs against.

The sandboxes run in the test process (threads, plus fake-gcs-server as a process); the topology's
Celery workers reach them over HTTP, exactly as they would reach Looker, Sheets and Cloud Storage.
The checks read the Guardian store on the topology's PostgreSQL and the objects in fake-gcs-server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REAL_DAGS = [
    "google_sheet_trigger_dag",
    "bigquery_sales_query",
    "looker_dashboard_deletion",
    "guardian_health",
]
BUCKET = "guardian-it"
SHEET_TARGET = "bigquery_sales_query"


@dataclass
class Sandboxes:
    """Running sandboxes and the environment that points the topology's tasks at them."""

    env: dict[str, str] = field(default_factory=dict)
    looker: Any = None
    sheets: Any = None
    gcs: Any = None
    handles: list[Any] = field(default_factory=list)


@contextmanager
def sandboxes(tmp: Path) -> Iterator[Sandboxes]:
    """Start fake-gcs-server and the Looker and Sheets sandboxes; generate the DuckDB warehouse."""
    from guardian.sales.demo import generate
    from guardian.sales.service import source_table
    from guardian.sandbox import fakegcs, looker
    from guardian.sandbox.serve import start_in_thread
    from guardian.sandbox.sheets import SheetsSandbox, create_app
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, demo_tabs
    from guardian.settings import load_settings

    boxes = Sandboxes()
    try:
        boxes.gcs = fakegcs.start()
        boxes.handles.append(boxes.gcs)
        boxes.gcs.create_bucket(BUCKET)
        boxes.looker = looker.start()
        boxes.handles.append(boxes.looker)
        sheets_state = SheetsSandbox()
        sheets_state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
        sheets_handle = start_in_thread(create_app(sheets_state))
        boxes.handles.append(sheets_handle)
        boxes.sheets = sheets_state
        warehouse = tmp / "warehouse.duckdb"
        boxes.env = {
            **boxes.looker.env,
            "GUARDIAN_LOOKER__MAX_FRACTION": "0.5",
            "GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS": "Shared/Finance",
            "GUARDIAN_SHEETS__SPREADSHEET_ID": DEMO_SPREADSHEET_ID,
            "GUARDIAN_SHEETS__API_ENDPOINT": sheets_handle.url + "/",
            "GUARDIAN_SHEETS__ALLOWED_TARGETS": SHEET_TARGET,
            "GUARDIAN_STORAGE__ROOT": f"gs://{BUCKET}/guardian",
            "GUARDIAN_STORAGE__GCS_ENDPOINT": boxes.gcs.endpoint,
            "GUARDIAN_STORAGE__GCS_PROJECT": "guardian-local",
            "GUARDIAN_SALES__DUCKDB_PATH": str(warehouse),
        }
        settings = load_settings(sales={"duckdb_path": str(warehouse)})
        generate(warehouse, source_table(settings), rows=200_000)  # as dense as the demo: the gate names holes
        yield boxes
    finally:
        for handle in reversed(boxes.handles):
            with suppress(Exception):
                handle.stop()


def settings_of(topology: Any, boxes: Sandboxes) -> Any:
    """Guardian settings that read what the topology's tasks wrote (store on PostgreSQL, fake GCS)."""
    from guardian.settings import load_settings

    cfg = topology.cfg
    return load_settings(
        store={"url": cfg.pg_url(cfg.guardian_db)},
        storage={
            "root": boxes.env["GUARDIAN_STORAGE__ROOT"],
            "gcs_endpoint": boxes.gcs.endpoint,
            "gcs_project": "guardian-local",
        },
        sales={"duckdb_path": boxes.env["GUARDIAN_SALES__DUCKDB_PATH"]},
    )


def run(dag_id: str, topology: Any, boxes: Sandboxes) -> None:
    """Run one guardian DAG end to end on the Celery workers and check its outcome."""
    {
        "google_sheet_trigger_dag": sheet_request_completes_once,
        "bigquery_sales_query": sales_export_with_manifest,
        "looker_dashboard_deletion": looker_trash_survives_worker_kill_and_restores,
        "guardian_health": health_snapshots_every_dag,
    }[dag_id](topology, boxes)


def _success(topology: Any, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 240) -> str:
    topology.api.wait_dag(dag_id)
    run_id: str = topology.api.trigger(dag_id, conf)
    state = topology.api.wait_run(dag_id, run_id, timeout=timeout)
    assert state == "success", (dag_id, run_id, topology.api.task_states(dag_id, run_id))
    return run_id


def sheet_request_completes_once(topology: Any, boxes: Sandboxes) -> None:
    """The demo sheet's `run` row starts exactly one sales run, which writes `completed` back to the row."""
    from guardian.sheets import ledger
    from guardian.store import get_store

    store = get_store(settings_of(topology, boxes))
    topology.api.wait_dag(SHEET_TARGET)
    _success(topology, "google_sheet_trigger_dag")
    (request,) = [r for r in ledger.list_requests(store) if r["status"] != "superseded"]
    run_id = request["dag_run_id"]
    assert run_id.startswith("sheets__") and request["target_dag"] == SHEET_TARGET
    state = topology.api.wait_run(SHEET_TARGET, run_id, timeout=300)
    failed = ledger.get(store, request["request_id"])
    assert state == "success", (
        f"{SHEET_TARGET} run {run_id} started by the sheet ended {state}: "
        f"{topology.api.task_states(SHEET_TARGET, run_id)}; ledger: {failed.message if failed else None}"
    )
    # Polling again (and the 5-minute schedule) must not start a second run for the same row.
    _success(topology, "google_sheet_trigger_dag")
    runs = topology.api.get_all(f"dags/{SHEET_TARGET}/dagRuns", "dag_runs")
    assert [r["dag_run_id"] for r in runs if r["dag_run_id"].startswith("sheets__")] == [run_id]
    done = ledger.get(store, request["request_id"])
    assert done is not None and done.status == "completed"
    row = boxes.sheets.get("demo-control-sheet", "Requests!G2:H2", "FORMULA")["values"][0]
    assert row == ["completed", run_id]


def sales_export_with_manifest(topology: Any, boxes: Sandboxes) -> None:
    """A parameterised extract lands in Cloud Storage as Parquet with its manifest, quality-checked."""
    from guardian.quality.results import latest_results
    from guardian.sales.runs import list_runs
    from guardian.storage import open_storage, split_uri
    from guardian.store import get_store

    conf = {
        "start_date": "2026-01-01",
        "end_date": "2026-03-31",
        "countries": ["TH"],
        "brands": ["X"],
        "granularity": "entry",
        "format": "parquet",
    }
    settings = settings_of(topology, boxes)
    run_id = _success(topology, "bigquery_sales_query", conf)
    store = get_store(settings)
    (record,) = [r for r in list_runs(store, 50) if r["run_id"] == run_id]
    assert record["status"] == "succeeded" and record["output_uri"].startswith(f"gs://{BUCKET}/")
    root, key = split_uri(record["output_uri"])
    storage = open_storage(root, settings)
    manifest = json.loads(storage.get(key))
    assert manifest["rows"] == record["rows"] > 0
    folder = key.rsplit("/", 1)[0]
    for entry in manifest["files"]:
        assert storage.exists(f"{folder}/{entry['path']}"), entry
    checks = {r["check_name"]: r["passed"] for r in latest_results(store, subject=run_id)}
    assert checks and all(checks.values()), checks


def _kill_worker_running(topology: Any, dag_id: str, run_id: str, task_id: str) -> str:
    """SIGKILL every process of the Celery worker that runs task_id (as when its machine dies)."""
    import psutil

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        tries = topology.api.tries(dag_id, run_id, task_id)
        if tries and tries[-1]["state"] == "running" and tries[-1].get("pid"):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"{task_id} never ran: {topology.api.task_states(dag_id, run_id)}")
    task_pid = int(tries[-1]["pid"])
    for name in ("airflow-worker-1", "airflow-worker-2"):
        worker = topology.pid(name)
        if worker is None:
            continue
        family = [psutil.Process(worker), *psutil.Process(worker).children(recursive=True)]
        if any(p.pid == task_pid for p in family) or _has_ancestor(task_pid, worker):
            for proc in family:
                with suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            return name
    raise AssertionError(f"no worker runs pid {task_pid}")


def _has_ancestor(pid: int, ancestor: int) -> bool:
    import psutil

    try:
        return any(p.pid == ancestor for p in psutil.Process(pid).parents())
    except psutil.NoSuchProcess:
        return False


def wait_restarted(topology: Any, name: str, old_pid: int | None, timeout: float = 120) -> int:
    """Wait until supervisord has started program `name` again (a new pid, RUNNING); return that pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = topology.pid(name)
        info = topology.module.process_info(topology.cfg).get(name) or {}
        if pid is not None and pid != old_pid and info.get("statename") == "RUNNING":
            return int(pid)
        time.sleep(0.5)
    raise AssertionError(f"{name} not restarted by supervisord within {timeout}s: {info}")


def looker_trash_survives_worker_kill_and_restores(topology: Any, boxes: Sandboxes) -> None:
    """Apply mode trashes and purges with backups; the worker running `apply` is SIGKILLed after the
    first dashboard is trashed; the retry (on the other worker, or on the victim once supervisord has
    restarted it) finishes without trashing any dashboard twice; then the restore DAG brings two back."""
    from guardian.looker.backup import list_backups
    from guardian.looker.plan import latest_plan
    from guardian.sandbox.looker import FaultRule
    from guardian.store import get_store

    sandbox = boxes.looker
    # Each trash takes 1.5 s, so the kill lands in the middle of the batch.
    sandbox.set_faults(FaultRule(method="PATCH", path=r"^/dashboards/\d+$", delay_ms=1500))
    # The instance's history (the guardian's earlier trashes, owners warned past WARNING_DAYS), so
    # this first run may trash; the person triggering is the approval (skip_approval).
    from guardian.sandbox.looker.history import seed_history

    settings = settings_of(topology, boxes)
    seed_history(settings, get_store(settings), sandbox.state)
    topology.api.wait_dag("looker_dashboard_deletion")
    run_id = topology.api.trigger("looker_dashboard_deletion", {"mode": "apply", "skip_approval": True})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(k.startswith("PATCH") for k in sandbox.writes):
        time.sleep(0.2)
    assert any(k.startswith("PATCH") for k in sandbox.writes), topology.api.task_states(
        "looker_dashboard_deletion", run_id
    )
    victim_pids = {name: topology.pid(name) for name in ("airflow-worker-1", "airflow-worker-2")}
    victim = _kill_worker_running(topology, "looker_dashboard_deletion", run_id, "apply")
    trashed_before_kill = sum(1 for k in sandbox.writes if k.startswith("PATCH"))
    # The scheduler notices the dead task by its missing heartbeat (20 s here) and puts it up for
    # retry; the DAG waits 2-4 minutes before a retry (exponential backoff), so the test does what
    # the DAG's triage note tells an operator: clear the task, which starts the next try now.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = topology.api.task_states("looker_dashboard_deletion", run_id)
        if states["apply"] in {"up_for_retry", "failed", "success"}:
            break
        time.sleep(1)
    assert states["apply"] == "up_for_retry", states
    topology.api.clear("looker_dashboard_deletion", run_id, ["apply"])
    state = topology.api.wait_run("looker_dashboard_deletion", run_id, timeout=300)
    sandbox.set_faults()
    wait_restarted(topology, victim, victim_pids[victim])  # supervisord brings it back by itself
    assert state == "success", topology.api.task_states("looker_dashboard_deletion", run_id)
    tries = topology.api.tries("looker_dashboard_deletion", run_id, "apply")
    assert len(tries) >= 2 and tries[-1]["state"] == "success"
    assert tries[-1]["hostname"]  # the retry ran on a live worker
    for dashboard_id in ("4", "5", "6", "7", "8"):
        assert sandbox.state.dashboards[dashboard_id]["deleted"] is True
        assert sandbox.writes[f"PATCH /dashboards/{dashboard_id}"] == 1, "a dashboard was trashed twice"
    assert "17" not in sandbox.state.dashboards
    assert sandbox.writes["DELETE /dashboards/17"] == 1
    assert trashed_before_kill < 6
    print(
        f"looker apply: {victim} SIGKILLed after {trashed_before_kill} trash call(s); try {len(tries)} finished "
        f"on {tries[-1]['hostname']}; every dashboard trashed exactly once"
    )
    store = get_store(settings_of(topology, boxes))
    plan = latest_plan(store)
    assert plan is not None and plan.status == "applied"
    assert {b.dashboard_id for b in list_backups(store)} >= {"4", "5", "6", "7", "8", "17"}

    _success(topology, "looker_dashboard_restore", {"dashboard_ids": "4,17"})
    assert sandbox.state.dashboards["4"]["deleted"] is False
    reimported = [d for d in sandbox.state.dashboards.values() if d["title"] == "Trashed by Guardian long ago"]
    assert len(reimported) == 1


def health_snapshots_every_dag(topology: Any, boxes: Sandboxes) -> None:
    """guardian_health reads the run history through the REST API and snapshots every DAG."""
    from guardian.monitoring.health import latest_snapshots
    from guardian.store import get_store

    _success(topology, "guardian_health")
    snapshots = latest_snapshots(get_store(settings_of(topology, boxes)))
    for dag_id in ("bigquery_sales_query", "looker_dashboard_deletion", "google_sheet_trigger_dag"):
        assert dag_id in snapshots, sorted(snapshots)
    assert snapshots["bigquery_sales_query"]["runs_7d"] >= 2


def verify_audit_chain(topology: Any) -> None:
    """The Guardian store's audit chain (on the topology's PostgreSQL) verifies, through the CLI."""
    env = {**os.environ, **topology.module.environment(topology.cfg)}
    out = subprocess.run(
        [str(topology.module.VENV_BIN / "guardian"), "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok" in (out.stdout + out.stderr).lower()
