"""A one-task DAG on its own Celery queue: the local-topology test starts one more worker, from a
separate environment folder (as on a second host), that alone reads this queue.

The queue name comes from the topology's environment at parse time (each test topology has its
own, so concurrent topologies on one Redis never take each other's tasks); a test probe may read
the environment at parse time, the guardian's DAGs may not.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.providers.common.compat.sdk import dag, task

QUEUE = os.environ.get("TOPOLOGY_EXTRA_QUEUE", "topology-extra")


@dag(
    dag_id="topology_queue_probe",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["guardian"],
    default_args={"owner": "data-platform", "retries": 0},
)
def topology_queue_probe() -> None:
    @task(queue=QUEUE)
    def on_the_extra_worker(**context: object) -> str:
        import psycopg2

        worker = os.environ.get("LOCAL_WORKER_NAME", "unknown")
        with psycopg2.connect(os.environ["TOPOLOGY_PROBE_DSN"]) as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO probe_effects (run_id, worker) VALUES (%s, %s) ON CONFLICT (run_id) DO NOTHING",
                (context["run_id"], worker),
            )
        return worker

    on_the_extra_worker()


topology_queue_probe()
