"""The lifecycle policy: pure functions from a dashboard's or Look's facts to warn / trash / purge / skip.

Dashboards and Looks go through the same policy; a Look is content of type ``look`` (Looker
numbers Looks and dashboards separately, so content is named by ``(content_type, id)``, and
by the label ``look:ID`` for a Look, the bare ``ID`` for a dashboard). A Look shown on any
dashboard tile is in use whatever its own usage, as in Looker's own unused-content cleanup.

A user-defined dashboard is inactive when its last access is more than ``soft_delete_days``
ago. Last access is the newest of every signal: System Activity
(``content_usage.last_accessed_date``), the dashboard's ``last_accessed_at`` and
``last_viewed_at``, and ``created_at`` (so a dashboard created less than ``soft_delete_days``
ago is never inactive). Exclusions (LookML, protected folders, allow-lists, an owner's keep,
enabled schedules of any user, enabled alerts, favorited, public) only apply to a dashboard
the policy would otherwise act on, and each is reported with its reason.

An inactive dashboard is trashed only when the warning ledger holds a warning delivered at
least ``warning_days`` ago and after its last access; otherwise it is warned (again). A
trashed dashboard is purged only when it is the very trash the guardian made: same id, same
``deleted_at``, deleted by the guardian's API user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from guardian.errors import ValidationFailed
from guardian.looker.config import LookerSettings

Kind = Literal["keep", "warn", "soft_delete", "purge", "skip"]
ContentType = Literal["dashboard", "look"]
CONTENT_TYPES: tuple[str, ...] = ("dashboard", "look")
Ref = tuple[str, str]
"""(content type, Looker id): what the ledgers and the guardian's records are keyed by."""


def label(content_type: str, content_id: str) -> str:
    """How a person names content: ``12`` for dashboard 12, ``look:12`` for Look 12."""
    return str(content_id) if content_type == "dashboard" else f"{content_type}:{content_id}"


def parse_ref(text: str) -> Ref:
    """``look:12`` -> ("look", "12"); ``dashboard:12`` or ``12`` -> ("dashboard", "12")."""
    value = str(text).strip()
    for content_type in CONTENT_TYPES:
        prefix = f"{content_type}:"
        # LookML dashboard ids contain "::" (model::name); those are dashboard ids, not prefixes.
        if value.lower().startswith(prefix) and not value[len(prefix) :].startswith(":"):
            value = value[len(prefix) :].strip()
            if not value:
                break
            return content_type, value
    if not value or value.lower() in CONTENT_TYPES:
        raise ValidationFailed(f"{text!r} names no content; pass a dashboard id (12) or a Look as look:12")
    return "dashboard", value


def parse_ts(value: Any) -> datetime | None:
    """A Looker timestamp or date (ISO 8601) as an aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    if len(text) == 10:
        text += "T00:00:00+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ContentFacts:
    """What the policy knows about one dashboard or Look (from the search and System Activity)."""

    id: str
    title: str = ""
    user_id: str | None = None
    owner_name: str | None = None
    folder_id: str | None = None
    folder_name: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_accessed_at: datetime | None = None
    last_viewed_at: datetime | None = None
    usage_last_accessed: datetime | None = None
    favorite_count: int = 0
    schedules: int = 0
    """Enabled scheduled plans of any user (``all_scheduled_plans?all_users=true``)."""
    alerts: int = 0
    """Enabled alerts of any owner on the dashboard's tiles (``alerts/search?all_owners=true``)."""
    schedule_total: int = 0
    public_total: int = 0
    deleted: bool = False
    deleted_at: datetime | None = None
    deleter_id: str | None = None
    content_type: str = "dashboard"
    dashboards_using: int = 0
    """Looks: dashboard tiles that show it (``dashboard_elements[].look_id``)."""
    public: bool = False
    """Looks: the public URL is on (``Look.public``)."""

    @property
    def ref(self) -> Ref:
        """(content type, id)."""
        return (self.content_type, self.id)

    @property
    def label(self) -> str:
        """``12`` or ``look:12``."""
        return label(self.content_type, self.id)

    @classmethod
    def from_api(
        cls,
        row: Mapping[str, Any],
        usage: Mapping[str, Any] | None = None,
        *,
        schedules: int = 0,
        alerts: int = 0,
        content_type: str = "dashboard",
        dashboards_using: int = 0,
    ) -> ContentFacts:
        """Facts from a ``Dashboard`` or ``Look`` JSON object, its ``content_usage`` row, schedules and alerts."""
        usage = usage or {}
        folder = row.get("folder") or {}
        return cls(
            id=str(row["id"]),
            title=str(row.get("title") or ""),
            user_id=None if row.get("user_id") is None else str(row["user_id"]),
            owner_name=row.get("user_name"),
            folder_id=None if row.get("folder_id") is None else str(row["folder_id"]),
            folder_name=folder.get("name"),
            created_at=parse_ts(row.get("created_at")),
            updated_at=parse_ts(row.get("updated_at")),
            last_accessed_at=parse_ts(row.get("last_accessed_at")),
            last_viewed_at=parse_ts(row.get("last_viewed_at")),
            usage_last_accessed=parse_ts(usage.get("content_usage.last_accessed_date")),
            favorite_count=int(row.get("favorite_count") or 0),
            schedules=schedules,
            alerts=alerts,
            schedule_total=int(usage.get("content_usage.schedule_total") or 0),
            public_total=int(usage.get("content_usage.public_total") or 0),
            deleted=bool(row.get("deleted")),
            deleted_at=parse_ts(row.get("deleted_at")),
            deleter_id=None if row.get("deleter_id") is None else str(row["deleter_id"]),
            content_type=content_type,
            dashboards_using=dashboards_using,
            public=bool(row.get("public")),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (stored as the action's snapshot)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.astimezone(UTC).isoformat()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContentFacts:
        """Inverse of :meth:`to_json`."""
        values = dict(data)
        for name in ("created_at", "updated_at", "last_accessed_at", "last_viewed_at", "usage_last_accessed"):
            values[name] = parse_ts(values.get(name))
        values["deleted_at"] = parse_ts(values.get("deleted_at"))
        return cls(**values)

    def last_access(self) -> tuple[datetime | None, str]:
        """The newest of every access signal and where it came from."""
        signals = [
            (value, source)
            for value, source in (
                (self.usage_last_accessed, "System Activity"),
                (self.last_accessed_at, "last_accessed_at"),
                (self.last_viewed_at, "last_viewed_at"),
                (self.created_at, "created_at"),
            )
            if value is not None
        ]
        if not signals:
            return None, "unknown"
        # max() keeps the first of equal values, so System Activity names a tie.
        return max(signals, key=lambda pair: pair[0])


DashboardFacts = ContentFacts
"""The name the facts had before Looks (kept for callers and stored snapshots' readers)."""


@dataclass(frozen=True)
class Policy:
    """The settings the policy uses, frozen into each plan."""

    soft_delete_days: int = 180
    purge_days: int = 180
    warning_days: int = 14
    protected_folder_ids: tuple[str, ...] = ()
    protected_folder_paths: tuple[str, ...] = ()
    allow_dashboard_ids: tuple[str, ...] = ()
    allow_owners: tuple[str, ...] = ()
    exclude_scheduled: bool = True
    exclude_favorited: bool = True
    exclude_public: bool = True
    purge_human_trashed: bool = False

    @classmethod
    def from_settings(cls, cfg: LookerSettings) -> Policy:
        """The policy configured in ``GUARDIAN_LOOKER__*``."""
        return cls(
            soft_delete_days=cfg.soft_delete_days,
            purge_days=cfg.purge_days,
            warning_days=cfg.warning_days,
            protected_folder_ids=tuple(cfg.protected_folder_ids),
            protected_folder_paths=tuple(p.strip("/") for p in cfg.protected_folder_paths),
            allow_dashboard_ids=tuple(cfg.allow_dashboard_ids),
            allow_owners=tuple(cfg.allow_owners),
            exclude_scheduled=cfg.exclude_scheduled,
            exclude_favorited=cfg.exclude_favorited,
            exclude_public=cfg.exclude_public,
            purge_human_trashed=cfg.purge_human_trashed,
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (stored with the plan)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def needs_folders(self) -> bool:
        """Protected folders need the folder tree (one extra call)."""
        return bool(self.protected_folder_ids or self.protected_folder_paths)


@dataclass(frozen=True)
class Context:
    """Facts about the instance, not about one dashboard."""

    now: datetime
    folder_chain: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    """folder id -> ((id, path), ...) from the folder itself up to its root."""
    guardian_trashes: Mapping[Ref, datetime] = field(default_factory=dict)
    """(content type, id) -> the ``deleted_at`` of the trash the guardian made (and nobody undid)."""
    guardian_user_id: str | None = None
    owner_emails: Mapping[str, str] = field(default_factory=dict)
    warnings: Mapping[Ref, datetime] = field(default_factory=dict)
    """(content type, id) -> when the guardian last delivered a warning about it (the ledger)."""
    keeps: Mapping[Ref, tuple[datetime, str]] = field(default_factory=dict)
    """(content type, id) -> (until, reason) of the owner's unexpired keep."""


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one dashboard, and why."""

    kind: Kind
    reason: str
    last_access: datetime | None = None


def folder_chain(folders: Sequence[Mapping[str, Any]]) -> dict[str, tuple[tuple[str, str], ...]]:
    """For every folder: itself and its ancestors as (id, 'Shared/Sales/Archive') pairs."""
    by_id = {str(f["id"]): f for f in folders}

    def path_of(folder_id: str) -> str:
        parts: list[str] = []
        seen: set[str] = set()
        current: str | None = folder_id
        while current and current in by_id and current not in seen:
            seen.add(current)
            parts.append(str(by_id[current].get("name") or ""))
            parent = by_id[current].get("parent_id")
            current = None if parent is None else str(parent)
        return "/".join(reversed(parts))

    chains: dict[str, tuple[tuple[str, str], ...]] = {}
    for folder_id in by_id:
        chain: list[tuple[str, str]] = []
        seen: set[str] = set()
        current: str | None = folder_id
        while current and current in by_id and current not in seen:
            seen.add(current)
            chain.append((current, path_of(current)))
            parent = by_id[current].get("parent_id")
            current = None if parent is None else str(parent)
        chains[folder_id] = tuple(chain)
    return chains


def _protection(facts: ContentFacts, policy: Policy, ctx: Context) -> str | None:
    if facts.content_type == "dashboard" and "::" in facts.id:
        return "LookML dashboard: defined in a LookML project, cannot be trashed"
    if policy.needs_folders and facts.folder_id:
        chain = ctx.folder_chain.get(facts.folder_id, ())
        for folder_id, path in chain:
            if folder_id in policy.protected_folder_ids:
                return f"in protected folder {path or folder_id} (id {folder_id})"
            if path in policy.protected_folder_paths:
                return f"in protected folder {path}"
    if facts.label in policy.allow_dashboard_ids:
        return f"{facts.content_type} id is allow-listed"
    owner_email = ctx.owner_emails.get(facts.user_id or "")
    if facts.user_id in policy.allow_owners or (owner_email and owner_email in policy.allow_owners):
        return f"owner {owner_email or facts.user_id} is allow-listed"
    return None


def _keep(facts: ContentFacts, ctx: Context) -> str | None:
    keep = ctx.keeps.get(facts.ref)
    if keep is not None and keep[0] > ctx.now:
        return f"kept by its owner until {keep[0].date()}: {keep[1]}"
    return None


def _usage_exclusion(facts: ContentFacts, policy: Policy) -> str | None:
    if facts.dashboards_using > 0:
        # Trashing a Look breaks every tile that shows it: in use, whatever its own views.
        return f"on {facts.dashboards_using} dashboard tile(s)"
    if policy.exclude_scheduled and facts.schedules > 0:
        return f"scheduled ({facts.schedules} enabled schedule(s) in Looker)"
    if policy.exclude_scheduled and facts.alerts > 0:
        return f"alerted ({facts.alerts} enabled alert(s) in Looker)"
    if policy.exclude_scheduled and facts.schedule_total > 0:
        return f"scheduled ({facts.schedule_total} scheduled deliveries in System Activity)"
    if policy.exclude_favorited and facts.favorite_count > 0:
        return f"favorited by {facts.favorite_count} user(s)"
    if policy.exclude_public and facts.public:
        return "public (its public URL is on)"
    if policy.exclude_public and facts.public_total > 0:
        return f"public ({facts.public_total} public-URL accesses in System Activity)"
    return None


def decide(facts: ContentFacts, policy: Policy, ctx: Context) -> Decision:
    """Warn, trash, purge, keep or skip (with the reason) one dashboard or Look."""
    if facts.deleted:
        return _decide_trashed(facts, policy, ctx)
    last, source = facts.last_access()
    if last is None:
        return Decision("keep", "no access or creation date known")
    idle = (ctx.now - last).days
    if idle > policy.soft_delete_days:
        kind: Kind = "soft_delete"
        reason = f"not accessed for {idle} days (last access {last.date()} from {source})"
    elif idle >= policy.soft_delete_days - policy.warning_days:
        kind = "warn"
        becomes = (last + timedelta(days=policy.soft_delete_days + 1)).date()
        reason = f"inactive from {becomes} (last access {last.date()} from {source}, {idle} days ago)"
    else:
        return Decision("keep", f"accessed {idle} days ago", last)
    excluded = _protection(facts, policy, ctx) or _keep(facts, ctx) or _usage_exclusion(facts, policy)
    if excluded:
        return Decision("skip", excluded, last)
    if kind == "soft_delete":
        warned = ctx.warnings.get(facts.ref)
        due = None if warned is None else warned + timedelta(days=policy.warning_days)
        if warned is None or warned <= last:
            return Decision(
                "warn",
                f"{reason}; owner not warned since, trash no earlier than {policy.warning_days} days after the warning",
                last,
            )
        if due is not None and due > ctx.now:
            return Decision("warn", f"{reason}; warned on {warned.date()}, trash from {due.date()}", last)
        reason = f"{reason}; owner warned on {warned.date()}"
    return Decision(kind, reason, last)


def _decide_trashed(facts: ContentFacts, policy: Policy, ctx: Context) -> Decision:
    if facts.deleted_at is None:
        return Decision("keep", "in trash, trash date unknown")
    days = (ctx.now - facts.deleted_at).days
    if days <= policy.purge_days:
        return Decision("keep", f"in trash for {days} days")
    recorded = ctx.guardian_trashes.get(facts.ref)
    # The very trash the guardian made: a person who restored and re-trashed it changed deleted_at and deleter.
    by_guardian = (
        recorded is not None
        and ctx.guardian_user_id is not None
        and facts.deleter_id == ctx.guardian_user_id
        and abs((recorded - facts.deleted_at).total_seconds()) < 1
    )
    if not by_guardian and not policy.purge_human_trashed:
        who = "the guardian's API user" if facts.deleter_id == ctx.guardian_user_id else f"user {facts.deleter_id}"
        return Decision(
            "skip",
            f"trashed by a person or outside a recorded guardian trash ({who}, {days} days ago); "
            "purge_human_trashed is off",
        )
    protected = _protection(facts, policy, ctx)
    if protected:
        return Decision("skip", protected)
    who = "the guardian" if by_guardian else f"user {facts.deleter_id}"
    return Decision("purge", f"in trash for {days} days (trashed by {who} on {facts.deleted_at.date()})")
