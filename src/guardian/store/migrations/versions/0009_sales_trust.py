"""Sales: every job of a run with its bytes (the run's byte budget).

Revision ID: 0009_sales_trust
Revises: 0004_sales
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_sales_trust"
down_revision = "0004_sales"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sales_runs", sa.Column("jobs", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sales_runs") as batch:
        batch.drop_column("jobs")
