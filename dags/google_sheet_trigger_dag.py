"""google_sheet_trigger_dag: rows marked `run` in the control sheet start exactly one run each."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import TriggerRule, dag, task
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

from guardian.airflow import dagkit, sheets
from guardian.airflow.dagkit import Tag

DOC = """
### google_sheet_trigger_dag (every 5 minutes)

First brings open requests up to date with their Airflow runs, then reads the control sheet
(`GUARDIAN_SHEETS__SPREADSHEET_ID`, `GUARDIAN_SHEETS__RANGE`) with ONE `spreadsheets.get` (values and
each row's developer-metadata tag). Each `run` row is validated and recorded once in the request
ledger, tagged, and its status written back by tag (`values.batchUpdateByDataFilter`), never by row
number. `trigger` starts the target DAG with the request's deterministic run id `sheets__<request id>`;
`confirm` (all done) reads each request's run back from Airflow. A settled sheet costs one call.

Row lifecycle: `run` (typed) -> `queued` -> `running` -> `completed` / `failed`; `invalid` or `waiting`
with the reason. docs/services/sheets.md shows what a business user sees.

**Triage**
- `poll` fails with *no header row*: the tab lost its Country / Brand / Status header; fix the sheet.
- `poll` fails with *HTTP 403/404*: the sheet is not shared with the service account of
  `google_cloud_default`, or the spreadsheet id is wrong. One alert is sent until it recovers.
- `trigger` fails for one request: the target DAG is missing or broken. That request alone is retried
  by the next polls (its run id is fixed, so nothing runs twice); after GUARDIAN_SHEETS__MAX_TRIGGER_ATTEMPTS
  its row shows `failed` with the reason. The DAG run itself stays green. `skipped`: the run already existed.
- A row stays `queued`: check `guardian sheets requests` and docs/runbooks/sheet-request-stuck.md.
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
    # A failed poll is reported by the deduplicated Sheets alert only; other failures by the generic one.
    on_failure_callback=sheets.on_dag_failure,
)
def google_sheet_trigger_dag() -> None:
    """Poll the control sheet, trigger each accepted request once, confirm."""

    # Bounded below the 5-minute schedule: a hung poll must not hold the single active run.
    @task(execution_timeout=timedelta(minutes=4), on_failure_callback=sheets.on_poll_failure)
    def poll() -> list[dict[str, object]]:
        return sheets.poll()

    requests = poll()
    trigger = TriggerDagRunOperator.partial(
        task_id="trigger",
        wait_for_completion=False,
        reset_dag_run=False,
        skip_when_already_exists=True,
    ).expand_kwargs(requests)

    # ALL_DONE: each request is confirmed on its own from Airflow's runs, whatever the other triggers did.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def confirm() -> int:
        return sheets.confirm()

    trigger >> confirm()


google_sheet_trigger_dag()
