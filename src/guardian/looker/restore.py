"""Restore dashboards: un-trash, or re-import a purged one from its LookML backup.

A trashed dashboard comes back with ``PATCH {"deleted": false}``, keeping its id, URL,
schedules and alerts. A purged one is re-created from the newest verified backup with
``POST /dashboards/lookml`` into its original folder (or ``GUARDIAN_LOOKER__DEFAULT_FOLDER_ID``
when that folder is gone); it gets a new id, and what LookML does not carry (alerts,
schedules, favorites, view history, the old id and URL) is reported. Restoring the same
purged dashboard twice does not create a second copy. Every restore is audited and recorded.

Query function for the CLI and the web UI: :func:`list_restores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from guardian import audit
from guardian.errors import GuardianError
from guardian.looker.backup import NOT_RESTORABLE, latest_backup, read_backup
from guardian.looker.client import LookerAPIError
from guardian.looker.plan import instance_target
from guardian.looker.tables import looker_restores
from guardian.storage import Storage
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of restoring one dashboard."""

    dashboard_id: str
    method: str
    """untrashed | reimported | noop | failed"""
    new_dashboard_id: str | None
    detail: str
    not_restored: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless the restore failed."""
        return self.method != "failed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "not_restored": list(self.not_restored), "ok": self.ok}


def restore(
    settings: Settings,
    ids: list[str],
    *,
    actor: str | None = None,
    client: LookerClient,
    store: Store,
    storage: Storage,
) -> list[RestoreResult]:
    """Restore each dashboard id (trashed: un-trash; purged: re-import from backup)."""
    actor = actor or audit.default_actor()
    results = []
    for dashboard_id in ids:
        try:
            result = _restore_one(settings, dashboard_id, actor, client, store, storage)
        except (GuardianError, ValueError) as exc:
            result = RestoreResult(dashboard_id, "failed", None, str(exc)[:900])
        _record(settings, store, actor, result)
        results.append(result)
    return results


def _restore_one(
    settings: Settings, dashboard_id: str, actor: str, client: LookerClient, store: Store, storage: Storage
) -> RestoreResult:
    target = instance_target(settings, dashboard_id)
    fresh = client.dashboard(dashboard_id)
    if fresh is not None:
        if not fresh.get("deleted"):
            return RestoreResult(dashboard_id, "noop", None, "not in the trash; nothing to restore")
        audit.record(
            "looker.restore",
            target,
            actor=actor,
            before={"deleted": True, "deleted_at": fresh.get("deleted_at")},
            outcome="started",
            store=store,
        )
        after = client.set_deleted(dashboard_id, False)
        return RestoreResult(
            dashboard_id,
            "untrashed",
            dashboard_id,
            f"moved out of the trash into folder {after.get('folder_id')}; id, URL, schedules and alerts kept",
        )
    previous = _previous_reimport(settings, store, dashboard_id)
    if previous and client.dashboard(previous) is not None:
        return RestoreResult(dashboard_id, "noop", previous, f"already re-imported as dashboard {previous}")
    backup = latest_backup(store, settings.looker.instance_name, dashboard_id)
    if backup is None:
        return RestoreResult(dashboard_id, "failed", None, "purged and no backup is recorded; it cannot be restored")
    document = read_backup(storage, backup.key, backup.sha256)
    lookml = str(document.get("lookml") or "")
    if not lookml:
        return RestoreResult(dashboard_id, "failed", None, f"backup {backup.uri} holds no LookML")
    folder_id = str((document.get("dashboard") or {}).get("folder_id") or "")
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
    return RestoreResult(
        dashboard_id,
        "reimported",
        new_id,
        f"re-imported from {backup.uri} as dashboard {new_id} in folder {folder_id}",
        NOT_RESTORABLE,
    )


def _previous_reimport(settings: Settings, store: Store, dashboard_id: str) -> str | None:
    with store.read() as conn:
        row = conn.execute(
            select(looker_restores.c.new_dashboard_id)
            .where(
                looker_restores.c.instance == settings.looker.instance_name,
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
            target=instance_target(settings, result.dashboard_id),
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
            "method": r.method,
            "new_dashboard_id": r.new_dashboard_id,
            "detail": r.detail,
            "actor": r.actor,
        }
        for r in rows
    ]
