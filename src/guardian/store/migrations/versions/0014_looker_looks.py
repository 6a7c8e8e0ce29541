"""Looker: Looks beside dashboards (a content_type on plans' actions, backups, restores, warnings, keeps).

Existing rows are dashboards (server default 'dashboard'). An action is unique per plan, content
type and id, since Looker numbers Looks and dashboards separately.

Revision ID: 0014_looker_looks
Revises: 0007_looker_trust
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_looker_looks"
down_revision = "0007_looker_trust"
branch_labels = None
depends_on = None

TABLES = ("looker_actions", "looker_backups", "looker_restores", "looker_warnings", "looker_keeps")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("content_type", sa.String(20), nullable=False, server_default=sa.text("'dashboard'"))
            )
    with op.batch_alter_table("looker_actions") as batch:
        batch.drop_constraint("uq_looker_actions_plan_id", type_="unique")
        batch.create_unique_constraint("uq_looker_actions_plan_content", ["plan_id", "content_type", "dashboard_id"])


def downgrade() -> None:
    with op.batch_alter_table("looker_actions") as batch:
        batch.drop_constraint("uq_looker_actions_plan_content", type_="unique")
        batch.create_unique_constraint("uq_looker_actions_plan_id", ["plan_id", "dashboard_id"])
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("content_type")
