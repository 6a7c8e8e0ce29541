"""Sales extract benchmark on the DuckDB demo table (default 10 M rows; ``--quick``: 500 k).

Prints, for one country x brand x quarter extracted to Parquet (and the same to CSV):
rows per second, the extract process's peak RSS (must stay under 500 MB whatever the result
size: ``--large`` adds a whole-year, every-country extract), Parquet vs CSV bytes, and the
bytes the query reads versus the minimum (only the needed columns of the needed partitions;
goal <= 1.1x) versus the original system's query (``SELECT * ... LIMIT 100``, every column
of every partition), with the ratios.

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


def phase_bytes() -> dict[str, Any]:
    """Bytes read by the query vs the minimum vs the original query, by BigQuery's billing rules."""
    import duckdb

    from guardian.sales.params import validate_params
    from guardian.sales.service import deps, query_for
    from guardian.sales.sql import PARTITION_COLUMN, RESULT_SCHEMAS, baseline_sql
    from guardian.settings import load_settings

    settings = load_settings()
    params = validate_params(QUARTER, settings)
    d = deps(settings, params)
    query = query_for(settings, params)
    read = d.warehouse.dry_run(query.bigquery_sql, query.params).bytes
    baseline = d.warehouse.dry_run(baseline_sql(query.table), {}).bytes
    # The minimum, computed independently of the query text: the output columns plus the
    # filter columns, over the partitions of the requested dates only.
    needed = sorted({name for name, _ in RESULT_SCHEMAS["entry"]} | {PARTITION_COLUMN, "country_code", "brand_code"})
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        minimum = con.execute(
            f"SELECT SUM(bytes) FROM sales._guardian_partition_bytes WHERE column_name IN "
            f"({', '.join('?' for _ in needed)}) AND {PARTITION_COLUMN} BETWEEN ? AND ?",
            [*needed, params.start_date, params.end_date],
        ).fetchone()[0]
    return {"read": read, "minimum": int(minimum), "baseline": baseline}


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
            out = phase_bytes()
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
        size = _child("bytes", workdir, [])

        print("\nextract TH x X x 2026-Q1 (entry granularity)")
        for label, r in (("parquet", pq), ("csv.gz ", csv)):
            print(f"  {label}: {_rate(r)}, peak RSS {r['peak_rss_mb']:.0f} MB")
        print(
            f"  output bytes: parquet(zstd) {pq['bytes_out']:,} vs csv(gzip) {csv['bytes_out']:,} "
            f"= {pq['bytes_out'] / max(1, csv['bytes_out']):.2f}x"
        )
        print("\nbytes read (BigQuery billing rules: referenced columns x partitions scanned)")
        print(f"  query    : {size['read']:>15,} B ({_mb(size['read'])})")
        print(f"  minimum  : {size['minimum']:>15,} B ({_mb(size['minimum'])}) needed columns, needed partitions")
        print(f"  baseline : {size['baseline']:>15,} B ({_mb(size['baseline'])}) original SELECT * ... LIMIT 100")
        ratio = size["read"] / max(1, size["minimum"])
        print(f"  query / minimum  = {ratio:.3f}x (goal <= 1.1x: {'PASS' if ratio <= 1.1 else 'FAIL'})")
        print(f"  baseline / query = {size['baseline'] / max(1, size['read']):.1f}x more read by the original query")
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
