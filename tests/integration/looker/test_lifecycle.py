"""Plan, gate, apply, re-check, notify and restore through the real looker-sdk and the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from guardian import audit
from guardian.errors import SafetyGateTripped
from guardian.looker import service
from guardian.looker.backup import list_backups, read_backup
from guardian.looker.plan import latest_plan, list_actions
from guardian.looker.tables import looker_actions
from guardian.sandbox.looker import FaultRule
from guardian.storage import default_storage
from guardian.store import get_store

GUARDIAN = str(Path(sys.executable).parent / "guardian")
TRASH = {"4", "5", "6", "7", "8"}


def _states(store: Any, plan_id: int) -> dict[str, tuple[str, str, str | None]]:
    return {a.dashboard_id: (a.kind, a.state, a.outcome) for a in list_actions(store, plan_id)}


def test_plan_is_persisted_with_reasons_and_bounded_calls(settings: Any, sandbox: Any) -> None:
    plan = service.plan(settings)
    store = get_store(settings)
    # LookML dashboards never come from the dashboard search (spec), so 16 of the 18 live ones.
    assert plan.counts == {
        "keep": 5,
        "soft_delete": 5,
        "warn": 2,
        "skip": 6,
        "purge": 1,
        "live": 16,
        "trashed": 3,
        "looks_live": 0,
        "looks_trashed": 0,
    }
    states = _states(store, plan.id)
    assert states["12"][2] is not None and "scheduled" in states["12"][2]
    assert "favorited" in (states["13"][2] or "") and "public" in (states["14"][2] or "")
    assert "protected folder Shared/Finance" in (states["15"][2] or "")
    assert "thelook::business_pulse" not in states
    assert "by a person" in (states["19"][2] or "")
    assert states["9"][:2] == ("warn", "pending")
    # dashboards live + trash, Looks live + trash, System Activity, all schedules, all alerts, /user, /folders
    assert plan.api_calls == 9
    assert sandbox.stats["GET /scheduled_plans"] == 1 and sandbox.stats["GET /alerts/search"] == 1
    assert sandbox.stats["POST /queries/run/{result_format}".replace("{result_format}", "json")] == 1
    assert all(not d["deleted"] for k, d in sandbox.state.dashboards.items() if k in TRASH)
    assert latest_plan(store) == plan


def test_apply_is_idempotent_and_audited_before_and_after(settings: Any, sandbox: Any) -> None:
    plan = service.plan(settings)
    first = service.apply(settings, plan.id)
    assert (first.done, first.failed) == (6, 0)
    second = service.apply(settings, plan.id)
    assert (second.already_final, second.done, second.noop) == (6, 0, 0)
    assert sum(v for k, v in sandbox.writes.items() if k.startswith("PATCH")) == 5
    store = get_store(settings)
    events = list(audit.iter_events(store, target="looker:default/dashboard/4"))
    assert [(e.action, e.outcome) for e in events] == [
        ("looker.backup", "ok"),
        ("looker.trash", "started"),
        ("looker.trash", "ok"),
    ]
    assert events[1].before["deleted"] is False and events[2].after["deleted"] is True
    backup = read_backup(default_storage(settings), list_backups(store, dashboard_id="4")[0].key)
    assert backup["dashboard"]["title"] == "Old Campaign 2023" and 'title: "Old Campaign 2023"' in backup["lookml"]


def test_state_changed_since_the_plan_is_rechecked(settings: Any, sandbox: Any) -> None:
    from guardian.looker.client import GuardianApiSettings, LookerClient

    plan = service.plan(settings)
    bob = LookerClient(GuardianApiSettings(base_url=sandbox.url, client_id="bob-id", client_secret="bob-secret"))
    sandbox.state.view("4")
    bob.sdk.patch(path="/dashboards/5", structure=str, body={"folder_id": "7"})
    bob.set_deleted("6", True)
    bob.delete_dashboard("7")
    report = service.apply(settings, plan.id)
    states = _states(get_store(settings), plan.id)
    assert states["4"][1] == "skipped" and "viewed since the plan" in (states["4"][2] or "")
    assert states["5"][1] == "skipped" and "protected folder" in (states["5"][2] or "")
    assert states["6"][1] == "noop" and "already in trash (by user 3" in (states["6"][2] or "")
    assert states["7"][1] == "skipped" and "no longer exists" in (states["7"][2] or "")
    assert states["8"][1] == "done" and report.done == 2
    assert not sandbox.state.dashboards["4"]["deleted"] and not sandbox.state.dashboards["5"]["deleted"]


def test_circuit_breaker_refuses_until_overridden(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.2")
    settings = load_settings()
    plan = service.plan(settings)
    # 5 planned + 1 the history trashed 20 days ago, inside the 30-day window.
    with pytest.raises(SafetyGateTripped, match="brings trashes to 6 of 16 live dashboards and Looks"):
        service.apply(settings, plan.id)
    store = get_store(settings)
    assert latest_plan(store).status == "refused"  # type: ignore[union-attr]
    assert not any(d["deleted"] for k, d in sandbox.state.dashboards.items() if k in TRASH)
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_DELETIONS", "3")
    with pytest.raises(SafetyGateTripped, match="max_deletions=3"):
        service.apply(load_settings(), plan.id)
    service.override_breaker(settings, store, plan.id, actor="cli:reviewer")
    assert service.apply(load_settings(), plan.id).done == 6
    refused = [e for e in audit.iter_events(store, action_prefix="looker.") if e.outcome == "refused"]
    assert len(refused) == 2


def test_test_mode_applies_the_first_n_only(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__TEST_MODE_LIMIT", "2")
    settings = load_settings()
    plan = service.plan(settings)
    report = service.apply(settings, plan.id, mode="test")
    assert (report.selected, report.done) == (2, 2)
    assert [k for k in sorted(TRASH) if sandbox.state.dashboards[k]["deleted"]] == ["4", "5"]
    assert latest_plan(get_store(settings)).status == "partial"  # type: ignore[union-attr]


def test_tampered_plan_is_refused(settings: Any, sandbox: Any) -> None:
    plan = service.plan(settings)
    store = get_store(settings)
    with store.write() as conn:
        conn.execute(
            update(looker_actions)
            .where(looker_actions.c.plan_id == plan.id, looker_actions.c.dashboard_id == "1")
            .values(kind="soft_delete")
        )
        conn.execute(
            update(looker_actions)
            .where(looker_actions.c.plan_id == plan.id, looker_actions.c.dashboard_id == "13")
            .values(kind="soft_delete")
        )
    with pytest.raises(SafetyGateTripped, match="content hash"):
        service.apply(settings, plan.id)
    assert not sandbox.state.dashboards["13"]["deleted"]


def test_no_trash_without_a_backup_that_restores(settings: Any, sandbox: Any) -> None:
    plan = service.plan(settings)
    sandbox.set_faults(FaultRule(status=500, path="^/dashboards/lookml/6$"))
    sandbox.state.lookml_export["5"] = ""  # an empty export would restore nothing
    sandbox.state.lookml_export["7"] = sandbox.state.lookml_of(sandbox.state.dashboards["7"]).replace("Tile 1", "X")
    report = service.apply(settings, plan.id)
    assert (report.parked, report.done, report.failed) == (3, 3, 0)
    for dashboard_id in ("5", "6", "7"):
        assert not sandbox.state.dashboards[dashboard_id]["deleted"]
    store = get_store(settings)
    states = _states(store, plan.id)
    assert states["5"][1] == "parked" and "LookML export is empty" in (states["5"][2] or "")
    assert states["6"][1] == "parked" and "HTTP 500" in (states["6"][2] or "")
    assert states["7"][1] == "parked" and "tile(s)" in (states["7"][2] or "")
    assert latest_plan(store).status == "applied"  # type: ignore[union-attr]
    assert not list_backups(store, dashboard_id="5") and not list_backups(store, dashboard_id="7")
    # The next plan tries the parked ones again.
    sandbox.set_faults()
    sandbox.state.lookml_export.clear()
    again = service.apply(settings, service.plan(settings).id)
    assert again.done == 3 and all(sandbox.state.dashboards[k]["deleted"] for k in ("5", "6", "7"))


def test_owner_emails_and_team_summary(settings: Any, sandbox: Any, smtp: Any, monkeypatch: Any) -> None:
    from guardian.monitoring.receivers import SlackReceiver, body_text
    from guardian.settings import load_settings

    slack = SlackReceiver().start()
    try:
        monkeypatch.setenv("TEST_SLACK_WEBHOOK", slack.url)
        monkeypatch.setenv("GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF", "env:TEST_SLACK_WEBHOOK")
        sandbox.state.users["2"]["is_disabled"] = True  # Alice left: her warnings go to the team
        settings = load_settings()
        plan = service.plan(settings)
        warned = service.warn(settings, plan.id)
        report = service.apply(settings, plan.id)
        sent = service.notify(settings, plan.id, mode="apply", backup_bytes=report.backup_bytes)
        assert warned.warned_owners == 2 and (sent.trashed_owners, sent.summary_email, sent.summary_slack) == (
            4,
            True,
            True,
        )
        by_to: dict[str, list[str]] = {}
        for msg in smtp.messages:
            by_to.setdefault(str(msg["To"]), []).append(str(msg["Subject"]))
        assert sorted(by_to) == ["bob@example.com", "carol@example.com", "dave@example.com", "team@example.com"]
        warning = next(m for m in smtp.messages if m["To"] == "carol@example.com" and "soon" in str(m["Subject"]))
        assert "guardian looker keep 9 --until" in body_text(warning)
        team_warning = next(m for m in smtp.messages if m["To"] == "team@example.com" and "soon" in str(m["Subject"]))
        assert "[10] Soon Stale Board" in body_text(team_warning) and "gone or disabled" in body_text(team_warning)
        bob = next(m for m in smtp.messages if m["To"] == "bob@example.com")
        text = body_text(bob)
        assert "[5] Legacy Pipeline" in text and "[6] Q1 Region Drilldown" in text
        assert "guardian looker restore 5 6" in text and "not accessed for" in text
        assert "backups written" in slack.payloads[0]["text"]
        again = service.notify(settings, plan.id, mode="apply")
        assert (again.trashed_owners, again.summary_email) == (0, False)
        # Already warned since their last access: the next run does not warn again.
        assert service.warn(settings, service.plan(settings).id).warned_owners == 0
    finally:
        slack.stop()


def test_restore_trashed_and_purged(settings: Any, sandbox: Any) -> None:
    plan = service.plan(settings)
    service.apply(settings, plan.id)
    results = service.restore(settings, ["4", "17", "17", "999"], actor="web:admin")
    assert [r.method for r in results] == ["untrashed", "reimported", "noop", "failed"]
    assert sandbox.state.dashboards["4"]["deleted"] is False
    new_id = results[1].new_dashboard_id
    assert new_id and sandbox.state.dashboards[new_id]["folder_id"] == "5"
    assert "favorites" in results[1].not_restored
    assert sum(1 for d in sandbox.state.dashboards.values() if d["title"] == "Trashed by Guardian long ago") == 1
    rows = service.list_restores(get_store(settings))
    assert [r["method"] for r in rows] == ["failed", "noop", "reimported", "untrashed"]
    assert rows[-1]["actor"] == "web:admin"
    # An un-trashed dashboard is no longer "trashed by the guardian" for the next purge.
    next_plan = service.plan(settings)
    assert "4" not in {a.dashboard_id for a in list_actions(get_store(settings), next_plan.id, kinds=["purge"])}


def test_postgresql_store(pg_env: str, sandbox: Any) -> None:
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings

    settings = load_settings()
    seed_history(settings, get_store(settings), sandbox.state)
    plan = service.plan(settings)
    assert service.apply(settings, plan.id).done == 6
    assert service.apply(settings, plan.id).already_final == 6
    assert audit.verify(get_store(settings)).ok


def test_cli_plan_apply_restore_report(settings: Any, sandbox: Any) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GUARDIAN, "looker", *args], capture_output=True, text=True, timeout=120)

    planned = run("plan", "--json")
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    plan_id = data["plan"]["id"]
    assert {a["dashboard_id"] for a in data["actions"] if a["kind"] == "soft_delete"} == TRASH
    shown = run("plan", "--show", str(plan_id))
    assert "Old Campaign 2023" in shown.stdout and "protected folder" in shown.stdout
    assert "exclusions: protected folder 2" in shown.stdout
    applied = run("apply", str(plan_id), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "6 done" in applied.stdout
    restored = run("restore", "5", "17")
    assert restored.returncode == 0 and "untrashed" in restored.stdout and "reimported" in restored.stdout
    assert "not restored: " in restored.stdout
    missing = run("apply", "999", "--yes")
    assert missing.returncode == 2 and "plan 999 does not exist" in missing.stderr
    report = run("report", "--json")
    assert json.loads(report.stdout)["plans"][0]["status"] == "applied"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_applier_per_instance(backend: str, sandbox: Any, request: pytest.FixtureRequest) -> None:
    from guardian.looker.apply import PlanBusy, apply_lock
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings

    if backend == "postgresql":
        request.getfixturevalue("pg_env")
    settings = load_settings()
    store = get_store(settings)
    seed_history(settings, store, sandbox.state)
    plan = service.plan(settings)
    with apply_lock(store, "default"), pytest.raises(PlanBusy, match="being applied by another process"):
        service.apply(settings, plan.id)
    assert not any(d["deleted"] for k, d in sandbox.state.dashboards.items() if k in TRASH)
    assert service.apply(settings, plan.id).done == 6


def test_trash_that_timed_out_but_happened_is_recognised(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from guardian.looker.plan import guardian_trashed_ids
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__API_TIMEOUT", "1")
    settings = load_settings()
    plan = service.plan(settings)
    sandbox.set_faults(FaultRule(delay_after_ms=1500, path="^/dashboards/8$", method="PATCH"))
    first = service.apply(settings, plan.id)
    assert first.failed == 1 and sandbox.state.dashboards["8"]["deleted"] is True
    sandbox.set_faults()
    again = service.apply(settings, plan.id)
    assert again.noop == 1
    action = next(a for a in list_actions(get_store(settings), plan.id) if a.dashboard_id == "8")
    assert action.trashed_by_guardian and "8" in guardian_trashed_ids(get_store(settings), "default")


def test_two_plans_in_one_window_share_the_budget(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from guardian.looker.apply import apply_plan
    from guardian.looker.client import connect
    from guardian.looker.ledger import record_warnings
    from guardian.looker.plan import make_plan
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_DELETIONS", "6")
    settings = load_settings()
    store = get_store(settings)
    first = service.plan(settings)
    assert service.apply(settings, first.id).done == 6  # 5 trashes + 1 purge; with the history's: 6 trashes
    # A week later another dashboard is due (inactive, its owner warned 20 days ago).
    later = datetime.now(UTC) + timedelta(days=7)
    dash = sandbox.state.dashboards["3"]
    dash["last_accessed_at"] = dash["last_viewed_at"] = None
    sandbox.state.usage["3"].last_accessed = None
    with store.write() as conn:
        record_warnings(
            conn, "default", [("3", None)], address="dave@example.com", warned_at=later - timedelta(20), plan_id=None
        )
    client = connect(settings)
    second = make_plan(settings, client, store, now=later)
    assert [a.dashboard_id for a in list_actions(store, second.id, kinds=["soft_delete"])] == ["3"]
    with pytest.raises(SafetyGateTripped, match="brings trashes to 7 in 30 days"):
        apply_plan(settings, second.id, client=client, store=store, storage=default_storage(settings), now=later)
    assert not sandbox.state.dashboards["3"]["deleted"]
    # Past the window, the same kind of plan goes through.
    much_later = later + timedelta(days=31)
    third = make_plan(settings, client, store, now=much_later)
    report = apply_plan(
        settings, third.id, client=client, store=store, storage=default_storage(settings), now=much_later
    )
    assert report.done == 1 and sandbox.state.dashboards["3"]["deleted"]
