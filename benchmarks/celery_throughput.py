"""Celery path throughput and the scheduler's schedule-to-start latency on the local topology.

Starts the local topology (start_airflow.sh --local's processes, isolated: own databases, ports,
Redis database), triggers N runs of a one-task DAG through the REST API with one Celery worker
(the second one stopped), then N more with both, and reports for each:

- tasks per minute completed (N / time from the first trigger to the last task's end);
- schedule-to-start latency p50 / p95 (task instance `scheduled_when` -> `start_date`);

and the 2-worker / 1-worker throughput ratio (the baseline is the 1-worker run). Every task is a
real Airflow task: a supervisor process and a task process per run, as in production.

    .venv/bin/python benchmarks/celery_throughput.py [--tasks 200] [--concurrency 2] [--quick] [--paced]

With --paced each run is triggered when the previous one finished: the schedule-to-start latency
of an idle system (throughput then measures the round trip, not capacity).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "src"))

from topology import harness  # noqa: E402

DAG_ID = "celery_bench"


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _batch(api: harness.Api, tasks: int, paced: bool = False) -> tuple[float, list[float], int]:
    """Trigger `tasks` runs at once (or one after the other when paced); wait for all; return wall
    seconds, schedule-to-start latencies and failures."""
    started = time.monotonic()
    if paced:
        run_ids = []
        for _ in range(tasks):
            run_ids.append(api.trigger(DAG_ID))
            api.wait_run(DAG_ID, run_ids[-1], timeout=300)
    else:
        run_ids = [api.trigger(DAG_ID) for _ in range(tasks)]
    pending = set(run_ids)
    while pending and time.monotonic() < started + 3600:
        runs = api.get_all(f"dags/{DAG_ID}/dagRuns", "dag_runs", state=["success", "failed"])
        pending -= {r["dag_run_id"] for r in runs}
        time.sleep(1)
    wall = time.monotonic() - started
    if pending:
        raise SystemExit(f"{len(pending)} runs unfinished after an hour")
    latencies, failed = [], 0
    for run_id in run_ids:
        (ti,) = api.task_instances(DAG_ID, run_id)
        failed += ti["state"] != "success"
        latencies.append((_ts(ti["start_date"]) - _ts(ti["scheduled_when"])).total_seconds())
    return wall, latencies, failed


def measure(tasks: int, concurrency: int, paced: bool = False) -> list[dict[str, float]]:
    """One topology: a batch with worker 2 stopped (1 worker), then with both workers."""
    results = []
    with tempfile.TemporaryDirectory(prefix="celery-bench-") as tmp:
        dags = Path(tmp) / "dags"
        dags.mkdir()
        (dags / "celery_bench.py").symlink_to(harness.PROBE_DAGS / "celery_bench.py")
        with harness.local_topology(
            Path(tmp),
            workers=2,
            worker_concurrency=concurrency,
            dags_folder=dags,
            extra_env={"AIRFLOW__CORE__PARALLELISM": "64"},
        ) as topo:
            api, module, cfg = topo.api, topo.module, topo.cfg
            api.wait_dag(DAG_ID)
            # A warm-up run so that first imports and connections are not billed to the batch.
            api.wait_run(DAG_ID, api.trigger(DAG_ID), timeout=300)
            module.stop_process(cfg, "airflow-worker-2")
            for workers in (1, 2):
                if workers == 2:
                    module.start_process(cfg, "airflow-worker-2")
                    deadline = time.monotonic() + 120
                    env = module.environment(cfg)
                    while time.monotonic() < deadline and len(module.worker_ping(env, instance=cfg.instance)) < 2:
                        time.sleep(2)
                wall, latencies, failed = _batch(api, tasks, paced)
                results.append(
                    {
                        "workers": workers,
                        "tasks": tasks,
                        "failed": failed,
                        "wall_s": wall,
                        "tasks_per_min": tasks / wall * 60,
                        "p50_s": statistics.median(latencies),
                        "p95_s": _pct(latencies, 0.95),
                    }
                )
    return results


def main() -> None:
    """Measure with 1 and 2 workers and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    parser.add_argument("--quick", action="store_true", help="20 tasks (smoke run)")
    parser.add_argument(
        "--paced", action="store_true", help="one run at a time: the latency of an idle system, not of a burst"
    )
    args = parser.parse_args()
    tasks = 20 if args.quick else args.tasks
    results = measure(tasks, args.concurrency, args.paced)
    how = "one at a time" if args.paced else "triggered at once"
    print(f"\nCelery path, {tasks} one-task runs {how}, worker concurrency {args.concurrency}:")
    print(f"{'workers':>8} {'tasks/min':>10} {'wall s':>8} {'p50 s':>7} {'p95 s':>7} {'failed':>7}")
    for r in results:
        print(
            f"{r['workers']:>8} {r['tasks_per_min']:>10.1f} {r['wall_s']:>8.1f} "
            f"{r['p50_s']:>7.2f} {r['p95_s']:>7.2f} {r['failed']:>7}"
        )
    ratio = results[1]["tasks_per_min"] / results[0]["tasks_per_min"]
    print(f"throughput ratio 2 workers / 1 worker (baseline): {ratio:.2f}x")


if __name__ == "__main__":
    main()
