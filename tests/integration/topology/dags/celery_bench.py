"""One short task per run: what benchmarks/celery_throughput.py pushes through the Celery workers."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.common.compat.sdk import dag, task


@dag(
    dag_id="celery_bench",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["guardian"],
    default_args={"owner": "data-platform", "retries": 0},
    max_active_runs=256,
    max_active_tasks=256,
)
def celery_bench() -> None:
    @task
    def short() -> int:
        return 1

    short()


celery_bench()
