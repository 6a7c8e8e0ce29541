"""Apply a plan: re-check, back up, trash or purge, each action audited before and after.

One runner for dashboards and Looks: every Looker call goes through the client's content
interface (``content``, ``set_content_deleted``, ``delete_content``, ``scheduled_plans_for``),
which picks the dashboard or the Look endpoint by the action's ``content_type``.

Every action row moves ``pending -> backed_up -> in_progress -> done | noop | skipped``
(or ``failed``, retried by the next run; or ``parked`` when its backup cannot be made: the
run goes on, reports it, and the next plan tries again). The state and its audit event commit in one
transaction, so after a kill at any line the rerun knows where each dashboard stands:

* killed before the backup was recorded: the backup key is fixed per plan, the rerun finds
  the object (``AlreadyExists``), checks it is the same dashboard version, and records it;
* killed after ``in_progress`` but before or after the Looker call: the rerun re-reads the
  dashboard; already in the trash (or gone, for a purge) is a recorded no-op, never a second
  action.

Each dashboard is re-read just before its action: one viewed, moved into a protected folder,
favorited, scheduled, kept, restored or deleted by hand since the plan is skipped with the reason.

Bounds are per Looker instance, not per plan: one applier per instance at a time, only the
instance's newest plan may be applied and only within ``max_plan_age_hours``, and the circuit
breaker counts the trashes and purges already made in the rolling ``breaker_window_days``
window, so two plans applied one after the other cannot double the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select, text, update

from guardian import audit
from guardian.errors import GuardianError, SafetyGateTripped, ValidationFailed
from guardian.looker.backup import Backup, BackupError, get_backup, take_backup, verify_backup
from guardian.looker.client import LookerAPIError
from guardian.looker.ledger import TRASHED_BEFORE_INTERRUPTION, active_keeps, guardian_trashes, latest_warnings
from guardian.looker.plan import (
    ACTION_KINDS,
    FINAL_STATES,
    Action,
    Plan,
    get_action,
    instance_target,
    latest_plan,
    list_actions,
    require_plan,
    set_plan_status,
    verify_plan_hash,
)
from guardian.looker.policy import ContentFacts, Context, Policy, decide, folder_chain, parse_ts
from guardian.looker.tables import looker_actions, looker_plans
from guardian.storage import Storage
from guardian.store import Store

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

Mode = Literal["test", "apply"]
# Two-key advisory lock on PostgreSQL: (this constant, plan id). Any constant shared by all processes.
_APPLY_LOCK_KEY = 0x6C6F6F6B  # "look"


class PlanBusy(GuardianError):
    """Another process is applying a plan of the same Looker instance."""


def _instance_key(instance: str) -> int:
    # A stable signed 32-bit key per instance name (pg advisory locks take int4 pairs).
    return int.from_bytes(hashlib.sha256(instance.encode("utf-8")).digest()[:4], "big", signed=True)


@contextlib.contextmanager
def apply_lock(store: Store, instance: str) -> Iterator[None]:
    """Hold the one apply lock of a Looker instance; the OS / database drops it if the process dies.

    PostgreSQL: a session advisory lock on a dedicated connection. SQLite: ``flock`` on a file
    next to the database. A killed applier leaves no stale lock, so a rerun starts at once.
    """
    busy = f"a plan of Looker instance {instance} is being applied by another process; wait for it to finish"
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            key = {"k": _APPLY_LOCK_KEY, "p": _instance_key(instance)}
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k, :p)"), key)
            conn.commit()
            if not got.scalar():
                raise PlanBusy(busy)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k, :p)"), key)
                conn.commit()
        return
    path = Path(str(store.url.database or "guardian.db") + f".looker-apply-{_instance_key(instance):x}.lock")
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PlanBusy(busy) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_VERB = {"soft_delete": "looker.trash", "purge": "looker.purge"}


@dataclass
class ApplyReport:
    """What one apply run did."""

    plan_id: int
    mode: str
    selected: int = 0
    already_final: int = 0
    done: int = 0
    noop: int = 0
    skipped: int = 0
    failed: int = 0
    parked: int = 0
    backup_bytes: int = 0
    duration_s: float = 0.0
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def actions_per_second(self) -> float:
        """Actions executed per second of wall time."""
        ran = self.done + self.noop + self.skipped + self.failed + self.parked
        return ran / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dict(self.__dict__)
        out["actions_per_second"] = round(self.actions_per_second, 2)
        return out


@dataclass(frozen=True)
class WindowUsage:
    """Trashes and purges the guardian made on one instance inside the rolling window."""

    trashes: int
    purges: int
    since: datetime


def window_usage(settings: Settings, store: Store, now: datetime) -> WindowUsage:
    """Count the instance's finished trashes and purges since ``now - breaker_window_days``."""
    since = now - timedelta(days=settings.looker.breaker_window_days)
    made = (looker_actions.c.state == "done") | (
        (looker_actions.c.state == "noop") & looker_actions.c.outcome.like("%before an interruption%")
    )
    with store.read() as conn:
        rows = conn.execute(
            select(looker_actions.c.kind, func.count())
            .join(looker_plans, looker_plans.c.id == looker_actions.c.plan_id)
            .where(
                looker_plans.c.instance == settings.looker.instance_name,
                looker_actions.c.kind.in_(ACTION_KINDS),
                looker_actions.c.updated_at >= since,
                made,
            )
            .group_by(looker_actions.c.kind)
        ).all()
    counts = {str(kind): int(n) for kind, n in rows}
    return WindowUsage(counts.get("soft_delete", 0), counts.get("purge", 0), since)


def breaker_check(
    settings: Settings, plan: Plan, actions: list[Action], usage: WindowUsage | None = None
) -> str | None:
    """Why the circuit breaker refuses these actions, or None when they are within bounds.

    Only actions still to do count, added to what the instance already used in the window.
    """
    cfg = settings.looker
    used = usage or WindowUsage(0, 0, plan.created_at)
    todo = [a for a in actions if a.state not in FINAL_STATES]
    trash = used.trashes + sum(1 for a in todo if a.kind == "soft_delete")
    purge = used.purges + sum(1 for a in todo if a.kind == "purge")
    window = f"in {cfg.breaker_window_days} days (already {used.trashes} trashed, {used.purges} purged)"
    if trash > cfg.max_deletions:
        return f"it brings trashes to {trash} {window}, more than max_deletions={cfg.max_deletions}"
    if purge > cfg.max_purges:
        return f"it brings purges to {purge} {window}, more than max_purges={cfg.max_purges}"
    limit_fraction = cfg.max_fraction * plan.inventory_size
    if trash and trash > limit_fraction:
        return (
            f"it brings trashes to {trash} of {plan.inventory_size} live dashboards and Looks {window}, "
            f"more than max_fraction={cfg.max_fraction:.0%}"
        )
    return None


def freshness_check(settings: Settings, store: Store, plan: Plan, now: datetime) -> str | None:
    """Why this plan may no longer be applied (a newer plan exists, or it is too old), or None."""
    newest = latest_plan(store, plan.instance)
    if newest is not None and newest.id != plan.id:
        return f"plan {newest.id} is newer; only the newest plan of instance {plan.instance} may be applied"
    age_h = (now - plan.created_at).total_seconds() / 3600
    if age_h > settings.looker.max_plan_age_hours:
        return (
            f"it is {age_h:.0f} hours old, more than max_plan_age_hours={settings.looker.max_plan_age_hours:g}; "
            "make a new plan"
        )
    return None


def override_breaker(settings: Settings, store: Store, plan_id: int, *, actor: str) -> Plan:
    """Allow one plan past the circuit breaker (audited)."""
    plan = require_plan(store, plan_id)
    now = datetime.now(UTC)
    with store.write() as conn:
        conn.execute(
            update(looker_plans).where(looker_plans.c.id == plan_id).values(override_by=actor, override_at=now)
        )
        audit.append(
            conn,
            actor=actor,
            action="looker.breaker_override",
            target=instance_target(settings),
            before={"plan_id": plan_id, "override_by": plan.override_by},
            after={"plan_id": plan_id, "override_by": actor},
            outcome="ok",
            context=audit.current_context(),
        )
    return require_plan(store, plan_id)


def select_actions(settings: Settings, store: Store, plan_id: int, mode: Mode) -> list[Action]:
    """The trash and purge actions this run covers (test mode: the first N of the plan)."""
    actions = list_actions(store, plan_id, kinds=ACTION_KINDS)
    if mode == "test":
        actions = actions[: settings.looker.test_mode_limit]
    return actions


class _Runner:
    def __init__(
        self,
        settings: Settings,
        client: LookerClient,
        store: Store,
        storage: Storage,
        plan: Plan,
        actor: str,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.storage = storage
        self.plan = plan
        self.actor = actor
        self.fixed_now = now
        self.policy = Policy.from_settings(settings.looker)
        me = client.me_user()
        instance = settings.looker.instance_name
        current = self.now()
        self.ctx = Context(
            now=current,
            folder_chain=folder_chain(client.folders()) if self.policy.needs_folders else {},
            guardian_trashes=guardian_trashes(store, instance),
            guardian_user_id=None if me.get("id") is None else str(me["id"]),
            warnings=latest_warnings(store, instance),
            keeps=active_keeps(store, instance, current),
        )
        # One call for every owner's alerts; each dashboard's are picked by its tiles' ids.
        self.alerts = client.all_alerts()
        self.base_context = audit.current_context() | {"plan_id": plan.id}

    def now(self) -> datetime:
        """The run's clock (fixed in simulations)."""
        return self.fixed_now or datetime.now(UTC)

    # -- state changes, each with its audit event in the same transaction ----------------
    def _transition(
        self,
        action: Action,
        state: str,
        *,
        audit_action: str,
        outcome: str,
        before: Any = None,
        after: Any = None,
        note: str | None = None,
        columns: dict[str, Any] | None = None,
    ) -> None:
        values = dict(columns or {})
        if note:
            values["outcome"] = note[:500]
        with self.store.write() as conn:
            conn.execute(
                update(looker_actions)
                .where(looker_actions.c.id == action.id)
                .values(state=state, updated_at=self.now(), **values)
            )
            audit.append(
                conn,
                actor=self.actor,
                action=audit_action,
                target=instance_target(self.settings, action.dashboard_id, action.content_type),
                before=before,
                after=after,
                outcome=outcome,
                context=self.base_context
                | {"action_id": action.id, "kind": action.kind, **({"note": note} if note else {})},
            )

    def finish(
        self,
        action: Action,
        state: str,
        note: str,
        fresh: dict[str, Any] | None = None,
        columns: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self._transition(
            action,
            state,
            audit_action=_VERB[action.kind],
            outcome=state,
            before=_state_of(fresh),
            after=_state_of(fresh),
            note=note,
            columns=columns,
        )
        return _outcome(action, state, note)

    # -- one action ----------------------------------------------------------------------
    def run(self, action_id: int) -> dict[str, Any]:
        action = get_action(self.store, action_id)
        if action.state in FINAL_STATES:
            return _outcome(action, action.state, "final")
        try:
            return self._execute(action)
        except Exception as exc:  # one dashboard's failure must not stop the others
            note = f"{type(exc).__name__}: {exc}"[:500]
            self._transition(
                action,
                "failed",
                audit_action=_VERB[action.kind],
                outcome="failed",
                note=note,
                columns={"attempts": action.attempts + 1},
            )
            return _outcome(action, "failed", note)

    def _execute(self, action: Action) -> dict[str, Any]:
        content_type, content_id = action.ref
        fresh = self.client.content(content_type, content_id)
        interrupted = action.state == "in_progress"
        if action.kind == "soft_delete":
            if fresh is None:
                return self.finish(action, "skipped", "no longer exists (deleted since the plan)")
            if fresh.get("deleted"):
                deleted_at = parse_ts(fresh.get("deleted_at"))
                # Ours only if this action sent the trash (in_progress, or failed after a timeout:
                # attempts > 0): the guardian's API user trashing it for another reason is not.
                ours = (
                    (interrupted or (action.state == "failed" and action.attempts > 0))
                    and self.ctx.guardian_user_id is not None
                    and str(fresh.get("deleter_id")) == self.ctx.guardian_user_id
                    and deleted_at is not None
                    and deleted_at >= self.plan.created_at.replace(microsecond=0)
                )
                if ours:
                    return self.finish(
                        action, "noop", TRASHED_BEFORE_INTERRUPTION, fresh, columns={"after": _state_of(fresh)}
                    )
                why = f"already in trash (by user {fresh.get('deleter_id')} at {fresh.get('deleted_at')})"
                return self.finish(action, "noop", why, fresh)
        else:
            if fresh is None:
                why = (
                    "already purged: this plan deleted it before an interruption"
                    if interrupted
                    else "already permanently deleted"
                )
                return self.finish(action, "noop", why)
            if not fresh.get("deleted"):
                return self.finish(action, "skipped", "restored from the trash since the plan", fresh)
        schedules = self.client.scheduled_plans_for(content_type, content_id)
        elements = {str(e.get("id")) for e in fresh.get("dashboard_elements") or []}
        alerts = [a for a in self.alerts if str(a.get("dashboard_element_id")) in elements]
        # A Look put on a dashboard since the plan is in use (one call, Looks only).
        tiles = len(self.client.tiles_showing_look(content_id)) if content_type == "look" else 0
        stale = self.recheck(action, fresh, schedules, alerts, tiles)
        if stale:
            return self.finish(action, "skipped", stale, fresh)
        try:
            backup = self.ensure_backup(action, fresh, schedules, alerts)
        except (BackupError, LookerAPIError) as exc:
            # Parked, not failed: the month goes on; the next plan tries this dashboard again.
            return self.finish(action, "parked", f"backup could not be made: {exc}"[:500], fresh)
        self._transition(
            action,
            "in_progress",
            audit_action=_VERB[action.kind],
            outcome="started",
            before=_state_of(fresh),
            after={"backup": backup.uri, "sha256": backup.sha256},
            columns={"attempts": action.attempts + 1},
        )
        if action.kind == "soft_delete":
            result = self.client.set_content_deleted(content_type, content_id, True)
            after = _state_of(result)
            note = "moved to trash"
        else:
            existed = self.client.delete_content(content_type, content_id)
            after = {"exists": False}
            note = "permanently deleted" if existed else "already gone when deleting"
        self._transition(
            action,
            "done",
            audit_action=_VERB[action.kind],
            outcome="ok",
            before=_state_of(fresh),
            after=after,
            note=note,
            columns={"after": after},
        )
        return _outcome(action, "done", note) | {"bytes": backup.bytes}

    def recheck(
        self,
        action: Action,
        fresh: dict[str, Any],
        schedules: list[dict[str, Any]] | None = None,
        alerts: list[dict[str, Any]] | None = None,
        tiles: int = 0,
    ) -> str | None:
        """Why the dashboard or Look no longer qualifies, or None."""
        then = ContentFacts.from_json(action.snapshot)
        now_facts = ContentFacts.from_api(
            fresh,
            schedules=sum(1 for p in schedules or [] if p.get("enabled")),
            alerts=sum(1 for a in alerts or [] if not a.get("is_disabled")),
            content_type=action.content_type,
            dashboards_using=tiles,
        )
        if action.kind == "soft_delete":
            seen_then = max((t for t in (then.last_accessed_at, then.last_viewed_at) if t), default=None)
            seen_now = max((t for t in (now_facts.last_accessed_at, now_facts.last_viewed_at) if t), default=None)
            if seen_now and (seen_then is None or seen_now > seen_then):
                return f"viewed since the plan (last access {seen_now.isoformat()})"
        merged = replace(
            then,
            user_id=now_facts.user_id,
            folder_id=now_facts.folder_id,
            folder_name=now_facts.folder_name or then.folder_name,
            favorite_count=now_facts.favorite_count,
            public=now_facts.public,
            dashboards_using=now_facts.dashboards_using if action.kind == "soft_delete" else then.dashboards_using,
            schedules=now_facts.schedules if action.kind == "soft_delete" else then.schedules,
            alerts=now_facts.alerts if action.kind == "soft_delete" else then.alerts,
            deleted=now_facts.deleted,
            deleted_at=now_facts.deleted_at,
            deleter_id=now_facts.deleter_id,
        )
        decision = decide(merged, self.policy, self.ctx)
        if decision.kind != action.kind:
            return f"no longer qualifies since the plan: {decision.reason}"
        return None

    def ensure_backup(
        self,
        action: Action,
        fresh: dict[str, Any],
        schedules: list[dict[str, Any]] | None = None,
        alerts: list[dict[str, Any]] | None = None,
    ) -> Backup:
        """A verified backup of this version of the dashboard or Look, recorded on the action."""
        if action.backup_key:
            existing = get_backup(self.store, action.backup_key)
            if existing and existing.sha256 == action.backup_sha256 and verify_backup(self.storage, existing, fresh):
                return existing
        backup = take_backup(
            self.settings,
            self.client,
            self.storage,
            self.store,
            fresh,
            plan_id=self.plan.id,
            stamp=self.plan.created_at,
            schedules=schedules or [],
            alerts=alerts or [],
            content_type=action.content_type,
        )
        self._transition(
            action,
            "backed_up",
            audit_action="looker.backup",
            outcome="ok",
            after={"uri": backup.uri, "sha256": backup.sha256, "bytes": backup.bytes},
            columns={"backup_key": backup.key, "backup_sha256": backup.sha256},
        )
        return backup


def _outcome(action: Action, state: str, note: str) -> dict[str, Any]:
    return {
        "dashboard_id": action.dashboard_id,
        "content_type": action.content_type,
        "label": action.label,
        "kind": action.kind,
        "state": state,
        "note": note,
    }


def _state_of(dashboard: dict[str, Any] | None) -> dict[str, Any] | None:
    if dashboard is None:
        return {"exists": False}
    return {
        "exists": True,
        "title": dashboard.get("title"),
        "folder_id": dashboard.get("folder_id"),
        "deleted": bool(dashboard.get("deleted")),
        "deleted_at": dashboard.get("deleted_at"),
        "deleter_id": dashboard.get("deleter_id"),
        "last_accessed_at": dashboard.get("last_accessed_at"),
        "updated_at": dashboard.get("updated_at"),
    }


def _refuse(settings: Settings, store: Store, plan_id: int, actor: str, reason: str, *, status: str | None) -> None:
    if status:
        set_plan_status(store, plan_id, status)
    audit.record(
        "looker.apply",
        instance_target(settings),
        actor=actor,
        outcome="refused",
        after={"plan_id": plan_id, "reason": reason},
        store=store,
    )


def apply_plan(
    settings: Settings,
    plan_id: int,
    *,
    client: LookerClient,
    store: Store,
    storage: Storage,
    mode: Mode = "apply",
    actor: str | None = None,
    now: datetime | None = None,
) -> ApplyReport:
    """Apply the trash and purge actions of a plan (test mode: the first N only).

    Refuses (:class:`SafetyGateTripped`) when the stored actions no longer match the plan's
    content hash, when a newer plan of the instance exists or this one is too old, or when the
    rolling circuit breaker trips and the plan has no override. One applier per instance
    (:class:`PlanBusy`). Safe to rerun: finished actions are skipped, interrupted ones are
    re-checked and completed.
    """
    if mode not in ("test", "apply"):
        raise ValidationFailed(f"mode {mode!r} cannot apply; use test or apply (dry_run only plans)")
    actor = actor or audit.default_actor()
    plan = require_plan(store, plan_id)
    if plan.instance != settings.looker.instance_name:
        raise ValidationFailed(
            f"plan {plan_id} is for Looker instance {plan.instance}, not {settings.looker.instance_name}; "
            "set GUARDIAN_LOOKER__INSTANCE_NAME to match"
        )
    if not verify_plan_hash(store, plan):
        _refuse(settings, store, plan_id, actor, "content hash mismatch", status=None)
        raise SafetyGateTripped(f"plan {plan_id}: stored actions no longer match its content hash; make a new plan")
    with apply_lock(store, plan.instance):
        current = now or datetime.now(UTC)
        stale = freshness_check(settings, store, plan, current)
        if stale:
            _refuse(settings, store, plan_id, actor, stale, status="stale")
            raise SafetyGateTripped(f"plan {plan_id} cannot be applied: {stale}")
        actions = select_actions(settings, store, plan_id, mode)
        tripped = breaker_check(settings, plan, actions, window_usage(settings, store, current))
        if tripped and not plan.override_by:
            _refuse(settings, store, plan_id, actor, tripped, status="refused")
            raise SafetyGateTripped(
                f"plan {plan_id} refused by the circuit breaker: {tripped}; review it (`guardian looker plan --show "
                f"{plan_id}`) and rerun with `guardian looker apply {plan_id} --override-breaker` if it is right"
            )
        return _run_actions(
            settings, plan, actions, client=client, store=store, storage=storage, mode=mode, actor=actor, now=now
        )


def _run_actions(
    settings: Settings,
    plan: Plan,
    actions: list[Action],
    *,
    client: LookerClient,
    store: Store,
    storage: Storage,
    mode: Mode,
    actor: str,
    now: datetime | None,
) -> ApplyReport:
    plan_id = plan.id
    # Re-read under the lock: another applier may have finished some actions meanwhile.
    fresh = {a.id: a for a in list_actions(store, plan_id, kinds=ACTION_KINDS)}
    actions = [fresh[a.id] for a in actions]
    report = ApplyReport(plan_id=plan_id, mode=mode, selected=len(actions))
    todo = [a for a in actions if a.state not in FINAL_STATES]
    report.already_final = len(actions) - len(todo)
    set_plan_status(store, plan_id, "applying")
    audit.record(
        "looker.apply",
        instance_target(settings),
        actor=actor,
        outcome="started",
        after={"plan_id": plan_id, "mode": mode, "selected": len(actions), "to_do": len(todo)},
        store=store,
    )
    client.set_rate_limit(settings.looker.rate_limit_per_second)
    runner = _Runner(settings, client, store, storage, plan, actor, now)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=settings.looker.concurrency, thread_name_prefix="looker-apply") as pool:
        for outcome in pool.map(runner.run, [a.id for a in todo]):
            report.outcomes.append(outcome)
            state = outcome["state"]
            if state in ("done", "noop", "skipped", "failed", "parked"):
                setattr(report, state, getattr(report, state) + 1)
            report.backup_bytes += int(outcome.get("bytes") or 0)
    report.duration_s = round(time.monotonic() - started, 3)
    everything = len(actions) == len(list_actions(store, plan_id, kinds=ACTION_KINDS))
    status = "applied" if report.failed == 0 and everything else "partial"
    set_plan_status(store, plan_id, status, last_applied_at=runner.now())
    audit.record(
        "looker.apply",
        instance_target(settings),
        actor=actor,
        outcome="ok" if report.failed == 0 else "partial",
        after={k: v for k, v in report.as_dict().items() if k != "outcomes"},
        store=store,
    )
    return report
