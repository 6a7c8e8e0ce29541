"""Exactly once, and every status on its own row, whatever people do to the sheet — on real PostgreSQL.

A stateful property-based test: a team of people inserts, deletes, sorts and moves rows, edits cells
(also right after a poll's read), types and retypes `run` and writes their own statuses, while polls
run and are killed between any two Sheets API calls (before a call is sent, or after the server
applied it and before the answer arrives), and target runs succeed, fail, hang or vanish. A real
SIGKILL of a `guardian sheets poll` process is tested on its own below.

People know their rows by the Notes cell (the guardian never reads or writes it); every typing of
`run` carries its own Requested by address, so a run tells which typing it serves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from guardian.errors import GuardianError
from guardian.settings import load_settings
from guardian.sheets import ledger
from guardian.sheets.client import SheetsClient
from guardian.sheets.completion import report_run
from guardian.sheets.control import GUARDIAN_STATUSES
from guardian.sheets.poll import run_poll
from guardian.store import get_store

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)
HEADER = ["Country", "Brand", "Start date", "End date", "Target", "Requested by", "Status", "Run ID", "Message",
          "Updated at", "Notes"]  # fmt: skip
PERSON = (0, 1, 2, 3, 4, 5, 10)  # the cells people type (Status aside)
TARGETS = ("", "guardian_health", "renamed_dag")  # sales (default), a target that never calls back, a poison one
GUARDIAN = (
    [sys.executable, "-m", "guardian.cli"]
    if not Path(sys.prefix, "bin", "guardian").exists()
    else [str(Path(sys.prefix, "bin", "guardian"))]
)


class Killed(BaseException):
    """kill -9 of the poll: nothing after this point runs, open transactions roll back."""


class KillableClient(SheetsClient):
    """The real client; the process dies at the ``kill_at``-th API call, before sending it or after the
    server applied it (``after``)."""

    kill_at: int | None = None
    after: bool = False
    made = 0

    def _call(self, method: str, target: str, request: Any) -> Any:
        self.made += 1
        if self.made == self.kill_at and not self.after:
            raise Killed(method)
        answer = super()._call(method, target, request)
        if self.made == self.kill_at:
            raise Killed(method)
        return answer


class PeopleAndPolls(RuleBasedStateMachine):
    """The model: which rows exist (by their Notes label), what people typed in them, each typing."""

    sandbox: Any = None
    airflow_cls: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.sid = f"sheet-{uuid.uuid4().hex[:10]}"
        os.environ["GUARDIAN_SHEETS__SPREADSHEET_ID"] = self.sid
        self.state = self.sandbox.state
        self.state.create(self.sid, "team sheet", {"Requests": [HEADER]})
        self.settings = load_settings()
        self.store = get_store(self.settings)
        client = KillableClient.from_settings(self.settings)
        assert isinstance(client, KillableClient)
        self.client = client
        self.airflow = self.airflow_cls(dags={"bigquery_sales_query", "guardian_health"})
        self.rows: dict[str, list[str]] = {}  # label -> the person cells (index 6 = Status as typed)
        self.mine: dict[str, str] = {}  # label -> the Status a person typed that is theirs ("on hold")
        self.typings: dict[str, str] = {}  # email -> label it was typed on
        self.asking: dict[str, str] = {}  # label -> email of the `run` the guardian has not taken yet
        self.vanished: list[dict[str, Any]] = []  # runs deleted from Airflow by hand
        self.n = 0
        self.labels = 0

    # -- helpers -----------------------------------------------------------------------------
    def _grid(self) -> list[list[Any]]:
        return self.state.get(self.sid, "Requests!A1:K120", "FORMULA").get("values", [])

    def _index(self, label: str) -> int | None:
        for i, row in enumerate(self._grid()):
            if len(row) > 10 and row[10] == label:
                return i
        return None

    def _type(self, label: str, col: int, value: str) -> None:
        i = self._index(label)
        assert i is not None
        self.state.update(self.sid, f"Requests!{'ABCDEFGHIJK'[col]}{i + 1}", [[value]], "RAW")
        self.rows[label][col] = value

    def _struct(self, requests: list[dict[str, Any]]) -> None:
        self.state.batch_update_spreadsheet(self.sid, requests)

    def _new_email(self, label: str) -> str:
        self.n += 1
        email = f"u{self.n}@example.com"
        self.typings[email] = label
        return email

    def _poll(self, kill_at: int | None = None, after: bool = False) -> None:
        client = self.client
        client.made, client.kill_at, client.after = 0, kill_at, after
        try:
            result = run_poll(self.settings, self.store, lambda: client, runs=self.airflow)
        except Killed:
            return
        except GuardianError:
            return
        self.airflow.trigger_step(self.store, result)

    def _labels(self) -> list[str]:
        return sorted(self.rows)

    # -- people --------------------------------------------------------------------------------
    @rule(brand=st.sampled_from(["X", "Y", "Z", "NOVA"]), dag=st.sampled_from(TARGETS), day=st.integers(1, 20))
    def add_row(self, brand: str, dag: str, day: int) -> None:
        self.labels += 1
        label = f"r{self.labels}"
        email = self._new_email(label)
        cells = ["VN", brand, f"2025-05-{day:02d}", "2025-05-28", dag, email, "run", "", "", "", label]
        at = len(self._grid()) + 1
        self.state.update(self.sid, f"Requests!A{at}", [cells], "RAW")
        self.rows[label] = cells
        self.asking[label] = email

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def insert_blank_row(self, data: st.DataObject) -> None:
        at = data.draw(st.integers(1, len(self._grid())))
        self._struct(
            [{"insertDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": at, "endIndex": at + 1}}}]
        )

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def delete_row(self, data: st.DataObject) -> None:
        label = data.draw(st.sampled_from(self._labels()))
        i = self._index(label)
        assert i is not None
        self._struct(
            [{"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": i, "endIndex": i + 1}}}]
        )
        del self.rows[label]
        self.asking.pop(label, None)
        self.mine.pop(label, None)

    @precondition(lambda self: len(self.rows) > 1)
    @rule(col=st.sampled_from([1, 2, 6, 10]), desc=st.booleans())
    def sort_rows(self, col: int, desc: bool) -> None:
        end = len(self._grid())
        spec = {"dimensionIndex": col, "sortOrder": "DESCENDING" if desc else "ASCENDING"}
        self._struct(
            [{"sortRange": {"range": {"sheetId": 0, "startRowIndex": 1, "endRowIndex": end}, "sortSpecs": [spec]}}]
        )

    @precondition(lambda self: len(self.rows) > 1)
    @rule(data=st.data())
    def move_row(self, data: st.DataObject) -> None:
        label = data.draw(st.sampled_from(self._labels()))
        i = self._index(label)
        assert i is not None
        dest = data.draw(st.integers(1, len(self._grid())))
        src = {"sheetId": 0, "dimension": "ROWS", "startIndex": i, "endIndex": i + 1}
        self._struct([{"moveDimension": {"source": src, "destinationIndex": dest}}])

    @precondition(lambda self: self.rows)
    @rule(data=st.data(), brand=st.sampled_from(["X", "Y", "Z", "NOVA", "??"]))
    def edit_brand(self, data: st.DataObject, brand: str) -> None:
        self._type(data.draw(st.sampled_from(self._labels())), 1, brand)

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def retype_run(self, data: st.DataObject) -> None:
        label = data.draw(st.sampled_from(self._labels()))
        email = self._new_email(label)
        self._type(label, 5, email)
        self._type(label, 6, "run")
        self.asking[label] = email
        self.mine.pop(label, None)

    @precondition(lambda self: self.rows)
    @rule(data=st.data())
    def type_own_status(self, data: st.DataObject) -> None:
        label = data.draw(st.sampled_from(self._labels()))
        self._type(label, 6, "on hold")
        self.mine[label] = "on hold"
        self.asking.pop(label, None)

    # -- polls and their deaths ----------------------------------------------------------------
    @rule()
    def poll(self) -> None:
        self._poll()

    @rule(kill_at=st.integers(1, 3), after=st.booleans())
    def poll_killed(self, kill_at: int, after: bool) -> None:
        self._poll(kill_at, after)

    @precondition(lambda self: self.rows)
    @rule(data=st.data(), what=st.sampled_from(["brand", "retype", "own status"]))
    def poll_with_a_person_acting_right_after_the_read(self, data: st.DataObject, what: str) -> None:
        label = data.draw(st.sampled_from(self._labels()))

        def act() -> None:
            if label not in self.rows or self._index(label) is None:
                return
            if what == "brand":
                self._type(label, 1, "NOVA" if self.rows[label][1] != "NOVA" else "X")
            elif what == "retype":
                email = self._new_email(label)
                self._type(label, 5, email)
                self._type(label, 6, "run")
                self.asking[label] = email
                self.mine.pop(label, None)
            else:
                self._type(label, 6, "on hold")
                self.mine[label] = "on hold"
                self.asking.pop(label, None)

        def hook(method: str) -> None:
            if method == "spreadsheets.get" and hook in self.state.hooks:
                self.state.hooks.remove(hook)
                act()

        self.state.hooks.append(hook)
        try:
            self._poll()
        finally:
            if hook in self.state.hooks:
                self.state.hooks.remove(hook)

    # -- Airflow ----------------------------------------------------------------------------
    @precondition(lambda self: self.airflow.runs)
    @rule(
        data=st.data(),
        fate=st.sampled_from(["running", "success", "failed", "vanish", "hang", "report_ok", "report_fail"]),
    )
    def run_moves_on(self, data: st.DataObject, fate: str) -> None:
        run_id = data.draw(st.sampled_from(sorted(self.airflow.runs)))
        run = self.airflow.runs[run_id]
        if fate == "vanish":
            self.vanished.append(self.airflow.runs.pop(run_id))
        elif fate == "hang":
            # Still running long after it was asked: the request ages past GUARDIAN_SHEETS__RUN_TIMEOUT_HOURS.
            run["state"] = "running"
            with self.store.write() as conn:
                ledger.set_fields(conn, run["conf"]["request_id"], created_at=ledger.now_utc() - timedelta(hours=100))
        elif fate.startswith("report"):
            if run["dag_id"] == "bigquery_sales_query":  # the sales DAG's completion step
                run["state"] = "success" if fate == "report_ok" else "failed"
                with contextlib.suppress(GuardianError):
                    report_run(
                        self.settings,
                        request_id=run["conf"]["request_id"],
                        dag_run_id=run_id,
                        ok=fate == "report_ok",
                        rows=7,
                        output_uri="gs://exports/x.parquet",
                        error="boom",
                    )
        else:
            run["state"] = fate

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def no_person_typed_cell_is_overwritten(self) -> None:
        for i, row in enumerate(self._grid()):
            if i == 0 or len(row) <= 10 or row[10] not in self.rows:
                continue
            label, expected = row[10], self.rows[row[10]]
            shown = [row[j] if j < len(row) else "" for j in range(11)]
            for j in PERSON:
                assert shown[j] == expected[j], (label, j, shown, expected)
            status = shown[6]
            if label in self.mine:
                assert status == self.mine[label], (label, shown)
            elif status != "run":
                assert status in GUARDIAN_STATUSES, (label, shown)
                if label in self.asking and (shown[7] or status == "invalid") and shown[5] == self.asking[label]:
                    del self.asking[label]  # the guardian took this typing up

    @invariant()
    def every_status_sits_on_the_row_of_its_own_request(self) -> None:
        seen: set[str] = set()
        with self.store.read() as conn:
            for row in self._grid()[1:]:
                run_id = row[7] if len(row) > 7 else ""
                if not run_id or row[6] not in GUARDIAN_STATUSES:
                    continue
                assert run_id not in seen, f"{run_id} on two rows"
                seen.add(run_id)
                req = ledger.by_run_ids(conn, [run_id])[run_id]
                assert req.requested_by == row[5], (row, req)

    @invariant()
    def no_typing_gets_two_runs(self) -> None:
        per: dict[str, int] = {}
        for run in [*self.airflow.runs.values(), *self.vanished]:
            who = run["conf"]["requested_by"]
            per[who] = per.get(who, 0) + 1
            assert per[who] == 1, who
        with self.store.read() as conn:
            live = [r for r in ledger.open_for_sheet(conn, self.sid) if r.status in ledger.OPEN and r.tagged]
        by_person: dict[str | None, int] = {}
        for r in live:
            by_person[r.requested_by] = by_person.get(r.requested_by, 0) + 1
            assert by_person[r.requested_by] == 1, r.requested_by

    def teardown(self) -> None:
        """Quiet time: people stop, every run ends; then every `run` has exactly one run and a final status."""
        self.state.hooks.clear()
        for _ in range(6):
            self._poll()
            for run in self.airflow.runs.values():
                run["state"] = "success"
        self._poll()
        final = ("completed", "failed", "invalid")
        runs_by_email = {run["conf"]["requested_by"]: run for run in [*self.airflow.runs.values(), *self.vanished]}
        for i, row in enumerate(self._grid()):
            if i == 0 or len(row) <= 10 or row[10] not in self.rows:
                continue
            label = row[10]
            if label in self.mine:
                continue
            status, email, target = row[6], row[5], row[4]
            assert status in final, (label, row)
            if status == "invalid":
                continue
            if target == "renamed_dag":
                assert status == "failed" and email not in runs_by_email, row
            else:
                assert email in runs_by_email and runs_by_email[email]["conf"]["request_id"] in row[7], row
        with self.store.read() as conn:
            left = [r for r in ledger.open_for_sheet(conn, self.sid) if r.status in ledger.OPEN]
        assert left == [], [(r.request_id, r.status, r.sheet_status) for r in left]


@pytest.mark.usefixtures("pg_env")
def test_people_and_polls_exactly_once_on_postgresql(
    sheets_sandbox: Sandbox, airflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant: each `run` typed gets exactly one run, every status and run id sits on its own request's
    row, no person-typed cell is overwritten, and every request reaches a final status."""
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "0")
    monkeypatch.setenv("GUARDIAN_SHEETS__ALLOWED_TARGETS", "bigquery_sales_query,guardian_health,renamed_dag")
    monkeypatch.setenv("GUARDIAN_SHEETS__MAX_TRIGGER_ATTEMPTS", "2")
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", "placeholder")
    get_store(load_settings()).ensure_migrated()
    PeopleAndPolls.sandbox = sheets_sandbox
    PeopleAndPolls.airflow_cls = type(airflow)
    run_state_machine_as_test(
        PeopleAndPolls,
        settings=settings(
            max_examples=int(os.environ.get("SHEETS_PBT_EXAMPLES", "6")),
            stateful_step_count=int(os.environ.get("SHEETS_PBT_STEPS", "25")),
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )


def test_poll_process_killed_before_its_write_back_then_rerun(pg_env: str, sheets_sandbox: Sandbox) -> None:
    """A real SIGKILL of a `guardian sheets poll` process after it recorded the request and tagged its row."""
    # The delay only has to outlast the kill (sent within 0.1 s of the call arriving); the sandbox's
    # server waits for the sleeping handler when it stops, so a longer one is test time for nothing.
    sheets_sandbox.fault(delay=4, count=1, method="values.batchUpdateByDataFilter")
    proc = subprocess.Popen(
        [*GUARDIAN, "sheets", "poll", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    store = get_store(load_settings())
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and sheets_sandbox.calls()["by_method"].get("values.batchUpdateByDataFilter", 0) == 0
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    requests = ledger.list_requests(store)
    assert len(requests) == 1 and sheets_sandbox.rows("Requests!G2:H2") == [["run"]]
    # Its status never reached its row: not handed to Airflow until a poll writes it there.
    assert ledger.to_trigger(store, load_settings().sheets.spreadsheet_id) == []
    httpx.delete(sheets_sandbox.handle.url + "/_sandbox/faults").raise_for_status()

    settings_ = load_settings()
    result = run_poll(settings_, store, lambda: SheetsClient.from_settings(settings_))
    assert result.new == []  # the same request, found again by its tag
    assert [r.dag_run_id for r in result.to_trigger] == [requests[0]["dag_run_id"]]
    assert sheets_sandbox.rows("Requests!G2:H2") == [["queued", requests[0]["dag_run_id"]]]
    assert len(ledger.list_requests(store)) == 1
