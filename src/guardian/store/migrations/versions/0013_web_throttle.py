"""Web throttle: failed standalone-UI logins in the store, shared by every process and kept across restarts.

Revision ID: 0013_web_throttle
Revises: 0011_foundation_trust
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_web_throttle"
down_revision = "0011_foundation_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(66), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_login_failures"),
    )
    op.create_index("ix_web_login_failures_key", "web_login_failures", ["key", "failed_at"])
    op.create_index("ix_web_login_failures_failed_at", "web_login_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_index("ix_web_login_failures_failed_at", table_name="web_login_failures")
    op.drop_index("ix_web_login_failures_key", table_name="web_login_failures")
    op.drop_table("web_login_failures")
