"""Verified, write-once backups of a dashboard or a Look, with its schedules (and a dashboard's alerts).

A backup is accepted only when it could restore its content. A dashboard's: the LookML must
parse (YAML) and describe the same dashboard (title) with the same tiles as the JSON
(element titles, in order). A Look's: its JSON (``LookWithQuery``) must carry its query
(model and view, the same id as ``query_id``), which is what ``create_look`` needs again.
The schedules (every user's) and the alerts on a dashboard's tiles are stored beside them.

Key: ``<backup_prefix>/<instance>/<dashboard_id>/<plan timestamp>-plan<id>.json`` for a
dashboard, ``<backup_prefix>/<instance>/looks/<look_id>/...`` for a Look. The key is
the same on every attempt of one plan, so a process killed after the put and before the
store row finds its own backup on the rerun (``AlreadyExists``), checks it describes the
same version of the dashboard, and uses it. Every backup is read back and its SHA-256
compared before any action may touch the dashboard.

Query functions for the CLI and the web UI: :func:`list_backups`, :func:`latest_backup`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from guardian.errors import AlreadyExists, NotFound, StorageError
from guardian.looker.tables import looker_backups
from guardian.storage import Storage
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

FORMAT = "guardian.looker.backup/1"
# What a re-import from LookML cannot bring back (schedules and alerts are re-created from the backup).
NOT_RESTORABLE = (
    "the original dashboard id and URL",
    "favorites",
    "view history",
)


class BackupError(StorageError):
    """A backup could not be written or did not verify."""


@dataclass(frozen=True)
class Backup:
    """A verified backup (a row of ``looker_backups``)."""

    id: int
    created_at: datetime
    instance: str
    dashboard_id: str
    plan_id: int | None
    uri: str
    key: str
    sha256: str
    bytes: int
    title: str | None
    folder_id: str | None
    dashboard_updated_at: str | None
    content_type: str = "dashboard"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dict(self.__dict__)
        out["created_at"] = self.created_at.isoformat()
        return out


def _row(row: Any) -> Backup:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Backup(
        int(row.id),
        created,
        row.instance,
        row.dashboard_id,
        None if row.plan_id is None else int(row.plan_id),
        row.uri,
        row.key,
        row.sha256,
        int(row.bytes),
        row.title,
        row.folder_id,
        row.dashboard_updated_at,
        str(row.content_type),
    )


def backup_key(
    settings: Settings, dashboard_id: str, stamp: datetime, plan_id: int | None, content_type: str = "dashboard"
) -> str:
    """Storage key of a backup."""
    suffix = f"-plan{plan_id}" if plan_id is not None else ""
    folder = dashboard_id if content_type == "dashboard" else f"{content_type}s/{dashboard_id}"
    return (
        f"{settings.looker.backup_prefix}/{settings.looker.instance_name}/{folder}/"
        f"{stamp.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}{suffix}.json"
    )


def encode(document: dict[str, Any]) -> bytes:
    """Canonical bytes of a backup document."""
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")


def read_backup(storage: Storage, key: str, sha256: str | None = None) -> dict[str, Any]:
    """Read a backup document; verify its hash when one is given."""
    data = storage.get(key)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise BackupError(f"{storage.uri(key)}: content does not match its recorded SHA-256; do not trust it")
    document = json.loads(data)
    if document.get("format") != FORMAT:
        raise BackupError(f"{storage.uri(key)} is not a guardian dashboard backup")
    return dict(document)


def backed_up(document: dict[str, Any]) -> dict[str, Any]:
    """The dashboard or Look JSON a backup document holds."""
    return dict(document.get(str(document.get("content_type") or "dashboard")) or {})


def backup_problem(document: dict[str, Any]) -> str | None:
    """Why this backup document could not restore its dashboard or Look, or None."""
    content = backed_up(document)
    if document.get("content_type", "dashboard") == "dashboard":
        problem = lookml_problem(str(document.get("lookml") or ""), content)
        return None if problem is None else f"LookML export {problem}"
    return look_problem(content)


def look_problem(look: dict[str, Any]) -> str | None:
    """Why this Look JSON could not re-create the Look (no query to ``create_look`` from), or None."""
    query = look.get("query") or {}
    if not isinstance(query, dict) or not query.get("model") or not query.get("view"):
        return "holds no query with a model and a view (look() returns it: LookWithQuery)"
    if look.get("query_id") is not None and str(query.get("id")) != str(look.get("query_id")):
        return f"holds query {query.get('id')}, not the Look's query_id {look.get('query_id')}"
    if not str(look.get("title") or "").strip():
        return "has no title"
    return None


def take_backup(
    settings: Settings,
    client: LookerClient,
    storage: Storage,
    store: Store,
    dashboard: dict[str, Any],
    *,
    plan_id: int | None,
    stamp: datetime,
    schedules: list[dict[str, Any]] | None = None,
    alerts: list[dict[str, Any]] | None = None,
    content_type: str = "dashboard",
) -> Backup:
    """Write (or find) the backup of this version of ``dashboard`` (or Look), read it back, verify, record.

    Raises :class:`BackupError` when the backup could not restore it (nothing is written).
    """
    dashboard_id = str(dashboard["id"])
    document: dict[str, Any] = {
        "format": FORMAT,
        "content_type": content_type,
        "instance": settings.looker.instance_name,
        "dashboard_id": dashboard_id,
        "plan_id": plan_id,
        "taken_at": datetime.now(UTC).isoformat(),
        content_type: dashboard,
        "schedules": list(schedules or []),
        "alerts": list(alerts or []),
        "not_restorable_from_lookml": list(NOT_RESTORABLE),
    }
    if content_type == "dashboard":
        document["lookml"] = client.dashboard_lookml(dashboard_id)
    problem = backup_problem(document)
    if problem:
        raise BackupError(f"{content_type} {dashboard_id}: {problem}")
    data = encode(document)
    key = backup_key(settings, dashboard_id, stamp, plan_id, content_type)
    try:
        storage.put_once(key, data)
    except AlreadyExists:
        try:
            existing = read_backup(storage, key)
        except (BackupError, NotFound, ValueError):
            existing = {}
        if (
            existing.get("content_type", "dashboard") == content_type
            and _same_version(backed_up(existing), dashboard)
            and not backup_problem(existing)
            and existing.get("schedules") == document["schedules"]
            and existing.get("alerts") == document["alerts"]
        ):
            data = storage.get(key)
        else:
            # The dashboard changed since that backup: keep both, never overwrite.
            key = backup_key(settings, dashboard_id, datetime.now(UTC), plan_id, content_type)
            storage.put_once(key, data)
    digest = hashlib.sha256(data).hexdigest()
    readback = storage.get(key)
    if hashlib.sha256(readback).hexdigest() != digest:
        raise BackupError(f"{storage.uri(key)}: read-back differs from what was written; check the storage backend")
    with store.write() as conn:
        existing_row = conn.execute(select(looker_backups).where(looker_backups.c.key == key)).first()
        if existing_row is None:
            conn.execute(
                insert(looker_backups).values(
                    content_type=content_type,
                    created_at=datetime.now(UTC),
                    instance=settings.looker.instance_name,
                    dashboard_id=dashboard_id,
                    plan_id=plan_id,
                    uri=storage.uri(key),
                    key=key,
                    sha256=digest,
                    bytes=len(data),
                    title=str(dashboard.get("title") or "")[:500],
                    folder_id=None if dashboard.get("folder_id") is None else str(dashboard["folder_id"]),
                    dashboard_updated_at=dashboard.get("updated_at"),
                )
            )
        row = conn.execute(select(looker_backups).where(looker_backups.c.key == key)).one()
    return _row(row)


def lookml_elements(lookml: str) -> tuple[str, list[str]]:
    """(title, element titles) of a dashboard's LookML; ValueError when it does not parse."""
    import yaml  # type: ignore[import-untyped]

    try:
        parsed = yaml.safe_load(lookml)
    except yaml.YAMLError as exc:
        raise ValueError(f"does not parse as YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(parsed, list) or len(parsed) != 1 or not isinstance(parsed[0], dict):
        raise ValueError("is not one LookML dashboard (a YAML list with one '- dashboard:' entry)")
    body = parsed[0]
    if "dashboard" not in body:
        raise ValueError("has no '- dashboard:' entry")
    elements = body.get("elements") or []
    if not isinstance(elements, list):
        raise ValueError("has elements that are not a list")
    return str(body.get("title") or ""), [str(e.get("title") or "") for e in elements if isinstance(e, dict)]


def lookml_problem(lookml: str, dashboard: dict[str, Any]) -> str | None:
    """Why this LookML would not restore ``dashboard`` (empty, unparsable, other title or tiles), or None."""
    if not lookml.strip():
        return "is empty"
    try:
        title, elements = lookml_elements(lookml)
    except ValueError as exc:
        return str(exc)
    if title != str(dashboard.get("title") or ""):
        return f"has title {title!r}, the dashboard {dashboard.get('title')!r}"
    expected = [str(e.get("title") or "") for e in dashboard.get("dashboard_elements") or []]
    if elements != expected:
        return f"describes {len(elements)} tile(s) {elements[:5]}, the dashboard has {len(expected)} {expected[:5]}"
    return None


def _same_version(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return str(old.get("id")) == str(new.get("id")) and old.get("updated_at") == new.get("updated_at")


def verify_backup(storage: Storage, backup: Backup, dashboard: dict[str, Any] | None = None) -> bool:
    """True when the stored object still hashes right (and, if given, matches this version)."""
    try:
        document = read_backup(storage, backup.key, backup.sha256)
    except (BackupError, NotFound, ValueError):
        return False
    return dashboard is None or _same_version(backed_up(document), dashboard)


def get_backup(store: Store, key: str) -> Backup | None:
    """A backup by storage key."""
    with store.read() as conn:
        row = conn.execute(select(looker_backups).where(looker_backups.c.key == key)).first()
    return None if row is None else _row(row)


def list_backups(
    store: Store,
    *,
    dashboard_id: str | None = None,
    instance: str | None = None,
    limit: int = 100,
    content_type: str = "dashboard",
) -> list[Backup]:
    """Backups, newest first (of one dashboard or Look / instance when given)."""
    query = select(looker_backups).order_by(looker_backups.c.id.desc()).limit(limit)
    if dashboard_id is not None:
        query = query.where(
            looker_backups.c.dashboard_id == dashboard_id, looker_backups.c.content_type == content_type
        )
    if instance is not None:
        query = query.where(looker_backups.c.instance == instance)
    with store.read() as conn:
        return [_row(r) for r in conn.execute(query).all()]


def latest_backup(store: Store, instance: str, dashboard_id: str, content_type: str = "dashboard") -> Backup | None:
    """The newest backup of one dashboard (or Look), or None."""
    found = list_backups(store, dashboard_id=dashboard_id, instance=instance, limit=1, content_type=content_type)
    return found[0] if found else None
