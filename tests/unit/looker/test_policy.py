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


CTX = Context(now=NOW)
POLICY = Policy()


def test_inactive_after_180_days_of_system_activity() -> None:
    d = decide(facts(usage_last_accessed=ago(181)), POLICY, CTX)
    assert d.kind == "soft_delete" and "181 days" in d.reason and "System Activity" in d.reason
    assert decide(facts(usage_last_accessed=ago(180)), POLICY, CTX).kind == "warn"


@pytest.mark.parametrize(
    ("fields", "source"),
    [
        ({"last_accessed_at": ago(200), "last_viewed_at": ago(10)}, "last_accessed_at"),
        ({"last_viewed_at": ago(200)}, "last_viewed_at"),
        ({"created_at": ago(200)}, "created_at"),
    ],
)
def test_last_access_fallback_order(fields: dict[str, object], source: str) -> None:
    d = decide(facts(**fields), POLICY, CTX)
    assert d.kind == "soft_delete" and source in d.reason


def test_system_activity_wins_over_dashboard_fields() -> None:
    assert decide(facts(usage_last_accessed=ago(5), last_accessed_at=ago(300)), POLICY, CTX).kind == "keep"


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
    d = decide(facts(usage_last_accessed=ago(400), schedule_total=1, favorite_count=1, public_total=1), policy, CTX)
    assert d.kind == "soft_delete"


def test_owner_email_allow_list() -> None:
    ctx = Context(now=NOW, owner_emails={"2": "alice@example.com"})
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
    ctx = Context(now=NOW, folder_chain=chains)
    inactive = {"usage_last_accessed": ago(400)}
    by_path = Policy(protected_folder_paths=("Shared/Finance",))
    assert decide(facts(folder_id="7", **inactive), by_path, ctx).kind == "skip"
    assert decide(facts(folder_id="5", **inactive), by_path, ctx).kind == "soft_delete"
    by_id = Policy(protected_folder_ids=("3",))
    d = decide(facts(folder_id="7", **inactive), by_id, ctx)
    assert d.kind == "skip" and "Shared/Finance" in d.reason


def test_purge_only_guardian_trashed_after_purge_days() -> None:
    ctx = Context(now=NOW, guardian_trashed=frozenset({"10"}))
    assert decide(facts(deleted=True, deleted_at=ago(181)), POLICY, ctx).kind == "purge"
    assert decide(facts(deleted=True, deleted_at=ago(100)), POLICY, ctx).kind == "keep"
    by_person = decide(facts(id="11", deleted=True, deleted_at=ago(300), deleter_id="3"), POLICY, ctx)
    assert by_person.kind == "skip" and "by a person" in by_person.reason
    assert decide(facts(id="11", deleted=True, deleted_at=ago(300)), Policy(purge_human_trashed=True), ctx).kind == (
        "purge"
    )
    by_api_user = Context(now=NOW, guardian_user_id="1")
    assert decide(facts(id="12", deleted=True, deleted_at=ago(300), deleter_id="1"), POLICY, by_api_user).kind == (
        "purge"
    )


def test_facts_json_round_trip() -> None:
    f = facts(usage_last_accessed=ago(3), deleted_at=ago(2), deleted=True)
    assert DashboardFacts.from_json(f.to_json()) == f
