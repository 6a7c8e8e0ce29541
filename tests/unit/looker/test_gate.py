"""The circuit breaker and the client-side rate limiter (pure functions, no I/O)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from guardian.looker.apply import breaker_check
from guardian.looker.client import RateLimiter
from guardian.looker.plan import Action, Plan
from guardian.settings import load_settings


def _plan(inventory: int) -> Plan:
    now = datetime.now(UTC)
    return Plan(1, now, "default", "t", "planned", {}, "h", {}, inventory, 0, 0, 0.0, None, None, None)


def _actions(kinds: list[str]) -> list[Action]:
    now = datetime.now(UTC)
    snap: dict[str, Any] = {}
    return [
        Action(
            i,
            1,
            i,
            str(i),
            k,
            "r",
            None,
            None,
            None,
            None,
            None,
            None,
            snap,
            "pending",
            None,
            None,
            None,
            None,
            0,
            now,
            False,
        )
        for i, k in enumerate(kinds)
    ]


def test_breaker_bounds_count_and_fraction(monkeypatch: Any) -> None:
    settings = load_settings()
    assert breaker_check(settings, _plan(1000), _actions(["soft_delete"] * 200 + ["purge"] * 500)) is None
    assert "max_deletions=200" in (breaker_check(settings, _plan(10_000), _actions(["soft_delete"] * 201)) or "")
    assert "20%" in (breaker_check(settings, _plan(100), _actions(["soft_delete"] * 21)) or "")
    assert breaker_check(settings, _plan(100), _actions(["soft_delete"] * 20)) is None
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_DELETIONS", "0")
    assert breaker_check(load_settings(), _plan(100), _actions(["purge"])) is None


def test_rate_limiter_spaces_calls() -> None:
    limiter = RateLimiter(50)
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert 0.18 <= time.monotonic() - started < 1.0
    free = RateLimiter(None)
    started = time.monotonic()
    for _ in range(1000):
        free.acquire()
    assert time.monotonic() - started < 0.1


def test_route_through_approval_unless_dry_run_or_skipped() -> None:
    from guardian.airflow.looker import resolve_mode, route

    assert route("dry_run", skip_approval=False, approval_available=True) == ["report"]
    assert route("apply", skip_approval=False, approval_available=True) == ["approve", "report"]
    assert route("test", skip_approval=False, approval_available=True) == ["approve", "report"]
    assert route("apply", skip_approval=True, approval_available=True) == ["apply", "report"]
    assert route("apply", skip_approval=False, approval_available=False) == ["apply", "report"]
    assert resolve_mode("scheduled", "apply") == "apply" and resolve_mode(None, "dry_run") == "dry_run"
    assert resolve_mode("test", "apply") == "test"
