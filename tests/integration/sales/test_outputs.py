"""Outputs against real protocols: gs:// on fake-gcs-server, the Sheets API sandbox, the Sheets ledger."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from guardian.sales.service import run_extract
from guardian.settings import load_settings

RAW: dict[str, Any] = {"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["TH"], "brands": ["X"]}


@pytest.fixture(scope="module")
def warehouse_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from guardian.sales.demo import generate
    from guardian.sales.sql import TableRef

    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    generate(path, TableRef("guardian-demo", "sales", "sales_entries"), rows=20_000)
    return path


@pytest.fixture
def warehouse(guardian_env: Path, warehouse_file: Path) -> Path:
    guardian_env.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(warehouse_file, guardian_env / "warehouse.duckdb")
    return guardian_env / "warehouse.duckdb"


@pytest.mark.usefixtures("warehouse")
def test_export_to_gcs_replaces_own_run_and_leaves_others(fake_gcs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.storage import open_storage

    fake_gcs.create_bucket("sales-exports")
    monkeypatch.setenv("GUARDIAN_STORAGE__GCS_ENDPOINT", fake_gcs.endpoint)
    monkeypatch.setenv("GUARDIAN_STORAGE__GCS_PROJECT", "guardian-local")
    monkeypatch.setenv("GUARDIAN_SALES__ALLOWED_DESTINATIONS", "gs://sales-exports/team-a")
    settings = load_settings()
    raw = {**RAW, "destination": "gs://sales-exports/team-a"}
    first = run_extract(settings, raw, "gcs-run")
    run_extract(settings, raw, "gcs-other")
    assert first.export is not None and first.export.manifest_uri == (
        "gs://sales-exports/team-a/sales/run_id=gcs-run/_manifest.json"
    )
    storage = open_storage("gs://sales-exports/team-a", settings)
    other_before = storage.list("sales/run_id=gcs-other/")

    second = run_extract(settings, {**raw, "format": "csv"}, "gcs-run")
    manifest = json.loads(storage.get("sales/run_id=gcs-run/_manifest.json"))
    assert second.export is not None and second.export.replaced == 1
    keys = storage.list("sales/run_id=gcs-run/")
    assert sorted(keys) == sorted(
        ["sales/run_id=gcs-run/_manifest.json", *(f"sales/run_id=gcs-run/{f['path']}" for f in manifest["files"])]
    )
    assert all(k.endswith((".csv.gz", "_manifest.json")) for k in keys)
    assert storage.list("sales/run_id=gcs-other/") == other_before


@pytest.mark.usefixtures("warehouse")
def test_month_result_written_to_a_sheet_tab_raw(sheets: Any) -> None:
    from guardian.sales.runs import get_run
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID
    from guardian.store import get_store

    settings = load_settings()
    raw = {**RAW, "countries": ["TH", "VN"], "brands": ["X", "Y"]}
    report = run_extract(
        settings, {**raw, "granularity": "month", "sheet_id": DEMO_SPREADSHEET_ID, "sheet_tab": "Sales Q1"}, "sheet-1"
    )
    assert report.outcome.ok and report.sheet_range
    values = sheets.get(DEMO_SPREADSHEET_ID, "'Sales Q1'!A1:Z100", "FORMULA")["values"]
    assert values[0][:4] == ["sale_month", "country_code", "brand_code", "currency_code"]
    assert len(values) == 1 + report.export.rows  # type: ignore[union-attr]
    assert {row[0] for row in values[1:]} == {"2026-01-01", "2026-02-01", "2026-03-01"}
    assert isinstance(values[1][4], int | float)  # numbers stay numbers (RAW), not text
    record = get_run(get_store(settings), "sheet-1")
    assert record is not None and record["sheet_range"].startswith(DEMO_SPREADSHEET_ID + "!")

    # An entry-level extract goes to the sheet summed per month (the files keep every entry).
    entries = run_extract(settings, {**raw, "sheet_id": DEMO_SPREADSHEET_ID, "sheet_tab": "Entries"}, "sheet-2")
    assert entries.export is not None and entries.export.rows > 100
    summary = sheets.get(DEMO_SPREADSHEET_ID, "'Entries'!A1:Z100", "FORMULA")["values"]
    assert summary[1:] == values[1:]


@pytest.mark.usefixtures("warehouse")
def test_finish_reports_to_the_sheets_ledger(sheets: Any) -> None:
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID
    from guardian.sheets import ledger
    from guardian.store import get_store

    settings = load_settings()
    store = get_store(settings)
    with store.write() as conn:
        request = ledger.insert(
            conn,
            key="test-key-1",
            base="test-base-1",
            gen=0,
            spreadsheet_id=DEMO_SPREADSHEET_ID,
            tab="Requests",
            row_number=2,
            target="bigquery_sales_query",
            conf=RAW,
            requested_by=None,
            at=ledger.now_utc(),
        )
    report = run_extract(settings, {**RAW, "request_id": request.request_id}, "ledger-run")
    got = ledger.get(store, request.request_id)
    assert got is not None and got.status == "completed"
    assert got.rows == report.outcome.rows and got.output_uri == report.outcome.output_uri
    assert got.executed_run_id == "ledger-run"

    # Rejected params (the DAG's validate task) still reach the requester through finish.
    from guardian.errors import ValidationFailed
    from guardian.sales import service

    with store.write() as conn:
        bad = ledger.insert(
            conn,
            key="test-key-2",
            base="test-base-2",
            gen=0,
            spreadsheet_id=DEMO_SPREADSHEET_ID,
            tab="Requests",
            row_number=3,
            target="bigquery_sales_query",
            conf=RAW,
            requested_by=None,
            at=ledger.now_utc(),
        )
    raw_bad = {**RAW, "end_date": "2025-01-01", "request_id": bad.request_id}
    with pytest.raises(ValidationFailed) as info:
        service.validate_params(raw_bad, settings)
    service.reject(settings, raw_bad, "ledger-bad", info.value)
    outcome = service.finish(service.deps(settings), None, "ledger-bad", request_id=bad.request_id)
    assert not outcome.ok and "end_date" in (outcome.error or "")
    failed = ledger.get(store, bad.request_id)
    assert failed is not None and failed.status == "failed" and "end_date" in failed.message
