"""guardian_health: hourly DAG health snapshots and threshold alerts."""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import dag, task

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

DOC = """
### guardian_health (hourly)

Collects DAG runs (Airflow REST API when `GUARDIAN_MONITORING__AIRFLOW_API_URL` is set, else the
metadata database), keeps a health snapshot per DAG (success rates, duration p50/p95 over 7 and
30 days, trend, last success, failing tasks, retries, resource use), and evaluates the threshold
alerts: failure rate, slow run, no success within the expected interval, data-quality failures,
audit chain. Alerts are deduplicated: one message when a condition starts, one when it clears.

**Triage**
- `collect_runs` fails with *Airflow API unreachable / refused*: check the API URL, user and
  `GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF`; the user needs read access to DAG runs.
- `evaluate_alerts` fails with *store unreachable*: the Guardian store (GUARDIAN_STORE__URL) is down.
- Alerts not arriving: run `guardian health test-alert`; see docs/operations.md.
"""


@dag(
    dag_id="guardian_health",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=[Tag.GUARDIAN, Tag.PLATFORM, Tag.MONITORING],
    default_args=dagkit.default_args(retries=1, retry_delay_minutes=0.5),
    on_failure_callback=dagkit.on_failure,
)
def guardian_health() -> None:
    """Collect runs, then snapshot health and deliver alert transitions."""

    @task
    def collect_runs() -> dict[str, Any]:
        from guardian.airflow import health, lineage
        from guardian.store import get_store

        settings = dagkit.task_settings()
        store = get_store(settings)
        result = health.collect(settings, store)
        lineage.report(
            inputs=[f"guardian://airflow-{result['source']}/dag_run"], outputs=["guardian://store/monitoring_dag_runs"]
        )
        return result

    @task
    def evaluate_alerts(collected: dict[str, Any]) -> dict[str, Any]:
        from guardian.airflow import health, lineage

        dag_ids = [str(d) for d in collected.get("dag_ids") or []]
        result = health.evaluate(dag_ids, int(str(collected.get("stored") or 0)))
        lineage.report(
            inputs=[
                "guardian://store/monitoring_dag_runs",
                "guardian://store/quality_results",
                "guardian://store/audit_log",
            ],
            outputs=["guardian://store/monitoring_health_snapshots", "guardian://store/monitoring_alerts"],
        )
        return result

    evaluate_alerts(collect_runs())


guardian_health()
