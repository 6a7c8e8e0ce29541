"""Entry points shared by the CLI, the DAGs and the web UI: settings in, results out.

Each function opens what it needs from the settings (store, storage, Looker client) unless
given one. The web UI uses :func:`restore`, :func:`keep` and the query functions re-exported here:
:func:`latest_plan`, :func:`get_plan`, :func:`list_plans`, :func:`list_actions`,
:func:`list_backups`, :func:`list_restores`, :func:`list_keeps`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from guardian.looker.apply import ApplyReport, Mode, apply_plan, override_breaker
from guardian.looker.backup import list_backups
from guardian.looker.ledger import Keep, list_keeps
from guardian.looker.ledger import keep as _keep
from guardian.looker.messages import NotifyReport, send_notifications, send_warnings
from guardian.looker.plan import Plan, get_plan, latest_plan, list_actions, list_plans, make_plan
from guardian.looker.restore import RestoreResult, list_restores
from guardian.looker.restore import restore as _restore
from guardian.storage import default_storage
from guardian.store import get_store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

__all__ = [
    "apply",
    "get_plan",
    "keep",
    "latest_plan",
    "list_actions",
    "list_backups",
    "list_keeps",
    "list_plans",
    "list_restores",
    "notify",
    "override_breaker",
    "plan",
    "restore",
    "warn",
]


def _client(settings: Settings, client: LookerClient | None) -> LookerClient:
    if client is not None:
        return client
    from guardian.looker.client import connect

    return connect(settings)


def plan(settings: Settings, *, client: LookerClient | None = None, actor: str | None = None) -> Plan:
    """Inventory the instance and persist a plan (changes nothing in Looker)."""
    return make_plan(settings, _client(settings, client), get_store(settings), actor=actor)


def apply(
    settings: Settings,
    plan_id: int,
    *,
    mode: Mode = "apply",
    client: LookerClient | None = None,
    actor: str | None = None,
) -> ApplyReport:
    """Back up, then trash / purge the plan's dashboards and Looks (test mode: the first N)."""
    return apply_plan(
        settings,
        plan_id,
        client=_client(settings, client),
        store=get_store(settings),
        storage=default_storage(settings),
        mode=mode,
        actor=actor,
    )


def notify(
    settings: Settings, plan_id: int, *, mode: str, client: LookerClient | None = None, backup_bytes: int = 0
) -> NotifyReport:
    """Owner warnings / trash notices and the team summary for a plan."""
    return send_notifications(
        settings,
        plan_id,
        client=_client(settings, client),
        store=get_store(settings),
        mode=mode,
        backup_bytes=backup_bytes,
    )


def restore(
    settings: Settings, ids: list[str], *, actor: str | None = None, client: LookerClient | None = None
) -> list[RestoreResult]:
    """Restore dashboards (``12``) and Looks (``look:12``): un-trash, or re-create a purged one from its backup."""
    return _restore(
        settings,
        ids,
        actor=actor,
        client=_client(settings, client),
        store=get_store(settings),
        storage=default_storage(settings),
    )


def warn(settings: Settings, plan_id: int, *, client: LookerClient | None = None) -> NotifyReport:
    """Warn the owners of a plan's dashboards and Looks (any mode; recorded in the warning ledger)."""
    return send_warnings(settings, plan_id, client=_client(settings, client), store=get_store(settings))


def keep(
    settings: Settings,
    dashboard_id: str,
    *,
    until: str | date | datetime,
    reason: str,
    actor: str,
) -> Keep:
    """Keep a dashboard (``12``) or Look (``look:12``) out of the trash until a date (audited)."""
    return _keep(settings, get_store(settings), dashboard_id, until=until, reason=reason, actor=actor)
