"""Sales extract benchmark on the DuckDB demo table (default 10 M rows; ``--quick``: 500 k).

Prints, for one country x brand x quarter extracted to Parquet (and the same to CSV):
rows per second, the extract process's peak RSS (must stay under 500 MB whatever the result
size: ``--large`` adds a whole-year, every-country extract), Parquet vs CSV bytes, and the
bytes the query reads versus the minimum (only the needed columns of the needed partitions;
goal <= 1.2x for the whole run) versus the original ``SELECT *``, measured on BigQuery
(bqemulator behind the tests' billing shim) over every job of a 6 x 3 x quarter run (the
extract jobs the gate and the export read bill nothing, as in BigQuery; the shim bills them 0,
they are not skipped).

Each extract runs in its own process so its peak RSS is its own:

    python benchmarks/sales_extract.py                 # 10 M rows (a few minutes)
    python benchmarks/sales_extract.py --quick         # 500 k rows (well under a minute)
    python benchmarks/sales_extract.py --rows 2000000 --large
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RSS_LIMIT_MB = 500
QUARTER = {"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["TH"], "brands": ["X"]}
YEAR_ALL = {
    "start_date": "2026-01-01",
    "end_date": "2026-12-31",
    "countries": ["TH", "VN", "MY", "SG", "ID", "PH"],
    "brands": ["X", "Y", "Z", "NOVA", "ACME"],
}


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["GUARDIAN_DATA_DIR"] = str(workdir / "data")
    env["GUARDIAN_SALES__MAX_BYTES_BILLED"] = str(1024**4)
    env["GUARDIAN_SALES__MAX_RANGE_DAYS"] = "400"
    return env


def _child(phase: str, workdir: Path, extra: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--workdir", str(workdir), *extra],
        env=_env(workdir),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_generate(rows: int) -> dict[str, Any]:
    from guardian.sales.demo import generate
    from guardian.sales.service import source_table
    from guardian.settings import load_settings

    settings = load_settings()
    result = generate(settings.duckdb_path, source_table(settings), rows=rows)
    return {"rows": result.rows, "seconds": result.seconds, "file_bytes": settings.duckdb_path.stat().st_size}


def phase_extract(fmt: str, which: str) -> dict[str, Any]:
    import duckdb

    from guardian.sales.service import run_extract
    from guardian.settings import load_settings
    from guardian.store import get_store

    settings = load_settings()
    # One-time process costs are not the extract's: the store's migrations, and DuckDB's first
    # parameter binding (it imports pandas then).
    get_store(settings).ensure_migrated()
    duckdb.connect().execute("SELECT ?", [1]).fetchall()
    raw = {**(QUARTER if which == "quarter" else YEAR_ALL), "format": fmt}
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    report = run_extract(
        settings, raw, f"bench-{which}-{fmt}", on_step=lambda s: marks.setdefault(s, time.perf_counter())
    )
    seconds = time.perf_counter() - t0
    assert report.export is not None and report.stats is not None
    data_path = (marks["quality gate"] - marks["query"]) + (marks["sheet"] - marks["export"])
    return {
        "rows": report.export.rows,
        "seconds": seconds,
        "data_seconds": data_path,
        "query_ms": report.stats.query_ms,
        "bytes_out": report.export.bytes,
        "files": len(report.export.files),
        "bytes_estimated": report.cost.estimate.bytes if report.cost else None,
        "peak_rss_mb": _peak_rss_mb(),
    }


SIX_BY_THREE = {
    "start_date": "2026-01-01",
    "end_date": "2026-03-31",
    "countries": ["TH", "VN", "MY", "SG", "ID", "PH"],
    "brands": ["X", "Y", "Z"],
}


def phase_bigquery(workdir: Path, rows: int) -> dict[str, Any]:
    """A whole 6 x 3 x quarter run on BigQuery (bqemulator behind the billing shim of the tests).

    Every job's bytes come from the shim, which sizes them from the emulator's tables by
    BigQuery's rules: referenced columns x partitions kept, cluster pruning, 10 MB minimum.
    """
    import importlib.util
    import threading

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("bq_shim", root / "tests/integration/sales/conftest.py")
    assert spec is not None and spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = shim  # its dataclasses look their module up
    spec.loader.exec_module(shim)
    from guardian.sandbox.serve import free_port, start_in_thread, wait_for_port

    home, gcs_root = workdir / "bqhome", workdir / "bqgcs"
    home.mkdir(exist_ok=True)
    gcs_root.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, "HOME": str(home), "BQEMU_GCS_LOCAL_ROOT": str(gcs_root)}
    launcher = [sys.executable, "-c", shim.LAUNCHER, "start", "--rest-port", str(port), "--grpc-port", "0"]
    emulator = subprocess.Popen(
        [*launcher, "--project", shim.PROJECT, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=90)
        endpoint = f"http://127.0.0.1:{port}"
        stub = shim.JobsStub(endpoint)
        stub.inserted = threading.Event()
        stub.handle = start_in_thread(shim.make_stub_app(stub))
        data = shim._demo_rows(workdir, rows)
        shim._load_sales_table(endpoint, "bench", data)
        os.environ.update(
            {
                "GUARDIAN_SALES__BACKEND": "bigquery",
                "GUARDIAN_SALES__BIGQUERY_ENDPOINT": stub.endpoint,
                "GUARDIAN_SALES__DATASET": "bench",
                "GUARDIAN_SALES__RESULTS_DATASET": "bench_results",
                "GUARDIAN_SALES__WARN_ONLY_CHECKS": "coverage,freshness,volume",
            }
        )
        from guardian.sales.params import validate_params
        from guardian.sales.service import deps, query_for, run_extract
        from guardian.sales.sql import baseline_sql
        from guardian.settings import load_settings

        settings = load_settings()
        report = run_extract(settings, SIX_BY_THREE, "bench-bq", storage=shim.EmulatorGCS(gcs_root, "bench"))
        assert report.outcome.ok, report.outcome.error
        record = report.outcome.record
        params = validate_params(SIX_BY_THREE, settings)
        d = deps(settings, params)
        query = query_for(settings, params)
        # The minimum, sized by the shim independently of the run: the needed columns over the
        # needed partitions (a dry run of the query itself is exactly that upper bound).
        minimum = d.warehouse.dry_run(query.bigquery_sql, query.params).bytes
        baseline = d.warehouse.dry_run(baseline_sql(query.table), {}).bytes
        jobs = record.get("jobs") or []
        stub.handle.stop()
        return {
            "rows": report.outcome.rows,
            "jobs": len(jobs),
            "processed": int(record["bytes_processed"]),
            "billed": int(record["bytes_billed"]),
            "shim_billed": stub.total_billed(),
            "by_step": {
                step: sum(int(j["bytes_processed"]) for j in jobs if j["step"] == step)
                for step in sorted({j["step"] for j in jobs})
            },
            "minimum": minimum,
            "baseline": baseline,
            "source_rows": len(data),
        }
    finally:
        emulator.terminate()
        emulator.wait(15)


def _rate(r: dict[str, Any]) -> str:
    return (
        f"{r['rows']:,} rows; whole run {r['seconds']:.2f}s = {r['rows'] / r['seconds']:,.0f} rows/s; "
        f"query + export {r['data_seconds']:.2f}s = {r['rows'] / max(1e-9, r['data_seconds']):,.0f} rows/s"
    )


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:,.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="Rows in the demo table (default 10 M).")
    parser.add_argument("--quick", action="store_true", help="500 k rows: a run well under a minute.")
    parser.add_argument(
        "--large", action="store_true", help="With --quick: also the whole-year extract (always run otherwise)."
    )
    parser.add_argument("--workdir", type=Path, help="Keep files here (default: a temporary folder).")
    parser.add_argument(
        "--bq-rows", type=int, default=30_000, help="Rows generated for the BigQuery run (default 30 k)."
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--format", default="parquet", help=argparse.SUPPRESS)
    parser.add_argument("--which", default="quarter", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        if args.phase == "generate":
            out = phase_generate(args.rows)
        elif args.phase == "extract":
            out = phase_extract(args.format, args.which)
        else:
            out = phase_bigquery(args.workdir, args.rows)
        print(json.dumps(out))
        return

    rows = 500_000 if args.quick else args.rows
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="sales-bench-")
    workdir = args.workdir or Path(tmp.name)  # type: ignore[union-attr]
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        gen = _child("generate", workdir, ["--rows", str(rows)])
        print(f"demo table: {gen['rows']:,} rows generated in {gen['seconds']:.1f}s ({_mb(gen['file_bytes'])} DuckDB)")
        pq = _child("extract", workdir, ["--format", "parquet", "--which", "quarter"])
        csv = _child("extract", workdir, ["--format", "csv", "--which", "quarter"])
        size = _child("bigquery", workdir, ["--rows", str(args.bq_rows)])

        print("\nextract TH x X x 2026-Q1 (entry granularity)")
        for label, r in (("parquet", pq), ("csv.gz ", csv)):
            print(f"  {label}: {_rate(r)}, peak RSS {r['peak_rss_mb']:.0f} MB")
        print(
            f"  output bytes: parquet(zstd) {pq['bytes_out']:,} vs csv(gzip) {csv['bytes_out']:,} "
            f"= {pq['bytes_out'] / max(1, csv['bytes_out']):.2f}x"
        )
        print(
            f"\nBigQuery run, 6 countries x 3 brands x 2026-Q1, {size['rows']:,} rows of {size['source_rows']:,}, "
            f"{size['jobs']} jobs (bytes sized by the shim from the emulator's tables)"
        )
        for step, n in size["by_step"].items():
            print(f"  {step:<13}: {n:>12,} B processed")
        print(f"  whole run: {size['processed']:>12,} B processed, {size['billed']:>12,} B billed (10 MB minimum/job)")
        print(f"  minimum  : {size['minimum']:>12,} B (needed columns x needed partitions)")
        print(f"  SELECT * : {size['baseline']:>12,} B (the original query)")
        ratio = size["processed"] / max(1, size["minimum"])
        print(f"  processed / minimum = {ratio:.2f}x (goal <= 1.2x: {'PASS' if ratio <= 1.2 else 'FAIL'})")
        print(f"  billed / minimum    = {size['billed'] / max(1, size['minimum']):.1f}x (10 MB per-job minimums)")
        print(f"  SELECT * / minimum  = {size['baseline'] / max(1, size['minimum']):.1f}x (one original query)")
        print(f"  processed / SELECT *= {size['processed'] / max(1, size['baseline']):.2f}x (whole run vs SELECT *)")
        peaks = [pq["peak_rss_mb"], csv["peak_rss_mb"]]
        if args.large or not args.quick:
            big = _child("extract", workdir, ["--format", "parquet", "--which", "year"])
            peaks.append(big["peak_rss_mb"])
            print(f"\nlarge extract (2026, every country x brand, parquet): {_rate(big)}")
            print(f"  {big['files']} files, {_mb(big['bytes_out'])}, peak RSS {big['peak_rss_mb']:.0f} MB")
        worst = max(peaks)
        verdict = "PASS" if worst < RSS_LIMIT_MB else "FAIL"
        print(f"\npeak RSS of any extract: {worst:.0f} MB (limit {RSS_LIMIT_MB} MB: {verdict})")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
