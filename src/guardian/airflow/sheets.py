"""Airflow glue of the Sheets trigger: credentials from ``google_cloud_default``, run states, poll and confirm.

The DAG's poll task returns the keyword arguments of one ``TriggerDagRunOperator`` per request
to (re)trigger; the trigger task is mapped over them with the request's deterministic run id,
so a retried or overlapping poll can only ever meet "run already exists" (skipped). Whether each
request's run exists is read back from Airflow (REST API or metadata DB) by the next poll or the
confirm step, request by request: one target that fails does not hold the others.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient

log = logging.getLogger(__name__)


def sheets_client(settings: Settings) -> SheetsClient:
    """The Sheets client inside a task: sandbox or key-file settings first, else google_cloud_default, else ADC."""
    from guardian.airflow.google import install
    from guardian.sheets.client import SheetsClient

    install()
    return SheetsClient.from_settings(settings)


def _runs(settings: Settings) -> Any:
    from guardian.airflow.health import metadata_db_url
    from guardian.sheets.runs import AirflowRuns

    return AirflowRuns(settings, metadata_db_url=None if settings.monitoring.airflow_api_url else metadata_db_url())


def poll() -> list[dict[str, Any]]:
    """The DAG's poll step: one poll; returns TriggerDagRunOperator kwargs for each request to trigger."""
    from guardian.airflow import lineage
    from guardian.airflow.dagkit import task_settings
    from guardian.sheets import ledger
    from guardian.sheets.poll import run_poll
    from guardian.store import get_store

    settings = task_settings()
    store = get_store(settings)
    result = run_poll(settings, store, lambda: sheets_client(settings), runs=_runs(settings))
    log.info("sheets poll: %s", result.as_dict())
    sid, tab = settings.sheets.spreadsheet_id, settings.sheets.range.split("!")[0].strip("'")
    lineage.report(
        inputs=[f"gsheets://{sid}/{tab}"],
        outputs=[f"gsheets://{sid}/{tab}"] if result.written_rows else [],
    )
    # Each request is judged on its own by the next poll: its run exists (triggered) or one more attempt failed.
    ledger.mark_handed(store, [r.request_id for r in result.to_trigger], ledger.now_utc())
    return [req.trigger_kwargs() for req in result.to_trigger]


def confirm() -> int:
    """After the triggers, whatever each one did: bring the requests up to date with Airflow right away."""
    from guardian.airflow.dagkit import task_settings
    from guardian.sheets import ledger
    from guardian.sheets.poll import reconcile
    from guardian.store import get_store

    settings = task_settings()
    sid = settings.sheets.spreadsheet_id
    if not sid:
        return 0
    changed = reconcile(settings, get_store(settings), sid, _runs(settings), ledger.now_utc())
    log.info("sheets: %d request(s) brought up to date with Airflow", changed)
    return changed


def on_poll_failure(context: Any) -> None:
    """The poll task's failure callback: run_poll raised the deduplicated Sheets alert already."""
    ti = context.get("task_instance") or context.get("ti")
    log.info("sheets: poll failed (%s); alerted once by the Sheets alert", getattr(ti, "try_number", "?"))


def on_dag_failure(context: Any) -> None:
    """The DAG's failure callback: a failed poll already raised the deduplicated Sheets alert (one message
    until it recovers), so only failures elsewhere go to the generic callback."""
    dag_run = context.get("dag_run")
    failed = {ti.task_id for ti in dag_run.get_task_instances(state="failed")} if dag_run is not None else set()
    if failed and failed <= {"poll"}:
        log.info("sheets: the poll failed; the Sheets alert covers it (no generic failure email)")
        return
    from guardian.airflow.dagkit import on_failure

    on_failure(context)
