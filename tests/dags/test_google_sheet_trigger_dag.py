"""google_sheet_trigger_dag end to end with dag.test(): sandbox sheet -> ledger -> one DAG run per request.

The target is guardian_health here (always present in dags/) so that this test does not depend
on the sales DAG; the allow-list makes it the only DAG the sheet may start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = "guardian_health"


def _load_dag() -> Any:
    import importlib.util

    path = REPO / "dags" / "google_sheet_trigger_dag.py"
    spec = importlib.util.spec_from_file_location("google_sheet_trigger_dag_file", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.google_sheet_trigger_dag()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from guardian.sandbox.serve import start_in_thread
    from guardian.sandbox.sheets import SheetsSandbox, create_app
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, demo_tabs

    state = SheetsSandbox()
    state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
    # The metadata DB outlives a test: a requester unique to this test gives its request its own run id.
    state.update(DEMO_SPREADSHEET_ID, "Requests!F2", [[f"t{uuid.uuid4().hex[:10]}@example.com"]], "RAW")
    handle = start_in_thread(create_app(state))
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", DEMO_SPREADSHEET_ID)
    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", handle.url + "/")
    monkeypatch.setenv("GUARDIAN_SHEETS__ALLOWED_TARGETS", TARGET)
    monkeypatch.setenv("GUARDIAN_SHEETS__DEFAULT_TARGET", TARGET)
    yield state
    handle.stop()


def _register_target() -> None:
    """Airflow 2.11's dag.test() does not write sibling DAGs to the metadata DB (3.x does): do it."""
    import airflow

    if int(airflow.__version__.split(".")[0]) >= 3:
        return
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{TARGET}.py"), include_examples=False)
    bag.sync_to_db()


def _runs_of(dag_id: str, run_id: str) -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(session.scalar(select(func.count()).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)) or 0)


def _states(dr: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def test_dag_shape() -> None:
    dag = _load_dag()
    assert dag.dag_id == "google_sheet_trigger_dag"
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert set(dag.task_dict) == {"poll", "trigger", "confirm"}
    # Airflow 3 keeps the cron text in repr; 2.11 in the summary / _expression.
    assert "*/5 * * * *" in repr(dag.timetable) + str(getattr(dag.timetable, "_expression", ""))


@pytest.mark.usefixtures("airflow_db")
def test_poll_triggers_one_run_per_request_even_when_repeated(sandbox: Any) -> None:
    from guardian.settings import load_settings
    from guardian.sheets import ledger
    from guardian.store import get_store

    _register_target()
    dag = _load_dag()
    first = dag.test()
    assert first.state == "success", _states(first)
    requests = ledger.list_requests(get_store(load_settings()))
    assert len(requests) == 1
    req = requests[0]
    assert req["status"] == "triggered" and req["target_dag"] == TARGET
    run_id = req["dag_run_id"]
    assert run_id.startswith("sheets__")
    assert _runs_of(TARGET, run_id) == 1
    assert _states(first)["trigger"] == ["success"]
    row = sandbox.get("demo-control-sheet", "Requests!G2:H2", "FORMULA")["values"][0]

    # The confirm step read the run back from Airflow (metadata DB here): triggered, row says so.
    assert row == ["queued", run_id]

    # Crash between the trigger and the confirmation: the request is still `accepted` in the
    # ledger, so the next poll confirms it from Airflow's run (it exists) instead of starting another.
    with get_store(load_settings()).write() as conn:
        ledger.set_fields(conn, req["request_id"], status=ledger.ACCEPTED)
    second = dag.test()
    assert second.state == "success", _states(second)
    assert _runs_of(TARGET, run_id) == 1
    assert ledger.get(get_store(load_settings()), req["request_id"]).status == "triggered"  # type: ignore[union-attr]

    # Nothing new: a third poll starts nothing.
    third = dag.test()
    assert third.state == "success", _states(third)
    assert _runs_of(TARGET, run_id) == 1
