"""Restore dashboards and Looks: un-trash, or re-create a purged one from its backup, schedules too.

Content is named as people name it: ``12`` (dashboard 12) or ``look:12`` (Look 12). A Look
goes through the same steps as a dashboard: un-trashed with ``update_look`` (``deleted:
false``), or, purged, re-created from its backup's query (``create_query``, which returns
Looker's own identical query) and ``create_look`` into its original folder; its schedules
come back pointing at the restored Look.

A trashed dashboard comes back with ``PATCH {"deleted": false}``, keeping its id and URL. A
purged one is re-created from the newest verified backup with ``POST /dashboards/lookml``
into its original folder (or ``GUARDIAN_LOOKER__DEFAULT_FOLDER_ID`` when that folder is gone);
it gets a new id. The LookML keeps its ``preferred_slug`` (so the old slug URL works again)
unless a live dashboard holds that slug: Looker would overwrite that dashboard.

Either way every schedule and alert of the backup that Looker does not have (any more) is
re-created, pointing at the restored dashboard and its tiles; anything that could not be
restored (favorites, view history, the old id, a refused schedule...) is reported. Restoring
the same purged dashboard twice does not create a second copy. Every restore is audited.

Query function for the CLI and the web UI: :func:`list_restores`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from guardian import audit
from guardian.errors import GuardianError
from guardian.looker.backup import NOT_RESTORABLE, backed_up, latest_backup, read_backup
from guardian.looker.client import LookerAPIError
from guardian.looker.plan import instance_target
from guardian.looker.policy import label, parse_ref
from guardian.looker.tables import looker_restores
from guardian.storage import Storage
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of restoring one dashboard or Look."""

    dashboard_id: str
    method: str
    """untrashed | reimported | noop | failed"""
    new_dashboard_id: str | None
    detail: str
    not_restored: tuple[str, ...] = ()
    content_type: str = "dashboard"

    @property
    def label(self) -> str:
        """``12`` or ``look:12``."""
        return label(self.content_type, self.dashboard_id)

    @property
    def ok(self) -> bool:
        """True unless the restore failed."""
        return self.method != "failed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "not_restored": list(self.not_restored), "ok": self.ok, "label": self.label}


def restore(
    settings: Settings,
    ids: list[str],
    *,
    actor: str | None = None,
    client: LookerClient,
    store: Store,
    storage: Storage,
) -> list[RestoreResult]:
    """Restore each dashboard (``12``) or Look (``look:12``): trashed: un-trash; purged: re-create from backup."""
    actor = actor or audit.default_actor()
    results = []
    for name in ids:
        content_type, dashboard_id = "dashboard", str(name)
        try:
            content_type, dashboard_id = parse_ref(name)
            result = _restore_one(settings, content_type, dashboard_id, actor, client, store, storage)
        except (GuardianError, ValueError) as exc:
            result = RestoreResult(dashboard_id, "failed", None, str(exc)[:900], content_type=content_type)
        _record(settings, store, actor, result)
        results.append(result)
    return results


def _restore_one(
    settings: Settings,
    content_type: str,
    dashboard_id: str,
    actor: str,
    client: LookerClient,
    store: Store,
    storage: Storage,
) -> RestoreResult:
    target = instance_target(settings, dashboard_id, content_type)
    fresh = client.content(content_type, dashboard_id)
    backup = latest_backup(store, settings.looker.instance_name, dashboard_id, content_type)
    noun = "dashboard" if content_type == "dashboard" else "Look"

    def result(method: str, new_id: str | None, detail: str, missing: tuple[str, ...] = ()) -> RestoreResult:
        return RestoreResult(dashboard_id, method, new_id, detail, missing, content_type)

    if fresh is not None:
        if not fresh.get("deleted"):
            return result("noop", None, "not in the trash; nothing to restore")
        audit.record(
            "looker.restore",
            target,
            actor=actor,
            before={"deleted": True, "deleted_at": fresh.get("deleted_at")},
            outcome="started",
            store=store,
        )
        after = client.set_content_deleted(content_type, dashboard_id, False)
        document = read_backup(storage, backup.key, backup.sha256) if backup else {}
        restored, missing = _restore_schedules_and_alerts(client, document, after, content_type, same_dashboard=True)
        return result(
            "untrashed",
            dashboard_id,
            f"moved out of the trash into folder {after.get('folder_id')}; id and URL kept; {restored}",
            tuple(missing),
        )
    previous = _previous_reimport(settings, store, content_type, dashboard_id)
    if previous and client.content(content_type, previous) is not None:
        return result("noop", previous, f"already re-created as {noun} {previous}")
    if backup is None:
        return result("failed", None, "purged and no backup is recorded; it cannot be restored")
    document = read_backup(storage, backup.key, backup.sha256)
    if content_type == "look":
        return _recreate_look(settings, dashboard_id, document, backup.uri, actor, client, store, target)
    lookml = str(document.get("lookml") or "")
    if not lookml:
        return RestoreResult(dashboard_id, "failed", None, f"backup {backup.uri} holds no LookML")
    original = document.get("dashboard") or {}
    folder_id = str(original.get("folder_id") or "")
    lookml, slug_note = _slug_safe(client, lookml)
    audit.record(
        "looker.restore",
        target,
        actor=actor,
        before={"exists": False, "backup": backup.uri, "folder_id": folder_id},
        outcome="started",
        store=store,
    )
    try:
        created = client.import_lookml(folder_id, lookml)
    except LookerAPIError as exc:
        fallback = settings.looker.default_folder_id
        if exc.status not in (404, 422) or not fallback or fallback == folder_id:
            raise
        created = client.import_lookml(fallback, lookml)
        folder_id = f"{fallback} (original folder {folder_id} is gone)"
    new_id = str(created["id"])
    restored, missing = _restore_schedules_and_alerts(client, document, created, content_type, same_dashboard=False)
    return result(
        "reimported",
        new_id,
        f"re-imported from {backup.uri} as dashboard {new_id} in folder {folder_id}{slug_note}; {restored}",
        (*NOT_RESTORABLE, *missing),
    )


def _recreate_look(
    settings: Settings,
    look_id: str,
    document: dict[str, Any],
    uri: str,
    actor: str,
    client: LookerClient,
    store: Store,
    target: str,
) -> RestoreResult:
    """A purged Look: its query again (create_query), then create_look into its folder (or the default)."""
    original = backed_up(document)
    folder_id = str(original.get("folder_id") or "")
    audit.record(
        "looker.restore",
        target,
        actor=actor,
        before={"exists": False, "backup": uri, "folder_id": folder_id},
        outcome="started",
        store=store,
    )
    try:
        created = client.create_look({**original, "folder_id": folder_id})
    except LookerAPIError as exc:
        fallback = settings.looker.default_folder_id
        if exc.status not in (404, 422) or not fallback or fallback == folder_id:
            raise
        created = client.create_look({**original, "folder_id": fallback})
        folder_id = f"{fallback} (original folder {folder_id} is gone)"
    new_id = str(created["id"])
    restored, missing = _restore_schedules_and_alerts(client, document, created, "look", same_dashboard=False)
    return RestoreResult(
        look_id,
        "reimported",
        new_id,
        f"re-created from {uri} as Look {new_id} in folder {folder_id} (same query {created.get('query_id')}); "
        f"{restored}",
        (*(n.replace("dashboard", "Look") for n in NOT_RESTORABLE), *missing),
        "look",
    )


def _slug_safe(client: LookerClient, lookml: str) -> tuple[str, str]:
    """The LookML to import, without ``preferred_slug`` when a live dashboard holds that slug."""
    match = re.search(r"^\s*preferred_slug:\s*(\S+)\s*$", lookml, re.MULTILINE)
    if not match:
        return lookml, ""
    holders = client.dashboards_with_slug(match.group(1))
    if not holders:
        return lookml, ""
    stripped = lookml[: match.start()] + lookml[match.end() :].lstrip("\n")
    return stripped, f" (new slug: {match.group(1)} belongs to dashboard {holders[0].get('id')})"


def _schedule_key(plan: dict[str, Any]) -> tuple[str, str, str]:
    return (str(plan.get("name")), str(plan.get("crontab") or plan.get("datagroup")), str(plan.get("user_id")))


def _alert_key(alert: dict[str, Any], element: str) -> tuple[str, str, str, str]:
    field = alert.get("field") or {}
    name = field.get("name") if isinstance(field, dict) else field
    return (element, str(name), str(alert.get("comparison_type")), str(alert.get("threshold")))


def _restore_schedules_and_alerts(
    client: LookerClient,
    document: dict[str, Any],
    target: dict[str, Any],
    content_type: str = "dashboard",
    *,
    same_dashboard: bool,
) -> tuple[str, list[str]]:
    """Re-create the backup's schedules and alerts that ``target`` lacks; (summary, what failed)."""
    target_id = str(target["id"])
    schedules = list(document.get("schedules") or [])
    alerts = list(document.get("alerts") or [])
    missing: list[str] = []
    made_s = made_a = 0
    present = {_schedule_key(p) for p in client.scheduled_plans_for(content_type, target_id)} if schedules else set()
    for plan in schedules:
        if _schedule_key(plan) in present:
            continue
        try:
            client.create_scheduled_plan({**plan, f"{content_type}_id": target_id})
            made_s += 1
        except (GuardianError, ValueError, TypeError) as exc:
            missing.append(f"schedule {plan.get('name')!r} ({str(exc)[:120]})")
    old_elements = [str(e.get("id")) for e in backed_up(document).get("dashboard_elements") or []]
    new_elements = [str(e.get("id")) for e in target.get("dashboard_elements") or []]
    # Tiles keep their order through the LookML export and import, so position maps old ids to new.
    element_map = (
        {e: e for e in old_elements} if same_dashboard else dict(zip(old_elements, new_elements, strict=False))
    )
    live: set[tuple[str, str, str, str]] = set()
    if alerts:
        live = {
            _alert_key(a, str(a.get("dashboard_element_id")))
            for a in client.all_alerts()
            if str(a.get("dashboard_element_id")) in set(element_map.values())
        }
    for alert in alerts:
        element = element_map.get(str(alert.get("dashboard_element_id")))
        if element is None:
            missing.append(f"alert {alert.get('custom_title') or alert.get('id')!r} (its tile is gone)")
            continue
        if _alert_key(alert, element) in live:
            continue
        try:
            client.create_alert({**alert, "dashboard_element_id": element})
            made_a += 1
        except (GuardianError, ValueError, TypeError) as exc:
            missing.append(f"alert {alert.get('custom_title') or alert.get('id')!r} ({str(exc)[:120]})")
    summary = (
        f"{len(schedules)} schedule(s) and {len(alerts)} alert(s) in the backup, "
        f"{made_s} schedule(s) and {made_a} alert(s) re-created"
    )
    return summary, missing


def _previous_reimport(settings: Settings, store: Store, content_type: str, dashboard_id: str) -> str | None:
    with store.read() as conn:
        row = conn.execute(
            select(looker_restores.c.new_dashboard_id)
            .where(
                looker_restores.c.instance == settings.looker.instance_name,
                looker_restores.c.content_type == content_type,
                looker_restores.c.dashboard_id == dashboard_id,
                looker_restores.c.method == "reimported",
            )
            .order_by(looker_restores.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None else str(row.new_dashboard_id)


def _record(settings: Settings, store: Store, actor: str, result: RestoreResult) -> None:
    with store.write() as conn:
        conn.execute(
            insert(looker_restores).values(
                content_type=result.content_type,
                ts=datetime.now(UTC),
                instance=settings.looker.instance_name,
                dashboard_id=result.dashboard_id,
                method=result.method,
                new_dashboard_id=result.new_dashboard_id,
                detail=result.detail[:1000],
                actor=actor,
            )
        )
        audit.append(
            conn,
            actor=actor,
            action="looker.restore",
            target=instance_target(settings, result.dashboard_id, result.content_type),
            before=None,
            after=result.as_dict(),
            outcome="ok" if result.ok else "failed",
            context=audit.current_context(),
        )


def list_restores(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    """Recent restores, newest first."""
    with store.read() as conn:
        rows = conn.execute(select(looker_restores).order_by(looker_restores.c.id.desc()).limit(limit)).all()
    return [
        {
            "id": int(r.id),
            "ts": (r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=UTC)).isoformat(),
            "dashboard_id": r.dashboard_id,
            "content_type": r.content_type,
            "label": label(r.content_type, r.dashboard_id),
            "method": r.method,
            "new_dashboard_id": r.new_dashboard_id,
            "detail": r.detail,
            "actor": r.actor,
        }
        for r in rows
    ]
