"""looker_dashboard_deletion: monthly warn / approve / back up / trash / purge of inactive dashboards and Looks."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.common.compat.sdk import Param, TriggerRule, dag, task

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag
from guardian.airflow.looker import APPROVAL_TIMEOUT_HOURS, approval_operator_class

DOC = """
### looker_dashboard_deletion (monthly, 1st at 00:00 UTC)

Keeps Looker clean without losing a dashboard or a Look (Looks go through the same steps; a
Look is named `look:ID`). `restore` (only when `restore_ids` is given) un-trashes or re-creates
dashboards and Looks; `plan` inventories the instance (dashboard and Look search, System
Activity, every schedule and alert) and persists a plan; `warn` emails the owners of inactive
dashboards and unused Looks (always, whatever the mode: nothing is trashed until 14+ days after
its owner was warned); `gate` picks the path; `approve` (Airflow 3) waits for a person to approve the
plan in the Airflow UI (Browse > Required actions), showing its counts and a link to the Looker
page of the Guardian UI; `apply` re-checks, backs up (JSON + LookML + schedules + alerts) and
trashes / purges; `report` sends trash notices and the team summary, or says the plan waits.

**Modes** (param `mode`): `scheduled` (default: `GUARDIAN_LOOKER__SCHEDULED_MODE`, itself
`dry_run` unless set), `dry_run` (plan and warn, nothing changes), `test` (only the first N
actions), `apply` (everything, bounded by the rolling circuit breaker). `skip_approval=true`
on a manual trigger means the person triggering is the approval.

**Triage**
- `approve` waits: approve or reject the plan in the Airflow UI; no answer in 72 hours counts
  as Reject, nothing changes and the team is told the plan waits.
- `apply` fails with *refused by the circuit breaker*: trashes or purges in the rolling
  window would pass `max_deletions` / `max_purges` / `max_fraction`. Review the plan
  (`guardian looker plan --show ID`); if it is right, `guardian looker apply ID --override-breaker`.
- *cannot be applied: plan N is newer / hours old*: only the newest plan, within
  `max_plan_age_hours`, applies; trigger a new run.
- *parked* dashboards: their backup could not be made; the run goes on, the next one retries.
- `apply` fails with *N failed*: clear the task to retry: finished actions are not redone.
- Killed or timed-out `apply`: just clear / rerun it; every action is resumable and re-checked.
- Looker errors (HTTP 401/404 on login): check the `looker_default` connection.
- A dashboard or Look trashed by mistake: `guardian looker restore ID` (`look:ID` for a Look) or the
  looker_dashboard_restore DAG.
"""

ApprovalOperator = approval_operator_class()


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
        "mode": Param(
            "scheduled",
            enum=["scheduled", "dry_run", "test", "apply"],
            description="scheduled: GUARDIAN_LOOKER__SCHEDULED_MODE. dry_run plans and warns only.",
        ),
        "skip_approval": Param(
            False, type="boolean", description="Manual runs: the person triggering approves (no approval step)."
        ),
        "restore_ids": Param(
            "", type="string", description="Dashboard ids (a Look: look:ID), comma-separated, to restore first."
        ),
    },
)
def looker_dashboard_deletion() -> None:
    """Restore (optional), plan, warn, approve, apply, report."""

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
            print(f"{r.label}: {r.method}: {r.detail}")
        if any(not r.ok for r in results):
            raise RuntimeError(f"{sum(not r.ok for r in results)} restore(s) failed; see the log above")
        return [r.as_dict() for r in results]

    @task
    def plan(restored: list[dict[str, object]], params: dict[str, object] | None = None) -> dict[str, object]:
        from guardian.airflow import lineage
        from guardian.airflow.looker import client, resolve_mode
        from guardian.looker import service

        settings = dagkit.task_settings()
        made = service.plan(settings, client=client(settings))
        lineage.report(
            inputs=[f"looker://{settings.looker.instance_name}/dashboards"], outputs=["guardian://store/looker_plans"]
        )
        print(f"plan {made.id}: {made.counts} ({made.api_calls} API calls, hash {made.content_hash[:16]})")
        counts = made.counts
        return {
            "plan_id": made.id,
            "mode": resolve_mode((params or {}).get("mode"), settings.looker.scheduled_mode),
            "summary": (
                f"trash {counts.get('soft_delete', 0)}, purge {counts.get('purge', 0)}, warn {counts.get('warn', 0)}, "
                f"excluded {counts.get('skip', 0)} of {made.inventory_size} live and {made.trash_size} trashed "
                f"(Looks among them: {counts.get('looks_live', 0)} live, {counts.get('looks_trashed', 0)} trashed)"
            ),
            "link": f"{settings.notify.ui_base_url.rstrip('/')}/guardian/looker",
        }

    @task
    def warn(planned: dict[str, object]) -> dict[str, object]:
        from guardian.airflow.looker import client
        from guardian.looker import service

        settings = dagkit.task_settings()
        report = service.warn(settings, int(str(planned["plan_id"])), client=client(settings))
        print(f"warnings: {report.as_dict()}")
        return report.as_dict()

    @task.branch
    def gate(
        planned: dict[str, object], warned: dict[str, object], params: dict[str, object] | None = None
    ) -> list[str]:
        from guardian.airflow.looker import approval_operator_class, route

        mode = str(planned["mode"])
        skip = bool((params or {}).get("skip_approval"))
        chosen = route(mode, skip_approval=skip, approval_available=approval_operator_class() is not None)
        print(f"mode {mode}, skip_approval={skip}: {chosen}")
        return chosen

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def apply(planned: dict[str, object]) -> dict[str, object]:
        from airflow.providers.common.compat.sdk import AirflowFailException

        from guardian.airflow import lineage
        from guardian.airflow.looker import client
        from guardian.errors import SafetyGateTripped
        from guardian.looker import service

        plan_id, mode = int(str(planned["plan_id"])), str(planned["mode"])
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
            print(f"{outcome['label']} {outcome['kind']}: {outcome['state']}: {outcome['note']}")
        if report.failed:
            raise RuntimeError(f"plan {plan_id}: {report.failed} action(s) failed; clear this task to retry them")
        return {k: v for k, v in report.as_dict().items() if k != "outcomes"}

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def report(planned: dict[str, object]) -> dict[str, object]:
        from airflow.providers.common.compat.sdk import AirflowFailException

        from guardian.airflow.looker import client
        from guardian.looker import service
        from guardian.looker.messages import plan_waits
        from guardian.store import get_store

        settings = dagkit.task_settings()
        store = get_store(settings)
        plan_id, mode = int(str(planned["plan_id"])), str(planned["mode"])
        made = service.get_plan(store, plan_id)
        assert made is not None
        if mode != "dry_run" and made.status not in ("applied", "partial", "applying"):
            why = f"status {made.status} (rejected, no approval within the timeout, or refused)"
            print(f"plan {plan_id} waits: {why}; alert sent: {plan_waits(settings, made, why)}")
            if made.status in ("refused", "stale"):
                raise AirflowFailException(f"plan {plan_id} was {made.status}; see the apply task's log")
            return {"plan_id": plan_id, "status": made.status, "waits": True}
        sent = service.notify(settings, plan_id, mode=mode, client=client(settings))
        failed = [a.label for a in service.list_actions(store, plan_id, states=["failed"])]
        if failed:
            raise AirflowFailException(f"plan {plan_id}: actions failed for {failed[:20]}; clear apply to retry")
        return {"plan_id": plan_id, "status": made.status, **sent.as_dict()}

    planned = plan(restore())
    chosen = gate(planned, warn(planned))
    applied = apply(planned)
    reported = report(planned)
    chosen >> [applied, reported]
    if ApprovalOperator is not None:
        approve = ApprovalOperator(
            task_id="approve",
            subject="Apply Looker plan {{ ti.xcom_pull(task_ids='plan')['plan_id'] }}?",
            body=(
                "Looker lifecycle plan {{ ti.xcom_pull(task_ids='plan')['plan_id'] }} "
                "({{ ti.xcom_pull(task_ids='plan')['mode'] }} mode): "
                "{{ ti.xcom_pull(task_ids='plan')['summary'] }}.\n\n"
                "Review it on {{ ti.xcom_pull(task_ids='plan')['link'] }} before approving. Owners were warned; "
                "every dashboard and Look is backed up before it is trashed and can be restored."
            ),
            defaults="Reject",
            response_timeout=timedelta(hours=APPROVAL_TIMEOUT_HOURS),
        )
        chosen >> approve >> applied
    applied >> reported


looker_dashboard_deletion()
