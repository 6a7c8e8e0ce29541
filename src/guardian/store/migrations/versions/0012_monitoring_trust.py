"""Monitoring trust: the alert outbox (every alert transition stored with its delivery per channel).

Revision ID: 0012_monitoring_trust
Revises: 0006_monitoring
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_monitoring_trust"
down_revision = "0006_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "monitoring_alert_outbox",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("alert_key", sa.String(300), nullable=False),
        sa.Column("transition", sa.String(10), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("message", sa.JSON, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", ts, nullable=False),
        sa.Column("claimed_until", ts, nullable=True),
        sa.Column("delivered_at", ts, nullable=True),
        sa.Column("expired_at", ts, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_alert_outbox"),
    )
    op.create_index(
        "ix_monitoring_alert_outbox_pending",
        "monitoring_alert_outbox",
        ["delivered_at", "expired_at", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_monitoring_alert_outbox_pending", table_name="monitoring_alert_outbox")
    op.drop_table("monitoring_alert_outbox")
