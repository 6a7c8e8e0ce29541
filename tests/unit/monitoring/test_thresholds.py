"""Threshold conditions and their dedup, on the real store (SQLite), without delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from guardian.errors import ConfigError
from guardian.monitoring.alerts import Condition, evaluate, open_alerts, parse_intervals, reconcile
from guardian.monitoring.config import MonitoringSettings
from guardian.monitoring.health import RunRecord, compute_health, percentile, prune, upsert_runs
from guardian.settings import load_settings
from guardian.store import get_store

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def _runs(dag: str, durations: list[float], *, state: str = "success", every: timedelta = timedelta(minutes=5)) -> list:
    out = []
    for i, d in enumerate(durations):
        end = NOW - every * (len(durations) - i)
        out.append(RunRecord(dag, f"{dag}-{i}", state, end - timedelta(seconds=d), end))
    return out


def test_percentile_and_intervals() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10.0] * 19 + [100.0], 0.95) == pytest.approx(14.5)
    assert parse_intervals(["a=15m", "b=3h", "c=32d"]) == {
        "a": timedelta(minutes=15),
        "b": timedelta(hours=3),
        "c": timedelta(days=32),
    }
    with pytest.raises(ConfigError, match="EXPECTED_INTERVALS"):
        parse_intervals(["a=soon"])


def test_slow_run_no_success_quality_and_audit_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GUARDIAN_MONITORING__EXPECTED_INTERVALS", "google_sheet_trigger_dag=15m,looker_dashboard_deletion=32d"
    )
    settings = load_settings()
    store = get_store(settings)
    # 20 runs of ~60 s, then one of 400 s (> 2 x p95).
    upsert_runs(store, _runs("bigquery_sales_query", [60.0 + i % 3 for i in range(20)] + [400.0]), source="test")
    # The poller's last success was 40 minutes ago.
    upsert_runs(store, _runs("google_sheet_trigger_dag", [5.0], every=timedelta(minutes=40)), source="test")
    summaries = compute_health(store, now=NOW)
    conditions = evaluate(
        settings,
        store,
        summaries,
        now=NOW,
        quality_failures=[{"suite": "sales_extract", "check_name": "row_count"}],
        audit_problem="row 7 was edited",
    )
    keys = {c.key: c for c in conditions}
    assert set(keys) == {
        "slow_run:bigquery_sales_query",
        "no_success:google_sheet_trigger_dag",
        "quality:sales_extract",
        "audit_chain",
    }
    assert "took 400 s" in keys["slow_run:bigquery_sales_query"].message
    assert "last success 40 min ago" in keys["no_success:google_sheet_trigger_dag"].message
    # looker_dashboard_deletion has never been seen here: nothing to miss yet.


def test_failure_rate_needs_enough_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    store = get_store(settings)
    upsert_runs(store, _runs("x", [5.0, 5.0], state="failed"), source="test")
    assert not [
        c for c in evaluate(settings, store, compute_health(store, now=NOW), now=NOW) if c.kind == "failure_rate"
    ]
    more = [
        RunRecord("x", f"more-{i}", "failed", NOW - timedelta(minutes=i, seconds=5), NOW - timedelta(minutes=i))
        for i in range(3)
    ]
    upsert_runs(store, more, source="test")
    [rate] = [c for c in evaluate(settings, store, compute_health(store, now=NOW), now=NOW) if c.kind == "failure_rate"]
    assert rate.key == "failure_rate:x" and rate.value == 1.0 and "5 of the last 5 runs failed" in rate.message


def test_reconcile_opens_once_and_clears_once() -> None:
    store = get_store(load_settings())
    c = Condition("slow_run:x", "slow_run", "x is slow", "x", 10.0)
    assert [t.started for t in reconcile(store, [c], NOW)] == [True]
    assert reconcile(store, [c], NOW + timedelta(hours=1)) == []
    assert len(open_alerts(store)) == 1
    assert [t.started for t in reconcile(store, [], NOW + timedelta(hours=2))] == [False]
    assert reconcile(store, [], NOW + timedelta(hours=3)) == []
    # The same condition again later is a new alert.
    assert [t.started for t in reconcile(store, [c], NOW + timedelta(hours=4))] == [True]


def test_upsert_updates_state_and_prune_drops_old_history() -> None:
    store = get_store(load_settings())
    running = RunRecord("d", "r1", "running", NOW - timedelta(minutes=1), None)
    assert upsert_runs(store, [running], source="t") == 1
    assert upsert_runs(store, [running], source="t") == 0
    done = RunRecord("d", "r1", "failed", NOW - timedelta(minutes=1), NOW, failed_tasks=["t1"])
    assert upsert_runs(store, [done], source="t") == 1
    [h] = compute_health(store, ["d"], now=NOW + timedelta(seconds=1))
    assert h.failed_7d == 1 and h.failing_tasks == {"t1": 1} and h.last_success is None
    old = RunRecord("d", "old", "success", NOW - timedelta(days=200, minutes=1), NOW - timedelta(days=200))
    upsert_runs(store, [old], source="t")
    assert prune(store, 90, now=NOW) == 1


def test_a_16x_slower_run_alerts_after_10_normal_runs() -> None:
    # With the judged run in its own baseline, p95 of the 11 runs is 510 s and 960 s < 2 x 510 s.
    settings = load_settings()
    store = get_store(settings)
    upsert_runs(store, _runs("d", [60.0] * 10 + [960.0]), source="test")
    [slow] = [c for c in evaluate(settings, store, compute_health(store, now=NOW), now=NOW) if c.kind == "slow_run"]
    assert slow.value == 960.0 and "the 10 runs before it (60 s)" in slow.message


# Invariant: a successful run alerts as slow exactly when it took longer than slow_factor times
# the p95 of the successful runs that ended before it (at least slow_min_runs of them).
@given(
    before=st.lists(st.floats(min_value=1, max_value=1000), min_size=0, max_size=12),
    last=st.floats(min_value=1, max_value=20000),
)
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_slow_run_is_judged_against_the_runs_before_it(before: list[float], last: float) -> None:
    from guardian.store import reset_stores

    reset_stores()
    cfg = load_settings(store={"url": "sqlite://"})
    store = get_store(cfg)
    upsert_runs(store, _runs("p", [*before, last]), source="test")
    alerted = any(c.kind == "slow_run" for c in evaluate(cfg, store, compute_health(store, now=NOW), now=NOW))
    # Durations go through timestamps (microseconds); compare with what was stored.
    stored = [r.duration_s for r in _runs("p", [*before, last])]
    p95 = percentile(stored[:-1], 0.95)
    expected = len(before) >= cfg.monitoring.slow_min_runs and p95 is not None and stored[-1] > 2.0 * p95
    assert alerted is expected


def _states(dag: str, states: list[str]) -> list[RunRecord]:
    # Oldest first, one run every 5 minutes ending before NOW.
    return [
        RunRecord(dag, f"{dag}-{i}", s, NOW - timedelta(minutes=5 * (len(states) - i), seconds=30), end)
        for i, s in enumerate(states)
        for end in [NOW - timedelta(minutes=5 * (len(states) - i))]
    ]


def _failure_rate(store: object, settings: object) -> list[Condition]:
    return [c for c in evaluate(settings, store, compute_health(store, now=NOW), now=NOW) if c.kind == "failure_rate"]  # type: ignore[arg-type]


def test_a_regression_after_a_clean_history_alerts() -> None:
    # 40 clean runs, then 3 of the last 10 fail. The old rule (last 20 runs, the judged ones among
    # them, no baseline) saw 3 of 20 = 15 % and stayed silent.
    settings = load_settings()
    store = get_store(settings)
    upsert_runs(store, _states("r", ["success"] * 40 + ["success", "failed"] * 3 + ["success"] * 4), source="test")
    [rate] = _failure_rate(store, settings)
    assert rate.value == 0.3
    assert "3 of the last 10 runs failed (30%), against 0 of the 40 runs before them (0%)" in rate.message


def test_a_dag_that_always_failed_this_often_is_not_a_regression_but_a_collapse_is() -> None:
    # Every 4th run has failed for 60 runs: the old rule reported 5 of the last 20 (25 % > 20 %) forever.
    settings = load_settings()
    store = get_store(settings)
    upsert_runs(store, _states("flaky", ["success", "success", "success", "failed"] * 15), source="test")
    assert _failure_rate(store, settings) == []
    # A DAG that fails every run keeps alerting once its baseline has gone bad too (the ceiling).
    upsert_runs(store, _states("down", ["failed"] * 60), source="test")
    [down] = _failure_rate(store, settings)
    assert down.key == "failure_rate:down" and down.value == 1.0 and "against 50 of the 50 runs" in down.message


# Invariant: the failure-rate alert holds exactly when the newest `window` finished runs (at least
# min_runs) fail more often than the threshold and either reach the ceiling or beat the failure rate
# of the runs before them by more than the margin; the judged runs never enter their own baseline.
@given(history=st.lists(st.booleans(), min_size=0, max_size=40), recent=st.lists(st.booleans(), max_size=12))
@example(history=[False, False, False, True] * 8, recent=[False, False, True] * 3 + [False])  # flaky as ever
@example(history=[False] * 30, recent=[False, True] * 3 + [False] * 4)  # a regression
@example(history=[True] * 30, recent=[True] * 10)  # down for good
@example(history=[True, False] * 3, recent=[True] * 2 + [False] * 8)  # recovering
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_failure_rate_is_judged_against_the_runs_before_the_window(history: list[bool], recent: list[bool]) -> None:
    from guardian.store import reset_stores

    reset_stores()
    cfg = load_settings(store={"url": "sqlite://"}, monitoring={"failure_rate_baseline_runs": 30})
    store = get_store(cfg)
    flags = history + recent  # True: the run failed
    upsert_runs(store, _states("p", ["failed" if f else "success" for f in flags]), source="test")
    alerted = bool(_failure_rate(store, cfg))
    assert alerted is _model_alerts(flags, cfg.monitoring)


def _model_alerts(flags: list[bool], m: MonitoringSettings) -> bool:
    # The rule in plain terms, over the whole history (True: the run failed), oldest first.
    window = flags[len(flags) - m.failure_rate_window :] if len(flags) > m.failure_rate_window else flags
    earlier = flags[: len(flags) - len(window)][-m.failure_rate_baseline_runs :]
    rate = sum(window) / len(window) if window else 0.0
    base = sum(earlier) / len(earlier) if len(earlier) >= m.failure_rate_min_runs else 0.0
    return (
        len(window) >= m.failure_rate_min_runs
        and rate > m.failure_rate_threshold
        and (rate >= m.failure_rate_ceiling or rate - base > m.failure_rate_margin)
    )


# Invariant: as runs arrive and the hourly check runs, the failure-rate alert of a DAG is open
# exactly when the rule holds on the runs seen so far, and each check reports a transition only
# when that changes (one start, one clear: the alert state machine is unchanged).
class FailureRateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from sqlalchemy import delete

        from guardian.monitoring.tables import alerts, dag_runs

        self.cfg = load_settings(monitoring={"failure_rate_baseline_runs": 20})
        self.store = get_store(self.cfg)
        with self.store.write() as conn:
            conn.execute(delete(dag_runs))
            conn.execute(delete(alerts))
        self.flags: list[bool] = []
        self.open = False

    def _now(self) -> datetime:
        return NOW + timedelta(minutes=5 * len(self.flags) + 1)

    @rule(batch=st.lists(st.booleans(), min_size=1, max_size=8))
    def runs_finish(self, batch: list[bool]) -> None:
        records = []
        for failed in batch:
            self.flags.append(failed)
            end = NOW + timedelta(minutes=5 * len(self.flags))
            state = "failed" if failed else "success"
            records.append(RunRecord("m", f"m-{len(self.flags)}", state, end - timedelta(seconds=30), end))
        upsert_runs(self.store, records, source="test")

    @rule()
    def hourly_check(self) -> None:
        now = self._now()
        conditions = [
            c
            for c in evaluate(self.cfg, self.store, compute_health(self.store, now=now), now=now)
            if c.kind == "failure_rate"
        ]
        changes = reconcile(self.store, conditions, now)
        expected = _model_alerts(self.flags, self.cfg.monitoring)
        assert [t.started for t in changes] == ([expected] if expected != self.open else [])
        self.open = expected

    @invariant()
    def open_alert_matches_the_model(self) -> None:
        assert any(a["key"] == "failure_rate:m" for a in open_alerts(self.store)) is self.open


FailureRateMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
test_failure_rate_alert_follows_the_runs = FailureRateMachine.TestCase
