"""The blue-green switch's planning (deploy/bluegreen/switch.py) and the watch's rollback decision,
against a model of the releases each colour runs, the smoke tests and the people who roll back.

Pure functions: no topology, no proxy (the dry run in test_smoke_topology.py does the I/O).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from topology import harness

from guardian.smoke import WatchLimits, WatchState, regression


def _switch() -> ModuleType:
    if "guardian_bluegreen_switch" in sys.modules:
        return sys.modules["guardian_bluegreen_switch"]
    spec = importlib.util.spec_from_file_location(
        "guardian_bluegreen_switch", harness.REPO / "deploy" / "bluegreen" / "switch.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["guardian_bluegreen_switch"] = module
    spec.loader.exec_module(module)
    return module


sw = _switch()
PORTS = st.integers(min_value=8081, max_value=8084)


class BlueGreen(RuleBasedStateMachine):
    """A pipeline deploys releases onto the standby colour (smoke passes or fails, the address may
    collide with the live one); an operator rolls back or finishes. The model remembers which
    release each colour runs and which releases passed their smoke tests."""

    @initialize(port=PORTS)
    def first_release(self, port: int) -> None:
        self.state = sw.State("blue", {"blue": f"127.0.0.1:{port}"})
        self.release = 0
        self.runs = {"blue": 0}  # colour -> release it runs
        self.passed = {0}  # the first release was smoke-tested by hand
        self.rollback_to: int | None = None  # the release a rollback must bring back

    @rule(port=PORTS, smoke_ok=st.booleans())
    def deploy(self, port: int, smoke_ok: bool) -> None:
        upstream = f"127.0.0.1:{port}"
        if upstream == self.state.upstreams[self.state.active]:
            with pytest.raises(sw.SwitchError):
                sw.plan_promote(self.state, upstream, smoke_passed=smoke_ok)
            return
        self.release += 1
        standby = self.state.other()
        before = self.runs[self.state.active]
        self.runs[standby] = self.release  # starting the release replaces what the standby ran
        if smoke_ok:
            self.passed.add(self.release)
        self.state = sw.plan_promote(self.state, upstream, smoke_passed=smoke_ok)
        self.rollback_to = before if smoke_ok else None

    @precondition(lambda self: self.rollback_to is not None)
    @rule()
    def rollback(self) -> None:
        self.state = sw.plan_rollback(self.state)
        assert self.runs[self.state.active] == self.rollback_to, "rollback returns the release that served before"
        self.rollback_to = None

    @precondition(lambda self: self.rollback_to is None)
    @rule()
    def rollback_refused(self) -> None:
        with pytest.raises(sw.SwitchError):
            sw.plan_rollback(self.state)

    @rule()
    def finish(self) -> None:
        standby = self.state.other()
        self.runs.pop(standby, None)  # the previous colour is stopped
        self.state = sw.plan_finish(self.state)
        self.rollback_to = None

    # Invariant: traffic only ever goes to a release that passed its smoke tests, and the proxy's
    # configuration names exactly the active colour's address.
    @invariant()
    def traffic_only_on_smoke_tested_releases(self) -> None:
        assert self.runs[self.state.active] in self.passed
        conf = sw.upstream_conf(self.state)
        assert f"server {self.state.upstreams[self.state.active]};" in conf
        assert conf.count("server ") == 1

    # Invariant: a rollback target is recorded exactly when a passing release runs on the other colour.
    @invariant()
    def rollback_target_is_alive_and_tested(self) -> None:
        if self.state.previous is None:
            assert self.rollback_to is None
        else:
            assert self.runs[self.state.previous] == self.rollback_to
            assert self.rollback_to in self.passed


BlueGreen.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None, derandomize=True)
TestBlueGreen = BlueGreen.TestCase


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    runs=st.lists(st.sampled_from(["success", "failed"]), max_size=30),
    failing=st.lists(st.sampled_from(["scheduler", "dag_import_errors", "audit_chain"]), max_size=2, unique=True),
    threshold=st.sampled_from([0.0, 0.2, 0.5]),
    min_runs=st.integers(min_value=1, max_value=10),
)
def test_watch_rolls_back_on_a_failing_check_or_a_failure_rate_over_enough_runs(
    runs: list[str], failing: list[str], threshold: float, min_runs: int
) -> None:
    state = WatchState({("dag", str(i)): s for i, s in enumerate(runs)}, failing)
    reason = regression(state, WatchLimits(threshold, min_runs))
    failures = runs.count("failed")
    # Integer form of "rate > threshold" (no division): failures * 10 > threshold * 10 * runs.
    too_many = len(runs) >= min_runs and failures * 10 > round(threshold * 10) * len(runs)
    assert (reason is not None) == (bool(failing) or too_many)
    if failing:
        assert all(name in reason for name in failing)  # type: ignore[operator]
