"""Looker: plans, per-dashboard actions, backups and restores.

Revision ID: 0003_looker
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_looker"
down_revision = "0001_foundation"
branch_labels = ("looker",)
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "looker_plans",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("inventory_size", sa.Integer, nullable=False),
        sa.Column("trash_size", sa.Integer, nullable=False),
        sa.Column("api_calls", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("override_by", sa.String(200), nullable=True),
        sa.Column("override_at", ts, nullable=True),
        sa.Column("notified_at", ts, nullable=True),
        sa.Column("last_applied_at", ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_looker_plans"),
    )
    op.create_index("ix_looker_plans_instance_created", "looker_plans", ["instance", "created_at"])
    op.create_table(
        "looker_actions",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("plan_id", big_id, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("dashboard_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("owner_id", sa.String(100), nullable=True),
        sa.Column("owner_name", sa.String(200), nullable=True),
        sa.Column("folder_id", sa.String(100), nullable=True),
        sa.Column("folder_name", sa.String(300), nullable=True),
        sa.Column("last_access", ts, nullable=True),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(500), nullable=True),
        sa.Column("backup_key", sa.String(500), nullable=True),
        sa.Column("backup_sha256", sa.String(64), nullable=True),
        sa.Column("after", sa.JSON, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("owner_notified", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_looker_actions"),
        sa.UniqueConstraint("plan_id", "dashboard_id", name="uq_looker_actions_plan_id"),
    )
    op.create_index("ix_looker_actions_plan_kind", "looker_actions", ["plan_id", "kind"])
    op.create_index("ix_looker_actions_dashboard", "looker_actions", ["dashboard_id"])
    op.create_table(
        "looker_backups",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("dashboard_id", sa.String(200), nullable=False),
        sa.Column("plan_id", big_id, nullable=True),
        sa.Column("uri", sa.String(1000), nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("title", sa.String(500), nullable=True),
        sa.Column("folder_id", sa.String(100), nullable=True),
        sa.Column("dashboard_updated_at", sa.String(40), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_looker_backups"),
        sa.UniqueConstraint("key", name="uq_looker_backups_key"),
    )
    op.create_index("ix_looker_backups_dashboard", "looker_backups", ["instance", "dashboard_id"])
    op.create_table(
        "looker_restores",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("dashboard_id", sa.String(200), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("new_dashboard_id", sa.String(200), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_looker_restores"),
    )
    op.create_index("ix_looker_restores_dashboard", "looker_restores", ["instance", "dashboard_id"])


def downgrade() -> None:
    op.drop_table("looker_restores")
    op.drop_table("looker_backups")
    op.drop_table("looker_actions")
    op.drop_table("looker_plans")
