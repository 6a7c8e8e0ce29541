"""Looker notifications: owner warnings, owner trash notices, the team summary.

Sent through :mod:`guardian.notify` only when email / Slack are configured. Each owner gets
one email per plan per kind; the ``owner_notified`` flag on the action rows makes a rerun
send nothing twice, and the plan's ``notified_at`` does the same for the team summary.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from guardian import audit, notify
from guardian.looker.plan import Action, Plan, instance_target, list_actions, require_plan, set_plan_status
from guardian.looker.tables import looker_actions
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class NotifyReport:
    """What was sent."""

    warned_owners: int = 0
    trashed_owners: int = 0
    summary_email: bool = False
    summary_slack: bool = False
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


def restore_hint(dashboard_ids: list[str]) -> str:
    """How to get dashboards back, for messages."""
    ids = " ".join(dashboard_ids)
    return (
        f"To restore: `guardian looker restore {ids}`, or trigger the Airflow DAG looker_dashboard_restore "
        f'with {{"dashboard_ids": "{",".join(dashboard_ids)}"}}. Opening a dashboard before it is trashed keeps it.'
    )


def _owner_lines(actions: list[Action]) -> str:
    return "\n".join(
        f"- [{a.dashboard_id}] {a.title} (folder {a.folder_name or a.folder_id}): {a.reason}" for a in actions
    )


def warning_email(settings: Settings, owner: str, actions: list[Action]) -> tuple[str, str]:
    """Subject and text of an owner's warning."""
    subject = f"[guardian] {len(actions)} of your Looker dashboards will be moved to the trash soon"
    text = (
        f"Hello {owner},\n\nThese dashboards on Looker ({settings.looker.instance_name}) have not been opened for a "
        f"while and will be moved to the trash once they reach {settings.looker.soft_delete_days} days without "
        f"access:\n\n{_owner_lines(actions)}\n\nOpen a dashboard to keep it. Trashed dashboards can be restored; "
        f"they are permanently deleted after {settings.looker.purge_days} more days in the trash.\n"
    )
    return subject, text


def trashed_email(settings: Settings, owner: str, actions: list[Action]) -> tuple[str, str]:
    """Subject and text of an owner's trash notice."""
    subject = f"[guardian] {len(actions)} of your Looker dashboards were moved to the trash"
    text = (
        f"Hello {owner},\n\nThese dashboards on Looker ({settings.looker.instance_name}) were moved to the trash "
        f"(a backup of each is kept):\n\n{_owner_lines(actions)}\n\n"
        f"{restore_hint([a.dashboard_id for a in actions])}\nThey are permanently deleted after "
        f"{settings.looker.purge_days} days in the trash.\n"
    )
    return subject, text


def summary_text(settings: Settings, plan: Plan, actions: list[Action], backup_bytes: int) -> str:
    """The team summary of a plan and its apply."""
    by: dict[tuple[str, str], int] = defaultdict(int)
    for a in actions:
        by[(a.kind, a.state)] += 1
    failed = [a for a in actions if a.state == "failed"]
    link = f"{settings.notify.ui_base_url.rstrip('/')}/guardian/looker/plans/{plan.id}"
    lines = [
        f"Looker lifecycle plan {plan.id} on {plan.instance} ({plan.status})",
        f"inventory {plan.inventory_size} live, {plan.trash_size} in trash; plan counts {plan.counts}",
        "actions: " + ", ".join(f"{k}/{s}={n}" for (k, s), n in sorted(by.items())),
        f"backups written: {backup_bytes} bytes",
        f"failures: {len(failed)}" + "".join(f"\n  - {a.dashboard_id}: {a.outcome}" for a in failed[:20]),
        f"plan: {link}",
    ]
    return "\n".join(lines)


def send_notifications(
    settings: Settings,
    plan_id: int,
    *,
    client: LookerClient,
    store: Store,
    mode: str,
    backup_bytes: int = 0,
) -> NotifyReport:
    """Owner warnings and trash notices, then the team summary (each at most once per plan)."""
    report = NotifyReport()
    plan = require_plan(store, plan_id)
    actions = list_actions(store, plan_id)
    email = notify.email_configured(settings)
    warn = [a for a in actions if a.kind == "warn" and not a.owner_notified]
    if mode == "test":
        warn = warn[: settings.looker.test_mode_limit]
    trashed = [a for a in actions if a.trashed_by_guardian and not a.owner_notified]
    if mode == "dry_run":
        warn, trashed = [], []
        report.skipped.append("dry run: no owner emails")
    if not email and (warn or trashed):
        report.skipped.append("email not configured: owner emails not sent")
        warn, trashed = [], []
    owners = sorted({a.owner_id for a in warn + trashed if a.owner_id})
    emails = {str(u["id"]): (u.get("email"), u.get("display_name")) for u in client.users(owners)} if owners else {}
    for kind, group, build in (("warn", warn, warning_email), ("trashed", trashed, trashed_email)):
        by_owner: dict[str, list[Action]] = defaultdict(list)
        for a in group:
            by_owner[a.owner_id or ""].append(a)
        for owner_id, items in sorted(by_owner.items()):
            address, name = emails.get(owner_id, (None, None))
            if not address:
                report.skipped.append(f"owner {owner_id or '?'} has no email: {len(items)} dashboard(s)")
                continue
            subject, text = build(settings, str(name or address), items)
            notify.send_email(settings, [str(address)], subject, text)
            _mark_notified(settings, store, items, str(address), kind)
            if kind == "warn":
                report.warned_owners += 1
            else:
                report.trashed_owners += 1
    plan = require_plan(store, plan_id)
    applied_since = plan.last_applied_at is not None and (
        plan.notified_at is None or plan.last_applied_at > plan.notified_at
    )
    if plan.notified_at is None or applied_since:
        text = summary_text(settings, plan, list_actions(store, plan_id), backup_bytes)
        if email and settings.notify.email_to:
            notify.send_email(
                settings, settings.notify.email_to, f"[guardian] Looker lifecycle plan {plan.id} ({mode})", text
            )
            report.summary_email = True
        if notify.slack_configured(settings):
            notify.send_slack(settings, text)
            report.summary_slack = True
        if report.summary_email or report.summary_slack:
            set_plan_status(store, plan_id, require_plan(store, plan_id).status, notified_at=datetime.now(UTC))
    return report


def _mark_notified(settings: Settings, store: Store, items: list[Action], address: str, kind: str) -> None:
    with store.write() as conn:
        conn.execute(
            update(looker_actions)
            .where(looker_actions.c.id.in_([a.id for a in items]))
            .values(
                owner_notified=True,
                **({"state": "done", "outcome": f"owner warned ({address})"} if kind == "warn" else {}),
            )
        )
        audit.append(
            conn,
            actor=audit.default_actor(),
            action=f"looker.notify.{kind}",
            target=instance_target(settings),
            before=None,
            after={"to": address, "dashboards": [a.dashboard_id for a in items]},
            outcome="ok",
            context=audit.current_context(),
        )
