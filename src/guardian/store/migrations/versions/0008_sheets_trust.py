"""Sheets: row identity, per-request attempts and Airflow state on the request ledger; unread poll counters go.

Revision ID: 0008_sheets_trust
Revises: 0005_sheets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_sheets_trust"
down_revision = "0005_sheets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    with op.batch_alter_table("sheets_requests") as batch:
        batch.add_column(sa.Column("tagged", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("handed_at", tz, nullable=True))
        batch.add_column(sa.Column("run_state", sa.String(20), nullable=True))
        batch.add_column(sa.Column("last_error", sa.String(2000), nullable=True))
    op.create_index("ix_sheets_requests_requested_by", "sheets_requests", ["requested_by", "created_at"])
    # Never read: the no-change hash (every poll now plans from the rows and their tags) and poll counters.
    with op.batch_alter_table("sheets_poll_state") as batch:
        batch.drop_column("values_hash")
        batch.drop_column("polls")
        batch.drop_column("no_change_polls")
    # Requests recorded before row identity existed are found by their Run ID cell one last time
    # (guardian.sheets.poll adopts them); nothing to backfill here.


def downgrade() -> None:
    with op.batch_alter_table("sheets_poll_state") as batch:
        batch.add_column(sa.Column("values_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("polls", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("no_change_polls", sa.BigInteger, nullable=False, server_default="0"))
    op.drop_index("ix_sheets_requests_requested_by", table_name="sheets_requests")
    with op.batch_alter_table("sheets_requests") as batch:
        for name in ("last_error", "run_state", "handed_at", "attempts", "fingerprint", "tagged"):
            batch.drop_column(name)
