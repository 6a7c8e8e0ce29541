"""The poll against the sandbox over HTTP (real client library), on the default SQLite store, with a
test double of Airflow's runs (tests/integration/sheets/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from guardian import audit
from guardian.errors import IntegrationError
from guardian.settings import load_settings
from guardian.sheets import ledger
from guardian.sheets.client import SheetsClient
from guardian.sheets.completion import report_run
from guardian.sheets.control import SheetLayoutError
from guardian.sheets.poll import PollResult, poll, run_poll
from guardian.store import get_store

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)
SID = "demo-control-sheet"


def do_poll(airflow: Any = None, **kwargs: Any) -> PollResult:
    settings = load_settings()
    store = get_store(settings)
    result = run_poll(settings, store, lambda: SheetsClient.from_settings(settings), runs=airflow, **kwargs)
    if airflow is not None and not kwargs.get("dry_run"):
        airflow.trigger_step(store, result)
    return result


def cells(sandbox: Sandbox, row: int) -> dict[str, str]:
    header = sandbox.rows()[0]
    values = sandbox.rows(f"Requests!A{row}:K{row}")
    values = values[0] if values else []
    return {h: (values[i] if i < len(values) else "") for i, h in enumerate(header)}


def person(sandbox: Sandbox, requests: list[dict[str, Any]]) -> None:
    """A person changes the structure of the sheet in the Sheets UI."""
    sandbox.state.batch_update_spreadsheet(SID, requests)


def once_after(sandbox: Sandbox, method: str, action: Callable[[], None]) -> None:
    """Run ``action`` (a person) right after the next ``method`` call the sandbox serves."""

    def hook(called: str) -> None:
        if called == method and hook in sandbox.state.hooks:
            sandbox.state.hooks.remove(hook)
            action()

    sandbox.state.hooks.append(hook)


def rows_request(kind: str, start: int, end: int, **extra: Any) -> dict[str, Any]:
    key = "source" if kind == "moveDimension" else "range"
    return {kind: {key: {"sheetId": 0, "dimension": "ROWS", "startIndex": start, "endIndex": end}, **extra}}


def add_runs(sandbox: Sandbox, at: int, brands: list[str], target: str = "") -> None:
    sandbox.type(
        f"Requests!A{at}",
        [["VN", b, "2025-05-01", "2025-05-10", target, f"{b.lower()}@example.com", "run"] for b in brands],
    )


def run_of(row: dict[str, str], airflow: Any) -> dict[str, Any]:
    return airflow.runs[row["Run ID"]]


def test_demo_sheet_first_poll_tags_rows_and_writes_by_tag(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.reset_calls()
    result = do_poll()
    # One read, one tag call that doubles as the re-check, one write.
    assert sheets_sandbox.calls()["by_method"] == {
        "spreadsheets.get": 1,
        "spreadsheets.batchUpdate": 1,
        "values.batchUpdateByDataFilter": 1,
    }
    assert len(result.new) == 1 and [r.request_id for r in result.to_trigger] == [result.new[0].request_id]
    req = result.new[0]
    assert req.conf == {
        "start_date": "2026-01-01",
        "end_date": "2026-01-31",
        "countries": ["TH"],
        "brands": ["ACME"],
        "requested_by": "analyst@example.com",
        "request_id": req.request_id,
    }
    row2 = cells(sheets_sandbox, 2)
    assert row2["Status"] == "queued" and row2["Run ID"] == req.dag_run_id
    assert row2["Notes"] == "January, Thailand"  # untouched
    assert cells(sheets_sandbox, 4)["Status"] == "invalid" and "'xx'" in cells(sheets_sandbox, 4)["Message"]
    row5 = cells(sheets_sandbox, 5)
    assert row5["Status"] == "invalid" and row5["Brand"].startswith("=IMPORTXML")
    assert cells(sheets_sandbox, 6)["Status"] == "done by hand"
    tags = {m.index: m.value for m in sheets_sandbox.state.spreadsheets[SID].metadata.values()}
    assert tags[1] == req.request_id and set(tags) == {1, 3, 4}
    stored = ledger.get(get_store(load_settings()), req.request_id)
    assert stored is not None and stored.tagged and stored.sheet_status == "accepted"


def test_lifecycle_from_airflow_for_any_target_with_link(
    sheets_sandbox: Sandbox, airflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__ALLOWED_TARGETS", "bigquery_sales_query,guardian_health")
    monkeypatch.setenv("GUARDIAN_NOTIFY__UI_BASE_URL", "https://airflow.corp.example")
    sheets_sandbox.type("Requests!E2", [["guardian_health"]])  # a target that never calls back
    req = do_poll(airflow).new[0]
    assert airflow.runs[req.dag_run_id]["dag_id"] == "guardian_health"
    do_poll(airflow)
    assert cells(sheets_sandbox, 2)["Status"] == "queued"  # Airflow has it queued
    airflow.runs[req.dag_run_id]["state"] = "running"
    do_poll(airflow)
    row = cells(sheets_sandbox, 2)
    link = f"https://airflow.corp.example/dags/guardian_health/runs/{req.dag_run_id}"
    assert row["Status"] == "running" and link in row["Message"]
    airflow.runs[req.dag_run_id]["state"] = "success"
    do_poll(airflow)
    assert cells(sheets_sandbox, 2)["Status"] == "completed"
    sheets_sandbox.reset_calls()
    settled = do_poll(airflow)
    assert settled.outcome == "no_change" and sheets_sandbox.calls()["total"] == 1
    assert airflow.refused == 0


@pytest.mark.parametrize("typed", ["on hold", "run"])
def test_a_status_change_is_rechecked_and_never_overwrites_a_status_typed_right_after_the_read(
    sheets_sandbox: Sandbox, airflow: Any, typed: str
) -> None:
    """Invariant: a Status a person types between the guardian's read and its write is never overwritten
    (here the row was due to go from queued to running); the write waits for the next poll's read."""
    req = do_poll(airflow).new[0]
    do_poll(airflow)
    airflow.runs[req.dag_run_id]["state"] = "running"
    once_after(sheets_sandbox, "spreadsheets.get", lambda: sheets_sandbox.type("Requests!G2", [[typed]]))
    sheets_sandbox.reset_calls()
    result = do_poll(airflow)
    assert sheets_sandbox.calls()["by_method"] == {"spreadsheets.get": 1, "values.batchGetByDataFilter": 1}
    assert cells(sheets_sandbox, 2)["Status"] == typed and result.skipped_writes
    later = do_poll(airflow)  # the next poll judges the row as the person left it
    if typed == "run":
        assert len(later.new) == 1 and cells(sheets_sandbox, 2)["Status"] == "queued"
        assert cells(sheets_sandbox, 2)["Run ID"] == later.new[0].dag_run_id != req.dag_run_id
    else:
        assert later.new == [] and cells(sheets_sandbox, 2)["Status"] == "on hold"


def test_a_write_that_leaves_status_alone_is_not_rechecked_and_keeps_a_persons_status(
    sheets_sandbox: Sandbox, airflow: Any
) -> None:
    """Invariant: a poll whose writes change no Status or Run ID costs two calls, and a Status a person types
    right after its read stays theirs (only the guardian's own cells of the row are written, by its tag)."""
    req = do_poll(airflow).new[0]
    assert airflow.runs[req.dag_run_id]["state"] == "queued"  # Airflow has the run, not started yet
    sheets_sandbox.edit_after("spreadsheets.get", "Requests!G2", [["on hold"]])
    sheets_sandbox.reset_calls()
    do_poll(airflow)
    assert sheets_sandbox.calls()["by_method"] == {"spreadsheets.get": 1, "values.batchUpdateByDataFilter": 1}
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "on hold" and row["Run ID"] == req.dag_run_id
    assert row["Message"].endswith(f"/runs/{req.dag_run_id}")  # the run's link: the guardian's own cell
    airflow.runs[req.dag_run_id]["state"] = "running"
    sheets_sandbox.reset_calls()
    do_poll(airflow)
    assert sheets_sandbox.calls()["total"] == 1 and cells(sheets_sandbox, 2)["Status"] == "on hold"


@pytest.mark.parametrize(
    ("fate", "says"),
    [("failed", "the run failed"), ("vanished", "gone from Airflow"), ("timeout", "timed out after 2 h")],
)
def test_runs_that_fail_vanish_or_outlive_the_timeout_end_failed(
    sheets_sandbox: Sandbox, airflow: Any, monkeypatch: pytest.MonkeyPatch, fate: str, says: str
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RUN_TIMEOUT_HOURS", "2")
    req = do_poll(airflow).new[0]
    airflow.runs[req.dag_run_id]["state"] = "running"
    do_poll(airflow)
    if fate == "failed":
        airflow.runs[req.dag_run_id]["state"] = "failed"
    elif fate == "vanished":
        del airflow.runs[req.dag_run_id]
    else:
        with get_store(load_settings()).write() as conn:
            ledger.set_fields(conn, req.request_id, created_at=ledger.now_utc() - timedelta(hours=3))
    do_poll(airflow)
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "failed" and says in row["Message"], row
    assert ledger.get(get_store(load_settings()), req.request_id).status == "failed"  # type: ignore[union-attr]


def test_rows_sorted_moved_and_deleted_keep_every_status_on_its_own_row(sheets_sandbox: Sandbox, airflow: Any) -> None:
    add_runs(sheets_sandbox, 7, ["Z", "X", "Y"])
    first = do_poll(airflow)
    assert len(first.new) == 4
    # People sort the table by Brand (descending), move a row to the top and delete another.
    person(
        sheets_sandbox,
        [
            {
                "sortRange": {
                    "range": {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 10},
                    "sortSpecs": [{"dimensionIndex": 1, "sortOrder": "DESCENDING"}],
                }
            }
        ],
    )
    values = sheets_sandbox.rows()
    alfa = next(i for i, r in enumerate(values) if len(r) > 1 and r[1] == "X")
    person(sheets_sandbox, [rows_request("moveDimension", alfa, alfa + 1, destinationIndex=1)])
    values = sheets_sandbox.rows()
    mike = next(i for i, r in enumerate(values) if len(r) > 1 and r[1] == "Y")
    person(sheets_sandbox, [rows_request("deleteDimension", mike, mike + 1)])
    for run in airflow.runs.values():
        run["state"] = "success" if run["conf"]["brands"] != ["ACME"] else "failed"
    result = do_poll(airflow)
    assert result.gone and len(result.gone) == 1
    seen = 0
    for number in range(2, 12):
        row = cells(sheets_sandbox, number)
        if not row.get("Run ID", "").startswith("sheets__"):
            continue
        seen += 1
        run = run_of(row, airflow)
        assert run["conf"]["brands"] == [row["Brand"]]  # the run id sits on the row of its own request
        assert row["Status"] == ("failed" if row["Brand"] == "ACME" else "completed")
    assert seen == 3
    events = [e.action for e in audit.iter_events(store=get_store(load_settings()))]
    assert events.count("sheets.request.row_deleted") == 1


def test_row_inserted_between_read_and_tag_never_misplaces_a_status(sheets_sandbox: Sandbox, airflow: Any) -> None:
    add_runs(sheets_sandbox, 7, ["NOVA"])
    # Right after the poll's read, a person inserts a row above both `run` rows.
    once_after(
        sheets_sandbox, "spreadsheets.get", lambda: person(sheets_sandbox, [rows_request("insertDimension", 1, 2)])
    )
    first = do_poll(airflow)
    assert first.new == [] and first.to_trigger == [] and airflow.runs == {}
    assert len(first.skipped_writes) >= 2
    assert cells(sheets_sandbox, 3)["Status"] == "run" and cells(sheets_sandbox, 8)["Status"] == "run"
    second = do_poll(airflow)
    assert len(second.new) == 2
    for number in (3, 8):
        row = cells(sheets_sandbox, number)
        assert row["Status"] == "queued" and run_of(row, airflow)["conf"]["brands"] == [row["Brand"]]
    assert len(airflow.runs) == 2


def test_row_edited_between_read_and_write_is_left_alone(sheets_sandbox: Sandbox, airflow: Any) -> None:
    once_after(sheets_sandbox, "spreadsheets.get", lambda: sheets_sandbox.type("Requests!B2", [["NOVA"]]))
    result = do_poll(airflow)
    assert [n for n, _ in result.skipped_writes] == [2]
    assert result.new == [] and airflow.runs == {}
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "run" and row["Brand"] == "NOVA" and row["Run ID"] == ""
    assert cells(sheets_sandbox, 4)["Status"] == "invalid"  # other rows still written
    again = do_poll(airflow)
    assert [r.conf["brands"] for r in again.new] == [["NOVA"]]
    assert "sheets.writeback.skipped" in [e.action for e in audit.iter_events(store=get_store(load_settings()))]


def test_a_status_a_person_typed_is_never_overwritten(sheets_sandbox: Sandbox, airflow: Any) -> None:
    req = do_poll(airflow).new[0]
    sheets_sandbox.type("Requests!G2", [["on hold"]])
    airflow.runs[req.dag_run_id]["state"] = "success"
    report_run(load_settings(), request_id=req.request_id, dag_run_id="x", ok=True, rows=5, output_uri=None, error=None)
    do_poll(airflow)
    assert cells(sheets_sandbox, 2)["Status"] == "on hold"
    assert ledger.get(get_store(load_settings()), req.request_id).status == "completed"  # type: ignore[union-attr]


def test_completion_writes_rows_and_link_to_the_moved_row(sheets_sandbox: Sandbox, airflow: Any) -> None:
    req = do_poll(airflow).new[0]
    person(sheets_sandbox, [rows_request("insertDimension", 1, 3)])  # the request's row moves from 2 to 4
    report_run(
        load_settings(),
        request_id=req.request_id,
        dag_run_id=req.dag_run_id,
        ok=True,
        rows=1234,
        output_uri="gs://exports/sales/2026/x.parquet",
        error=None,
    )
    row = cells(sheets_sandbox, 4)
    assert row["Status"] == "completed" and row["Brand"] == "ACME"
    assert (
        row["Message"] == "1,234 rows - https://console.cloud.google.com/storage/browser/exports/sales/2026/x.parquet"
    )
    assert cells(sheets_sandbox, 2)["Status"] == ""


def test_failed_run_error_is_masked_on_the_shared_sheet(sheets_sandbox: Sandbox) -> None:
    req = do_poll().new[0]
    error = "load failed: token=abc123secret for ops@corp.example at https://internal.corp/x?sig=1\nTraceback..."
    report_run(
        load_settings(), request_id=req.request_id, dag_run_id="x", ok=False, rows=None, output_uri=None, error=error
    )
    message = cells(sheets_sandbox, 2)["Message"]
    assert message.startswith("failed: load failed:")
    for secret in ("abc123secret", "ops@corp.example", "internal.corp", "Traceback"):
        assert secret not in message


def test_a_target_that_keeps_failing_fails_alone_after_n_attempts(
    sheets_sandbox: Sandbox, airflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__ALLOWED_TARGETS", "bigquery_sales_query,renamed_dag")
    monkeypatch.setenv("GUARDIAN_SHEETS__MAX_TRIGGER_ATTEMPTS", "3")
    add_runs(sheets_sandbox, 7, ["Z"], target="renamed_dag")
    first = do_poll(airflow)
    assert len(first.new) == 2
    do_poll(airflow)
    assert cells(sheets_sandbox, 2)["Status"] == "queued" and airflow.runs  # the good request is in Airflow
    for _ in range(3):
        do_poll(airflow)
    bad = cells(sheets_sandbox, 7)
    assert bad["Status"] == "failed" and "after 3 attempts" in bad["Message"] and "no DAG renamed_dag" in bad["Message"]
    assert len(airflow.runs) == 1 and do_poll(airflow).to_trigger == []


def test_allow_list_is_rechecked_at_trigger_time(
    sheets_sandbox: Sandbox, airflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = do_poll().new[0]  # recorded; not triggered (no trigger step ran)
    monkeypatch.setenv("GUARDIAN_SHEETS__ALLOWED_TARGETS", "guardian_health")
    monkeypatch.setenv("GUARDIAN_SHEETS__DEFAULT_TARGET", "guardian_health")
    result = do_poll(airflow)
    assert result.to_trigger == [] and airflow.runs == {}
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "failed" and "may no longer be started" in row["Message"]
    assert ledger.get(get_store(load_settings()), req.request_id).status == "failed"  # type: ignore[union-attr]


def test_daily_caps_make_rows_wait_and_say_why(sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__MAX_REQUESTS_PER_REQUESTER_PER_DAY", "1")
    sheets_sandbox.type(
        "Requests!A7",
        [
            ["VN", "X", "2025-05-01", "2025-05-10", "", "analyst@example.com", "run"],
            ["VN", "Y", "2025-05-01", "2025-05-10", "", "other@example.com", "run"],
        ],
    )
    result = do_poll()
    assert {r.row_number for r in result.new} == {2, 8}
    row = cells(sheets_sandbox, 7)
    assert row["Status"] == "waiting" and "requests today from this requester" in row["Message"]
    assert len(ledger.list_requests(get_store(load_settings()))) == 2
    sheets_sandbox.reset_calls()
    assert do_poll().new == [] and sheets_sandbox.calls()["total"] == 1  # still waiting: nothing rewritten


def test_typing_run_again_later_starts_a_new_run(sheets_sandbox: Sandbox, airflow: Any) -> None:
    first = do_poll(airflow).new[0]
    airflow.runs[first.dag_run_id]["state"] = "success"
    do_poll(airflow)
    assert cells(sheets_sandbox, 2)["Status"] == "completed"
    sheets_sandbox.type("Requests!G2", [["run"]])  # same row, same parameters, asked again
    second = do_poll(airflow).new
    assert len(second) == 1 and second[0].request_id != first.request_id
    assert cells(sheets_sandbox, 2)["Run ID"] == second[0].dag_run_id and len(airflow.runs) == 2


def test_dry_run_records_and_writes_nothing(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.reset_calls()
    result = do_poll(dry_run=True)
    assert len(result.to_trigger) == 1 and result.outcome == "dry_run"
    assert sheets_sandbox.calls()["by_method"] == {"spreadsheets.get": 1}
    assert ledger.list_requests(get_store(load_settings())) == []
    assert cells(sheets_sandbox, 2)["Status"] == "run"


def test_missing_guardian_columns_are_added_in_the_same_write(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.state.create(
        SID, "x", {"Requests": [["status", " COUNTRY ", "brand", "extra"], ["run", "vn", "x", "keep"]]}
    )
    result = do_poll()
    assert len(result.new) == 1
    rows = sheets_sandbox.rows("Requests!A1:H2")
    assert rows[0] == ["status", " COUNTRY ", "brand", "extra", "Run ID", "Message", "Updated at"]
    assert rows[1][0] == "queued" and rows[1][3] == "keep" and rows[1][4].startswith("sheets__")


def test_bad_input_rows_become_invalid_never_a_crash(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.type(
        "Requests!A7",
        [
            ["TH", "ACME", "2026-01-01", "2026-01-31", "airflow_db_cleanup", "", "run"],
            ["TH", "ACME'; DROP TABLE x;--", "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH' OR '1'='1", "ACME", "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH", "A" * 500, "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH", "ACME", "2026-13-01", "2026-01-31", "", "", "RUN"],
            ["TH", "ACME", "2026-01-01", "2026-01-31", "", "analyst@example.com", "run"],  # duplicate of row 2
            ["TH", "ACME", "", "", "", "", " Run "],  # no dates: previous month, valid
        ],
    )
    result = do_poll()
    reasons = dict(result.invalid)
    assert "may not be started from a sheet" in reasons[7]
    assert "not a brand code" in reasons[8]
    assert "Country" in reasons[9]
    assert "longer than 200" in reasons[10]
    assert "is not a date" in reasons[11]
    assert reasons[12].startswith("duplicate of row 2")
    assert {r.row_number for r in result.new} == {2, 13}
    for number in range(7, 13):
        assert cells(sheets_sandbox, number)["Status"] == "invalid"


def test_circuit_breaker_defers_extra_rows_to_the_next_poll(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__MAX_REQUESTS_PER_POLL", "2")
    sheets_sandbox.type(
        "Requests!A7", [["VN", "X", f"2025-0{m}-01", f"2025-0{m}-10", "", "", "run"] for m in range(1, 5)]
    )
    assert [len(p.new) for p in (do_poll(), do_poll(), do_poll())] == [2, 2, 1]
    assert len(ledger.list_requests(get_store(load_settings()))) == 5


def test_sheet_without_header_is_a_clear_poll_error_alerted_once(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.state.clear(SID, "Requests")
    sheets_sandbox.type("Requests!A1", [["a", "b"], ["TH", "run"]])
    for _ in range(3):
        with pytest.raises(SheetLayoutError, match="no header row with Country, Brand and Status"):
            do_poll()
    store = get_store(load_settings())
    assert [e.action for e in audit.iter_events(store=store)].count("sheets.poll.alert") == 1
    sheets_sandbox.state.create(SID, "x", {"Requests": [["Country", "Brand", "Status"]]})
    do_poll()
    assert [e.action for e in audit.iter_events(store=store)].count("sheets.poll.recovered") == 1


def test_range_without_room_for_guardian_columns_is_a_poll_error(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheets_sandbox.state.create(SID, "x", {"Requests": [["Country", "Brand", "Status"], ["TH", "X", "run"]]})
    monkeypatch.setenv("GUARDIAN_SHEETS__RANGE", "Requests!A1:C")
    with pytest.raises(SheetLayoutError, match="no room for the guardian's columns"):
        do_poll()


def test_quota_and_server_errors_retried_then_one_integration_error(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "2")
    sheets_sandbox.fault(status=429, count=2, method="spreadsheets.get")
    assert len(do_poll().new) == 1  # two 429s (with Google's quota details), then success
    sheets_sandbox.fault(status=503, count=5, method="spreadsheets.get")
    with pytest.raises(IntegrationError, match="HTTP 503"):
        do_poll()


def test_transport_errors_are_retried_then_one_integration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", SID)
    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "2")
    monkeypatch.setenv("GUARDIAN_SHEETS__BACKOFF_SECONDS", "0.01")
    settings = load_settings()
    client = SheetsClient.from_settings(settings)
    with pytest.raises(IntegrationError, match=r"failed after 3 tries \(ConnectionRefusedError"):
        poll(settings, get_store(settings), client)
    assert client.calls["spreadsheets.get"] == 3
