"""The monitoring service's store tables (migration 0006_monitoring)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Float, Index, Integer, String, Table, UniqueConstraint

from guardian.store.schema import Id, metadata

dag_runs = Table(
    "monitoring_dag_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("dag_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("run_type", String(50), nullable=True),
    Column("state", String(30), nullable=False),
    Column("start_date", DateTime(timezone=True), nullable=True),
    Column("end_date", DateTime(timezone=True), nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("failed_tasks", JSON, nullable=True),
    Column("retries", Integer, nullable=False, default=0),
    Column("source", String(20), nullable=False),
    Column("collected_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("dag_id", "run_id", name="uq_monitoring_dag_runs_dag_id"),
    Index("ix_monitoring_dag_runs_dag_end", "dag_id", "end_date"),
    Index("ix_monitoring_dag_runs_end", "end_date"),
)
"""One row per DAG run seen by the collector (REST API or metadata DB), upserted by run."""

task_usage = Table(
    "monitoring_task_usage",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("task_id", String(250), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("try_number", Integer, nullable=False),
    Column("state", String(30), nullable=False),
    Column("duration_s", Float, nullable=True),
    Column("cpu_seconds", Float, nullable=True),
    Column("peak_rss_bytes", BigInteger, nullable=True),
    Index("ix_monitoring_task_usage_dag_ts", "dag_id", "ts"),
)
"""Resource use of one task try, recorded by the guardian task listener."""

alerts = Table(
    "monitoring_alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("dag_id", String(250), nullable=True),
    Column("message", String(2000), nullable=False),
    Column("value", Float, nullable=True),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("cleared_at", DateTime(timezone=True), nullable=True),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Index("ix_monitoring_alerts_key_cleared", "key", "cleared_at"),
    Index("ix_monitoring_alerts_opened", "opened_at"),
)
"""Threshold alerts: a row opens when a condition starts and is closed when it clears."""

health_snapshots = Table(
    "monitoring_health_snapshots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("dag_id", String(250), nullable=False),
    Column("summary", JSON, nullable=False),
    Index("ix_monitoring_health_snapshots_dag_ts", "dag_id", "ts"),
    Index("ix_monitoring_health_snapshots_ts", "ts"),
)
"""The hourly health summary of each DAG, kept for trends."""

notifications = Table(
    "monitoring_notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("dag_id", String(250), nullable=True),
    Column("subject", String(500), nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("error", String(500), nullable=True),
    Index("ix_monitoring_notifications_ts", "ts"),
)
"""Every alert delivery attempt (email or Slack), for the Overview page and the runbook."""

__all__ = ["alert_outbox", "alerts", "dag_runs", "health_snapshots", "notifications", "task_usage"]

alert_outbox = Table(
    "monitoring_alert_outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("alert_key", String(300), nullable=False),
    Column("transition", String(10), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("dag_id", String(250), nullable=True),
    Column("subject", String(500), nullable=False),
    Column("message", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("expired_at", DateTime(timezone=True), nullable=True),
    Column("last_error", String(500), nullable=True),
    Index("ix_monitoring_alert_outbox_pending", "delivered_at", "expired_at", "next_attempt_at"),
)
"""One row per alert transition and channel, written with the transition; delivered and retried from here."""
