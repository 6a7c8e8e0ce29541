"""The poll against the sandbox over HTTP (real client library), on the default SQLite store."""

from __future__ import annotations

from typing import Any

import pytest

from guardian import audit
from guardian.errors import IntegrationError
from guardian.settings import load_settings
from guardian.sheets import ledger
from guardian.sheets.client import SheetsClient
from guardian.sheets.completion import report_run
from guardian.sheets.control import SheetLayoutError
from guardian.sheets.poll import PollResult, run_poll
from guardian.store import get_store

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)


def do_poll(**kwargs: Any) -> PollResult:
    settings = load_settings()
    return run_poll(settings, get_store(settings), lambda: SheetsClient.from_settings(settings), **kwargs)


def cells(sandbox: Sandbox, row: int) -> dict[str, str]:
    header = sandbox.rows()[0]
    values = sandbox.rows(f"Requests!A{row}:K{row}")
    values = values[0] if values else []
    return {h: (values[i] if i < len(values) else "") for i, h in enumerate(header)}


def test_demo_sheet_first_poll_two_calls_statuses_written(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.reset_calls()
    result = do_poll()
    assert result.calls == 2
    assert sheets_sandbox.calls()["by_method"] == {"values.get": 1, "values.batchUpdate": 1}
    assert len(result.new) == 1 and len(result.to_trigger) == 1
    req = result.new[0]
    assert req.dag_run_id == f"sheets__{req.request_id}"
    assert req.target_dag == "bigquery_sales_query"
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
    row4 = cells(sheets_sandbox, 4)
    assert row4["Status"] == "invalid" and "Country" in row4["Message"] and "'xx'" in row4["Message"]
    row5 = cells(sheets_sandbox, 5)
    assert row5["Status"] == "invalid" and "formula" in row5["Message"]
    assert row5["Brand"].startswith("=IMPORTXML")  # the person's cell is never rewritten
    assert cells(sheets_sandbox, 6)["Status"] == "done by hand"
    events = [e.action for e in audit.iter_events(store=get_store(load_settings()))]
    assert "sheets.request.accepted" in events


def test_unchanged_sheet_costs_one_call(sheets_sandbox: Sandbox) -> None:
    first = do_poll()
    store = get_store(load_settings())
    ledger.mark_triggered(store, [r.request_id for r in first.to_trigger])
    report_run(
        load_settings(),
        request_id=first.new[0].request_id,
        dag_run_id=first.new[0].dag_run_id,
        ok=True,
        rows=10,
        output_uri="file:///tmp/x.parquet",
        error=None,
    )
    do_poll()  # sees the completion written by report_run
    sheets_sandbox.reset_calls()
    again = do_poll()
    assert again.outcome == "no_change" and again.calls == 1
    assert sheets_sandbox.calls()["total"] == 1


def test_lifecycle_queued_running_completed_with_link(sheets_sandbox: Sandbox) -> None:
    first = do_poll()
    req = first.new[0]
    store = get_store(load_settings())
    assert ledger.mark_triggered(store, [req.request_id]) == 1
    second = do_poll()
    assert second.written_rows == 1 and cells(sheets_sandbox, 2)["Status"] == "running"
    report_run(
        load_settings(),
        request_id=req.request_id,
        dag_run_id=req.dag_run_id,
        ok=True,
        rows=1234,
        output_uri="gs://exports/sales/2026/x.parquet",
        error=None,
    )
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "completed"
    assert (
        row["Message"] == "1,234 rows - https://console.cloud.google.com/storage/browser/exports/sales/2026/x.parquet"
    )
    stored = ledger.get(store, req.request_id)
    assert stored is not None and stored.status == "completed" and stored.sheet_status == "completed"


def test_failed_run_writes_reason(sheets_sandbox: Sandbox) -> None:
    req = do_poll().new[0]
    report_run(
        load_settings(),
        request_id=req.request_id,
        dag_run_id=req.dag_run_id,
        ok=False,
        rows=None,
        output_uri=None,
        error="quality gate: 3 rows with unknown currency\nTraceback...",
    )
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "failed" and row["Message"] == "failed: quality gate: 3 rows with unknown currency"


def test_completion_refinds_a_moved_row(sheets_sandbox: Sandbox) -> None:
    req = do_poll().new[0]
    # A person inserts two rows above the request: its row moves from 2 to 4.
    values = sheets_sandbox.rows()
    sheets_sandbox.state.clear("demo-control-sheet", "Requests")
    sheets_sandbox.type("Requests!A1", [values[0], ["note"], ["note"], *values[1:]])
    report_run(load_settings(), request_id=req.request_id, dag_run_id="x", ok=True, rows=1, output_uri=None, error=None)
    assert cells(sheets_sandbox, 4)["Status"] == "completed"
    assert cells(sheets_sandbox, 2)["Status"] == ""


def test_bad_input_rows_become_invalid_never_a_crash(sheets_sandbox: Sandbox) -> None:
    long_brand = "A" * 500
    sheets_sandbox.type(
        "Requests!A7",
        [
            ["TH", "ACME", "2026-01-01", "2026-01-31", "airflow_db_cleanup", "", "run"],
            ["TH", "ACME'; DROP TABLE x;--", "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH' OR '1'='1", "ACME", "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH", long_brand, "2026-01-01", "2026-01-31", "", "", "run"],
            ["TH", "ACME", "2026-13-01", "2026-01-31", "", "", "RUN"],
            ["TH", "ACME", "2026-02-01", "2026-01-31", "", "", "run"],
            ["TH", "ACME", "2026-01-01", "2026-01-31", "", "not-an-email", "run"],
            ["TH", "ACME", "2026-01-01", "2026-01-31", "", "analyst@example.com", "run"],  # duplicate of row 2
            ["'=1+1", "ACME", "2026-01-01", "2026-01-31", "", "", "run"],
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
    assert "before the start date" in reasons[12]
    assert "not an email" in reasons[13]
    assert reasons[14].startswith("duplicate of row 2")
    assert "formula" in reasons[15]
    assert {r.row_number for r in result.new} == {2, 16}
    for req in result.new:
        assert set(req.conf) <= {"start_date", "end_date", "countries", "brands", "requested_by", "request_id"}
    for number in range(7, 16):
        assert cells(sheets_sandbox, number)["Status"] == "invalid"


def test_sheet_without_header_is_a_clear_poll_error_alerted_once(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.state.clear("demo-control-sheet", "Requests")
    sheets_sandbox.type("Requests!A1", [["a", "b"], ["TH", "run"]])
    for _ in range(3):
        with pytest.raises(SheetLayoutError, match="no header row with Country, Brand and Status"):
            do_poll()
    store = get_store(load_settings())
    actions = [e.action for e in audit.iter_events(store=store)]
    assert actions.count("sheets.poll.alert") == 1
    sheets_sandbox.state.create("demo-control-sheet", "x", {"Requests": [["Country", "Brand", "Status"]]})
    do_poll()
    actions = [e.action for e in audit.iter_events(store=store)]
    assert actions.count("sheets.poll.recovered") == 1


def test_api_errors_retried_then_poll_fails(sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "2")
    sheets_sandbox.fault(status=429, count=2, method="values.get")
    assert len(do_poll().new) == 1  # two 429s, then success
    sheets_sandbox.fault(status=503, count=5, method="values.get")
    with pytest.raises(IntegrationError, match="HTTP 503"):
        do_poll()


def test_row_edited_between_read_and_write_is_left_alone(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RECHECK_AFTER_SECONDS", "0")
    # Right after the poll's read, a person changes the brand of the `run` row.
    sheets_sandbox.edit_after("values.get", "Requests!B2", [["NOVA"]])
    result = do_poll()
    assert result.skipped_writes and result.skipped_writes[0][0] == 2
    assert result.new == [] and result.to_trigger == []
    assert sheets_sandbox.calls()["by_method"]["values.batchGet"] == 1
    row = cells(sheets_sandbox, 2)
    assert row["Status"] == "run" and row["Brand"] == "NOVA" and row["Run ID"] == ""
    assert cells(sheets_sandbox, 4)["Status"] == "invalid"  # other rows still written
    # The next poll judges the row as it now is: one request, for NOVA.
    again = do_poll()
    assert [r.conf["brands"] for r in again.new] == [["NOVA"]]
    events = [e.action for e in audit.iter_events(store=get_store(load_settings()))]
    assert "sheets.writeback.skipped" in events


def test_typing_run_again_later_starts_a_new_run(sheets_sandbox: Sandbox) -> None:
    first = do_poll().new[0]
    store = get_store(load_settings())
    ledger.mark_triggered(store, [first.request_id])
    report_run(
        load_settings(), request_id=first.request_id, dag_run_id="x", ok=True, rows=1, output_uri=None, error=None
    )
    sheets_sandbox.type("Requests!G2", [["run"]])  # same row, same parameters, asked again
    second = do_poll()
    assert len(second.new) == 1 and second.new[0].request_id != first.request_id
    # The person clears the Run ID too and asks a third time: still a new request.
    ledger.mark_triggered(store, [second.new[0].request_id])
    sheets_sandbox.type("Requests!G2:H2", [["run", ""]])
    third = do_poll()
    assert len(third.new) == 1 and third.new[0].request_id not in {first.request_id, second.new[0].request_id}


def test_dry_run_records_and_writes_nothing(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.reset_calls()
    result = do_poll(dry_run=True)
    assert len(result.to_trigger) == 1 and result.outcome == "dry_run"
    assert sheets_sandbox.calls()["by_method"] == {"values.get": 1}
    assert ledger.list_requests(get_store(load_settings())) == []
    assert cells(sheets_sandbox, 2)["Status"] == "run"


def test_missing_guardian_columns_are_added_in_the_same_write(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.state.create(
        "demo-control-sheet",
        "x",
        {"Requests": [["status", " COUNTRY ", "brand", "extra"], ["run", "vn", "x", "keep"]]},
    )
    sheets_sandbox.reset_calls()
    result = do_poll()
    assert result.calls == 2 and len(result.new) == 1
    rows = sheets_sandbox.rows("Requests!A1:H2")
    assert rows[0] == ["status", " COUNTRY ", "brand", "extra", "Run ID", "Message", "Updated at"]
    assert rows[1][0] == "queued" and rows[1][3] == "keep" and rows[1][4].startswith("sheets__")


def test_circuit_breaker_defers_extra_rows_to_the_next_poll(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__MAX_REQUESTS_PER_POLL", "2")
    sheets_sandbox.type(
        "Requests!A7",
        [["VN", "X", f"2025-0{m}-01", f"2025-0{m}-10", "", "", "run"] for m in range(1, 5)],
    )
    first = do_poll()
    assert len(first.new) == 2 and first.deferred == 3
    second = do_poll()
    assert len(second.new) == 2 and second.deferred == 1
    third = do_poll()
    assert len(third.new) == 1 and third.deferred == 0
    assert len(ledger.list_requests(get_store(load_settings()))) == 5


def test_range_without_room_for_guardian_columns_is_a_poll_error(
    sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    sheets_sandbox.state.create(
        "demo-control-sheet", "x", {"Requests": [["Country", "Brand", "Status"], ["TH", "X", "run"]]}
    )
    monkeypatch.setenv("GUARDIAN_SHEETS__RANGE", "Requests!A1:C")
    with pytest.raises(SheetLayoutError, match="no room for the guardian's columns"):
        do_poll()


def test_run_typed_again_before_the_first_run_ends_is_not_overwritten(sheets_sandbox: Sandbox) -> None:
    first = do_poll().new[0]
    sheets_sandbox.type("Requests!G2", [["run"]])  # asks again while the first run is still going
    report_run(
        load_settings(), request_id=first.request_id, dag_run_id="x", ok=True, rows=5, output_uri=None, error=None
    )
    assert cells(sheets_sandbox, 2)["Status"] == "run"  # the person's new request wins
    stored = ledger.get(get_store(load_settings()), first.request_id)
    assert stored is not None and stored.status == "completed"
    second = do_poll()
    assert len(second.new) == 1 and cells(sheets_sandbox, 2)["Run ID"] == second.new[0].dag_run_id


def test_deleted_row_settles_and_polls_short_circuit_again(sheets_sandbox: Sandbox) -> None:
    first = do_poll().new[0]
    ledger.mark_triggered(get_store(load_settings()), [first.request_id])
    sheets_sandbox.state.clear("demo-control-sheet", "Requests!A2:K2")  # a person deletes the request
    report_run(
        load_settings(), request_id=first.request_id, dag_run_id="x", ok=True, rows=5, output_uri=None, error=None
    )
    do_poll()
    assert do_poll().outcome == "no_change"
