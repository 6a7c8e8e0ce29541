"""Looker notifications: owner warnings (the ledger), owner trash notices, the team summary.

Sent through :mod:`guardian.notify` only when email / Slack are configured. Warnings go out on
every run whatever the mode (and before any apply, so a refused or failed apply still warns):
each warned dashboard gets a row in the warning ledger, which is what later allows its trash.
A dashboard already warned since its last access is not warned again. An owner who is gone,
disabled or has no email is replaced by the team address. Messages list an owner's Looks
apart from their dashboards, each named as the CLI takes it (``12``, ``look:12``). Trash notices go once per plan (the
``owner_notified`` flag), and the plan's ``notified_at`` does the same for the team summary.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from guardian import audit, notify
from guardian.errors import GuardianError
from guardian.looker.ledger import latest_warnings, record_warnings
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
    """How to get dashboards and Looks (``look:12``) back, for messages."""
    ids = " ".join(dashboard_ids)
    return (
        f"To restore: `guardian looker restore {ids}`, or trigger the Airflow DAG looker_dashboard_restore "
        f'with {{"dashboard_ids": "{",".join(dashboard_ids)}"}}. Opening a dashboard or Look before it is trashed '
        "keeps it."
    )


def _owner_lines(actions: list[Action]) -> str:
    sections = []
    for content_type, heading in (("dashboard", "Dashboards"), ("look", "Looks")):
        items = [a for a in actions if a.content_type == content_type]
        if items:
            lines = "\n".join(
                f"- [{a.label}] {a.title} (folder {a.folder_name or a.folder_id}): {a.reason}" for a in items
            )
            sections.append(f"{heading}:\n{lines}")
    return "\n\n".join(sections)


def _what(actions: list[Action]) -> str:
    """ "3 of your Looker dashboards", "2 of your Looker dashboards and 1 Look", "1 of your Looker Looks"."""
    dashboards = sum(1 for a in actions if a.content_type == "dashboard")
    looks = len(actions) - dashboards
    if not looks:
        return f"{dashboards} of your Looker dashboards"
    if not dashboards:
        return f"{looks} of your Looker Looks"
    return f"{dashboards} of your Looker dashboards and {looks} Look{'s' if looks > 1 else ''}"


def keep_hint(settings: Settings, dashboard_id: str) -> str:
    """How an owner keeps a dashboard (``12``) or Look (``look:12``), for messages."""
    link = f"{settings.notify.ui_base_url.rstrip('/')}/guardian/looker"
    return (
        f"`guardian looker keep {dashboard_id} --until YYYY-MM-DD --reason TEXT` "
        f"(at most {settings.looker.max_keep_days} days), or the Keep button on {link}"
    )


def warning_email(settings: Settings, owner: str, actions: list[Action]) -> tuple[str, str]:
    """Subject and text of an owner's warning."""
    subject = f"[guardian] {_what(actions)} will be moved to the trash soon"
    first = actions[0].label if actions else "ID"
    text = (
        f"Hello {owner},\n\nThese dashboards and Looks on Looker ({settings.looker.instance_name}) have not been "
        f"opened for a while. Each is moved to the trash once it reaches {settings.looker.soft_delete_days} days "
        f"without access, and never sooner than {settings.looker.warning_days} days after this email:\n\n"
        f"{_owner_lines(actions)}\n\n"
        f"To keep one: open it, or {keep_hint(settings, first)} (a Look is named look:ID). A dashboard or Look with "
        "an enabled schedule or alert is never trashed, nor a Look shown on a dashboard. Trashed content can be "
        "restored; it is permanently deleted after "
        f"{settings.looker.purge_days} more days in the trash (a backup is kept).\n"
    )
    return subject, text


def trashed_email(settings: Settings, owner: str, actions: list[Action]) -> tuple[str, str]:
    """Subject and text of an owner's trash notice."""
    subject = f"[guardian] {_what(actions)} were moved to the trash"
    text = (
        f"Hello {owner},\n\nThese dashboards and Looks on Looker ({settings.looker.instance_name}) were moved to "
        f"the trash (a backup of each is kept):\n\n{_owner_lines(actions)}\n\n"
        f"{restore_hint([a.label for a in actions])}\nThey are permanently deleted after "
        f"{settings.looker.purge_days} days in the trash.\n"
    )
    return subject, text


def summary_text(settings: Settings, plan: Plan, actions: list[Action], backup_bytes: int) -> str:
    """The team summary of a plan and its apply."""
    by: dict[tuple[str, str], int] = defaultdict(int)
    for a in actions:
        by[(a.kind, a.state)] += 1
    failed = [a for a in actions if a.state == "failed"]
    link = f"{settings.notify.ui_base_url.rstrip('/')}/guardian/looker"
    lines = [
        f"Looker lifecycle plan {plan.id} on {plan.instance} ({plan.status})",
        f"inventory {plan.inventory_size} live, {plan.trash_size} in trash; plan counts {plan.counts}",
        "actions: " + ", ".join(f"{k}/{s}={n}" for (k, s), n in sorted(by.items())),
        f"backups written: {backup_bytes} bytes",
        f"failures: {len(failed)}" + "".join(f"\n  - {a.label}: {a.outcome}" for a in failed[:20]),
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
    """Trash notices to owners, then the team summary (each at most once per plan).

    Warnings are :func:`send_warnings`, sent before any apply.
    """
    report = NotifyReport()
    plan = require_plan(store, plan_id)
    actions = list_actions(store, plan_id)
    email = notify.email_configured(settings)
    trashed = [a for a in actions if a.trashed_by_guardian and not a.owner_notified]
    if not email and trashed:
        report.skipped.append("email not configured: owner trash notices not sent")
        trashed = []
    recipients = _recipients(settings, client, trashed)
    for address, (name, items) in sorted(recipients.items()):
        subject, text = trashed_email(settings, name, items)
        notify.send_email(settings, [address], subject, text)
        _mark_notified(settings, store, items, address, "trashed")
        report.trashed_owners += 1
    for a in trashed:
        if not any(a in items for _, items in recipients.values()):
            report.skipped.append(f"owner {a.owner_id or '?'} of {a.label} has no address and no team address")
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


def team_address(settings: Settings) -> str | None:
    """Where warnings go when the owner cannot be reached."""
    return settings.looker.team_email or (settings.notify.email_to[0] if settings.notify.email_to else None)


def _recipients(settings: Settings, client: LookerClient, actions: list[Action]) -> dict[str, tuple[str, list[Action]]]:
    """address -> (greeting name, actions): the owner, or the team address when the owner is gone or disabled."""
    owners = sorted({a.owner_id for a in actions if a.owner_id})
    users = {str(u["id"]): u for u in client.users(owners)} if owners else {}
    team = team_address(settings)
    out: dict[str, tuple[str, list[Action]]] = {}
    for a in actions:
        user = users.get(a.owner_id or "")
        if user and user.get("email") and not user.get("is_disabled"):
            address, name = str(user["email"]), str(user.get("display_name") or user["email"])
        elif team:
            address, name = team, f"team (owner {a.owner_name or a.owner_id or 'unknown'} is gone or disabled)"
        else:
            continue
        out.setdefault(address, (name, []))[1].append(a)
    return out


def send_warnings(
    settings: Settings,
    plan_id: int,
    *,
    client: LookerClient,
    store: Store,
    now: datetime | None = None,
) -> NotifyReport:
    """Warn owners of the plan's ``warn`` dashboards not yet warned since their last access (any mode).

    Each delivered warning is written to the ledger in the same transaction as its audit event.
    """
    report = NotifyReport()
    now = now or datetime.now(UTC)
    instance = settings.looker.instance_name
    ledger = latest_warnings(store, instance)
    due = [
        a
        for a in list_actions(store, plan_id, kinds=["warn"])
        if not (a.ref in ledger and (a.last_access is None or ledger[a.ref] > a.last_access))
    ]
    if not due:
        return report
    if not notify.email_configured(settings):
        report.skipped.append(f"email not configured: {len(due)} warning(s) not sent, so nothing will be trashed")
        return report
    recipients = _recipients(settings, client, due)
    for address, (name, items) in sorted(recipients.items()):
        subject, text = warning_email(settings, name, items)
        try:
            notify.send_email(settings, [address], subject, text)
        except GuardianError as exc:
            report.skipped.append(f"warning to {address} failed: {exc}")
            continue
        with store.write() as conn:
            record_warnings(
                conn,
                instance,
                [(a.ref, a.last_access) for a in items],
                address=address,
                warned_at=now,
                plan_id=plan_id,
            )
            conn.execute(
                update(looker_actions)
                .where(looker_actions.c.id.in_([a.id for a in items]))
                .values(owner_notified=True, state="done", outcome=f"owner warned ({address})")
            )
            audit.append(
                conn,
                actor=audit.default_actor(),
                action="looker.notify.warn",
                target=instance_target(settings),
                before=None,
                after={"to": address, "dashboards": [a.label for a in items], "warned_at": now.isoformat()},
                outcome="ok",
                context=audit.current_context(),
            )
        report.warned_owners += 1
    for a in due:
        if not any(a in items for _, items in recipients.values()):
            report.skipped.append(f"owner {a.owner_id or '?'} of {a.label} has no address and no team address")
    return report


def plan_waits(settings: Settings, plan: Plan, why: str) -> bool:
    """Tell the team a plan was not applied and waits (rejected, no answer, refused); True when sent."""
    link = f"{settings.notify.ui_base_url.rstrip('/')}/guardian/looker"
    text = (
        f"Looker lifecycle plan {plan.id} on {plan.instance} was not applied: {why}. Nothing was trashed or purged. "
        f"It would trash {plan.counts.get('soft_delete', 0)} and purge {plan.counts.get('purge', 0)}; review it on "
        f"{link} or with `guardian looker plan --show {plan.id}`. Owners were warned as usual."
    )
    sent = False
    if notify.email_configured(settings) and settings.notify.email_to:
        notify.send_email(settings, settings.notify.email_to, f"[guardian] Looker plan {plan.id} waits", text)
        sent = True
    if notify.slack_configured(settings):
        notify.send_slack(settings, text)
        sent = True
    return sent


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
            after={"to": address, "dashboards": [a.label for a in items]},
            outcome="ok",
            context=audit.current_context(),
        )
