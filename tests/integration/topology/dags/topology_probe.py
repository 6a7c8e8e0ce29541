"""A tiny DAG the local-topology test uses to crash a Celery worker mid-task.

Each try records itself (worker, try number) in the probe database, sleeps so the test can
SIGKILL the worker running it, then applies its one side effect idempotently: the effect row is
keyed by the run, so a retry after a crash can never apply it twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.common.compat.sdk import dag, task


@dag(
    dag_id="topology_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["guardian"],
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=1)},
    params={"sleep": 0.0},
    max_active_runs=64,
)
def topology_probe() -> None:
    @task
    def side_effect(**context: object) -> str:
        import os
        import time

        import psycopg2

        ti = context["ti"]
        run_id = context["run_id"]
        params = context["params"]
        worker = os.environ.get("LOCAL_WORKER_NAME", "unknown")
        with psycopg2.connect(os.environ["TOPOLOGY_PROBE_DSN"]) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO probe_attempts (run_id, try_number, worker, pid) VALUES (%s, %s, %s, %s)",
                (run_id, ti.try_number, worker, os.getpid()),  # type: ignore[attr-defined]
            )
        time.sleep(float(params["sleep"]))  # type: ignore[index]
        with psycopg2.connect(os.environ["TOPOLOGY_PROBE_DSN"]) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO probe_effects (run_id, worker) VALUES (%s, %s) ON CONFLICT (run_id) DO NOTHING",
                (run_id, worker),
            )
        return worker

    side_effect()


topology_probe()
