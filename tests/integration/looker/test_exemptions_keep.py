"""Exemptions read from Looker itself, owners' keeps (CLI and web UI), restore with schedules and alerts."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from guardian import audit
from guardian.errors import ValidationFailed
from guardian.looker import service
from guardian.looker.plan import list_actions
from guardian.store import get_store


def _decisions(settings: Any, plan_id: int) -> dict[str, tuple[str, str]]:
    return {a.dashboard_id: (a.kind, a.reason) for a in list_actions(get_store(settings), plan_id)}


def test_schedules_alerts_and_the_newest_signal_protect(settings: Any, sandbox: Any) -> None:
    state = sandbox.state
    now = state.now()
    # Never viewed, no System Activity row, but someone's enabled schedule delivers it every week.
    scheduled = state.add_dashboard(title="Weekly PDF", user_id="2", folder_id="4", created_at=now - timedelta(900))
    state.usage.pop(str(scheduled["id"]))
    state.add_schedule(str(scheduled["id"]), "5")
    # An enabled alert on one of its tiles (another owner's).
    alerted = state.add_dashboard(title="Alerted", user_id="2", folder_id="4", created_at=now - timedelta(900))
    state.add_alert(str(alerted["dashboard_elements"][1]["id"]), "3")
    # Disabled ones do not protect.
    disabled = state.add_dashboard(title="Paused", user_id="2", folder_id="4", created_at=now - timedelta(900))
    state.add_schedule(str(disabled["id"]), "2", enabled=False)
    state.add_alert(str(disabled["dashboard_elements"][0]["id"]), "2", disabled=True)
    # Viewed two days ago; its System Activity row is a year old.
    viewed = state.add_dashboard(
        title="Seen lately",
        user_id="2",
        folder_id="4",
        created_at=now - timedelta(900),
        last_accessed=now - timedelta(365),
    )
    viewed["last_viewed_at"] = (now - timedelta(days=2)).isoformat()
    plan = service.plan(settings)
    got = _decisions(settings, plan.id)
    assert got[str(scheduled["id"])][0] == "skip" and "1 enabled schedule" in got[str(scheduled["id"])][1]
    assert got[str(alerted["id"])][0] == "skip" and "1 enabled alert" in got[str(alerted["id"])][1]
    assert got[str(disabled["id"])][0] == "warn"  # inactive, never warned: warned first
    assert str(viewed["id"]) not in got  # kept (only counted)


def test_keep_from_the_cli_rules_and_from_the_web_ui(settings: Any, sandbox: Any, monkeypatch: Any) -> None:
    from fastapi.testclient import TestClient

    from guardian.settings import load_settings
    from guardian.web.app import create_app

    today = sandbox.state.now().date()
    with pytest.raises(ValidationFailed, match="not in the future"):
        service.keep(settings, "4", until=str(today - timedelta(days=1)), reason="x", actor="cli:t")
    with pytest.raises(ValidationFailed, match="MAX_KEEP_DAYS"):
        service.keep(settings, "4", until=str(today + timedelta(days=400)), reason="x", actor="cli:t")
    with pytest.raises(ValidationFailed, match="not a date"):
        service.keep(settings, "4", until="next tuesday", reason="x", actor="cli:t")
    with pytest.raises(ValidationFailed, match="reason is empty"):
        service.keep(settings, "4", until=str(today + timedelta(days=3)), reason=" ", actor="cli:t")
    service.keep(settings, "5", until=str(today + timedelta(days=30)), reason="migration", actor="cli:carol")

    from guardian.web.auth import hash_password

    # Keeping a plan's dashboard needs the approve permission: alice is an approver, bob a viewer.
    monkeypatch.setenv("UI_PW_ALICE", hash_password("correct horse battery"))
    monkeypatch.setenv("UI_PW_BOB", hash_password("viewer only please"))
    monkeypatch.setenv("GUARDIAN_WEB__USERS", '["alice:approver:env:UI_PW_ALICE", "bob:viewer:env:UI_PW_BOB"]')
    monkeypatch.setenv("GUARDIAN_WEB__SECURE_COOKIES", "false")  # the test client speaks plain http
    viewer = TestClient(create_app(load_settings()))
    assert viewer.post("/login", data={"username": "bob", "password": "viewer only please", "next": "/"}).status_code
    viewer_token = re.search(r'name="csrf" value="([^"]+)"', viewer.get("/looker").text)
    viewer_form = {"dashboard_id": "4", "until": str(today + timedelta(days=60)), "reason": "mine"}
    viewer_form["csrf"] = viewer_token.group(1) if viewer_token else ""
    assert viewer.post("/looker/keep", data=viewer_form).status_code == 403
    client = TestClient(create_app(load_settings()))
    login = {"username": "alice", "password": "correct horse battery", "next": "/"}
    assert client.post("/login", data=login, follow_redirects=False).status_code == 303
    service.warn(settings, service.plan(settings).id)
    page = client.get("/looker")
    assert 'id="looker-warned"' in page.text and 'data-dashboard="9"' in page.text
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    form = {"dashboard_id": "4", "until": str(today + timedelta(days=60)), "reason": "QBR deck"}
    assert client.post("/looker/keep", data=form | {"csrf": "forged"}).status_code == 403
    kept = client.post("/looker/keep", data=form | {"csrf": token.group(1)}, follow_redirects=True)
    assert "Dashboard 4 kept until" in kept.text and "QBR deck" in kept.text
    store = get_store(settings)
    [event] = [e for e in audit.iter_events(store, action_prefix="looker.keep") if e.actor == "web:alice"]
    assert event.target == "looker:default/dashboard/4" and event.after["reason"] == "QBR deck"
    got = _decisions(settings, service.plan(settings).id)
    assert got["4"][0] == "skip" and "kept by its owner" in got["4"][1] and "QBR deck" in got["4"][1]
    assert got["5"][0] == "skip" and "migration" in got["5"][1]
    # Expired keeps stop counting: a plan made after the keep ends trashes it again.
    from guardian.looker.client import connect
    from guardian.looker.plan import make_plan

    future = make_plan(settings, connect(settings), store, now=sandbox.state.now() + timedelta(days=61), actor="t")
    assert _decisions(settings, future.id)["4"][0] == "soft_delete"


def test_restore_brings_schedules_and_alerts_back(settings: Any, sandbox: Any) -> None:
    state = sandbox.state
    # Dashboard 17 is the guardian's old trash, due for purge; it has a schedule and an alert.
    state.add_schedule("17", "3")
    state.add_schedule("17", "5", enabled=False)
    state.add_alert("17-e1", "3")
    plan = service.plan(settings)
    service.apply(settings, plan.id)
    assert "17" not in state.dashboards and not [p for p in state.scheduled_plans.values() if p["dashboard_id"] == "17"]
    [result] = service.restore(settings, ["17"])
    assert result.method == "reimported" and "2 schedule(s) and 1 alert(s) re-created" in result.detail
    new_id = str(result.new_dashboard_id)
    restored = state.dashboards[new_id]
    assert restored["folder_id"] == "5" and restored["slug"] == "slug17"
    plans = [p for p in state.scheduled_plans.values() if p["dashboard_id"] == new_id]
    assert sorted(p["enabled"] for p in plans) == [False, True]
    [alert] = [a for a in state.alerts.values() if state.element_dashboard(str(a["dashboard_element_id"])) == new_id]
    assert alert["dashboard_element_id"] == restored["dashboard_elements"][1]["id"]
    # Un-trash keeps the id; schedules Looker still has are not duplicated.
    state.add_schedule("4", "5")
    [untrashed] = service.restore(settings, ["4"])
    assert untrashed.method == "untrashed" and "0 schedule(s) and 0 alert(s) re-created" in untrashed.detail
