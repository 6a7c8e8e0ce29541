"""looker_dashboard_deletion: monthly warn / back up / trash / purge of inactive Looker dashboards."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import Param, dag, task

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

DOC = """
### looker_dashboard_deletion (monthly, 1st at 00:00 UTC)

Keeps Looker clean without losing a dashboard. `restore` (only when `restore_ids` is given)
un-trashes or re-imports dashboards; `plan` inventories the instance (dashboard search + one
System Activity query) and persists a plan; `apply` re-checks, backs up (JSON + LookML,
write-once, verified) and trashes / purges; `notify` emails owners and the team.

**Modes** (param `mode`): `dry_run` (default: plan only, nothing changes), `test` (only the
first N actions, `GUARDIAN_LOOKER__TEST_MODE_LIMIT`), `apply` (everything, bounded by the
circuit breaker).

**Triage**
- `apply` fails with *refused by the circuit breaker*: the plan trashes more than
  `max_deletions` / `max_fraction`. Review it with `guardian looker plan --show ID`; if it is
  right, `guardian looker apply ID --override-breaker`.
- `apply` fails with *N failed*: the failures are listed in the log and in
  `guardian looker plan --show ID`; clear the task to retry: finished actions are not redone.
- Killed or timed-out `apply`: just clear / rerun it; every action is resumable and re-checked.
- Looker errors (HTTP 401/404 on login): check the `looker_default` connection
  (login = client id, password = client secret, host = Looker URL).
- A dashboard trashed by mistake: `guardian looker restore ID` or the looker_dashboard_restore DAG.
"""


@dag(
    dag_id="looker_dashboard_deletion",
    schedule="0 0 1 * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC,
    tags=[Tag.GUARDIAN, Tag.LOOKER, Tag.DESTRUCTIVE],
    default_args=dagkit.default_args(retries=2, retry_delay_minutes=2),
    on_failure_callback=dagkit.on_failure,
    params={
        "mode": Param("dry_run", enum=["dry_run", "test", "apply"], description="dry_run plans only."),
        "restore_ids": Param("", type="string", description="Comma-separated dashboard ids to restore first."),
    },
)
def looker_dashboard_deletion() -> None:
    """Restore (optional), plan, apply, notify."""

    @task
    def restore(params: dict[str, object] | None = None) -> list[dict[str, object]]:
        from guardian.airflow import lineage
        from guardian.airflow.looker import client
        from guardian.looker import service

        ids = [i.strip() for i in str((params or {}).get("restore_ids") or "").split(",") if i.strip()]
        if not ids:
            return []
        settings = dagkit.task_settings()
        results = service.restore(settings, ids, client=client(settings))
        lineage.report(
            inputs=[f"{settings.storage_root}/{settings.looker.backup_prefix}/{settings.looker.instance_name}"],
            outputs=[f"looker://{settings.looker.instance_name}/dashboards"],
        )
        for r in results:
            print(f"{r.dashboard_id}: {r.method}: {r.detail}")
        if any(not r.ok for r in results):
            raise RuntimeError(f"{sum(not r.ok for r in results)} restore(s) failed; see the log above")
        return [r.as_dict() for r in results]

    @task
    def plan(restored: list[dict[str, object]]) -> int:
        from guardian.airflow import lineage
        from guardian.airflow.looker import client
        from guardian.looker import service

        settings = dagkit.task_settings()
        made = service.plan(settings, client=client(settings))
        lineage.report(
            inputs=[f"looker://{settings.looker.instance_name}/dashboards"], outputs=["guardian://store/looker_plans"]
        )
        print(f"plan {made.id}: {made.counts} ({made.api_calls} API calls, hash {made.content_hash[:16]})")
        return made.id

    @task
    def apply(plan_id: int, params: dict[str, object] | None = None) -> dict[str, object]:
        from guardian.airflow import lineage
        from guardian.airflow.looker import client
        from guardian.looker import service

        mode = str((params or {}).get("mode") or "dry_run")
        if mode == "dry_run":
            print(f"dry run: plan {plan_id} made, nothing applied (`guardian looker plan --show {plan_id}`)")
            return {"plan_id": plan_id, "mode": mode, "backup_bytes": 0}
        from airflow.providers.common.compat.sdk import AirflowFailException

        from guardian.errors import SafetyGateTripped

        settings = dagkit.task_settings()
        try:
            report = service.apply(
                settings, plan_id, mode="test" if mode == "test" else "apply", client=client(settings)
            )
        except SafetyGateTripped as exc:
            # A refused plan stays refused: retrying the task cannot change the answer.
            raise AirflowFailException(str(exc)) from exc
        lineage.report(
            inputs=[f"looker://{settings.looker.instance_name}/dashboards"],
            outputs=[
                f"{settings.storage_root}/{settings.looker.backup_prefix}/{settings.looker.instance_name}",
                f"looker://{settings.looker.instance_name}/dashboards",
            ],
        )
        for outcome in report.outcomes:
            print(f"{outcome['dashboard_id']} {outcome['kind']}: {outcome['state']}: {outcome['note']}")
        if report.failed:
            raise RuntimeError(f"plan {plan_id}: {report.failed} action(s) failed; clear this task to retry them")
        return {k: v for k, v in report.as_dict().items() if k != "outcomes"}

    @task
    def notify(applied: dict[str, object], params: dict[str, object] | None = None) -> dict[str, object]:
        from guardian.airflow.looker import client
        from guardian.looker import service

        settings = dagkit.task_settings()
        mode = str((params or {}).get("mode") or "dry_run")
        backup_bytes = int(str(applied.get("backup_bytes") or 0))
        sent = service.notify(
            settings, int(str(applied["plan_id"])), mode=mode, client=client(settings), backup_bytes=backup_bytes
        )
        return sent.as_dict()

    notify(apply(plan(restore())))


looker_dashboard_deletion()
