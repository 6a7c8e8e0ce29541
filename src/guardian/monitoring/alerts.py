"""Threshold alerts with deduplication: one alert when a condition starts, one when it clears.

:func:`evaluate` turns the health summaries (plus data-quality results and the audit chain)
into the set of conditions that hold now; :func:`reconcile` compares them with the open
alerts in the store and returns only the transitions, which :func:`run_checks` delivers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from guardian.errors import ConfigError
from guardian.monitoring.health import DagHealth, _utc, baseline_durations, last_finished_states, percentile
from guardian.monitoring.tables import alerts

if TYPE_CHECKING:
    from guardian.monitoring.config import MonitoringSettings
    from guardian.monitoring.messages import Transport
    from guardian.settings import Settings
    from guardian.store import Store

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")


@dataclass(frozen=True)
class Condition:
    """A condition that holds now; ``key`` identifies it across evaluations."""

    key: str
    kind: str
    message: str
    dag_id: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class Transition:
    """A condition that started or cleared at this evaluation."""

    condition: Condition
    started: bool


def parse_intervals(entries: Sequence[str]) -> dict[str, timedelta]:
    """``dag_id=15m`` entries (m, h, d) as timedeltas; ConfigError naming a bad entry."""
    out: dict[str, timedelta] = {}
    for entry in entries:
        dag_id, _, spec = entry.partition("=")
        match = _DURATION.match(spec.strip())
        if not dag_id.strip() or not match:
            raise ConfigError(
                f"GUARDIAN_MONITORING__EXPECTED_INTERVALS: entry {entry!r} is not dag_id=<number><m|h|d>, e.g. x=15m"
            )
        amount, unit = float(match.group(1)), match.group(2)
        out[dag_id.strip()] = (
            timedelta(minutes=amount) if unit == "m" else timedelta(hours=amount * (24 if unit == "d" else 1))
        )
    return out


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"


def failure_rate_regression(
    recent: Sequence[str], before: Sequence[str], cfg: MonitoringSettings
) -> tuple[float, str] | None:
    """(rate, message) when the recent runs fail more often than the runs before them allow; else None.

    ``recent`` are the states of the newest ``failure_rate_window`` finished runs, ``before`` those of
    the runs that finished before them (the baseline). The window alerts when it holds at least
    ``failure_rate_min_runs`` runs, its failure rate exceeds ``failure_rate_threshold`` and either
    exceeds the baseline's by more than ``failure_rate_margin`` or reaches ``failure_rate_ceiling``.
    A baseline shorter than ``failure_rate_min_runs`` counts as none (rate 0: nothing known yet).
    """
    if len(recent) < cfg.failure_rate_min_runs:
        return None
    failed = sum(1 for s in recent if s == "failed")
    rate = failed / len(recent)
    known = len(before) >= cfg.failure_rate_min_runs
    base_failed = sum(1 for s in before if s == "failed") if known else 0
    base = base_failed / len(before) if known else 0.0
    if rate <= cfg.failure_rate_threshold:
        return None
    if rate < cfg.failure_rate_ceiling and rate - base <= cfg.failure_rate_margin:
        return None
    against = (
        f"against {base_failed} of the {len(before)} runs before them ({base:.0%})"
        if known
        else f"with no baseline yet ({len(before)} earlier runs)"
    )
    return round(rate, 4), f"{failed} of the last {len(recent)} runs failed ({rate:.0%}), {against}"


def evaluate(
    settings: Settings,
    store: Store,
    summaries: Iterable[DagHealth],
    *,
    now: datetime | None = None,
    quality_failures: Sequence[dict[str, Any]] = (),
    audit_problem: str | None = None,
) -> list[Condition]:
    """Every threshold condition that holds now."""
    cfg = settings.monitoring
    now = _utc(now or datetime.now(UTC))
    intervals = parse_intervals(cfg.expected_intervals)
    summaries = list(summaries)
    by_dag = {s.dag_id: s for s in summaries}
    out: list[Condition] = []
    for h in summaries:
        # The window is judged against the runs before it, never against itself.
        states = last_finished_states(store, h.dag_id, cfg.failure_rate_window + cfg.failure_rate_baseline_runs)
        judged = failure_rate_regression(states[: cfg.failure_rate_window], states[cfg.failure_rate_window :], cfg)
        if judged is not None:
            rate, message = judged
            out.append(Condition(f"failure_rate:{h.dag_id}", "failure_rate", f"{h.dag_id}: {message}", h.dag_id, rate))
        if h.last_run_state == "success" and h.last_duration_s is not None and h.last_run_end:
            # The baseline is the runs before the one judged: a 16x slower run must not raise
            # its own p95 enough to hide itself.
            end = datetime.fromisoformat(h.last_run_end.replace("Z", "+00:00"))
            before = baseline_durations(store, h.dag_id, end)
            p95 = percentile(before, 0.95)
            if p95 and len(before) >= cfg.slow_min_runs and h.last_duration_s > cfg.slow_factor * p95:
                out.append(
                    Condition(
                        f"slow_run:{h.dag_id}",
                        "slow_run",
                        f"{h.dag_id}: run {h.last_run_id} took {h.last_duration_s:.0f} s, more than "
                        f"{cfg.slow_factor:g} x the 30-day p95 of the {len(before)} runs before it ({p95:.0f} s)",
                        h.dag_id,
                        round(h.last_duration_s, 3),
                    )
                )
    for dag_id, interval in intervals.items():
        summary = by_dag.get(dag_id)
        if summary is None:
            # A DAG the guardian has never seen run may not be deployed here: nothing to miss yet.
            continue
        last_success = summary.last_success
        if last_success is None:
            out.append(
                Condition(
                    f"no_success:{dag_id}",
                    "no_success",
                    f"{dag_id}: no successful run recorded (expected one every {_human(interval)})",
                    dag_id,
                )
            )
            continue
        age = now - _utc(datetime.fromisoformat(last_success.replace("Z", "+00:00")))
        if age > interval:
            out.append(
                Condition(
                    f"no_success:{dag_id}",
                    "no_success",
                    f"{dag_id}: last success {_human(age)} ago (expected one every {_human(interval)})",
                    dag_id,
                    round(age.total_seconds(), 1),
                )
            )
    suites: dict[str, list[dict[str, Any]]] = {}
    for result in quality_failures:
        suites.setdefault(str(result["suite"]), []).append(result)
    for suite, failed in sorted(suites.items()):
        names = sorted({str(r["check_name"]) for r in failed})
        out.append(
            Condition(
                f"quality:{suite}",
                "quality",
                f"data quality suite {suite}: {len(failed)} error-severity failure(s) in the last "
                f"{cfg.quality_window_hours} h ({', '.join(names[:5])})",
                None,
                float(len(failed)),
            )
        )
    if audit_problem:
        out.append(Condition("audit_chain", "audit_chain", f"audit chain fails verification: {audit_problem}"))
    return out


def open_alerts(store: Store) -> list[dict[str, Any]]:
    """Alerts that started and have not cleared, oldest first."""
    with store.read() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(select(alerts).where(alerts.c.cleared_at.is_(None)).order_by(alerts.c.opened_at))
        ]


def alert_history(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The newest alerts, open or cleared."""
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(alerts).order_by(alerts.c.id.desc()).limit(limit))]


def reconcile(
    store: Store,
    conditions: Iterable[Condition],
    now: datetime | None = None,
    *,
    settings: Settings | None = None,
    transport: Transport | None = None,
) -> list[Transition]:
    """Open alerts for new conditions, clear those that no longer hold; return only the changes.

    With ``settings``, each transition's deliveries are put in the outbox in the same
    transaction, so an alert state is never saved without the messages that announce it.
    """
    now = _utc(now or datetime.now(UTC))
    current = {c.key: c for c in conditions}
    transitions: list[Transition] = []
    with store.write() as conn:
        open_rows = {r.key: r for r in conn.execute(select(alerts).where(alerts.c.cleared_at.is_(None))).all()}
        for key, cond in current.items():
            row = open_rows.get(key)
            if row is None:
                conn.execute(
                    insert(alerts).values(
                        key=key,
                        kind=cond.kind,
                        dag_id=cond.dag_id,
                        message=cond.message[:2000],
                        value=cond.value,
                        opened_at=now,
                        last_seen_at=now,
                    )
                )
                transitions.append(Transition(cond, True))
            else:
                conn.execute(
                    update(alerts)
                    .where(alerts.c.id == row.id)
                    .values(message=cond.message[:2000], value=cond.value, last_seen_at=now)
                )
        for key, row in open_rows.items():
            if key not in current:
                conn.execute(update(alerts).where(alerts.c.id == row.id).values(cleared_at=now))
                transitions.append(
                    Transition(Condition(key, row.kind, f"cleared: {row.message}", row.dag_id, row.value), False)
                )
        if settings is not None:
            from guardian.monitoring import outbox
            from guardian.monitoring.messages import slack_wanted, threshold_message

            for t in transitions:
                c = t.condition
                message = threshold_message(
                    kind=c.kind, key=c.key, dag_id=c.dag_id, message=c.message, started=t.started
                )
                outbox.enqueue(
                    conn,
                    settings,
                    alert_key=c.key,
                    started=t.started,
                    message=message,
                    slack=slack_wanted(settings, c.dag_id),
                    now=now,
                    transport=transport,
                )
    return transitions
