"""Kill `guardian looker apply` (SIGKILL, a real process) at chosen points and rerun it.

The sandbox stalls one request so the kill lands exactly where we want it: in the middle of
a backup, after Looker applied a trash but before the guardian recorded it, after a purge
was applied but not recorded, and at random points of a concurrent batch. After the rerun
the plan is complete, no dashboard was trashed or purged twice, every trashed dashboard has
a verified backup recorded before its trash, and the audit chain tells what happened.

Two plans and two appliers on PostgreSQL: only the newest plan of the instance applies, one
applier at a time; killed and rerun, each dashboard is trashed once and claimed by one plan.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from guardian import audit
from guardian.looker.backup import list_backups, verify_backup
from guardian.looker.plan import guardian_trashed_ids, list_actions
from guardian.sandbox.looker import FaultRule, LookerState, seed_bulk, start
from guardian.storage import default_storage
from guardian.store import get_store

GUARDIAN = str(Path(sys.executable).parent / "guardian")


def _apply(plan_id: int) -> subprocess.Popen[bytes]:
    """`guardian looker apply` in its own process (warns first, then applies, then notifies)."""
    return subprocess.Popen(
        [GUARDIAN, "looker", "apply", str(plan_id), "--yes"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _kill_when(proc: subprocess.Popen[bytes], condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"apply ended before the kill point: {proc.stderr.read() if proc.stderr else ''!r}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _assert_complete_and_safe(settings: Any, sandbox: Any, plan_id: int) -> None:
    store = get_store(settings)
    storage = default_storage(settings)
    actions = list_actions(store, plan_id, kinds=["soft_delete", "purge"])
    assert actions and all(a.state in ("done", "noop") for a in actions), [(a.dashboard_id, a.state) for a in actions]
    for action in actions:
        path = f"/dashboards/{action.dashboard_id}"
        if action.kind == "soft_delete":
            assert sandbox.state.dashboards[action.dashboard_id]["deleted"] is True
            assert sandbox.writes[f"PATCH {path}"] == 1, f"{path} trashed {sandbox.writes[f'PATCH {path}']} times"
        else:
            assert action.dashboard_id not in sandbox.state.dashboards
            assert sandbox.writes[f"DELETE {path}"] == 1
        backups = list_backups(store, dashboard_id=action.dashboard_id)
        assert backups and all(verify_backup(storage, b) for b in backups)
        events = list(audit.iter_events(store, target=f"looker:default/dashboard/{action.dashboard_id}"))
        first_backup = min(e.seq for e in events if e.action == "looker.backup")
        first_start = min(e.seq for e in events if e.outcome == "started")
        assert first_backup < first_start, f"{action.dashboard_id} was touched before its backup was recorded"
    assert audit.verify(store).ok


def test_kill_mid_backup_after_trash_and_after_purge_then_rerun(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from guardian.looker import service

    monkeypatch.setenv("GUARDIAN_LOOKER__CONCURRENCY", "1")
    from guardian.settings import load_settings

    settings = load_settings()
    plan = service.plan(settings)
    store = get_store(settings)
    assert [(a.dashboard_id, a.kind) for a in list_actions(store, plan.id, kinds=["soft_delete", "purge"])] == [
        ("4", "soft_delete"),
        ("5", "soft_delete"),
        ("6", "soft_delete"),
        ("7", "soft_delete"),
        ("8", "soft_delete"),
        ("17", "purge"),
    ]

    # 1. In the middle of the backup of dashboard 5 (its LookML export never answers).
    sandbox.set_faults(FaultRule(delay_ms=60_000, path="^/dashboards/lookml/5$"))
    proc = _apply(plan.id)
    _kill_when(proc, lambda: sandbox.stats["GET /dashboards/lookml/{id}"] >= 2)
    assert sandbox.state.dashboards["4"]["deleted"] and not sandbox.state.dashboards["5"]["deleted"]

    # 2. Looker trashed dashboard 7, the guardian never heard back.
    sandbox.set_faults(FaultRule(delay_after_ms=60_000, path="^/dashboards/7$", method="PATCH"))
    proc = _apply(plan.id)
    _kill_when(proc, lambda: bool(sandbox.state.dashboards["7"]["deleted"]))
    states = {a.dashboard_id: a.state for a in list_actions(store, plan.id)}
    assert states["7"] == "in_progress"

    # 3. Looker purged dashboard 17, the guardian never heard back.
    sandbox.set_faults(FaultRule(delay_after_ms=60_000, path="^/dashboards/17$", method="DELETE"))
    proc = _apply(plan.id)
    _kill_when(proc, lambda: "17" not in sandbox.state.dashboards)

    sandbox.set_faults()
    final = _apply(plan.id)
    assert final.wait(timeout=120) == 0, final.stderr.read() if final.stderr else b""
    _assert_complete_and_safe(settings, sandbox, plan.id)
    by_id = {a.dashboard_id: a for a in list_actions(store, plan.id)}
    assert by_id["7"].state == "noop" and "before an interruption" in (by_id["7"].outcome or "")
    assert by_id["17"].state == "noop" and "before an interruption" in (by_id["17"].outcome or "")
    trail = [(e.action, e.outcome) for e in audit.iter_events(store, target="looker:default/dashboard/7")]
    assert trail == [("looker.backup", "ok"), ("looker.trash", "started"), ("looker.trash", "noop")]
    # Confirmed after the kill, it still counts as trashed by the guardian (purge later, owner email).
    assert "7" in guardian_trashed_ids(store, "default") and by_id["7"].trashed_by_guardian


def test_random_kills_of_a_concurrent_batch(monkeypatch: Any) -> None:
    from guardian.looker import service
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings

    server = start(seed_bulk(LookerState(), 400, inactive_fraction=0.15, trashed_fraction=0.0))
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "1")
        monkeypatch.setenv("GUARDIAN_LOOKER__RATE_LIMIT_PER_SECOND", "1000")
        server.app.state.config.latency_ms = 15
        settings = load_settings()
        seed_history(settings, get_store(settings), server.state)
        plan = service.plan(settings)
        to_trash = plan.counts["soft_delete"]
        assert to_trash > 40
        rng = random.Random(3)
        for _ in range(3):
            target = sum(server.writes.values()) + rng.randint(3, 12)
            proc = _apply(plan.id)
            _kill_when(proc, lambda target=target: sum(server.writes.values()) >= target)  # type: ignore[misc]
        server.app.state.config.latency_ms = 0
        final = _apply(plan.id)
        assert final.wait(timeout=300) == 0, final.stderr.read() if final.stderr else b""
        _assert_complete_and_safe(settings, server, plan.id)
    finally:
        server.stop()


def test_two_plans_two_appliers_on_postgresql(pg_env: str, sandbox: Any, smtp: Any, monkeypatch: Any) -> None:
    from guardian.errors import SafetyGateTripped
    from guardian.looker import service
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__CONCURRENCY", "1")
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_DELETIONS", "6")  # the history's trash + the 5 planned
    settings = load_settings()
    store = get_store(settings)
    seed_history(settings, store, sandbox.state)
    older = service.plan(settings)
    newer = service.plan(settings)
    # The trash of dashboard 6 stalls, so the newer plan's applier holds the instance's lock.
    sandbox.set_faults(FaultRule(delay_ms=120_000, path=r"^/dashboards/6$", method="PATCH"))
    first = _apply(newer.id)
    deadline = time.monotonic() + 90
    while sandbox.stats["PATCH /dashboards/{id}"] < 3:
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else b""
        time.sleep(0.01)
    second = _apply(older.id)
    assert second.wait(timeout=120) != 0
    err = second.stderr.read().decode() if second.stderr else ""
    assert "being applied by another process" in err, err
    _kill_when(first, lambda: True)
    assert [k for k in ("4", "5", "6") if sandbox.state.dashboards[k]["deleted"]] == ["4", "5"]
    sandbox.set_faults()
    # The lock is free now: the older plan is refused because a newer plan exists; the newer one resumes.
    with pytest.raises(SafetyGateTripped, match=f"plan {newer.id} is newer"):
        service.apply(settings, older.id)
    assert service.apply(settings, newer.id).failed == 0
    _assert_complete_and_safe(settings, sandbox, newer.id)
    assert all(a.state == "pending" for a in list_actions(store, older.id, kinds=["soft_delete", "purge"]))
    claims = [
        e
        for e in audit.iter_events(store, action_prefix="looker.trash")
        if e.outcome in ("ok", "noop") and (e.context or {}).get("plan_id") == older.id
    ]
    assert claims == [], "the older plan recorded trashes as its own"
    trash_notices = [m for m in smtp.messages if "were moved to the trash" in str(m["Subject"])]
    assert len(trash_notices) == len({str(m["To"]) for m in trash_notices})
    # The rolling window holds the history's trash and the newer plan's 5: the budget of 6 is spent.
    from guardian.looker.apply import window_usage

    assert window_usage(settings, store, datetime.now(UTC)).trashes == 6
    assert audit.verify(store).ok
