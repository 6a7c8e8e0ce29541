"""The lifecycle policy as pure functions: inactivity, fallbacks, warnings, exclusions, purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guardian.looker.policy import Context, DashboardFacts, Policy, decide, folder_chain

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def facts(**kw: object) -> DashboardFacts:
    base: dict[str, object] = {"id": "10", "title": "t", "user_id": "2", "folder_id": "5", "created_at": ago(1000)}
    base.update(kw)
    return DashboardFacts(**base)  # type: ignore[arg-type]


# Dashboard "10" was warned 20 days ago: past the 14-day notice, after any access older than that.
WARNED = {("dashboard", "10"): ago(20)}
CTX = Context(now=NOW, warnings=WARNED)
POLICY = Policy()


def test_inactive_after_180_days_of_system_activity() -> None:
    d = decide(facts(usage_last_accessed=ago(181)), POLICY, CTX)
    assert d.kind == "soft_delete" and "181 days" in d.reason and "System Activity" in d.reason
    assert decide(facts(usage_last_accessed=ago(180)), POLICY, CTX).kind == "warn"


@pytest.mark.parametrize(
    ("fields", "source"),
    [
        ({"last_accessed_at": ago(200), "last_viewed_at": ago(190)}, "last_viewed_at"),
        (
            {"last_accessed_at": ago(190), "last_viewed_at": ago(200), "usage_last_accessed": ago(300)},
            "last_accessed_at",
        ),
        ({"usage_last_accessed": ago(185), "last_viewed_at": ago(200)}, "System Activity"),
        ({"created_at": ago(200)}, "created_at"),
    ],
)
def test_last_access_is_the_newest_signal(fields: dict[str, object], source: str) -> None:
    d = decide(facts(**fields), POLICY, CTX)
    assert d.kind == "soft_delete" and source in d.reason


@pytest.mark.parametrize("fresh", ["usage_last_accessed", "last_accessed_at", "last_viewed_at"])
def test_any_recent_signal_keeps_it(fresh: str) -> None:
    old = {k: ago(300) for k in ("usage_last_accessed", "last_accessed_at", "last_viewed_at")}
    assert decide(facts(**(old | {fresh: ago(2)})), POLICY, CTX).kind == "keep"


def test_trash_needs_a_warning_old_enough_and_after_the_last_access() -> None:
    inactive = facts(usage_last_accessed=ago(400))
    never = decide(inactive, POLICY, Context(now=NOW))
    assert never.kind == "warn" and "not warned" in never.reason
    recent = decide(inactive, POLICY, Context(now=NOW, warnings={("dashboard", "10"): ago(13)}))
    assert recent.kind == "warn" and "trash from" in recent.reason
    assert decide(inactive, POLICY, Context(now=NOW, warnings={("dashboard", "10"): ago(14)})).kind == "soft_delete"
    # Warned, then viewed, then inactive again: the old warning no longer counts.
    viewed_since = facts(usage_last_accessed=ago(190))
    assert decide(viewed_since, POLICY, Context(now=NOW, warnings={("dashboard", "10"): ago(300)})).kind == "warn"


def test_unexpired_keep_protects_and_expired_keep_does_not() -> None:
    inactive = facts(usage_last_accessed=ago(400))
    kept = decide(
        inactive,
        POLICY,
        Context(now=NOW, warnings=WARNED, keeps={("dashboard", "10"): (NOW + timedelta(days=1), "QBR")}),
    )
    assert kept.kind == "skip" and "kept by its owner" in kept.reason and "QBR" in kept.reason
    expired = Context(now=NOW, warnings=WARNED, keeps={("dashboard", "10"): (NOW - timedelta(days=1), "QBR")})
    assert decide(inactive, POLICY, expired).kind == "soft_delete"


def test_young_dashboard_never_viewed_is_kept() -> None:
    assert decide(facts(created_at=ago(100)), POLICY, CTX).kind == "keep"


def test_warning_window() -> None:
    assert decide(facts(usage_last_accessed=ago(166)), POLICY, CTX).kind == "warn"
    assert decide(facts(usage_last_accessed=ago(165)), POLICY, CTX).kind == "keep"
    assert decide(facts(usage_last_accessed=ago(170)), Policy(warning_days=0), CTX).kind == "keep"


@pytest.mark.parametrize(
    ("fields", "policy", "reason"),
    [
        ({"id": "model::dash"}, POLICY, "LookML"),
        ({"schedule_total": 3}, POLICY, "scheduled"),
        ({"schedules": 1}, POLICY, "enabled schedule"),
        ({"alerts": 2}, POLICY, "enabled alert"),
        ({"favorite_count": 2}, POLICY, "favorited"),
        ({"public_total": 9}, POLICY, "public"),
        ({}, Policy(allow_dashboard_ids=("10",)), "allow-listed"),
        ({}, Policy(allow_owners=("2",)), "owner 2 is allow-listed"),
    ],
)
def test_exclusions_are_reported_with_reason(fields: dict[str, object], policy: Policy, reason: str) -> None:
    d = decide(facts(usage_last_accessed=ago(400), **fields), policy, CTX)
    assert d.kind == "skip" and reason in d.reason


def test_exclusion_switches_off() -> None:
    policy = Policy(exclude_scheduled=False, exclude_favorited=False, exclude_public=False)
    f = facts(usage_last_accessed=ago(400), schedule_total=1, schedules=1, alerts=1, favorite_count=1, public_total=1)
    d = decide(f, policy, CTX)
    assert d.kind == "soft_delete"


def test_owner_email_allow_list() -> None:
    ctx = Context(now=NOW, owner_emails={"2": "alice@example.com"}, warnings=WARNED)
    d = decide(facts(usage_last_accessed=ago(400)), Policy(allow_owners=("alice@example.com",)), ctx)
    assert d.kind == "skip" and "alice@example.com" in d.reason


def test_protected_folder_by_id_and_path_includes_subfolders() -> None:
    chains = folder_chain(
        [
            {"id": "1", "name": "Shared", "parent_id": None},
            {"id": "3", "name": "Finance", "parent_id": "1"},
            {"id": "7", "name": "Close", "parent_id": "3"},
            {"id": "5", "name": "Sales", "parent_id": "1"},
        ]
    )
    ctx = Context(now=NOW, folder_chain=chains, warnings=WARNED)
    inactive = {"usage_last_accessed": ago(400)}
    by_path = Policy(protected_folder_paths=("Shared/Finance",))
    assert decide(facts(folder_id="7", **inactive), by_path, ctx).kind == "skip"
    assert decide(facts(folder_id="5", **inactive), by_path, ctx).kind == "soft_delete"
    by_id = Policy(protected_folder_ids=("3",))
    d = decide(facts(folder_id="7", **inactive), by_id, ctx)
    assert d.kind == "skip" and "Shared/Finance" in d.reason


def test_purge_only_the_very_trash_the_guardian_made() -> None:
    ctx = Context(
        now=NOW, guardian_user_id="1", guardian_trashes={("dashboard", "10"): ago(181), ("dashboard", "12"): ago(400)}
    )
    ours = facts(deleted=True, deleted_at=ago(181), deleter_id="1")
    assert decide(ours, POLICY, ctx).kind == "purge"
    assert decide(facts(deleted=True, deleted_at=ago(100), deleter_id="1"), POLICY, ctx).kind == "keep"
    # Restored by a person, then trashed again by them: other deleter, other deleted_at.
    retrashed = decide(facts(deleted=True, deleted_at=ago(300), deleter_id="3"), POLICY, ctx)
    assert retrashed.kind == "skip" and "by a person" in retrashed.reason
    # The guardian's API user, but not a trash the guardian recorded (a person using the API key).
    unrecorded = decide(facts(id="11", deleted=True, deleted_at=ago(300), deleter_id="1"), POLICY, ctx)
    assert unrecorded.kind == "skip"
    # Recorded, but deleted_at moved (restored and re-trashed through the same API user).
    moved = decide(facts(id="12", deleted=True, deleted_at=ago(200), deleter_id="1"), POLICY, ctx)
    assert moved.kind == "skip"
    human = facts(id="11", deleted=True, deleted_at=ago(300), deleter_id="3")
    assert decide(human, Policy(purge_human_trashed=True), ctx).kind == "purge"


def test_facts_json_round_trip() -> None:
    f = facts(usage_last_accessed=ago(3), deleted_at=ago(2), deleted=True)
    assert DashboardFacts.from_json(f.to_json()) == f


# -- Looks: the same policy, their own exemptions, their own ledger keys ---------------------
def look(**kw: object) -> DashboardFacts:
    return facts(content_type="look", **kw)


def test_a_look_is_decided_by_the_same_policy_under_its_own_key() -> None:
    inactive = {"usage_last_accessed": ago(400)}
    # Dashboard 10 was warned; Look 10 was not: Looker numbers them separately.
    assert decide(look(**inactive), POLICY, CTX).kind == "warn"
    warned = Context(now=NOW, warnings={("look", "10"): ago(20)})
    d = decide(look(**inactive), POLICY, warned)
    assert d.kind == "soft_delete" and look().label == "look:10" and look().ref == ("look", "10")
    kept = Context(now=NOW, warnings=warned.warnings, keeps={("look", "10"): (NOW + timedelta(days=1), "QBR")})
    assert decide(look(**inactive), POLICY, kept).kind == "skip"
    assert decide(facts(**inactive), POLICY, kept).kind == "warn"


def test_a_look_on_a_dashboard_or_public_is_in_use() -> None:
    warned = Context(now=NOW, warnings={("look", "10"): ago(20)})
    inactive = {"usage_last_accessed": ago(400)}
    on_board = decide(look(dashboards_using=2, **inactive), POLICY, warned)
    assert on_board.kind == "skip" and "on 2 dashboard tile(s)" in on_board.reason
    # On a dashboard is use whatever the settings: trashing the Look breaks the tile.
    lax = Policy(exclude_scheduled=False, exclude_favorited=False, exclude_public=False)
    assert decide(look(dashboards_using=1, **inactive), lax, warned).kind == "skip"
    public = decide(look(public=True, **inactive), POLICY, warned)
    assert public.kind == "skip" and "public" in public.reason
    assert decide(look(public=True, **inactive), lax, warned).kind == "soft_delete"
    assert decide(look(schedules=1, **inactive), POLICY, warned).kind == "skip"
    assert decide(look(favorite_count=1, **inactive), POLICY, warned).kind == "skip"


def test_a_look_is_purged_only_from_the_guardians_own_look_trash() -> None:
    dashboard_trash = Context(now=NOW, guardian_user_id="1", guardian_trashes={("dashboard", "10"): ago(181)})
    trashed = look(deleted=True, deleted_at=ago(181), deleter_id="1")
    assert decide(trashed, POLICY, dashboard_trash).kind == "skip"
    look_trash = Context(now=NOW, guardian_user_id="1", guardian_trashes={("look", "10"): ago(181)})
    assert decide(trashed, POLICY, look_trash).kind == "purge"


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("12", ("dashboard", "12")),
        ("look:12", ("look", "12")),
        (" Look: 7 ", ("look", "7")),
        ("dashboard:12", ("dashboard", "12")),
        ("thelook::business_pulse", ("dashboard", "thelook::business_pulse")),
    ],
)
def test_content_names(text: str, ref: tuple[str, str]) -> None:
    from guardian.looker.policy import label, parse_ref

    assert parse_ref(text) == ref
    assert parse_ref(label(*ref)) == ref


@pytest.mark.parametrize("text", ["", "look:", "look"])
def test_content_names_refused(text: str) -> None:
    from guardian.errors import ValidationFailed
    from guardian.looker.policy import parse_ref

    with pytest.raises(ValidationFailed, match="look:12"):
        parse_ref(text)
