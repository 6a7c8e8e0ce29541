"""Store tables of the Looker service (migrations 0003_looker, 0007_looker_trust and 0014_looker_looks).

``content_type`` ("dashboard" or "look", 0014) says what the ``dashboard_id`` column names:
Looker numbers dashboards and Looks separately. Rows written before Looks are dashboards.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, Integer, String, Table, UniqueConstraint, text

from guardian.store.schema import Id, metadata


def _content_type() -> Column[str]:
    return Column("content_type", String(20), nullable=False, server_default=text("'dashboard'"))


looker_plans = Table(
    "looker_plans",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("instance", String(100), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("policy", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("counts", JSON, nullable=False),
    Column("inventory_size", Integer, nullable=False),
    Column("trash_size", Integer, nullable=False),
    Column("api_calls", Integer, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("override_by", String(200), nullable=True),
    Column("override_at", DateTime(timezone=True), nullable=True),
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("last_applied_at", DateTime(timezone=True), nullable=True),
    Index("ix_looker_plans_instance_created", "instance", "created_at"),
)
"""One row per plan: the policy used, a hash of its actions, counts, status."""

looker_actions = Table(
    "looker_actions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("plan_id", Id, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("dashboard_id", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("title", String(500), nullable=True),
    Column("owner_id", String(100), nullable=True),
    Column("owner_name", String(200), nullable=True),
    Column("folder_id", String(100), nullable=True),
    Column("folder_name", String(300), nullable=True),
    Column("last_access", DateTime(timezone=True), nullable=True),
    Column("snapshot", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("outcome", String(500), nullable=True),
    Column("backup_key", String(500), nullable=True),
    Column("backup_sha256", String(64), nullable=True),
    Column("after", JSON, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("owner_notified", Boolean, nullable=False),
    _content_type(),
    UniqueConstraint("plan_id", "content_type", "dashboard_id", name="uq_looker_actions_plan_content"),
    Index("ix_looker_actions_plan_kind", "plan_id", "kind"),
    Index("ix_looker_actions_dashboard", "dashboard_id"),
)
"""One row per dashboard the plan acts on or excludes; ``state`` makes apply resumable."""

looker_backups = Table(
    "looker_backups",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("instance", String(100), nullable=False),
    Column("dashboard_id", String(200), nullable=False),
    Column("plan_id", Id, nullable=True),
    Column("uri", String(1000), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("title", String(500), nullable=True),
    Column("folder_id", String(100), nullable=True),
    Column("dashboard_updated_at", String(40), nullable=True),
    _content_type(),
    UniqueConstraint("key", name="uq_looker_backups_key"),
    Index("ix_looker_backups_dashboard", "instance", "dashboard_id"),
)
"""Verified write-once backups (dashboard JSON + LookML) in object storage."""

looker_restores = Table(
    "looker_restores",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("instance", String(100), nullable=False),
    Column("dashboard_id", String(200), nullable=False),
    Column("method", String(20), nullable=False),
    Column("new_dashboard_id", String(200), nullable=True),
    Column("detail", String(1000), nullable=False),
    Column("actor", String(200), nullable=False),
    _content_type(),
    Index("ix_looker_restores_dashboard", "instance", "dashboard_id"),
)
"""Every restore: un-trashed, re-imported from a backup, no-op or failed."""

looker_warnings = Table(
    "looker_warnings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("instance", String(100), nullable=False),
    Column("dashboard_id", String(200), nullable=False),
    Column("warned_at", DateTime(timezone=True), nullable=False),
    Column("address", String(300), nullable=False),
    Column("last_access", DateTime(timezone=True), nullable=True),
    Column("plan_id", Id, nullable=True),
    _content_type(),
    Index("ix_looker_warnings_dashboard", "instance", "dashboard_id"),
)
"""The warning ledger: every owner (or team) warning the guardian delivered, across plans."""

looker_keeps = Table(
    "looker_keeps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("instance", String(100), nullable=False),
    Column("dashboard_id", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("actor", String(200), nullable=False),
    _content_type(),
    Index("ix_looker_keeps_dashboard", "instance", "dashboard_id"),
)
"""Keeps asked by owners: the dashboard is never trashed before ``until``."""

__all__ = ["looker_actions", "looker_backups", "looker_keeps", "looker_plans", "looker_restores", "looker_warnings"]
