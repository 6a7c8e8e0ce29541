"""The BigQuery backend with the real google-cloud-bigquery client over HTTP.

bqemulator executes the SQL (the CTAS result table, the freshness probe, the sheet view) and the
extract jobs whose files the gate and the export read;
the jobs-API shim in front of it sizes every job from the emulator's tables the way BigQuery
bills (columns x partitions, cluster pruning, 10 MB minimum), refuses jobs over
``maximumBytesBilled`` and answers 409 to a job id that exists.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import google_crc32c
import pyarrow.parquet as pq
import pytest

from guardian.sales import runs, service
from guardian.sales.params import validate_params
from guardian.sales.service import QualityGateFailed, run_extract
from guardian.sales.sql import RESULT_SCHEMAS, SOURCE_SCHEMA
from guardian.sales.warehouse import CostLimitExceeded, bigquery_dry_run_check, format_bytes
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
    # The 6,000-row sample leaves many days of a slice empty; coverage still fails any empty month.
    monkeypatch.setenv("GUARDIAN_SALES__COVERAGE_MAX_MISSING_DAYS", "80")
    monkeypatch.setenv("GUARDIAN_SALES__FRESHNESS_MAX_LAG_DAYS", "5")
    return dataset


def _files(storage: Any, run_id: str) -> list[str]:
    return storage.list(f"sales/run_id={run_id}/")


def _logical(rows: list[dict[str, Any]], columns: list[str]) -> int:
    """BigQuery's logical bytes of these columns of these rows, computed independently of the shim."""
    kinds = dict(SOURCE_SCHEMA)
    total = 0
    for r in rows:
        for c in columns:
            if r.get(c) is None:
                continue
            total += 2 + len(str(r[c]).encode()) if kinds[c] == "STRING" else (16 if kinds[c] == "NUMERIC" else 8)
    return total


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
    report = run_extract(settings, {**RAW, "requested_by": "ana@example.com"}, "bq-1", storage=emulator_gcs)
    assert report.outcome.ok, report.outcome.error
    expected_rows = sum(1 for r in rows if r["country_code"] in {"TH", "VN"} and r["brand_code"] == "X")
    assert report.stats is not None and report.stats.rows == expected_rows

    # The dry run bills by the columns the query names over the quarter's partitions (all clusters: an upper bound).
    quarter = [r for r in rows if "2026-01-01" <= r["sale_date"] <= "2026-03-31"]
    assert report.cost is not None
    assert report.cost.estimate.bytes == _logical(quarter, [n for n, _ in RESULT_SCHEMAS["entry"]])

    # Every real query job carries the cap of what remained and the run's labels; nothing ran uncapped.
    real = [c for c in bq_stub.calls if not c["dryRun"]]
    # BigQuery reads the data once, in the query; the gate's one billed job is the freshness
    # probe on the source. The gate's pass and the export read extracts of the result (not billed).
    steps = [c["labels"]["task"] for c in real]
    assert steps == ["run_query", "quality_gate"], steps
    assert service.result_name("bq-1") not in real[1]["sql"]
    limit = settings.sales.max_bytes_billed
    spent = 0
    for call in real:
        assert call["maximumBytesBilled"] == str(limit - spent), call["sql"][:80]
        assert call["labels"]["run_id"] == "bq-1" and call["labels"]["requester"] == "ana_example_com"
        assert call["labels"]["dag"] == "bigquery_sales_query" and call["labels"]["task"]
        spent += bq_stub.billed.get(call["jobId"], 0)
    assert [e["labels"]["task"] for e in bq_stub.extracts] == ["quality_gate", "export"]
    for extract, step in zip(bq_stub.extracts, ("gate", "export"), strict=True):
        assert extract["labels"]["run_id"] == "bq-1" and extract["destinationFormat"] == "PARQUET"
        assert extract["sourceTable"]["tableId"] == service.result_name("bq-1")
        assert extract["destinationUris"][0].startswith(emulator_gcs.uri(f"sales/run_id=bq-1/_staging-{step}-"))
        assert bq_stub.billed[extract["jobId"]] == 0
    record = runs.get_run(get_store(settings), "bq-1")
    assert record is not None and record["backend"] == "bigquery"
    assert record["bytes_billed"] == bq_stub.total_billed() == spent
    assert {j["job_id"] for j in record["jobs"]} == set(bq_stub.billed)
    assert record["job_id"].startswith("guardian_sales_bq-1_run_query_")

    # Parquet (zstd) per country x brand, cut from the extract; the manifest came last and lists them.
    manifest = json.loads(emulator_gcs.get("sales/run_id=bq-1/_manifest.json"))
    assert manifest["rows"] == expected_rows and manifest["backend"] == "bigquery"
    assert manifest["bytes_billed"] == spent and len(manifest["jobs"]) == len(record["jobs"])
    assert {(f["country"], f["brand"]) for f in manifest["files"]} == {("TH", "X"), ("VN", "X")}
    for entry in manifest["files"]:
        key = f"sales/run_id=bq-1/{entry['path']}"
        data = emulator_gcs.get(key)
        assert entry["uri"].startswith("gs://") and entry["path"].endswith(".parquet")
        assert hashlib.md5(data).hexdigest() == entry["md5"] and entry["bytes"] == len(data)
        assert google_crc32c.value(data).to_bytes(4, "big").hex() == entry["crc32c"]
        local = Path(emulator_gcs.base / key)
        assert pq.ParquetFile(local).metadata.row_group(0).column(0).compression == "ZSTD"
        assert {r for r in pq.read_table(local).column("country_code").to_pylist()} == {entry["country"]}
    assert (
        sum(pq.read_table(emulator_gcs.base / f"sales/run_id=bq-1/{f['path']}").num_rows for f in manifest["files"])
        == expected_rows
    )
    assert not [k for k in _files(emulator_gcs, "bq-1") if "_staging-" in k]  # the extracts' files are gone
    assert report.export is not None and report.export.replaced == 0
    assert all(c.passed for c in report.checks)


def test_cost_guard_refuses_the_whole_run_before_any_job(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    load_sales_table: Any,
) -> None:
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows[:300])
    # The query alone fits, but not with BigQuery's 10 MB minimum for the run's other billed job,
    # the freshness probe (the gate's pass and the export read extracts, which bill nothing).
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", str(15 * 1024**2))
    settings = load_settings()
    with pytest.raises(CostLimitExceeded) as info:
        run_extract(settings, RAW, "bq-expensive", storage=emulator_gcs)
    assert "GUARDIAN_SALES__MAX_BYTES_BILLED" in str(info.value) and "the run would bill" in str(info.value)
    assert bq_stub.calls and all(c["dryRun"] for c in bq_stub.calls) and bq_stub.billed == {}
    record = runs.get_run(get_store(settings), "bq-expensive")
    assert record is not None and record["bytes_estimated"] == 20 * 1024**2 and record["status"] == "failed"
    assert _files(emulator_gcs, "bq-expensive") == []


def test_export_bills_nothing_even_with_the_budget_spent(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    load_sales_table: Any,
) -> None:
    # Invariant: the export adds no billed byte to the run (one extract job, which BigQuery does
    # not bill, and no query over the result): with nothing left of the budget it still commits.
    # (A step that would bill past the budget is refused before it submits a job: the cleared
    # export below, which must run the query again.) In CSV: the slices are cut from the
    # extract's Parquet and written as gzipped CSV with a header.
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows)
    settings = load_settings()
    params = validate_params({**RAW, "format": "csv"}, settings)
    d = service.deps(settings, params)
    d.storage = emulator_gcs
    service.begin(d, params, "bq-tight")
    service.cost_step(d, params, "bq-tight")
    service.query_step(d, params, "bq-tight")
    service.quality_step(d, params, "bq-tight")
    spent = bq_stub.total_billed()
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", str(spent))
    d.settings = load_settings()
    before = len(bq_stub.calls)
    result = service.export_step(d, params, "bq-tight")
    assert result.rows == sum(1 for r in rows if r["country_code"] in {"TH", "VN"} and r["brand_code"] == "X")
    assert bq_stub.calls[before:] == [] and bq_stub.total_billed() == spent
    record = runs.get_run(get_store(settings), "bq-tight")
    assert record is not None and record["bytes_billed"] == spent
    # Cleared again on the same result: the first extract's staged files are gone, so a new
    # generation of it runs (still unbilled) and the same files are committed again.
    again = service.export_step(d, params, "bq-tight")
    assert [(f["path"], f["rows"]) for f in again.files] == [(f["path"], f["rows"]) for f in result.files]
    for f in again.files:
        assert f["path"].endswith(".csv.gz")
        lines = gzip.decompress(emulator_gcs.get(f"sales/run_id=bq-tight/{f['path']}")).decode().splitlines()
        assert lines[0].split(",") == [n for n, _ in RESULT_SCHEMAS["entry"]] and len(lines) == f["rows"] + 1
    exports = [e["jobId"][-2:] for e in bq_stub.extracts if e["labels"]["task"] == "export"]
    assert exports == ["_0", "_1"] and bq_stub.total_billed() == spent


def test_clearing_export_after_finish_reruns_the_query_within_the_budget(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    load_sales_table: Any,
) -> None:
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows)
    settings = load_settings()
    assert run_extract(settings, RAW, "bq-clear", storage=emulator_gcs).outcome.ok
    first = json.loads(emulator_gcs.get("sales/run_id=bq-clear/_manifest.json"))
    spent = bq_stub.total_billed()
    params = validate_params(RAW, settings)
    d = service.deps(settings, params)
    d.storage = emulator_gcs
    # finish dropped the result after the export succeeded; the cleared export runs the query again.
    result = service.export_step(d, params, "bq-clear")
    assert result.rows == first["rows"]
    queries = [j for j in bq_stub.billed if "_run_query_" in j]
    assert len(queries) == 2 and queries[1].endswith("_1")  # a new generation, the first one's table is gone
    record = runs.get_run(get_store(settings), "bq-clear")
    assert record is not None and record["bytes_billed"] == bq_stub.total_billed() > spent
    # Once more with a budget that cannot pay for another query: refused before a byte is billed.
    assert service.finish(d, params, "bq-clear").ok
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", str(bq_stub.total_billed() + 1024))
    d.settings = load_settings()
    calls = len([c for c in bq_stub.calls if not c["dryRun"]])
    with pytest.raises(CostLimitExceeded):
        service.export_step(d, params, "bq-clear")
    assert len([c for c in bq_stub.calls if not c["dryRun"]]) == calls


def test_killed_query_task_reattaches_to_its_job_on_retry(
    bq_emulator: Any,
    bq_stub: Any,
    emulator_gcs: Any,
    bigquery_env: str,
    rows: list[dict[str, Any]],
    load_sales_table: Any,
) -> None:
    # Invariant: however often run_query is killed and retried, its query is billed once.
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows)
    settings = load_settings()
    params = validate_params(RAW, settings)
    d = service.deps(settings, params)
    service.begin(d, params, "bq-kill")
    bq_stub.hold.add("_run_query_")  # reads of the job wait: the worker dies while it waits on the job
    child = subprocess.Popen([sys.executable, "-c", KILLED_WORKER])
    try:
        assert bq_stub.inserted.wait(120), "the worker never submitted its job"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        bq_stub.released.set()
        if child.poll() is None:
            child.kill()
    assert runs.get_run(get_store(settings), "bq-kill")["jobs"] in (None, [])  # type: ignore[index]
    stats = service.query_step(d, params, "bq-kill")  # the retry
    query_jobs = [j for j in bq_stub.billed if "_run_query_" in j]
    assert query_jobs == [stats.job_id]  # one billed job: the retry reattached to it
    assert sum(1 for c in bq_stub.calls if not c["dryRun"] and "_run_query_" in c["jobId"]) == 1
    record = runs.get_run(get_store(settings), "bq-kill")
    assert record is not None and [j["job_id"] for j in record["jobs"]] == [stats.job_id]
    assert record["bytes_billed"] == bq_stub.billed[stats.job_id] and stats.rows


KILLED_WORKER = """
from guardian.sales import service
from guardian.sales.params import validate_params
from guardian.settings import load_settings
raw = {"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["TH", "VN"], "brands": ["X"]}
s = load_settings()
p = validate_params(raw, s)
service.query_step(service.deps(s, p), p, "bq-kill")
"""


def test_quality_gate_on_the_extract_blocks_the_export(
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


def test_doctor_dry_run_check(
    bq_emulator: Any, bq_stub: Any, bigquery_env: str, rows: list[dict[str, Any]], load_sales_table: Any
) -> None:
    from datetime import date

    # Seven entries sold today (the doctor's day), the rest in the first quarter.
    today = [{**r, "sale_date": date.today().isoformat(), "entry_no": str(10**9 + i)} for i, r in enumerate(rows[:7])]
    load_sales_table(bq_emulator.endpoint, bigquery_env, rows[:500] + today)
    line = bigquery_dry_run_check(load_settings())
    assert _logical(today, ["entry_no", "sale_date"]) == 7 * 16
    assert line.startswith("BigQuery dry run on guardian-demo.")
    assert f"{format_bytes(_logical(today, ['entry_no', 'sale_date']))} for one day" in line


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
