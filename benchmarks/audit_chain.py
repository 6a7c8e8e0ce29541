"""Audit chain write throughput on real PostgreSQL, against a plain-insert baseline.

What the hash chain costs: each append takes the chain lock, reads the head and hashes the
row (and, with GUARDIAN_AUDIT__HMAC_KEY_REF, MACs it: the "keyed" column). The baseline
inserts the same rows into an unchained copy of the table, one transaction per row as well.
Both run in the same process on the same database, with 1 and with N writer processes, and
the script prints rows per second and the ratios.

    .venv/bin/python benchmarks/audit_chain.py [--rows 500] [--writers 8] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid

from sqlalchemy import create_engine, text

ADMIN = os.environ.get("GUARDIAN_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _chained(url: str, rows: int, worker: int) -> None:
    os.environ["GUARDIAN_STORE__URL"] = url
    from guardian import audit
    from guardian.store import get_store

    store = get_store()
    for i in range(rows):
        audit.record("bench.write", f"w{worker}/r{i}", after={"i": i, "payload": "x" * 64}, store=store)


def _plain(url: str, rows: int, worker: int) -> None:
    import json
    from datetime import UTC, datetime

    engine = create_engine(url, future=True)
    for i in range(rows):
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_plain (ts, actor, action, target, after, outcome, context) "
                    "VALUES (:ts, 'bench', 'bench.write', :t, :a, 'ok', '{}')"
                ),
                {"ts": datetime.now(UTC), "t": f"w{worker}/r{i}", "a": json.dumps({"i": i, "payload": "x" * 64})},
            )
    engine.dispose()


def _run(target: object, url: str, rows: int, writers: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(url, rows, w)) for w in range(writers)]  # type: ignore[arg-type]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    if any(p.exitcode for p in procs):
        raise SystemExit("a writer failed")
    return rows * writers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="rows per writer")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="100 rows per writer")
    args = parser.parse_args()
    rows = 100 if args.quick else args.rows

    name = f"guardian_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT", future=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        os.environ["GUARDIAN_STORE__URL"] = url
        from guardian.store import get_store

        get_store().migrate()
        engine = create_engine(url, future=True)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE audit_plain (seq bigserial primary key, ts timestamptz, actor text, action text, "
                    "target text, after json, outcome text, context json)"
                )
            )
        engine.dispose()
        print(f"audit chain vs plain insert on PostgreSQL, {rows} rows per writer")
        print(
            f"{'writers':>8} {'plain rows/s':>14} {'chained rows/s':>16} {'chained/plain':>14} "
            f"{'keyed rows/s':>14} {'keyed/plain':>12}"
        )
        for writers in sorted({1, args.writers}):
            plain = _run(_plain, url, rows, writers)
            chained = _run(_chained, url, rows, writers)
            # The same chain with the HMAC key set (what production runs); spawned writers inherit it.
            os.environ["BENCH_AUDIT_KEY"] = uuid.uuid4().hex + uuid.uuid4().hex
            os.environ["GUARDIAN_AUDIT__HMAC_KEY_REF"] = "env:BENCH_AUDIT_KEY"
            keyed = _run(_chained, url, rows, writers)
            os.environ.pop("GUARDIAN_AUDIT__HMAC_KEY_REF")
            print(
                f"{writers:>8} {plain:>14.0f} {chained:>16.0f} {chained / plain:>14.2f} "
                f"{keyed:>14.0f} {keyed / plain:>12.2f}"
            )
        from guardian import audit

        # The key of the last keyed run is gone: verify the plain chain (anchors off).
        report = audit.verify(anchors=False)
        print(f"chain after the run: {'OK' if report.ok else 'BROKEN'}, {report.rows} rows")
    finally:
        from guardian.store import reset_stores

        reset_stores()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
