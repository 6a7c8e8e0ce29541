"""The whole extract on DuckDB + file:// storage: cost guard, quality gate, export, re-runs, failures."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from guardian.errors import GuardianError
from guardian.quality.results import latest_results
from guardian.sales import runs
from guardian.sales.service import QualityGateFailed, SheetTooLarge, run_extract
from guardian.sales.warehouse import CostLimitExceeded
from guardian.settings import load_settings
from guardian.store import get_store

Raw = Callable[..., dict[str, Any]]
Exec = Callable[[Path, str], None]


def _storage_root() -> Path:
    return Path(load_settings().storage_root.removeprefix("file://"))


def _files(run_id: str) -> list[Path]:
    root = _storage_root() / "sales" / f"run_id={run_id}"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.usefixtures("warehouse")
def test_entry_extract_to_parquet_with_manifest(raw: Raw) -> None:
    settings = load_settings()
    report = run_extract(settings, raw(), "r1")
    assert report.outcome.ok and report.outcome.status == "succeeded"
    assert report.cost is not None and report.cost.ok and report.cost.estimate.bytes > 0
    export = report.export
    assert export is not None and export.rows == report.stats.rows > 0  # type: ignore[union-attr]
    manifest_path = _storage_root() / "sales/run_id=r1/_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["rows"] == export.rows and manifest["format"] == "parquet" and manifest["compression"] == "zstd"
    assert manifest["params"]["countries"] == ["TH"] and len(manifest["query_hash"]) == 64
    assert [c["name"] for c in manifest["schema"]][:3] == ["entry_no", "transaction_no", "store_no"]
    (entry,) = manifest["files"]
    data_file = manifest_path.parent / entry["path"]
    assert entry["path"].startswith("country=TH/brand=X/part-") and entry["path"].endswith(".parquet")
    assert hashlib.md5(data_file.read_bytes()).hexdigest() == entry["md5"]
    assert data_file.stat().st_size == entry["bytes"]
    parquet = pq.ParquetFile(data_file)
    assert parquet.metadata.num_rows == entry["rows"] == export.rows
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read()
    assert min(table.column("sale_date").to_pylist()).isoformat() >= "2026-01-01"
    assert max(table.column("sale_date").to_pylist()).isoformat() <= "2026-03-31"

    store = get_store(settings)
    record = runs.get_run(store, "r1")
    assert record is not None
    # DuckDB bills nothing: processed is BigQuery's rule applied to what the query reads; the local reads count 0.
    assert record["bytes_processed"] == report.cost.estimate.bytes and record["bytes_billed"] is None
    assert record["bytes_estimated"] == report.cost.total >= report.cost.estimate.bytes
    steps = [j["step"] for j in record["jobs"]]
    assert steps[0] == "run_query" and {"quality_gate", "export"} <= set(steps)
    assert all(j["maximum_bytes_billed"] <= settings.sales.max_bytes_billed for j in record["jobs"])
    assert len({j["job_id"] for j in record["jobs"]}) == len(record["jobs"])
    assert record["rows"] == export.rows and record["output_uri"].endswith("_manifest.json")
    assert record["duration_ms"] is not None and record["query_ms"] is not None
    assert {c["check"] for c in record["checks"]} >= {"schema", "unique_entry_no", "sign_consistent"}
    assert all(r["passed"] for r in latest_results(store, suite="sales_extract", subject="r1"))


@pytest.mark.usefixtures("warehouse")
@pytest.mark.parametrize("granularity", ["day", "month"])
def test_aggregates_to_gzip_csv(raw: Raw, granularity: str) -> None:
    report = run_extract(
        load_settings(), raw(granularity=granularity, format="csv", countries=["TH", "VN"], brands=["X", "Y"]), "agg"
    )
    assert report.export is not None
    manifest = json.loads((_storage_root() / "sales/run_id=agg/_manifest.json").read_text())
    assert manifest["compression"] == "gzip" and len(manifest["files"]) == 4
    assert {(f["country"], f["brand"]) for f in manifest["files"]} == {
        ("TH", "X"),
        ("TH", "Y"),
        ("VN", "X"),
        ("VN", "Y"),
    }
    first = _storage_root() / "sales/run_id=agg" / manifest["files"][0]["path"]
    lines = gzip.decompress(first.read_bytes()).decode().splitlines()
    date_col = "sale_month" if granularity == "month" else "sale_date"
    assert lines[0].startswith(date_col + ",country_code,brand_code")
    assert len(lines) - 1 == manifest["files"][0]["rows"]
    if granularity == "month":
        assert sorted({line.split(",")[0] for line in lines[1:]}) == ["2026-01-01", "2026-02-01", "2026-03-01"]


@pytest.mark.usefixtures("warehouse")
def test_cost_guard_stops_before_the_query_and_records_the_estimate(raw: Raw, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", "1000")
    settings = load_settings()
    with pytest.raises(CostLimitExceeded) as info:
        run_extract(settings, raw(), "expensive")
    message = str(info.value)
    assert (
        "over GUARDIAN_SALES__MAX_BYTES_BILLED=1000" in message and "raise GUARDIAN_SALES__MAX_BYTES_BILLED" in message
    )
    record = runs.get_run(get_store(settings), "expensive")
    assert record is not None and record["status"] == "failed"
    assert record["bytes_estimated"] > 1000 and record["job_id"] is None
    assert _files("expensive") == []


@pytest.mark.usefixtures("warehouse")
def test_dry_run_estimates_only(raw: Raw) -> None:
    report = run_extract(load_settings(), raw(dry_run=True), "dry")
    assert report.outcome.ok and report.outcome.status == "estimated"
    assert report.stats is None and _files("dry") == []


def test_quality_gate_fails_on_planted_bad_rows_and_leaves_no_output(warehouse: Path, raw: Raw, execute: Exec) -> None:
    execute(
        warehouse,
        "UPDATE sales.sales_entries SET currency_code = 'XXX' WHERE entry_no IN "
        "(SELECT entry_no FROM sales.sales_entries WHERE country_code = 'TH' AND brand_code = 'X' "
        "AND sale_date BETWEEN DATE '2026-02-01' AND DATE '2026-02-10' LIMIT 2)",
    )
    execute(
        warehouse,
        "UPDATE sales.sales_entries SET quantity = -quantity WHERE entry_type = 'SALE' AND entry_no IN "
        "(SELECT entry_no FROM sales.sales_entries WHERE country_code = 'TH' AND brand_code = 'X' "
        "AND sale_date BETWEEN DATE '2026-02-11' AND DATE '2026-02-20' AND entry_type = 'SALE' LIMIT 3)",
    )
    execute(
        warehouse,
        "INSERT INTO sales.sales_entries SELECT * FROM sales.sales_entries WHERE country_code = 'TH' "
        "AND brand_code = 'X' AND sale_date BETWEEN DATE '2026-02-21' AND DATE '2026-02-28' LIMIT 1",
    )
    settings = load_settings()
    with pytest.raises(QualityGateFailed) as info:
        run_extract(settings, raw(), "bad")
    message = str(info.value)
    assert "currency_known: 2 rows" in message
    assert "sign_consistent: 3 entries" in message
    assert "unique_entry_no: 1 duplicate" in message
    assert _files("bad") == []
    store = get_store(settings)
    failed = {r["check_name"] for r in latest_results(store, subject="bad") if not r["passed"]}
    assert failed == {"currency_known", "sign_consistent", "unique_entry_no"}
    record = runs.get_run(store, "bad")
    assert (
        record is not None
        and record["status"] == "failed"
        and record["error"].startswith("quality gate failed for run bad")
    )
    assert record["output_uri"] is None


def test_warn_only_check_reports_but_does_not_fail(
    warehouse: Path, raw: Raw, monkeypatch: pytest.MonkeyPatch, execute: Exec
) -> None:
    execute(
        warehouse,
        "UPDATE sales.sales_entries SET currency_code = 'XXX' WHERE country_code = 'TH' AND brand_code = 'X' "
        "AND sale_date = DATE '2026-02-01'",
    )
    monkeypatch.setenv("GUARDIAN_SALES__WARN_ONLY_CHECKS", "currency_known")
    report = run_extract(load_settings(), raw(), "warned")
    assert report.outcome.ok
    currency = next(c for c in report.checks if c.check == "currency_known")
    assert not currency.passed and currency.severity == "warn"


def test_schema_drift_names_the_retyped_column(warehouse: Path, raw: Raw, execute: Exec) -> None:
    execute(warehouse, "ALTER TABLE sales.sales_entries ALTER COLUMN quantity TYPE VARCHAR")
    with pytest.raises(QualityGateFailed, match=r"schema drift: retyped quantity decimal->string"):
        run_extract(load_settings(), raw(), "drift")
    results = {r["check_name"]: r for r in latest_results(get_store(load_settings()), subject="drift")}
    assert results["schema"]["details"]["retyped"] == [
        {"column": "quantity", "expected": "decimal", "actual": "string"}
    ]
    assert not results["rules_not_run"]["passed"]
    assert _files("drift") == []


def test_a_hole_in_the_data_is_caught_and_named(warehouse: Path, raw: Raw, execute: Exec) -> None:
    # Invariant: a requested slice with no rows on some days of the range never passes the gate silently.
    execute(
        warehouse,
        "DELETE FROM sales.sales_entries WHERE country_code = 'VN' AND brand_code = 'X' "
        "AND sale_date BETWEEN DATE '2026-02-10' AND DATE '2026-02-12'",
    )
    two = raw(countries=["TH", "VN"])
    with pytest.raises(QualityGateFailed) as info:
        run_extract(load_settings(), two, "holey")
    message = str(info.value)
    assert "coverage: VN/X: no rows on 2026-02-10..2026-02-12 (3 days)" in message
    assert "TH/X" not in message and _files("holey") == []
    # Month granularity: the hole is inside a month that still has rows, so months are covered.
    report = run_extract(load_settings(), raw(countries=["TH", "VN"], granularity="month"), "holey-month")
    assert report.outcome.ok


@pytest.mark.usefixtures("warehouse")
def test_empty_range_fails_coverage_and_freshness_unless_warn_only(raw: Raw, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = raw(start_date="2030-01-01", end_date="2030-01-31")
    with pytest.raises(QualityGateFailed, match=r"coverage: TH/X: no rows on 2030-01-01\.\.2030-01-31 \(31 days\)"):
        run_extract(load_settings(), empty, "empty")
    monkeypatch.setenv("GUARDIAN_SALES__WARN_ONLY_CHECKS", "coverage,freshness")
    report = run_extract(load_settings(), empty, "empty-ok")
    assert report.outcome.ok and report.export is not None and report.export.rows == 0
    assert {c.check for c in report.checks if not c.passed} == {"coverage", "freshness"}
    manifest = json.loads((_storage_root() / "sales/run_id=empty-ok/_manifest.json").read_text())
    assert manifest["rows"] == 0 and manifest["files"] == []


@pytest.mark.usefixtures("warehouse")
def test_rerun_replaces_its_own_output_and_never_touches_another_run(raw: Raw) -> None:
    settings = load_settings()
    run_extract(settings, raw(), "same")
    run_extract(settings, raw(), "same-other")
    first = json.loads((_storage_root() / "sales/run_id=same/_manifest.json").read_text())
    other_before = _files("same-other")

    run_extract(settings, raw(format="csv"), "same")
    second = json.loads((_storage_root() / "sales/run_id=same/_manifest.json").read_text())
    assert second["attempt"] != first["attempt"] and second["format"] == "csv"
    listed = {str(p.relative_to(_storage_root() / "sales/run_id=same")) for p in _files("same")}
    assert listed == {"_manifest.json", *(f["path"] for f in second["files"])}
    assert _files("same-other") == other_before
    record = runs.get_run(get_store(settings), "same")
    assert record is not None and record["attempts"] == 2 and record["status"] == "succeeded"

    from sqlalchemy import select

    from guardian.store.schema import audit_log

    with get_store(settings).read() as conn:
        events = conn.execute(
            select(audit_log.c.action, audit_log.c.after).where(audit_log.c.target.like("%run_id=same"))
        ).all()
    assert [e.action for e in events] == ["sales.export.start", "sales.export.done"] * 2
    assert events[-1].after["replaced"] == 1 and events[1].after["replaced"] == 0


@pytest.mark.usefixtures("warehouse")
def test_export_failure_midway_leaves_nothing_and_keeps_the_previous_export(
    raw: Raw, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardian.storage import LocalStorage

    settings = load_settings()
    two_slices = raw(countries=["TH"], brands=["X", "Y"])
    run_extract(settings, two_slices, "flaky")
    before = {p: p.read_bytes() for p in _files("flaky")}

    real_put = LocalStorage.put
    calls = {"n": 0}

    def failing_put(self: LocalStorage, key: str, data: bytes | Path) -> str:
        calls["n"] += 1
        if calls["n"] == 2:  # the second slice's file
            raise OSError("disk full")
        return real_put(self, key, data)

    monkeypatch.setattr(LocalStorage, "put", failing_put)
    with pytest.raises(GuardianError, match="nothing was left behind"):
        run_extract(settings, two_slices, "flaky")
    assert {p: p.read_bytes() for p in _files("flaky")} == before

    with pytest.raises(GuardianError):
        calls["n"] = 0
        run_extract(settings, two_slices, "flaky-first")
    assert _files("flaky-first") == []


@pytest.mark.usefixtures("warehouse")
def test_sheet_output_too_large_is_refused_with_the_numbers(raw: Raw, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_SALES__SHEET_MAX_CELLS", "20")
    with pytest.raises(
        SheetTooLarge,
        match=r"sheet view has more than 1 rows x 10 columns, over the sheet limit of 20 cells \(GUARDIAN_SALES__",
    ):
        run_extract(load_settings(), raw(sheet_id="1AbCdEfGhIjKlMnOpQrStUvWxYz"), "sheet-big")


@pytest.mark.usefixtures("warehouse")
def test_missing_warehouse_is_one_line(raw: Raw, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUARDIAN_SALES__DUCKDB_PATH", str(tmp_path / "nope.duckdb"))
    with pytest.raises(GuardianError, match="guardian sales demo-data"):
        run_extract(load_settings(), raw(), "nowh")


@pytest.mark.usefixtures("warehouse", "pg_env")
def test_run_records_on_postgresql(raw: Raw) -> None:
    settings = load_settings()
    run_extract(settings, raw(granularity="month"), "pg-1")
    run_extract(settings, raw(granularity="day"), "pg-2")
    store = get_store(settings)
    assert store.dialect == "postgresql"
    listed = runs.list_runs(store, 10)
    assert [r["run_id"] for r in listed] == ["pg-2", "pg-1"]
    assert runs.list_runs(store, 10, status="failed") == []
    got = runs.get_run(store, "pg-1")
    assert got is not None and got["params"]["granularity"] == "month" and got["files"]


@pytest.mark.usefixtures("warehouse")
def test_any_task_of_a_finished_run_can_be_cleared_and_rerun(raw: Raw) -> None:
    from guardian.sales import service
    from guardian.sales.params import validate_params
    from guardian.sales.warehouse import result_name

    settings = load_settings()
    assert run_extract(settings, raw(), "cleared").outcome.ok
    params = validate_params(raw(), settings)
    d = service.deps(settings, params)
    assert not d.warehouse.result_exists(result_name("cleared"))  # dropped once the export succeeded
    first = json.loads((_storage_root() / "sales/run_id=cleared/_manifest.json").read_text())
    # Clearing quality_gate, export and finish after the run finished: each reruns, the query too.
    service.quality_step(d, params, "cleared")
    again = service.export_step(d, params, "cleared")
    assert again.rows == first["rows"] and service.finish(d, params, "cleared").ok
    record = runs.get_run(get_store(settings), "cleared")
    assert record is not None and record["status"] == "succeeded" and record["error"] is None
    assert [j["step"] for j in record["jobs"]].count("run_query") == 2
    manifest = json.loads((_storage_root() / "sales/run_id=cleared/_manifest.json").read_text())
    assert manifest["rows"] == first["rows"] and len(_files("cleared")) == 2  # the manifest and one data file


def test_volume_drop_fails_the_gate_and_the_failed_run_keeps_its_result(
    warehouse: Path, raw: Raw, execute: Exec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardian.sales.service import deps
    from guardian.sales.warehouse import result_name

    monkeypatch.setenv("GUARDIAN_SALES__VOLUME_MIN_HISTORY", "1")
    monkeypatch.setenv("GUARDIAN_SALES__WARN_ONLY_CHECKS", "coverage")
    settings = load_settings()
    assert run_extract(settings, raw(end_date="2026-01-31"), "january").outcome.ok
    # Two thirds of February's TH/X rows never arrive.
    execute(
        warehouse,
        "DELETE FROM sales.sales_entries WHERE country_code = 'TH' AND brand_code = 'X' "
        "AND sale_date >= DATE '2026-02-01' AND entry_no % 3 <> 0",
    )
    with pytest.raises(QualityGateFailed, match=r"volume: TH/X: \d+\.\d rows/day is 0\.\d\dx the median"):
        run_extract(settings, raw(start_date="2026-02-01", end_date="2026-02-28"), "february")
    # The failed run's result stays for a retry (and expires after GUARDIAN_SALES__RESULTS_EXPIRATION_HOURS).
    assert deps(settings).warehouse.result_exists(result_name("february"))
