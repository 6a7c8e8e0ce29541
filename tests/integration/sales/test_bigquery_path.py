"""The BigQuery backend with the real google-cloud-bigquery client over HTTP.

bqemulator executes the SQL (the CTAS result table, the server-side checks, ``EXPORT DATA``);
the jobs-API stub in front of it supplies what emulators cannot: dry-run bytes, and
BigQuery's refusal of a job over ``maximumBytesBilled``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from guardian.sales import runs
from guardian.sales.service import QualityGateFailed, run_extract
from guardian.sales.warehouse import CostLimitExceeded, bigquery_dry_run_check
from guardian.settings import load_settings
from guardian.store import get_store

RAW: dict[str, Any] = {
    "start_date": "2026-01-01",
    "end_date": "2026-03-31",
    "countries": ["TH", "VN"],
    "brands": ["X"],
}


@pytest.fixture
def bigquery_env(bq_stub: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    dataset = "sales_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    monkeypatch.setenv("GUARDIAN_SALES__BACKEND", "bigquery")
    monkeypatch.setenv("GUARDIAN_SALES__BIGQUERY_ENDPOINT", bq_stub.endpoint)
    monkeypatch.setenv("GUARDIAN_SALES__DATASET", dataset)
    monkeypatch.setenv("GUARDIAN_SALES__RESULTS_DATASET", dataset + "_results")
    monkeypatch.setenv("GUARDIAN_SALES__JOB_TIMEOUT", "60")
    return dataset


def _files(storage: Any, run_id: str) -> list[str]:
    return storage.list(f"sales/run_id={run_id}/")


def test_extract_runs_in_the_warehouse_and_exports_server_side(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    load_sales_table: Any,
) -> None:
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows)
    settings = load_settings()
    report = run_extract(settings, RAW, "bq-1", storage=emulator_gcs)
    assert report.outcome.ok, report.outcome.error
    expected_rows = sum(1 for r in rows if r["country_code"] in {"TH", "VN"} and r["brand_code"] == "X")
    assert report.stats is not None and report.stats.rows == expected_rows

    # The job carried the byte limit; its statistics are recorded.
    real_jobs = [c for c in bq_stub.calls if not c["dryRun"]]
    assert real_jobs and real_jobs[0]["maximumBytesBilled"] == str(settings.sales.max_bytes_billed)
    assert sum(c["dryRun"] for c in bq_stub.calls) >= 2  # the cost guard and the query step each dry-run
    record = runs.get_run(get_store(settings), "bq-1")
    assert record is not None and record["backend"] == "bigquery"
    assert record["bytes_estimated"] == record["bytes_processed"] == bq_stub.bytes_processed
    assert record["bytes_billed"] == bq_stub.billed() and record["slot_ms"] == bq_stub.slot_ms
    assert record["job_id"] and not record["job_id"].startswith("duckdb")

    # EXPORT DATA wrote Parquet (zstd) per country x brand; the manifest came last and lists them.
    manifest = json.loads(emulator_gcs.get("sales/run_id=bq-1/_manifest.json"))
    assert manifest["rows"] == expected_rows and manifest["backend"] == "bigquery"
    assert {(f["country"], f["brand"]) for f in manifest["files"]} == {("TH", "X"), ("VN", "X")}
    for entry in manifest["files"]:
        key = f"sales/run_id=bq-1/{entry['path']}"
        assert entry["uri"].startswith("gs://") and entry["path"].endswith(".parquet")
        assert hashlib.sha256(emulator_gcs.get(key)).hexdigest() == entry["sha256"]
        local = Path(emulator_gcs.base / key)
        assert pq.ParquetFile(local).metadata.row_group(0).column(0).compression == "ZSTD"
    assert (
        sum(pq.read_table(emulator_gcs.base / f"sales/run_id=bq-1/{f['path']}").num_rows for f in manifest["files"])
        == expected_rows
    )
    assert all(c.passed for c in report.checks)


def test_cost_guard_refuses_on_the_dry_run_and_no_job_runs(bq_stub: Any, emulator_gcs: Any, bigquery_env: str) -> None:
    bq_stub.bytes_processed = 50 * 1024**3
    settings = load_settings()
    with pytest.raises(CostLimitExceeded) as info:
        run_extract(settings, RAW, "bq-expensive", storage=emulator_gcs)
    assert "50.0 GiB" in str(info.value) and "GUARDIAN_SALES__MAX_BYTES_BILLED" in str(info.value)
    assert bq_stub.calls and all(c["dryRun"] for c in bq_stub.calls)
    record = runs.get_run(get_store(settings), "bq-expensive")
    assert record is not None and record["bytes_estimated"] == 50 * 1024**3 and record["status"] == "failed"
    assert _files(emulator_gcs, "bq-expensive") == []


def test_job_over_maximum_bytes_billed_is_refused_by_bigquery(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    load_sales_table: Any,
) -> None:
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows[:50])
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", str(2 * 1024**3))
    bq_stub.dry_run_bytes = 1 * 1024**3  # the estimate passes the guard...
    bq_stub.bytes_processed = 3 * 1024**3  # ...but the job would bill more: BigQuery stops it
    settings = load_settings()
    with pytest.raises(CostLimitExceeded, match=r"BigQuery refused the job: over maximum_bytes_billed 2\.0 GiB"):
        run_extract(settings, RAW, "bq-capped", storage=emulator_gcs)
    real_jobs = [c for c in bq_stub.calls if not c["dryRun"]]
    assert real_jobs == [{"dryRun": False, "maximumBytesBilled": str(2 * 1024**3)}]
    assert _files(emulator_gcs, "bq-capped") == []


def test_quality_gate_runs_server_side_and_blocks_the_export(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    load_sales_table: Any,
) -> None:
    bad = [dict(r) for r in rows[:200]]
    for r in bad[:3]:
        r["currency_code"] = "ZZZ"
    bad.append(dict(bad[10]))  # a duplicate entry number
    load_sales_table(bq_emulator.endpoint, bigquery_env, bad)
    settings = load_settings()
    raw = {
        **RAW,
        "countries": sorted({r["country_code"] for r in bad}),
        "brands": sorted({r["brand_code"] for r in bad}),
    }
    with pytest.raises(QualityGateFailed) as info:
        run_extract(settings, raw, "bq-bad", storage=emulator_gcs)
    assert "currency_known: 3 rows" in str(info.value) and "unique_entry_no: 1 duplicate" in str(info.value)
    assert _files(emulator_gcs, "bq-bad") == []


def test_doctor_dry_run_check(bq_stub: Any, bigquery_env: str) -> None:
    bq_stub.bytes_processed = 123 * 1024**2
    line = bigquery_dry_run_check(load_settings())
    assert line.startswith("BigQuery dry run on guardian-demo.") and "123.0 MiB for one day" in line


def test_sheet_view_is_queried_server_side(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    load_sales_table: Any,
    sheets: Any,
) -> None:
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID

    load_sales_table(bq_emulator.endpoint, bigquery_env, rows)
    raw = {**RAW, "sheet_id": DEMO_SPREADSHEET_ID, "sheet_tab": "BQ"}
    report = run_extract(load_settings(), raw, "bq-sheet", storage=emulator_gcs)
    assert report.outcome.ok and report.sheet_range
    values = sheets.get(DEMO_SPREADSHEET_ID, "'BQ'!A1:Z100", "FORMULA")["values"]
    assert values[0][:5] == ["sale_month", "country_code", "brand_code", "currency_code", "entries"]
    assert [row[:3] for row in values[1:]] == [
        [month, country, "X"] for month in ("2026-01-01", "2026-02-01", "2026-03-01") for country in ("TH", "VN")
    ]
    expected = sum(1 for r in rows if r["country_code"] in {"TH", "VN"} and r["brand_code"] == "X")
    assert sum(int(row[4]) for row in values[1:]) == expected
