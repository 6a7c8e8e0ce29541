"""Prometheus metrics from the newest health snapshots, open alerts and alert deliveries.

Everything is read from small, indexed queries (one group-by over the snapshots' index, the open
alerts, counts by channel), so a scrape costs the same with 90 days of history as with one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from guardian.monitoring import outbox
from guardian.monitoring.alerts import open_alerts
from guardian.monitoring.health import latest_snapshots
from guardian.monitoring.tables import notifications
from guardian.store import Store
from guardian.store.schema import audit_log

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class GuardianCollector:
    """A prometheus_client collector that reads the store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        """Yield every metric family."""
        snaps = latest_snapshots(self.store)
        runs = GaugeMetricFamily("guardian_dag_runs", "Finished runs in the window", labels=["dag_id", "window"])
        failed = GaugeMetricFamily("guardian_dag_failed_runs", "Failed runs in the window", labels=["dag_id", "window"])
        rate = GaugeMetricFamily(
            "guardian_dag_success_ratio", "Successful / finished runs in the window", labels=["dag_id", "window"]
        )
        duration = GaugeMetricFamily(
            "guardian_dag_duration_seconds",
            "Run duration percentile of successful runs",
            labels=["dag_id", "window", "quantile"],
        )
        last_success = GaugeMetricFamily(
            "guardian_dag_last_success_timestamp_seconds", "End of the newest successful run", labels=["dag_id"]
        )
        retries = GaugeMetricFamily("guardian_dag_task_retries_7d", "Task retries in 7 days", labels=["dag_id"])
        rss = GaugeMetricFamily(
            "guardian_task_peak_rss_bytes", "Peak RSS of a task over 7 days", labels=["dag_id", "task_id"]
        )
        cpu = GaugeMetricFamily(
            "guardian_task_cpu_seconds_avg", "Mean CPU seconds of a task try, 7 days", labels=["dag_id", "task_id"]
        )
        snapshot_ts = GaugeMetricFamily(
            "guardian_health_snapshot_timestamp_seconds", "When the health snapshot was taken", labels=["dag_id"]
        )
        for dag_id, s in sorted(snaps.items()):
            for window in ("7d", "30d"):
                runs.add_metric([dag_id, window], s.get(f"runs_{window}") or 0)
                failed.add_metric([dag_id, window], s.get(f"failed_{window}") or 0)
                if s.get(f"success_rate_{window}") is not None:
                    rate.add_metric([dag_id, window], s[f"success_rate_{window}"])
                for q, key in (("0.5", f"p50_{window}"), ("0.95", f"p95_{window}")):
                    if s.get(key) is not None:
                        duration.add_metric([dag_id, window, q], s[key])
            ts = _epoch(s.get("last_success"))
            if ts is not None:
                last_success.add_metric([dag_id], ts)
            retries.add_metric([dag_id], s.get("retries_7d") or 0)
            snap = _epoch(s.get("ts"))
            if snap is not None:
                snapshot_ts.add_metric([dag_id], snap)
            for task_id, usage in (s.get("tasks") or {}).items():
                if usage.get("peak_rss_mb") is not None:
                    rss.add_metric([dag_id, task_id], usage["peak_rss_mb"] * 2**20)
                if usage.get("cpu_s_avg") is not None:
                    cpu.add_metric([dag_id, task_id], usage["cpu_s_avg"])
        yield from (runs, failed, rate, duration, last_success, retries, rss, cpu, snapshot_ts)

        open_now = open_alerts(self.store)
        by_kind = GaugeMetricFamily("guardian_alerts_open", "Open threshold alerts", labels=["kind"])
        counts: dict[str, int] = {}
        for a in open_now:
            counts[a["kind"]] = counts.get(a["kind"], 0) + 1
        for kind in ("failure_rate", "slow_run", "no_success", "quality", "audit_chain"):
            by_kind.add_metric([kind], counts.get(kind, 0))
        yield by_kind
        each = GaugeMetricFamily("guardian_alert_open", "1 for each open alert", labels=["key", "kind", "dag_id"])
        for a in open_now:
            each.add_metric([a["key"], a["kind"], a["dag_id"] or ""], 1)
        yield each

        with self.store.read() as conn:
            sent = conn.execute(
                select(notifications.c.channel, notifications.c.delivered, func.count()).group_by(
                    notifications.c.channel, notifications.c.delivered
                )
            ).all()
            audit_rows = conn.execute(select(func.max(audit_log.c.seq))).scalar() or 0
        deliveries = CounterMetricFamily(
            "guardian_alert_deliveries", "Alert delivery attempts", labels=["channel", "delivered"]
        )
        for channel, delivered, n in sent:
            deliveries.add_metric([channel, "true" if delivered else "false"], n)
        yield deliveries
        pending = GaugeMetricFamily(
            "guardian_alerts_undelivered",
            "Alert deliveries not made yet (state pending: being retried; expired: given up)",
            labels=["channel", "state"],
        )
        outbox_counts = outbox.counts(self.store)
        for channel in ("email", "slack"):
            for state in ("pending", "expired"):
                pending.add_metric([channel, state], outbox_counts.get((channel, state), 0))
        yield pending
        audit = CounterMetricFamily("guardian_audit_events", "Events in the audit chain")
        audit.add_metric([], audit_rows)
        yield audit


def render(store: Store) -> bytes:
    """The Prometheus text exposition of the guardian's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GuardianCollector(store))
    return generate_latest(registry)
