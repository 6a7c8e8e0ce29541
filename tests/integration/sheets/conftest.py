"""The Sheets API sandbox served over HTTP, seeded with the demo control sheet, and settings pointing at it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from guardian.sandbox.serve import ServerHandle, start_in_thread
from guardian.sandbox.sheets import SheetsSandbox, create_app
from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, demo_tabs


@dataclass
class Sandbox:
    """A running sandbox: its URL, its state and helpers over its admin routes."""

    handle: ServerHandle
    state: SheetsSandbox

    @property
    def url(self) -> str:
        return self.handle.url + "/"

    def calls(self) -> dict[str, Any]:
        return httpx.get(self.handle.url + "/_sandbox/calls").json()

    def reset_calls(self) -> None:
        httpx.post(self.handle.url + "/_sandbox/calls/reset")

    def fault(self, **body: Any) -> None:
        httpx.post(self.handle.url + "/_sandbox/faults", json=body).raise_for_status()

    def edit_after(self, after: str, a1: str, values: list[list[Any]]) -> None:
        body = {"after": after, "spreadsheetId": DEMO_SPREADSHEET_ID, "range": a1, "values": values}
        httpx.post(self.handle.url + "/_sandbox/edits", json=body).raise_for_status()

    def rows(self, a1: str = "Requests!A1:K", render: str = "FORMULA") -> list[list[Any]]:
        return self.state.get(DEMO_SPREADSHEET_ID, a1, render).get("values", [])

    def type(self, a1: str, values: list[list[Any]]) -> None:
        """A person types into the sheet (USER_ENTERED, as the Sheets UI does)."""
        self.state.update(DEMO_SPREADSHEET_ID, a1, values, "USER_ENTERED")


@pytest.fixture
def sheets_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A fresh sandbox with the demo control sheet; GUARDIAN_SHEETS__* point at it."""
    state = SheetsSandbox()
    state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
    handle = start_in_thread(create_app(state))
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", DEMO_SPREADSHEET_ID)
    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", handle.url + "/")
    monkeypatch.setenv("GUARDIAN_SHEETS__RANGE", "Requests!A1:Z")
    monkeypatch.setenv("GUARDIAN_SHEETS__BACKOFF_SECONDS", "0.01")
    yield Sandbox(handle, state)
    handle.stop()


class FakeAirflow:
    """A test double of Airflow's runs: answers from the runs it holds, which change only by what the
    trigger step and the test make happen (a run is created once per run id, as Airflow refuses a
    duplicate; a DAG that is absent or broken refuses to be triggered)."""

    def __init__(self, dags: set[str] | None = None) -> None:
        self.dags = set(dags or {"bigquery_sales_query", "guardian_health"})
        self.broken: set[str] = set()
        self.runs: dict[str, dict[str, Any]] = {}
        self.refused = 0

    # -- what TriggerDagRunOperator(skip_when_already_exists=True) does ---------------------------
    def trigger(self, kwargs: dict[str, Any]) -> str:
        dag, run_id = kwargs["trigger_dag_id"], kwargs["trigger_run_id"]
        if dag not in self.dags or dag in self.broken:
            raise RuntimeError(f"DagNotFound: Dag id {dag} not found")
        if run_id in self.runs:
            self.refused += 1
            return "skipped"
        self.runs[run_id] = {"dag_id": dag, "state": "queued", "conf": dict(kwargs["conf"])}
        return "created"

    def trigger_step(self, store: Any, result: Any) -> None:
        """The DAG's trigger tasks (each request on its own), then its confirm task (reads the runs back)."""
        from guardian.settings import load_settings
        from guardian.sheets import ledger
        from guardian.sheets.poll import reconcile

        ledger.mark_handed(store, [r.request_id for r in result.to_trigger], ledger.now_utc())
        for req in result.to_trigger:
            with contextlib.suppress(RuntimeError):
                self.trigger(req.trigger_kwargs())
        reconcile(load_settings(), store, result.spreadsheet_id, self, ledger.now_utc())

    # -- the RunSource protocol -----------------------------------------------------------------
    def states(self, run_ids: dict[str, list[str]], since: Any) -> dict[str, str]:
        return {
            rid: run["state"]
            for dag, rids in run_ids.items()
            for rid in rids
            if (run := self.runs.get(rid)) is not None and run["dag_id"] == dag
        }

    def dag_ids(self) -> set[str]:
        return set(self.dags)


@pytest.fixture
def airflow() -> FakeAirflow:
    return FakeAirflow()
