"""google_sheet_trigger_dag: rows marked `run` in the control sheet start exactly one run each."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import TriggerRule, dag, task
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

DOC = """
### google_sheet_trigger_dag (every 5 minutes)

Reads the control sheet (`GUARDIAN_SHEETS__SPREADSHEET_ID`, `GUARDIAN_SHEETS__RANGE`) with ONE
`values.get`; each row whose Status is `run` is validated and recorded once in the request ledger,
its status goes back in ONE `values.batchUpdate` (RAW), and `trigger` starts the target DAG
(default `bigquery_sales_query`) with the request's deterministic run id `sheets__<request id>`.
An unchanged sheet with nothing in flight costs one call and stops there.

Row lifecycle: `run` (typed) -> `queued` -> `running` -> `completed` / `failed`; `invalid` with the reason.

**Triage**
- `poll` fails with *no header row*: the tab lost its Country / Brand / Status header; fix the sheet.
- `poll` fails with *HTTP 403/404*: the sheet is not shared with the service account of
  `google_cloud_default`, or the spreadsheet id is wrong. One alert is sent until it recovers.
- `trigger` fails: the target DAG is missing or broken; fix it and the next poll re-triggers the
  accepted requests (their run ids are fixed, so nothing runs twice). `skipped` means the run already existed.
- A row stays `queued`: check `guardian sheets requests` and the target DAG's run `sheets__<id>`.
"""


@dag(
    dag_id="google_sheet_trigger_dag",
    # A plain env read (no I/O): operators may poll more often than every 5 minutes.
    schedule=os.environ.get("GUARDIAN_SHEETS__POLL_SCHEDULE") or "*/5 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=[Tag.GUARDIAN, Tag.SHEETS, Tag.TRIGGER],
    default_args=dagkit.default_args(retries=2, retry_delay_minutes=0.5),
    on_failure_callback=dagkit.on_failure,
)
def google_sheet_trigger_dag() -> None:
    """Poll the control sheet, trigger each accepted request once, confirm."""

    # Bounded below the 5-minute schedule: a hung poll must not hold the single active run.
    @task(execution_timeout=timedelta(minutes=4))
    def poll() -> list[dict[str, object]]:
        from guardian.airflow import sheets

        return sheets.poll()

    requests = poll()
    trigger = TriggerDagRunOperator.partial(
        task_id="trigger",
        wait_for_completion=False,
        reset_dag_run=False,
        skip_when_already_exists=True,
    ).expand_kwargs(requests)

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def confirm(accepted: list[dict[str, object]]) -> int:
        from guardian.airflow import sheets

        return sheets.confirm(accepted)  # type: ignore[arg-type]

    trigger >> confirm(requests)


google_sheet_trigger_dag()
