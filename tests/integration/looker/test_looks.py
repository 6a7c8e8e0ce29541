"""Looks through the same lifecycle as dashboards: planned, warned, kept, backed up, trashed, purged, restored.

The demo instance with its Looks (``seed_looks``): Look ids overlap dashboard ids on purpose
(Look 4 and dashboard 4 are different things), so every step must keep them apart. The CLI is
driven in-process (typer's runner) to show how a person names a Look: ``look:ID``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from guardian import audit
from guardian.looker import service
from guardian.looker.backup import list_backups, read_backup
from guardian.looker.plan import list_actions
from guardian.sandbox.looker.state import API_USER_ID
from guardian.store import get_store


@pytest.fixture
def looks(sandbox: Any) -> Any:
    """The demo Looks on the sandbox (before ``settings`` records the instance's history)."""
    from guardian.sandbox.looker import seed_looks

    seed_looks(sandbox.state)
    # Look 9 (trashed by the guardian 200 days ago, due for purge) has a schedule its re-creation brings back.
    sandbox.state.add_schedule(None, "3", look_id="9", enabled=False)
    return sandbox.state.looks


def _cli(*args: str) -> Any:
    from guardian.looker.cli import app

    return CliRunner().invoke(app, list(args))


def test_looks_go_through_the_same_lifecycle(looks: Any, settings: Any, sandbox: Any, smtp: Any) -> None:
    from guardian.monitoring.receivers import body_text

    store = get_store(settings)
    plan = service.plan(settings)
    by_ref = {(a.content_type, a.dashboard_id): a for a in list_actions(store, plan.id)}
    decided = {ref[1]: (a.kind, a.reason) for ref, a in by_ref.items() if ref[0] == "look"}
    assert {k: v[0] for k, v in decided.items()} == {
        "2": "soft_delete",
        "3": "soft_delete",
        "4": "skip",
        "5": "skip",
        "6": "skip",
        "7": "skip",
        "8": "warn",
        "9": "purge",
    }
    assert "on 1 dashboard tile(s)" in decided["4"][1] and "public" in decided["5"][1]
    assert "scheduled" in decided["6"][1] and "favorited" in decided["7"][1]
    # Dashboard 4 and Look 4 are both in the plan, each decided on its own facts.
    assert by_ref[("dashboard", "4")].kind == "soft_delete" and by_ref[("look", "4")].kind == "skip"
    assert (plan.counts["looks_live"], plan.counts["looks_trashed"], plan.counts["looks_soft_delete"]) == (8, 1, 2)

    # Warned like a dashboard, listed apart from the owner's dashboards.
    assert service.warn(settings, plan.id).warned_owners >= 1
    alice = next(m for m in smtp.messages if m["To"] == "alice@example.com" and "soon" in str(m["Subject"]))
    text = body_text(alice).replace("\r\n", "\n")
    assert "Dashboards:\n- [10] Soon Stale Board" in text and "Looks:\n- [look:8] Nearly Stale Look" in text
    assert "1 Look will be moved" in str(alice["Subject"])

    # Put on a dashboard since the plan: in use, re-checked and skipped at apply time.
    sandbox.state.put_look_on_dashboard("2", "3")
    report = service.apply(settings, plan.id)
    assert report.done == 8 and report.failed == 0  # 5 + 1 dashboards, Look 2 trashed, Look 9 purged
    states = {(a.content_type, a.dashboard_id): (a.state, a.outcome) for a in list_actions(store, plan.id)}
    assert states[("look", "3")][0] == "skipped" and "dashboard tile" in (states[("look", "3")][1] or "")
    assert looks["2"]["deleted"] and str(looks["2"]["deleter_id"]) == API_USER_ID and "9" not in looks
    assert not looks["3"]["deleted"] and not looks["4"]["deleted"]
    events = list(audit.iter_events(store, target="looker:default/look/2"))
    assert [(e.action, e.outcome) for e in events] == [
        ("looker.backup", "ok"),
        ("looker.trash", "started"),
        ("looker.trash", "ok"),
    ]
    [backup] = list_backups(store, dashboard_id="2", content_type="look")
    document = read_backup(service_storage(settings), backup.key, backup.sha256)
    assert "/looks/2/" in backup.key and document["content_type"] == "look"
    assert document["look"]["query"]["id"] == looks["2"]["query_id"]
    # Dashboard 2 (viewed 3 days ago) was not touched, nor backed up, whatever Look 2 went through.
    assert not list_backups(store, dashboard_id="2") and not sandbox.state.dashboards["2"]["deleted"]
    service.notify(settings, plan.id, mode="apply")
    notice = next(m for m in smtp.messages if m["To"] == "bob@example.com" and "were moved" in str(m["Subject"]))
    assert "[look:2] Stale Cohort Look" in body_text(notice)
    assert re.search(r"`guardian looker restore [^`]*\blook:2\b", body_text(notice)), body_text(notice)

    # The Guardian UI lists Looks by the same names and keeps one from its form.
    from guardian.web import looker_view

    page = looker_view.page_data(settings, store)
    assert {"4", "look:2", "look:9"} <= {a["label"] for a in page["actions"]}
    assert {"look:2", "look:9"} <= {a["label"] for a in page["restorable"]}
    until = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()
    said = looker_view.keep(settings, store, "operator", "look:3", until, "on the QBR board", lambda *a, **k: None)
    assert said.startswith("Look 3 kept until"), said
    refused: list[tuple[Any, ...]] = []
    said = looker_view.keep(
        settings, store, "operator", "look:3", "2999-01-01", "forever", lambda *a, **k: refused.append(a)
    )
    assert "not kept" in said and [a[2] for a in refused] == ["looker:look:3"], (said, refused)

    # A person names a Look as look:ID: keep one, restore the trashed one and the purged one.
    kept = _cli("keep", "look:8", "--until", until, "--reason", "linked from the wiki")
    assert kept.exit_code == 0 and "look 8 kept until" in kept.output, kept.output
    restored = _cli("restore", "look:2", "look:9")
    assert restored.exit_code == 0, restored.output
    assert "look:2: untrashed" in restored.output and "look:9: reimported" in restored.output
    assert not looks["2"]["deleted"]
    new_id = next(k for k, lk in looks.items() if lk["title"] == "Look trashed by Guardian long ago")
    assert new_id != "9" and looks[new_id]["folder_id"] == "5"
    assert [p["look_id"] for p in sandbox.state.scheduled_plans.values() if p["name"] == "Delivery 2"] == [new_id]
    assert _cli("restore", "look:9").output.count("noop") == 1  # no second copy

    # The next plan sees the keep and the restore: Look 8 skipped, Look 2 no longer a guardian trash.
    following = service.plan(settings)
    again = {a.dashboard_id: a for a in list_actions(store, following.id) if a.content_type == "look"}
    assert again["8"].kind == "skip" and "kept by its owner" in again["8"].reason
    assert again["3"].kind == "skip"  # on a dashboard since the last plan (and kept from the UI)
    assert "2" not in again or again["2"].kind != "purge"


def service_storage(settings: Any) -> Any:
    from guardian.storage import default_storage

    return default_storage(settings)
