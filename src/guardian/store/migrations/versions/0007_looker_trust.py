"""Looker: the warning ledger and owners' keeps.

Revision ID: 0007_looker_trust
Revises: 0003_looker
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_looker_trust"
down_revision = "0003_looker"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "looker_warnings",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("dashboard_id", sa.String(200), nullable=False),
        sa.Column("warned_at", ts, nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("last_access", ts, nullable=True),
        sa.Column("plan_id", big_id, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_looker_warnings"),
    )
    op.create_index("ix_looker_warnings_dashboard", "looker_warnings", ["instance", "dashboard_id"])
    op.create_table(
        "looker_keeps",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("dashboard_id", sa.String(200), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("until", ts, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_looker_keeps"),
    )
    op.create_index("ix_looker_keeps_dashboard", "looker_keeps", ["instance", "dashboard_id"])


def downgrade() -> None:
    op.drop_table("looker_keeps")
    op.drop_table("looker_warnings")
