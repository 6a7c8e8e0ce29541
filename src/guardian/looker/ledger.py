"""The ledgers the policy reads across plans: warnings delivered, owners' keeps, guardian trashes.

Every ledger is keyed by (content type, id): a dashboard and a Look are kept apart.

* Warnings: one row per dashboard per warning the guardian delivered (to the owner, or the
  team address when the owner is gone, disabled or has no email). A dashboard may be trashed
  only once a warning is at least ``warning_days`` old and newer than its last access.
* Keeps: an owner (or an admin for them) keeps a dashboard until a date, with a reason;
  audited, and expired keeps simply stop counting.
* Guardian trashes: the ``deleted_at`` of every trash the guardian made, taken from Looker's
  answer; a purge must find the very same ``deleted_at`` and deleter in Looker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from guardian import audit
from guardian.errors import ValidationFailed
from guardian.looker.policy import Ref, parse_ref, parse_ts
from guardian.looker.tables import looker_actions, looker_keeps, looker_plans, looker_warnings
from guardian.store import Store

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from guardian.settings import Settings

# Outcome of a trash that Looker applied but the guardian only confirmed on the rerun.
TRASHED_BEFORE_INTERRUPTION = "already in trash: this plan trashed it before an interruption"


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Keep:
    """An owner's keep (a row of ``looker_keeps``)."""

    id: int
    instance: str
    dashboard_id: str
    created_at: datetime
    until: datetime
    reason: str
    actor: str
    content_type: str = "dashboard"

    @property
    def ref(self) -> Ref:
        """(content type, id)."""
        return (self.content_type, self.dashboard_id)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "created_at": self.created_at.isoformat(), "until": self.until.isoformat()}


def latest_warnings(store: Store, instance: str) -> dict[Ref, datetime]:
    """(content type, id) -> when the guardian last delivered a warning about it."""
    with store.read() as conn:
        rows = conn.execute(
            select(looker_warnings.c.content_type, looker_warnings.c.dashboard_id, looker_warnings.c.warned_at).where(
                looker_warnings.c.instance == instance
            )
        ).all()
    out: dict[Ref, datetime] = {}
    for row in rows:
        when = _utc(row.warned_at)
        ref = (str(row.content_type), str(row.dashboard_id))
        if ref not in out or when > out[ref]:
            out[ref] = when
    return out


def record_warnings(
    conn: Connection,
    instance: str,
    dashboards: Iterable[tuple[Ref | str, datetime | None]],
    *,
    address: str,
    warned_at: datetime,
    plan_id: int | None,
) -> None:
    """Write one ledger row per (ref, last access) warned, inside the caller's transaction.

    A bare id is a dashboard.
    """
    rows = [
        {
            "instance": instance,
            "content_type": "dashboard" if isinstance(ref, str) else ref[0],
            "dashboard_id": ref if isinstance(ref, str) else ref[1],
            "warned_at": warned_at,
            "address": address[:300],
            "last_access": last_access,
            "plan_id": plan_id,
        }
        for ref, last_access in dashboards
    ]
    if rows:
        conn.execute(insert(looker_warnings), rows)


def active_keeps(store: Store, instance: str, now: datetime) -> dict[Ref, tuple[datetime, str]]:
    """(content type, id) -> (until, reason) of its longest unexpired keep."""
    out: dict[Ref, tuple[datetime, str]] = {}
    for keep in list_keeps(store, instance):
        if keep.until > now and (keep.ref not in out or keep.until > out[keep.ref][0]):
            out[keep.ref] = (keep.until, keep.reason)
    return out


def list_keeps(store: Store, instance: str | None = None, limit: int = 1000) -> list[Keep]:
    """Keeps, newest first."""
    query = select(looker_keeps).order_by(looker_keeps.c.id.desc()).limit(limit)
    if instance is not None:
        query = query.where(looker_keeps.c.instance == instance)
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        Keep(
            int(r.id),
            r.instance,
            r.dashboard_id,
            _utc(r.created_at),
            _utc(r.until),
            r.reason,
            r.actor,
            str(r.content_type),
        )
        for r in rows
    ]


def parse_until(value: str | date | datetime) -> datetime:
    """A keep's end: a date (kept through that whole day, UTC) or a timestamp."""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1), time(), tzinfo=UTC)
    text = str(value).strip()
    try:
        if len(text) == 10:
            return parse_until(date.fromisoformat(text))
        parsed = parse_ts(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValidationFailed(f"--until {value!r} is not a date; use YYYY-MM-DD, e.g. 2027-06-30")
    return parsed


def keep(
    settings: Settings,
    store: Store,
    dashboard_id: str,
    *,
    until: str | date | datetime,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> Keep:
    """Keep a dashboard (``12``) or a Look (``look:12``) out of the trash until a date (audited).

    Refuses past dates and over-long keeps.
    """
    now = now or datetime.now(UTC)
    if not str(dashboard_id).strip():
        raise ValidationFailed("dashboard id is empty; pass the id shown in the warning email")
    content_type, dashboard_id = parse_ref(str(dashboard_id))
    end = parse_until(until)
    if end <= now:
        raise ValidationFailed(f"--until {until} is not in the future; pick a later date")
    longest = settings.looker.max_keep_days
    if end > now + timedelta(days=longest + 1):
        raise ValidationFailed(
            f"--until {until} is more than {longest} days away; keep for at most GUARDIAN_LOOKER__MAX_KEEP_DAYS"
        )
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("--reason is empty; say why the dashboard is still needed")
    instance = settings.looker.instance_name
    with store.write() as conn:
        inserted = conn.execute(
            insert(looker_keeps).values(
                instance=instance,
                content_type=content_type,
                dashboard_id=dashboard_id,
                created_at=now,
                until=end,
                reason=reason[:500],
                actor=actor[:200],
            )
        ).inserted_primary_key
        assert inserted is not None
        audit.append(
            conn,
            actor=actor,
            action="looker.keep",
            target=f"looker:{instance}/{content_type}/{dashboard_id}",
            before=None,
            after={"until": end.isoformat(), "reason": reason[:500]},
            outcome="ok",
            context=audit.current_context(),
        )
    return Keep(int(inserted[0]), instance, dashboard_id, now, end, reason[:500], actor[:200], content_type)


def guardian_trashes(store: Store, instance: str) -> dict[Ref, datetime]:
    """(content type, id) -> ``deleted_at`` of the newest trash the guardian made and recorded."""
    with store.read() as conn:
        rows = conn.execute(
            select(
                looker_actions.c.content_type,
                looker_actions.c.dashboard_id,
                looker_actions.c.after,
                looker_actions.c.updated_at,
            )
            .join(looker_plans, looker_plans.c.id == looker_actions.c.plan_id)
            .where(
                looker_plans.c.instance == instance,
                looker_actions.c.kind == "soft_delete",
                (looker_actions.c.state == "done")
                | ((looker_actions.c.state == "noop") & (looker_actions.c.outcome == TRASHED_BEFORE_INTERRUPTION)),
            )
            .order_by(looker_actions.c.updated_at)
        ).all()
    out: dict[Ref, datetime] = {}
    for row in rows:
        deleted_at = parse_ts((row.after or {}).get("deleted_at")) if isinstance(row.after, dict) else None
        if deleted_at is not None:
            out[(str(row.content_type), str(row.dashboard_id))] = deleted_at
    return out
