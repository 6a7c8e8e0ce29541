"""The Looker page: the newest plan, what was warned, trashed and purged, keeps, backups; restore and keep.

Dashboards and Looks are listed together; each row carries its ``label`` (``12`` for a
dashboard, ``look:12`` for a Look), which is also what the restore and keep forms send.

Uses the Looker service's query functions (``latest_plan``, ``list_actions``, ``list_backups``,
``list_keeps``), ``guardian.looker.service.restore``, which un-trashes or re-imports a dashboard
and audits it with the acting user, and ``guardian.looker.service.keep``, which keeps a
dashboard out of the trash until a date (audited with the acting user).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guardian.web.data import plain, service_function

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store

TRASH_KINDS = ("soft_delete", "purge")


def _labelled(row: dict[str, Any]) -> dict[str, Any]:
    content_type = str(row.get("content_type") or "dashboard")
    content_id = str(row.get("dashboard_id"))
    row["content_type"] = content_type
    row["label"] = content_id if content_type == "dashboard" else f"{content_type}:{content_id}"
    return row


def page_data(settings: Settings, store: Store) -> dict[str, Any]:
    """Plan summary, trash/purge actions (restorable ones marked), backups."""
    latest = service_function("guardian.looker.plan", "latest_plan")
    list_actions = service_function("guardian.looker.plan", "list_actions")
    list_backups = service_function("guardian.looker.backup", "list_backups")
    restore_fn = service_function("guardian.looker.service", "restore")
    list_restores = service_function("guardian.looker.restore", "list_restores")
    out: dict[str, Any] = {
        "available": latest is not None,
        "restore_available": restore_fn is not None,
        "plan": None,
        "actions": [],
        "backups": [],
        "restorable": [],
        "restores": [],
        "warned": [],
        "keeps": [],
        "keep_available": service_function("guardian.looker.service", "keep") is not None,
    }
    if latest is None:
        return out
    plan = latest(store)
    if list_restores is not None:
        out["restores"] = [_labelled(plain(r)) for r in list_restores(store, limit=50)]
    # Newest successful restore per dashboard or Look (list_restores is newest first).
    restored: dict[str, dict[str, Any]] = {}
    for r in out["restores"]:
        if r.get("method") in ("untrashed", "reimported"):
            restored.setdefault(str(r["label"]), r)
    if plan is not None:
        out["plan"] = plain(plan)
        if list_actions is not None:
            actions = [_labelled(plain(a)) for a in list_actions(store, plan.id, kinds=TRASH_KINDS)]
            for a in actions:
                done = restored.get(str(a["label"]))
                a["restored_by"] = done.get("actor") if done else None
                a["restorable"] = a.get("state") == "done" and done is None
            out["actions"] = actions
            out["restorable"] = [a for a in actions if a["restorable"]]
            out["warned"] = [_labelled(plain(a)) for a in list_actions(store, plan.id, kinds=["warn"])]
    list_keeps = service_function("guardian.looker.ledger", "list_keeps")
    if list_keeps is not None:
        out["keeps"] = [_labelled(plain(k)) for k in list_keeps(store, limit=50)]
    if list_backups is not None:
        out["backups"] = [_labelled(plain(b)) for b in list_backups(store, limit=50)]
    return out


def restore(settings: Settings, store: Store, user: str, dashboard_id: str, audit_web: Callable[..., None]) -> str:
    """Restore one dashboard as this user; a one-line result for the page."""
    restore_fn = service_function("guardian.looker.service", "restore")
    if restore_fn is None:
        audit_web(
            user,
            "web.looker.restore",
            _target(dashboard_id),
            outcome="failed",
            after={"error": "restore is not available"},
        )
        return "Restore is not available in this deployment."
    try:
        results = restore_fn(settings, [dashboard_id], actor=f"web:{user}")
    except Exception as exc:  # shown to the user; the service audits what it did
        from guardian.logging import mask_text

        audit_web(
            user,
            "web.looker.restore",
            _target(dashboard_id),
            outcome="failed",
            after={"error": mask_text(str(exc))[:300]},
        )
        return f"Restore of dashboard {dashboard_id} failed: {mask_text(str(exc))[:300]}"
    lines = []
    for r in results:
        info = plain(r)
        new_id = info.get("new_dashboard_id")
        lines.append(
            f"{_noun(str(info.get('content_type') or 'dashboard'))} {info.get('dashboard_id')}: {info.get('method')}"
            + (f" as {new_id}" if new_id and new_id != info.get("dashboard_id") else "")
            + (f" ({info.get('detail')})" if info.get("detail") else "")
        )
    return "; ".join(lines) or f"Dashboard {dashboard_id}: nothing to restore."


def _target(name: str) -> str:
    """The web audit target of what a person named: ``looker:dashboard:12`` or ``looker:look:12``."""
    kind, sep, ident = name.partition(":")
    return f"looker:look:{ident}" if sep and kind == "look" else f"looker:dashboard:{name}"


def _noun(content_type: str) -> str:
    return "Dashboard" if content_type == "dashboard" else "Look"


def keep(
    settings: Settings,
    store: Store,
    user: str,
    dashboard_id: str,
    until: str,
    reason: str,
    audit_web: Callable[..., None],
) -> str:
    """Keep one dashboard until a date as this user; a one-line result for the page."""
    keep_fn = service_function("guardian.looker.service", "keep")
    if keep_fn is None:
        audit_web(
            user,
            "web.looker.keep",
            _target(dashboard_id),
            outcome="failed",
            after={"error": "keep is not available"},
        )
        return "Keep is not available in this deployment."
    try:
        kept = keep_fn(settings, dashboard_id, until=until, reason=reason, actor=f"web:{user}")
    except Exception as exc:  # shown to the user; a refused keep changes nothing
        from guardian.logging import mask_text

        audit_web(
            user,
            "web.looker.keep",
            _target(dashboard_id),
            outcome="failed",
            after={"error": mask_text(str(exc))[:300]},
        )
        return f"{_named(dashboard_id)} not kept: {mask_text(str(exc))[:300]}"
    info = plain(kept)
    return f"{_named(dashboard_id)} kept until {str(info.get('until'))[:10]}: {info.get('reason')}"


def _named(name: str) -> str:
    """'Dashboard 12' or 'Look 12' from what the form sent (``12`` or ``look:12``)."""
    return f"Look {name[5:]}" if name.lower().startswith("look:") else f"Dashboard {name}"
