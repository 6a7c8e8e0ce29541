"""Sheets: the request ledger and the per-range poll state.

Revision ID: 0005_sheets
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_sheets"
down_revision = "0001_foundation"
branch_labels = ("sheets",)
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "sheets_requests",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("base_key", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("spreadsheet_id", sa.String(200), nullable=False),
        sa.Column("tab", sa.String(200), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("target_dag", sa.String(250), nullable=False),
        sa.Column("dag_run_id", sa.String(250), nullable=False),
        sa.Column("conf", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.String(320), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("output_uri", sa.String(2000), nullable=True),
        sa.Column("executed_run_id", sa.String(250), nullable=True),
        sa.Column("sheet_status", sa.String(20), nullable=True),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("acked_at", tz, nullable=True),
        sa.Column("finished_at", tz, nullable=True),
        sa.Column("notified_at", tz, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sheets_requests"),
        sa.UniqueConstraint("request_key", name="uq_sheets_requests_request_key"),
        sa.UniqueConstraint("request_id", name="uq_sheets_requests_request_id"),
    )
    op.create_index("ix_sheets_requests_base_key", "sheets_requests", ["base_key"])
    op.create_index("ix_sheets_requests_sheet_status", "sheets_requests", ["spreadsheet_id", "status"])
    op.create_table(
        "sheets_poll_state",
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("values_hash", sa.String(64), nullable=True),
        sa.Column("last_poll_at", tz, nullable=True),
        sa.Column("last_outcome", sa.String(20), nullable=True),
        sa.Column("polls", sa.BigInteger, nullable=False),
        sa.Column("no_change_polls", sa.BigInteger, nullable=False),
        sa.Column("alert_open", sa.Boolean, nullable=False),
        sa.Column("alert_reason", sa.String(2000), nullable=True),
        sa.Column("alert_since", tz, nullable=True),
        sa.PrimaryKeyConstraint("source", name="pk_sheets_poll_state"),
    )


def downgrade() -> None:
    op.drop_table("sheets_poll_state")
    op.drop_index("ix_sheets_requests_sheet_status", table_name="sheets_requests")
    op.drop_index("ix_sheets_requests_base_key", table_name="sheets_requests")
    op.drop_table("sheets_requests")
