"""Monitoring: DAG run snapshots, task resource use, threshold alerts, health snapshots, deliveries.

Revision ID: 0006_monitoring
Revises: 0001_foundation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_monitoring"
down_revision = "0001_foundation"
branch_labels = ("monitoring",)
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "monitoring_dag_runs",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("run_type", sa.String(50), nullable=True),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("start_date", ts, nullable=True),
        sa.Column("end_date", ts, nullable=True),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("failed_tasks", sa.JSON, nullable=True),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("collected_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_dag_runs"),
        sa.UniqueConstraint("dag_id", "run_id", name="uq_monitoring_dag_runs_dag_id"),
    )
    op.create_index("ix_monitoring_dag_runs_dag_end", "monitoring_dag_runs", ["dag_id", "end_date"])
    op.create_index("ix_monitoring_dag_runs_end", "monitoring_dag_runs", ["end_date"])
    op.create_table(
        "monitoring_task_usage",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("cpu_seconds", sa.Float, nullable=True),
        sa.Column("peak_rss_bytes", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_task_usage"),
    )
    op.create_index("ix_monitoring_task_usage_dag_ts", "monitoring_task_usage", ["dag_id", "ts"])
    op.create_table(
        "monitoring_alerts",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("message", sa.String(2000), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("opened_at", ts, nullable=False),
        sa.Column("cleared_at", ts, nullable=True),
        sa.Column("last_seen_at", ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_alerts"),
    )
    op.create_index("ix_monitoring_alerts_key_cleared", "monitoring_alerts", ["key", "cleared_at"])
    op.create_index("ix_monitoring_alerts_opened", "monitoring_alerts", ["opened_at"])
    op.create_table(
        "monitoring_health_snapshots",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_health_snapshots"),
    )
    op.create_index("ix_monitoring_health_snapshots_dag_ts", "monitoring_health_snapshots", ["dag_id", "ts"])
    op.create_index("ix_monitoring_health_snapshots_ts", "monitoring_health_snapshots", ["ts"])
    op.create_table(
        "monitoring_notifications",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("delivered", sa.Integer, nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_monitoring_notifications"),
    )
    op.create_index("ix_monitoring_notifications_ts", "monitoring_notifications", ["ts"])


def downgrade() -> None:
    for name in (
        "monitoring_notifications",
        "monitoring_health_snapshots",
        "monitoring_alerts",
        "monitoring_task_usage",
        "monitoring_dag_runs",
    ):
        op.drop_table(name)
