"""One health check: store the runs, summarise each DAG, snapshot, alert on transitions, prune.

The ``guardian_health`` DAG and ``guardian health check`` call :func:`run_health_check`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from guardian.monitoring import alerts as alerts_mod
from guardian.monitoring import outbox
from guardian.monitoring.health import (
    DagHealth,
    RunRecord,
    _utc,
    compute_health,
    known_dags,
    prune,
    save_snapshots,
    upsert_runs,
)
from guardian.monitoring.messages import Delivery, Transport

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store

log = logging.getLogger(__name__)


@dataclass
class HealthReport:
    """What one health check saw and did."""

    collected: int
    summaries: list[DagHealth]
    conditions: list[alerts_mod.Condition]
    transitions: list[alerts_mod.Transition]
    deliveries: list[Delivery] = field(default_factory=list)
    pruned: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the DAG's return value and ``--json`` output)."""
        return {
            "collected": self.collected,
            "dags": [s.as_dict() for s in self.summaries],
            "open_conditions": [c.key for c in self.conditions],
            "started": [t.condition.key for t in self.transitions if t.started],
            "cleared": [t.condition.key for t in self.transitions if not t.started],
            "deliveries": [{"channel": d.channel, "delivered": d.delivered} for d in self.deliveries],
            "pruned": self.pruned,
        }

    def text(self) -> str:
        """A short human summary, one line per DAG and per alert change."""
        lines = [f"collected {self.collected} run(s); {len(self.summaries)} DAG(s); pruned {self.pruned} row(s)"]
        for s in self.summaries:
            rate = f"{s.success_rate_7d:.0%}" if s.success_rate_7d is not None else "-"
            p95 = f"{s.p95_7d:.1f}s" if s.p95_7d is not None else "-"
            lines.append(
                f"  {s.dag_id}: 7d success {rate} of {s.runs_7d} run(s), p95 {p95}, "
                f"last {s.last_run_state or '-'}, last success {s.last_success or 'never'}"
            )
        for t in self.transitions:
            lines.append(f"  {'ALERT' if t.started else 'RESOLVED'} {t.condition.message}")
        if not self.transitions:
            lines.append(f"  no alert changes; open conditions: {len(self.conditions)}")
        return "\n".join(lines)


def quality_failures(store: Store, hours: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """Error-severity quality results that failed in the last ``hours``."""
    from guardian.quality.results import quality_results

    since = _utc(now or datetime.now(UTC)) - timedelta(hours=hours)
    query = select(quality_results).where(
        quality_results.c.ts >= since,
        quality_results.c.passed.is_(False),
        quality_results.c.severity == "error",
    )
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query.limit(1000))]


def run_health_check(
    settings: Settings,
    store: Store,
    runs: Iterable[RunRecord] = (),
    *,
    source: str = "api",
    dag_ids: Iterable[str] | None = None,
    now: datetime | None = None,
    notify: bool = True,
    transport: Transport | None = None,
) -> HealthReport:
    """Store the collected runs, snapshot every DAG's health and deliver alert transitions."""
    from guardian import audit

    collected = upsert_runs(store, runs, source=source)
    ids = set(known_dags(store)) | set(dag_ids or ())
    summaries = compute_health(store, ids, now)
    save_snapshots(store, summaries, now)
    verify = audit.verify(store, settings=settings)
    if verify.ok and verify.rows:
        # The chain head goes to write-once storage every health check: a later cut of the
        # newest rows, or a rewrite, is then visible even to someone who re-hashes the chain.
        try:
            audit.anchor(settings, store, check=False)
        except Exception as exc:  # storage down must not stop health checks; the next run anchors
            log.warning("guardian: audit anchor not written: %s", exc)
    conditions = alerts_mod.evaluate(
        settings,
        store,
        summaries,
        now=now,
        quality_failures=quality_failures(store, settings.monitoring.quality_window_hours, now),
        audit_problem=None if verify.ok else verify.reason,
    )
    transitions = alerts_mod.reconcile(
        store, conditions, now, settings=settings if notify else None, transport=transport
    )
    report = HealthReport(collected, summaries, conditions, transitions)
    if notify:
        # This run's transitions and any earlier delivery that failed and is due again.
        report.deliveries += outbox.drain(settings, store, now, transport=transport)
    report.pruned = prune(store, settings.monitoring.history_days, now) + outbox.prune(
        store, settings.monitoring.history_days, now
    )
    return report
