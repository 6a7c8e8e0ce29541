"""DAG health: run snapshots in the store, per-DAG summaries, windowed and indexed.

The collector (Airflow's REST API, see :mod:`guardian.monitoring.airflow_api`, or the metadata
database inside Airflow) hands :class:`RunRecord` rows to :func:`upsert_runs`.
:func:`compute_health` reads at most ``window`` days per DAG through the ``(dag_id, end_date)``
index, so its cost depends on the cadence of a DAG, not on how much history is kept;
:func:`prune` drops rows older than ``history_days``. The hourly ``guardian_health`` DAG keeps
each summary as a snapshot; the web UI and ``/metrics`` read the newest snapshot per DAG.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from guardian.monitoring.tables import dag_runs, health_snapshots, task_usage
from guardian.store import Store

FINISHED = ("success", "failed")


@dataclass(frozen=True)
class RunRecord:
    """One DAG run as the collector saw it."""

    dag_id: str
    run_id: str
    state: str
    start_date: datetime | None
    end_date: datetime | None
    run_type: str | None = None
    failed_tasks: list[str] = field(default_factory=list)
    retries: int = 0

    @property
    def duration_s(self) -> float | None:
        """Wall-clock seconds from start to end (None while running)."""
        if self.start_date and self.end_date:
            return max(0.0, (_utc(self.end_date) - _utc(self.start_date)).total_seconds())
        return None


@dataclass(frozen=True)
class TaskUsage:
    """Resource use of one task try."""

    dag_id: str
    task_id: str
    run_id: str
    try_number: int
    state: str
    duration_s: float | None
    cpu_seconds: float | None
    peak_rss_bytes: int | None


@dataclass
class DagHealth:
    """The health summary of one DAG at one moment (what a snapshot stores)."""

    dag_id: str
    ts: str
    runs_7d: int = 0
    failed_7d: int = 0
    success_rate_7d: float | None = None
    runs_30d: int = 0
    failed_30d: int = 0
    success_rate_30d: float | None = None
    p50_7d: float | None = None
    p95_7d: float | None = None
    p50_30d: float | None = None
    p95_30d: float | None = None
    trend: str = "steady"
    trend_ratio: float | None = None
    last_success: str | None = None
    last_run_state: str | None = None
    last_run_id: str | None = None
    last_run_end: str | None = None
    last_duration_s: float | None = None
    failing_tasks: dict[str, int] = field(default_factory=dict)
    retries_7d: int = 0
    tasks: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _iso(ts: datetime | None) -> str | None:
    return _utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1) of unsorted values; None when empty."""
    if not values:
        return None
    data = sorted(values)
    pos = (len(data) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return float(data[lo])
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def upsert_runs(store: Store, runs: Iterable[RunRecord], *, source: str) -> int:
    """Insert new runs and update changed ones (state, end, failed tasks); return rows touched."""
    runs = list(runs)
    if not runs:
        return 0
    now = datetime.now(UTC)
    touched = 0
    with store.write() as conn:
        by_dag: dict[str, list[RunRecord]] = {}
        for run in runs:
            by_dag.setdefault(run.dag_id, []).append(run)
        for dag_id, items in by_dag.items():
            existing = {
                row.run_id: row
                for row in conn.execute(
                    select(dag_runs.c.id, dag_runs.c.run_id, dag_runs.c.state, dag_runs.c.end_date).where(
                        dag_runs.c.dag_id == dag_id, dag_runs.c.run_id.in_([r.run_id for r in items])
                    )
                )
            }
            new_rows = []
            for run in items:
                values = {
                    "run_type": run.run_type,
                    "state": run.state,
                    "start_date": run.start_date,
                    "end_date": run.end_date,
                    "duration_s": run.duration_s,
                    "failed_tasks": run.failed_tasks or None,
                    "retries": run.retries,
                    "source": source,
                    "collected_at": now,
                }
                old = existing.get(run.run_id)
                if old is None:
                    new_rows.append({"dag_id": dag_id, "run_id": run.run_id, **values})
                elif old.state != run.state or (old.end_date is None) != (run.end_date is None):
                    conn.execute(update(dag_runs).where(dag_runs.c.id == old.id).values(**values))
                    touched += 1
            if new_rows:
                conn.execute(insert(dag_runs), new_rows)
                touched += len(new_rows)
    return touched


def record_task_usage(store: Store, usage: TaskUsage) -> None:
    """Store the resource use of one task try."""
    with store.write() as conn:
        conn.execute(insert(task_usage).values(ts=datetime.now(UTC), **asdict(usage)))


def last_collected(store: Store) -> datetime | None:
    """When the collector last stored anything (start of the next incremental collection)."""
    with store.read() as conn:
        value = conn.execute(select(func.max(dag_runs.c.collected_at))).scalar()
    return _utc(value) if value else None


def known_dags(store: Store) -> list[str]:
    """Every DAG with a stored run or snapshot."""
    with store.read() as conn:
        runs = {r[0] for r in conn.execute(select(dag_runs.c.dag_id).distinct())}
        snaps = {r[0] for r in conn.execute(select(health_snapshots.c.dag_id).distinct())}
    return sorted(runs | snaps)


def _rate(ok: int, total: int) -> float | None:
    return round(ok / total, 4) if total else None


def compute_dag_health(store: Store, dag_id: str, now: datetime | None = None) -> DagHealth:
    """The summary of one DAG from at most 30 days of its runs (one indexed range scan)."""
    now = _utc(now or datetime.now(UTC))
    since_30, since_7 = now - timedelta(days=30), now - timedelta(days=7)
    health = DagHealth(dag_id=dag_id, ts=_iso(now) or "")
    with store.read() as conn:
        rows = conn.execute(
            select(
                dag_runs.c.run_id,
                dag_runs.c.state,
                dag_runs.c.end_date,
                dag_runs.c.duration_s,
                dag_runs.c.failed_tasks,
                dag_runs.c.retries,
            )
            .where(dag_runs.c.dag_id == dag_id, dag_runs.c.end_date >= since_30, dag_runs.c.end_date <= now)
            .order_by(dag_runs.c.end_date)
        ).all()
        last_success = conn.execute(
            select(func.max(dag_runs.c.end_date)).where(
                dag_runs.c.dag_id == dag_id, dag_runs.c.state == "success", dag_runs.c.end_date <= now
            )
        ).scalar()
        last = conn.execute(
            select(dag_runs.c.run_id, dag_runs.c.state, dag_runs.c.end_date, dag_runs.c.duration_s)
            .where(dag_runs.c.dag_id == dag_id, dag_runs.c.end_date <= now)
            .order_by(dag_runs.c.end_date.desc())
            .limit(1)
        ).first()
        usage = conn.execute(
            select(
                task_usage.c.task_id,
                func.max(task_usage.c.peak_rss_bytes),
                func.avg(task_usage.c.cpu_seconds),
                func.max(task_usage.c.cpu_seconds),
                func.avg(task_usage.c.duration_s),
            )
            .where(task_usage.c.dag_id == dag_id, task_usage.c.ts >= since_7)
            .group_by(task_usage.c.task_id)
        ).all()
    d7: list[float] = []
    d30: list[float] = []
    failing: Counter[str] = Counter()
    for row in rows:
        if row.state not in FINISHED:
            continue
        recent = _utc(row.end_date) >= since_7
        health.runs_30d += 1
        health.failed_30d += row.state == "failed"
        if row.duration_s is not None and row.state == "success":
            d30.append(row.duration_s)
            if recent:
                d7.append(row.duration_s)
        if recent:
            health.runs_7d += 1
            health.failed_7d += row.state == "failed"
            health.retries_7d += row.retries or 0
            if row.state == "failed":
                failing.update(row.failed_tasks or [])
    health.success_rate_7d = _rate(health.runs_7d - health.failed_7d, health.runs_7d)
    health.success_rate_30d = _rate(health.runs_30d - health.failed_30d, health.runs_30d)
    health.p50_7d, health.p95_7d = percentile(d7, 0.5), percentile(d7, 0.95)
    health.p50_30d, health.p95_30d = percentile(d30, 0.5), percentile(d30, 0.95)
    if health.p50_7d and health.p50_30d:
        ratio = health.p50_7d / health.p50_30d
        health.trend_ratio = round(ratio, 3)
        health.trend = "slower" if ratio > 1.2 else "faster" if ratio < 0.8 else "steady"
    health.failing_tasks = dict(failing.most_common(10))
    health.last_success = _iso(last_success)
    if last is not None:
        health.last_run_id, health.last_run_state = last.run_id, last.state
        health.last_run_end, health.last_duration_s = _iso(last.end_date), last.duration_s
    health.tasks = {
        r[0]: {
            "peak_rss_mb": round(r[1] / 2**20, 1) if r[1] else None,
            "cpu_s_avg": round(r[2], 3) if r[2] is not None else None,
            "cpu_s_max": round(r[3], 3) if r[3] is not None else None,
            "duration_s_avg": round(r[4], 3) if r[4] is not None else None,
        }
        for r in usage
    }
    return health


def compute_health(store: Store, dag_ids: Iterable[str] | None = None, now: datetime | None = None) -> list[DagHealth]:
    """Summaries of these DAGs (default: every DAG with stored runs)."""
    ids = sorted(set(dag_ids)) if dag_ids is not None else known_dags(store)
    return [compute_dag_health(store, dag_id, now) for dag_id in ids]


def save_snapshots(store: Store, summaries: Iterable[DagHealth], now: datetime | None = None) -> int:
    """Keep the summaries as this hour's snapshots."""
    ts = _utc(now or datetime.now(UTC))
    rows = [{"ts": ts, "dag_id": s.dag_id, "summary": s.as_dict()} for s in summaries]
    if rows:
        with store.write() as conn:
            conn.execute(insert(health_snapshots), rows)
    return len(rows)


def latest_snapshots(store: Store) -> dict[str, dict[str, Any]]:
    """The newest snapshot of each DAG.

    Every health check snapshots all known DAGs with one timestamp, so the newest batch is
    the rows at the newest ``ts``: two lookups on the ``ts`` index, whatever the history.
    """
    with store.read() as conn:
        newest = conn.execute(select(func.max(health_snapshots.c.ts))).scalar()
        if newest is None:
            return {}
        out = {
            row.dag_id: row.summary
            for row in conn.execute(
                select(health_snapshots.c.dag_id, health_snapshots.c.summary).where(health_snapshots.c.ts == newest)
            )
        }
    return out


def recent_runs(store: Store, limit: int = 20, dag_id: str | None = None) -> list[dict[str, Any]]:
    """The newest finished or running runs (newest end first)."""
    query = select(dag_runs).order_by(dag_runs.c.end_date.desc()).limit(limit)
    if dag_id:
        query = query.where(dag_runs.c.dag_id == dag_id)
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def baseline_durations(store: Store, dag_id: str, before: datetime, *, days: int = 30) -> list[float]:
    """Durations of the DAG's successful runs that ended in the ``days`` before ``before`` (exclusive).

    The slow-run check compares a run with these: the run it judges is never part of its own baseline.
    """
    before = _utc(before)
    with store.read() as conn:
        return [
            float(r[0])
            for r in conn.execute(
                select(dag_runs.c.duration_s).where(
                    dag_runs.c.dag_id == dag_id,
                    dag_runs.c.state == "success",
                    dag_runs.c.duration_s.is_not(None),
                    dag_runs.c.end_date >= before - timedelta(days=days),
                    dag_runs.c.end_date < before,
                )
            )
        ]


def last_finished_states(store: Store, dag_id: str, n: int) -> list[str]:
    """States of the DAG's last n finished runs, newest first."""
    with store.read() as conn:
        return [
            r[0]
            for r in conn.execute(
                select(dag_runs.c.state)
                .where(dag_runs.c.dag_id == dag_id, dag_runs.c.end_date.is_not(None), dag_runs.c.state.in_(FINISHED))
                .order_by(dag_runs.c.end_date.desc())
                .limit(n)
            )
        ]


def prune(store: Store, history_days: int, now: datetime | None = None) -> int:
    """Drop runs, snapshots and task usage older than history_days; return rows removed."""
    cutoff = _utc(now or datetime.now(UTC)) - timedelta(days=history_days)
    removed = 0
    with store.write() as conn:
        removed += conn.execute(delete(dag_runs).where(dag_runs.c.end_date < cutoff)).rowcount or 0
        removed += conn.execute(delete(health_snapshots).where(health_snapshots.c.ts < cutoff)).rowcount or 0
        removed += conn.execute(delete(task_usage).where(task_usage.c.ts < cutoff)).rowcount or 0
    return removed
