"""Inventory and plan: one pass over the instance, one persisted plan with a content hash.

Dashboards and Looks are planned together, by the same policy, into the same plan (each
action carries its ``content_type``). Inventory calls (the login aside): the dashboard search
and the Look search (``search_looks``), each paged, for live content and for the trash; one
System Activity ``content_usage`` inline query (dashboards and Looks); every user's scheduled
plans in one call (``all_scheduled_plans?all_users=true``); every owner's alerts
(``search_alerts?all_owners=true``, paged, one call for up to a page of alerts); ``GET
/user`` (who the guardian is, to recognise what it trashed); and ``GET /folders`` only when
protected folders are configured. Which Looks are shown on a dashboard comes from the
dashboard search itself (``dashboard_elements(id,look_id)``), at no extra call. So a plan takes
at most ceil(D/page) + ceil(L/page) + 6 calls for D dashboards and L Looks (+1 with protected
folders; +1 per extra 1,000 alerts). The warning ledger, keeps and the guardian's own trashes
come from the store. The plan stores one action row per dashboard that is warned, trashed, purged
or excluded (with the reason); kept dashboards are only counted.

Query functions for the CLI and the web UI: :func:`latest_plan`, :func:`get_plan`,
:func:`list_plans`, :func:`list_actions`.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from guardian import audit
from guardian.errors import ValidationFailed
from guardian.looker.ledger import TRASHED_BEFORE_INTERRUPTION, active_keeps, guardian_trashes, latest_warnings
from guardian.looker.policy import (
    CONTENT_TYPES,
    ContentFacts,
    Context,
    Decision,
    Policy,
    Ref,
    decide,
    folder_chain,
    label,
)
from guardian.looker.tables import looker_actions, looker_plans
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

SEARCH_FIELDS = (
    "id,title,user_id,user_name,folder_id,folder(id,name),created_at,updated_at,"
    "last_accessed_at,last_viewed_at,favorite_count,deleted,deleted_at,deleter_id,dashboard_elements(id,look_id)"
)
LOOK_FIELDS = (
    "id,title,user_id,user_name,folder_id,folder(id,name),created_at,updated_at,last_accessed_at,"
    "last_viewed_at,favorite_count,public,deleted,deleted_at,deleter_id,query_id"
)
ACTION_KINDS = ("soft_delete", "purge")
# parked: its backup could not be made; the plan goes on and the next plan tries again.
FINAL_STATES = ("done", "noop", "skipped", "parked")


@dataclass(frozen=True)
class Inventory:
    """Everything the policy reads, fetched in a bounded number of calls."""

    live: list[ContentFacts]
    trashed: list[ContentFacts]
    context: Context
    api_calls: int


@dataclass(frozen=True)
class Plan:
    """A persisted plan (a row of ``looker_plans``)."""

    id: int
    created_at: datetime
    instance: str
    created_by: str
    status: str
    policy: dict[str, Any]
    content_hash: str
    counts: dict[str, int]
    inventory_size: int
    trash_size: int
    api_calls: int
    duration_s: float
    override_by: str | None
    notified_at: datetime | None
    last_applied_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dict(self.__dict__)
        for key in ("created_at", "notified_at", "last_applied_at"):
            value = out[key]
            out[key] = None if value is None else _utc(value).isoformat()
        return out


@dataclass(frozen=True)
class Action:
    """One dashboard or Look in a plan (a row of ``looker_actions``; ``dashboard_id`` is the content's id)."""

    id: int
    plan_id: int
    seq: int
    dashboard_id: str
    kind: str
    reason: str
    title: str | None
    owner_id: str | None
    owner_name: str | None
    folder_id: str | None
    folder_name: str | None
    last_access: datetime | None
    snapshot: dict[str, Any]
    state: str
    outcome: str | None
    backup_key: str | None
    backup_sha256: str | None
    after: Any
    attempts: int
    updated_at: datetime
    owner_notified: bool
    content_type: str = "dashboard"

    @property
    def ref(self) -> Ref:
        """(content type, id)."""
        return (self.content_type, self.dashboard_id)

    @property
    def label(self) -> str:
        """``12`` for a dashboard, ``look:12`` for a Look."""
        return label(self.content_type, self.dashboard_id)

    @property
    def trashed_by_guardian(self) -> bool:
        """True when this action moved its dashboard to the trash (also if confirmed after a kill)."""
        return self.kind == "soft_delete" and (
            self.state == "done" or (self.state == "noop" and self.outcome == TRASHED_BEFORE_INTERRUPTION)
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dict(self.__dict__)
        for key in ("last_access", "updated_at"):
            value = out[key]
            out[key] = None if value is None else _utc(value).isoformat()
        return out


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything is written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def instance_target(settings: Settings, dashboard_id: str | None = None, content_type: str = "dashboard") -> str:
    """Audit target of the instance or of one dashboard (``.../dashboard/ID``) or Look (``.../look/ID``)."""
    base = f"looker:{settings.looker.instance_name}"
    return f"{base}/{content_type}/{dashboard_id}" if dashboard_id else base


def guardian_trashed_ids(store: Store, instance: str, content_type: str = "dashboard") -> frozenset[str]:
    """Ids of the dashboards (or Looks) whose latest guardian trash is recorded with its ``deleted_at``."""
    return frozenset(i for t, i in guardian_trashes(store, instance) if t == content_type)


def exemption_counts(client: LookerClient, element_dashboard: dict[str, str]) -> tuple[dict[Ref, int], dict[str, int]]:
    """Enabled scheduled plans per dashboard or Look, and enabled alerts per dashboard (two calls)."""
    schedules: dict[Ref, int] = {}
    for plan in client.all_scheduled_plans():
        if not plan.get("enabled"):
            continue
        for content_type in CONTENT_TYPES:
            if plan.get(f"{content_type}_id") is not None:
                key = (content_type, str(plan[f"{content_type}_id"]))
                schedules[key] = schedules.get(key, 0) + 1
    alerts: dict[str, int] = {}
    for alert in client.all_alerts():
        dashboard = element_dashboard.get(str(alert.get("dashboard_element_id")))
        if dashboard is not None and not alert.get("is_disabled"):
            alerts[dashboard] = alerts.get(dashboard, 0) + 1
    return schedules, alerts


def collect_inventory(
    settings: Settings, client: LookerClient, store: Store, *, now: datetime | None = None
) -> Inventory:
    """Fetch live and trashed dashboards and Looks, System Activity usage and (if needed) folders."""
    policy = Policy.from_settings(settings.looker)
    before = client.calls["total"] - client.calls["POST /login"]
    page = settings.looker.page_size
    usage = {
        (str(row.get("content_usage.content_type") or "dashboard"), str(row.get("content_usage.content_id"))): row
        for row in client.content_usage()
    }

    def search(content_type: str, deleted: bool) -> list[dict[str, Any]]:
        fields = SEARCH_FIELDS if content_type == "dashboard" else LOOK_FIELDS
        pages = client.search_content(content_type, deleted=deleted, fields=fields, page_size=page)
        return [row for rows in pages for row in rows]

    live_rows, trashed_rows = search("dashboard", False), search("dashboard", True)
    live_looks, trashed_looks = search("look", False), search("look", True)
    element_dashboard: dict[str, str] = {}
    # A Look on any dashboard's tile, even a trashed dashboard's, is in use: its restore needs the Look.
    tiles_per_look: dict[str, int] = {}
    for row in live_rows + trashed_rows:
        for element in row.get("dashboard_elements") or []:
            element_dashboard[str(element["id"])] = str(row["id"])
            if element.get("look_id") is not None:
                look_id = str(element["look_id"])
                tiles_per_look[look_id] = tiles_per_look.get(look_id, 0) + 1
    schedules, alerts = exemption_counts(client, element_dashboard)

    def facts(row: dict[str, Any], content_type: str = "dashboard") -> ContentFacts:
        key = str(row["id"])
        return ContentFacts.from_api(
            row,
            usage.get((content_type, key)),
            schedules=schedules.get((content_type, key), 0),
            alerts=alerts.get(key, 0) if content_type == "dashboard" else 0,
            content_type=content_type,
            dashboards_using=tiles_per_look.get(key, 0) if content_type == "look" else 0,
        )

    live = [facts(row) for row in live_rows] + [facts(row, "look") for row in live_looks]
    trashed = [facts(row) for row in trashed_rows] + [facts(row, "look") for row in trashed_looks]
    chains = folder_chain(client.folders()) if policy.needs_folders else {}
    me = client.me_user()
    emails: dict[str, str] = {}
    if any("@" in owner for owner in policy.allow_owners):
        owners = {d.user_id for d in live if d.user_id}
        emails = {str(u["id"]): str(u.get("email") or "") for u in client.users(sorted(owners))}
    now = now or datetime.now(UTC)
    instance = settings.looker.instance_name
    ctx = Context(
        now=now,
        folder_chain=chains,
        guardian_trashes=guardian_trashes(store, instance),
        guardian_user_id=None if me.get("id") is None else str(me["id"]),
        owner_emails=emails,
        warnings=latest_warnings(store, instance),
        keeps=active_keeps(store, instance, now),
    )
    calls = client.calls["total"] - client.calls["POST /login"] - before
    return Inventory(live, trashed, ctx, calls)


def content_hash(instance: str, policy: dict[str, Any], actions: Iterable[tuple[str, str, str]]) -> str:
    """SHA-256 over the instance, the policy and every (label, kind, reason) in order.

    The label of a dashboard is its bare id, so plans made before Looks still verify.
    """
    body = {"instance": instance, "policy": policy, "actions": [list(a) for a in actions]}
    return hashlib.sha256(audit.canonical_json(body).encode("utf-8")).hexdigest()


def _order(facts: ContentFacts) -> tuple[int, int, str]:
    rank = CONTENT_TYPES.index(facts.content_type)
    return (rank, 0, facts.id.zfill(12)) if facts.id.isdigit() else (rank, 1, facts.id)


def make_plan(
    settings: Settings,
    client: LookerClient,
    store: Store,
    *,
    now: datetime | None = None,
    actor: str | None = None,
) -> Plan:
    """Inventory the instance, decide every dashboard and Look, persist and audit the plan."""
    started = time.monotonic()
    inv = collect_inventory(settings, client, store, now=now)
    policy = Policy.from_settings(settings.looker)
    decided: list[tuple[ContentFacts, Decision]] = [
        (facts, decide(facts, policy, inv.context)) for facts in sorted(inv.live + inv.trashed, key=_order)
    ]
    counts: Counter[str] = Counter(decision.kind for _, decision in decided)
    # "live" / "trashed" count dashboards (as before Looks); Looks have their own counts.
    counts["live"] = sum(1 for f in inv.live if f.content_type == "dashboard")
    counts["trashed"] = sum(1 for f in inv.trashed if f.content_type == "dashboard")
    counts["looks_live"] = len(inv.live) - counts["live"]
    counts["looks_trashed"] = len(inv.trashed) - counts["trashed"]
    for facts, decision in decided:
        if facts.content_type == "look" and decision.kind != "keep":
            counts[f"looks_{decision.kind}"] += 1
    rows = [(f, d) for f, d in decided if d.kind != "keep"]
    policy_json = policy.to_json()
    digest = content_hash(settings.looker.instance_name, policy_json, ((f.label, d.kind, d.reason) for f, d in rows))
    created = inv.context.now
    actor = actor or audit.default_actor()
    with store.write() as conn:
        inserted = conn.execute(
            insert(looker_plans).values(
                created_at=created,
                instance=settings.looker.instance_name,
                created_by=actor,
                status="planned",
                policy=policy_json,
                content_hash=digest,
                counts=dict(counts),
                inventory_size=len(inv.live),
                trash_size=len(inv.trashed),
                api_calls=inv.api_calls,
                duration_s=round(time.monotonic() - started, 3),
            )
        ).inserted_primary_key
        assert inserted is not None
        plan_id = int(inserted[0])
        if rows:
            conn.execute(
                insert(looker_actions),
                [
                    {
                        "plan_id": plan_id,
                        "seq": seq,
                        "content_type": facts.content_type,
                        "dashboard_id": facts.id,
                        "kind": decision.kind,
                        "reason": decision.reason[:500],
                        "title": facts.title[:500],
                        "owner_id": facts.user_id,
                        "owner_name": facts.owner_name,
                        "folder_id": facts.folder_id,
                        "folder_name": facts.folder_name,
                        "last_access": decision.last_access,
                        "snapshot": facts.to_json(),
                        "state": "skipped" if decision.kind == "skip" else "pending",
                        "outcome": decision.reason[:500] if decision.kind == "skip" else None,
                        "attempts": 0,
                        "updated_at": created,
                        "owner_notified": False,
                    }
                    for seq, (facts, decision) in enumerate(rows, start=1)
                ],
            )
        audit.append(
            conn,
            actor=actor,
            action="looker.plan",
            target=instance_target(settings),
            before=None,
            after={"plan_id": plan_id, "content_hash": digest, "counts": dict(counts)},
            outcome="ok",
            context=audit.current_context(),
        )
    plan = get_plan(store, plan_id)
    assert plan is not None
    return plan


# -- queries (CLI, DAG, web UI) -----------------------------------------------------------
def _plan(row: Any) -> Plan:
    return Plan(
        id=int(row.id),
        created_at=_utc(row.created_at),
        instance=row.instance,
        created_by=row.created_by,
        status=row.status,
        policy=dict(row.policy),
        content_hash=row.content_hash,
        counts={k: int(v) for k, v in dict(row.counts).items()},
        inventory_size=int(row.inventory_size),
        trash_size=int(row.trash_size),
        api_calls=int(row.api_calls),
        duration_s=float(row.duration_s),
        override_by=row.override_by,
        notified_at=None if row.notified_at is None else _utc(row.notified_at),
        last_applied_at=None if row.last_applied_at is None else _utc(row.last_applied_at),
    )


def _action(row: Any) -> Action:
    return Action(
        id=int(row.id),
        plan_id=int(row.plan_id),
        seq=int(row.seq),
        dashboard_id=row.dashboard_id,
        kind=row.kind,
        reason=row.reason,
        title=row.title,
        owner_id=row.owner_id,
        owner_name=row.owner_name,
        folder_id=row.folder_id,
        folder_name=row.folder_name,
        last_access=None if row.last_access is None else _utc(row.last_access),
        snapshot=dict(row.snapshot),
        state=row.state,
        outcome=row.outcome,
        backup_key=row.backup_key,
        backup_sha256=row.backup_sha256,
        after=row.after,
        attempts=int(row.attempts),
        updated_at=_utc(row.updated_at),
        owner_notified=bool(row.owner_notified),
        content_type=str(row.content_type),
    )


def get_plan(store: Store, plan_id: int) -> Plan | None:
    """One plan by id, or None."""
    with store.read() as conn:
        row = conn.execute(select(looker_plans).where(looker_plans.c.id == plan_id)).first()
    return None if row is None else _plan(row)


def require_plan(store: Store, plan_id: int) -> Plan:
    """One plan by id; a one-line error naming the fix when it does not exist."""
    plan = get_plan(store, plan_id)
    if plan is None:
        raise ValidationFailed(f"plan {plan_id} does not exist; list plans with `guardian looker report`")
    return plan


def latest_plan(store: Store, instance: str | None = None) -> Plan | None:
    """The newest plan (of one instance when given), or None."""
    query = select(looker_plans).order_by(looker_plans.c.id.desc()).limit(1)
    if instance:
        query = query.where(looker_plans.c.instance == instance)
    with store.read() as conn:
        row = conn.execute(query).first()
    return None if row is None else _plan(row)


def list_plans(store: Store, limit: int = 20) -> list[Plan]:
    """The newest plans, newest first."""
    with store.read() as conn:
        rows = conn.execute(select(looker_plans).order_by(looker_plans.c.id.desc()).limit(limit)).all()
    return [_plan(r) for r in rows]


def list_actions(
    store: Store, plan_id: int, *, kinds: Iterable[str] | None = None, states: Iterable[str] | None = None
) -> list[Action]:
    """The actions of a plan in plan order, optionally filtered by kind and state."""
    query = select(looker_actions).where(looker_actions.c.plan_id == plan_id).order_by(looker_actions.c.seq)
    if kinds is not None:
        query = query.where(looker_actions.c.kind.in_(list(kinds)))
    if states is not None:
        query = query.where(looker_actions.c.state.in_(list(states)))
    with store.read() as conn:
        return [_action(r) for r in conn.execute(query).all()]


def get_action(store: Store, action_id: int) -> Action:
    """One action by id."""
    with store.read() as conn:
        return _action(conn.execute(select(looker_actions).where(looker_actions.c.id == action_id)).one())


def verify_plan_hash(store: Store, plan: Plan) -> bool:
    """True when the stored actions still hash to the plan's content hash."""
    actions = list_actions(store, plan.id)
    digest = content_hash(plan.instance, plan.policy, ((a.label, a.kind, a.reason) for a in actions))
    return digest == plan.content_hash


def set_plan_status(store: Store, plan_id: int, status: str, **values: Any) -> None:
    """Change a plan's status (and other columns)."""
    with store.write() as conn:
        conn.execute(update(looker_plans).where(looker_plans.c.id == plan_id).values(status=status, **values))
