"""Run collection for the guardian_health DAG: the REST API when configured, else the metadata DB."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store


def metadata_db_url() -> str:
    """The Airflow metadata database URL of this deployment."""
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if url:
        return url
    from airflow.providers.common.compat.sdk import conf

    return str(conf.get("database", "sql_alchemy_conn"))


def collect(settings: Settings, store: Store) -> dict[str, Any]:
    """Store the runs updated since the last collection; return the source, DAG ids and count."""
    from guardian.monitoring.airflow_api import collect_runs, default_since
    from guardian.monitoring.health import last_collected, upsert_runs

    since = default_since(last_collected(store), settings.monitoring.history_days)
    metadb = None if settings.monitoring.airflow_api_url else metadata_db_url()
    dag_ids, runs, source = collect_runs(settings, since, metadata_db_url=metadb)
    stored = upsert_runs(store, runs, source=source)
    return {"source": source, "dag_ids": dag_ids, "runs_seen": len(runs), "stored": stored}


def evaluate(dag_ids: list[str], collected: int) -> dict[str, Any]:
    """The DAG's evaluate step: snapshot health, alert transitions into the outbox, deliver through Airflow's hooks."""
    from guardian.airflow.dagkit import task_settings
    from guardian.airflow.delivery import AirflowTransport
    from guardian.monitoring.service import run_health_check
    from guardian.store import get_store

    settings = task_settings()
    report = run_health_check(settings, get_store(settings), dag_ids=dag_ids, transport=AirflowTransport())
    report.collected = collected
    print(report.text())
    return report.as_dict()
