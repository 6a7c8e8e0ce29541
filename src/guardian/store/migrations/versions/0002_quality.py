"""Quality: stored results of data-quality checks.

Revision ID: 0002_quality
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_quality"
down_revision = "0001_foundation"
branch_labels = ("quality",)
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "quality_results",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suite", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("check_name", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("details", sa.JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quality_results"),
    )
    op.create_index("ix_quality_results_suite_ts", "quality_results", ["suite", "ts"])
    op.create_index("ix_quality_results_subject", "quality_results", ["subject"])


def downgrade() -> None:
    op.drop_table("quality_results")
