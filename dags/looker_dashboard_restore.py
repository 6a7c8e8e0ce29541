"""looker_dashboard_restore: restore Looker dashboards and Looks on request (manual trigger)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import Param, dag, task

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

DOC = """
### looker_dashboard_restore (manual)

Trigger with `{"dashboard_ids": "12,34,look:56"}` (a Look is named `look:ID`). A trashed
dashboard or Look is moved out of the trash (same id, URL, schedules and alerts); a purged
dashboard is re-imported from its newest verified backup (LookML), a purged Look re-created from
its backed-up query, into its original folder, with a new id; schedules and alerts are
re-created from the backup; favorites and view history cannot be and are listed in the log.
Restoring twice creates no second copy.

**Triage**
- *purged and no backup is recorded*: the dashboard was deleted outside the guardian; it
  cannot be restored from here.
- *HTTP 422* on re-import: the original folder is gone; set `GUARDIAN_LOOKER__DEFAULT_FOLDER_ID`.
"""


@dag(
    dag_id="looker_dashboard_restore",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=[Tag.GUARDIAN, Tag.LOOKER],
    default_args=dagkit.default_args(retries=1, retry_delay_minutes=1),
    on_failure_callback=dagkit.on_failure,
    params={"dashboard_ids": Param("", type="string", description="Comma-separated dashboard ids; a Look as look:ID.")},
)
def looker_dashboard_restore() -> None:
    """Restore the given dashboards and Looks."""

    @task
    def restore(params: dict[str, object] | None = None) -> list[dict[str, object]]:
        from guardian.airflow import lineage
        from guardian.airflow.looker import client
        from guardian.looker import service

        ids = [i.strip() for i in str((params or {}).get("dashboard_ids") or "").split(",") if i.strip()]
        if not ids:
            raise ValueError('no dashboard ids: trigger with {"dashboard_ids": "12,34"}')
        settings = dagkit.task_settings()
        results = service.restore(settings, ids, client=client(settings))
        lineage.report(
            inputs=[f"{settings.storage_root}/{settings.looker.backup_prefix}/{settings.looker.instance_name}"],
            outputs=[f"looker://{settings.looker.instance_name}/dashboards"],
        )
        for r in results:
            print(f"{r.label}: {r.method}: {r.detail}")
            if r.not_restored:
                print(f"   not restored: {', '.join(r.not_restored)}")
        if any(not r.ok for r in results):
            raise RuntimeError(f"{sum(not r.ok for r in results)} restore(s) failed; see the log above")
        return [r.as_dict() for r in results]

    restore()


looker_dashboard_restore()
