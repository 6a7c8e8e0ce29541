"""/metrics and the Overview page under 90 days of history for 20 DAGs at 5-minute cadence.

Fills a fresh store with DAG runs (20 x 288 per day x 90 days = 518,400 runs), hourly health
snapshots, task usage, alerts, deliveries and audit events; serves the UI under uvicorn; times
GET /metrics and GET / (logged in) over HTTP; prints p50/p95 against the same requests on an
empty store, and the time of one health check (its windowed queries) with 30 and 90 days of
history, to show it stays flat.

    .venv/bin/python benchmarks/monitoring_overview.py            # full size (about 2 minutes)
    .venv/bin/python benchmarks/monitoring_overview.py --quick    # 10 days, fewer requests
    .venv/bin/python benchmarks/monitoring_overview.py --store-url postgresql+psycopg2://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BUDGET_MS = 200.0


def _fill(store: Any, days: int, dags: int, cadence_min: int, now: datetime) -> int:
    from sqlalchemy import insert

    from guardian import audit
    from guardian.monitoring.health import compute_health, save_snapshots
    from guardian.monitoring.tables import alerts, dag_runs, health_snapshots, notifications, task_usage

    rng = random.Random(7)
    per_day = 24 * 60 // cadence_min
    total = 0
    for d in range(dags):
        dag_id = f"bench_dag_{d:02d}"
        base = 30 + 10 * d
        rows = []
        for i in range(days * per_day):
            end = now - timedelta(minutes=cadence_min * i)
            duration = base * rng.uniform(0.8, 1.3)
            failed = rng.random() < 0.03
            rows.append(
                {
                    "dag_id": dag_id,
                    "run_id": f"scheduled__{end.isoformat()}",
                    "run_type": "scheduled",
                    "state": "failed" if failed else "success",
                    "start_date": end - timedelta(seconds=duration),
                    "end_date": end,
                    "duration_s": duration,
                    "failed_tasks": ["extract"] if failed else None,
                    "retries": 1 if rng.random() < 0.05 else 0,
                    "source": "bench",
                    "collected_at": now,
                }
            )
        with store.read() as conn:
            for chunk in range(0, len(rows), 5000):
                conn.execute(insert(dag_runs), rows[chunk : chunk + 5000])
            conn.execute(
                insert(task_usage),
                [
                    {
                        "ts": now - timedelta(hours=h),
                        "dag_id": dag_id,
                        "task_id": t,
                        "run_id": f"r{h}",
                        "try_number": 1,
                        "state": "success",
                        "duration_s": 10.0,
                        "cpu_seconds": rng.uniform(1, 5),
                        "peak_rss_bytes": rng.randint(100, 400) * 2**20,
                    }
                    for h in range(0, days * 24, 6)
                    for t in ("extract", "load")
                ],
            )
        total += len(rows)
    # Hourly snapshots for the whole history (copies of today's summary, re-stamped).
    summaries = compute_health(store, now=now)
    with store.read() as conn:
        for h in range(1, days * 24):
            ts = now - timedelta(hours=h)
            conn.execute(
                insert(health_snapshots), [{"ts": ts, "dag_id": s.dag_id, "summary": s.as_dict()} for s in summaries]
            )
        conn.execute(
            insert(alerts),
            [
                {
                    "key": f"slow_run:bench_dag_{i:02d}",
                    "kind": "slow_run",
                    "dag_id": f"bench_dag_{i:02d}",
                    "message": "slow",
                    "value": 1.0,
                    "opened_at": now - timedelta(days=i),
                    "cleared_at": None if i < 3 else now - timedelta(days=i - 1),
                    "last_seen_at": now,
                }
                for i in range(40)
            ],
        )
        conn.execute(
            insert(notifications),
            [
                {
                    "ts": now - timedelta(hours=i),
                    "channel": "email",
                    "kind": "failure",
                    "dag_id": "bench_dag_00",
                    "subject": "x",
                    "delivered": 1,
                    "error": None,
                }
                for i in range(2000)
            ],
        )
    save_snapshots(store, summaries, now)
    with store.write() as conn:
        for i in range(3000):
            audit.append(
                conn,
                actor="bench",
                action="airflow.failure" if i % 10 == 0 else "bench.event",
                target=f"dag:bench_dag_{i % dags:02d}/task:extract",
                before=None,
                after={"dag_id": f"bench_dag_{i % dags:02d}", "task_id": "extract", "run_id": "r", "error": ["boom"]},
                outcome="failed" if i % 10 == 0 else "ok",
                context={},
            )
    return total


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _time_requests(settings: Any, n: int) -> dict[str, tuple[float, float]]:
    import httpx

    from guardian.web.app import create_app

    server = _Server(create_app(settings))
    try:
        headers = {"Authorization": "Bearer bench-metrics-token"}  # /metrics needs its token; pages ignore it
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30, headers=headers) as client:
            r = client.post("/login", data={"username": "bench", "password": "bench-password", "next": "/"})
            assert r.status_code in (200, 303), r.status_code
            out = {}
            for path in ("/metrics", "/"):
                assert client.get(path).status_code == 200
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    resp = client.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert resp.status_code == 200
                times.sort()
                out[path] = (statistics.median(times), times[int(0.95 * (len(times) - 1))])
            return out
    finally:
        server.stop()


def _health_check_ms(settings: Any, store: Any, now: datetime, repeat: int = 3) -> float:
    from guardian.monitoring.alerts import evaluate
    from guardian.monitoring.health import compute_health

    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        evaluate(settings, store, compute_health(store, now=now), now=now)
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def main() -> int:
    """Run the benchmark and print the figures; exit 1 when a p95 is over the budget."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 days of history and 30 requests per page")
    parser.add_argument("--days", type=int, default=None, help="days of history (default 90, quick 10)")
    parser.add_argument("--dags", type=int, default=20)
    parser.add_argument("--cadence-min", type=int, default=5)
    parser.add_argument("--requests", type=int, default=None, help="requests per page (default 200, quick 30)")
    parser.add_argument(
        "--store-url", default=None, help="a fresh, empty store database (default: SQLite in a temp dir)"
    )
    args = parser.parse_args()
    days = args.days or (10 if args.quick else 90)
    n = args.requests or (30 if args.quick else 200)

    tmp = Path(tempfile.mkdtemp(prefix="guardian-bench-"))
    os.environ["GUARDIAN_DATA_DIR"] = str(tmp)
    from guardian.web.auth import hash_password

    os.environ["BENCH_UI_HASH"] = hash_password("bench-password")
    os.environ["GUARDIAN_WEB__USERS"] = "bench:viewer:env:BENCH_UI_HASH"
    os.environ["GUARDIAN_WEB__SECURE_COOKIES"] = "false"  # plain http on 127.0.0.1
    os.environ["BENCH_METRICS_TOKEN"] = "bench-metrics-token"
    os.environ["GUARDIAN_WEB__METRICS_TOKEN_REF"] = "env:BENCH_METRICS_TOKEN"
    from guardian.settings import load_settings
    from guardian.store import get_store

    def settings_for(url: str) -> Any:
        return load_settings(store={"url": url})

    empty = settings_for(f"sqlite:///{tmp / 'empty.db'}")
    base = _time_requests(empty, n)

    full_url = args.store_url or f"sqlite:///{tmp / 'full.db'}"
    full = settings_for(full_url)
    store = get_store(full)
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    runs = _fill(store, days, args.dags, args.cadence_min, now)
    fill_s = time.perf_counter() - t0
    loaded = _time_requests(full, n)

    # Health-check cost with 30 days of history vs the full history (same windowed queries).
    small = settings_for(f"sqlite:///{tmp / 'month.db'}") if not args.store_url else None
    month_ms = None
    if small is not None:
        small_store = get_store(small)
        _fill(small_store, min(30, days), args.dags, args.cadence_min, now)
        month_ms = _health_check_ms(small, small_store, now)
    full_ms = _health_check_ms(full, store, now)

    print(f"store: {store.display_url.split('/')[-1] if not args.store_url else store.display_url}")
    print(
        f"history: {runs} runs ({args.dags} DAGs x {days} days at {args.cadence_min}-minute cadence), "
        f"filled in {fill_s:.1f} s"
    )
    print(f"{'request':10} {'empty p50':>10} {'empty p95':>10} {'full p50':>10} {'full p95':>10} {'p95 ratio':>10}")
    ok = True
    for path, label in (("/metrics", "/metrics"), ("/", "Overview")):
        (b50, b95), (f50, f95) = base[path], loaded[path]
        print(f"{label:10} {b50:9.1f}ms {b95:9.1f}ms {f50:9.1f}ms {f95:9.1f}ms {f95 / b95:9.2f}x")
        ok &= f95 < BUDGET_MS
    if month_ms is not None:
        print(
            f"health check (compute + evaluate, {args.dags} DAGs): {month_ms:.0f} ms with {min(30, days)} days, "
            f"{full_ms:.0f} ms with {days} days "
            f"({full_ms / month_ms:.2f}x)"
        )
    else:
        print(f"health check (compute + evaluate, {args.dags} DAGs): {full_ms:.0f} ms with {days} days")
    print(f"budget: p95 < {BUDGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
