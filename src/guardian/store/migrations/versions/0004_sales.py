"""Sales: run records of the sales extract service.

Revision ID: 0004_sales
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sales"
down_revision = "0001_foundation"
branch_labels = ("sales",)
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "sales_runs",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("backend", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.String(320), nullable=True),
        sa.Column("query_hash", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(200), nullable=True),
        sa.Column("bytes_estimated", sa.BigInteger, nullable=True),
        sa.Column("bytes_processed", sa.BigInteger, nullable=True),
        sa.Column("bytes_billed", sa.BigInteger, nullable=True),
        sa.Column("slot_ms", sa.BigInteger, nullable=True),
        sa.Column("query_ms", sa.BigInteger, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("output_uri", sa.String(1000), nullable=True),
        sa.Column("files", sa.JSON, nullable=True),
        sa.Column("checks", sa.JSON, nullable=True),
        sa.Column("sheet_range", sa.String(300), nullable=True),
        sa.Column("error", sa.String(2000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sales_runs"),
        sa.UniqueConstraint("run_id", name="uq_sales_runs_run_id"),
    )
    op.create_index("ix_sales_runs_started_at", "sales_runs", ["started_at"])
    op.create_index("ix_sales_runs_status", "sales_runs", ["status"])


def downgrade() -> None:
    op.drop_table("sales_runs")
