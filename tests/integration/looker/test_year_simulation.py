"""A year of a Looker instance, month by month, with people, faults and the guardian (stateful PBT).

People view, schedule, alert, favorite, trash and restore dashboards; owners leave; owners
keep dashboards; the guardian runs each month in a random mode (dry run, test, apply),
sometimes killed in the middle of its apply and rerun. Everything goes through the real
looker-sdk to the sandbox (whose clock the simulation moves), a real SQLite store, and a real
SMTP receiver: the invariants are checked from the world's side (Looker's state before and
after a run, the emails actually delivered), not from the guardian's own records.

Not covered here: Looks (the guardian does not manage Looks yet).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from guardian.looker.apply import apply_plan
from guardian.looker.backup import latest_backup, lookml_problem, read_backup
from guardian.looker.client import GuardianApiSettings, LookerClient
from guardian.looker.ledger import keep
from guardian.looker.messages import send_notifications, send_warnings
from guardian.looker.plan import make_plan
from guardian.looker.restore import restore
from guardian.sandbox.looker import LookerState, start
from guardian.sandbox.looker.state import API_USER_ID
from guardian.storage import default_storage
from guardian.store import get_store

START = datetime(2026, 1, 1, tzinfo=UTC)
SOFT, PURGE, WARNING, WINDOW, MAX_TRASH, MAX_PURGE = 180, 60, 14, 30, 3, 2
OWNERS = ("2", "3", "4")
PEOPLE = "3"  # Bob's API key: the person who trashes and restores by hand
PEOPLE_ACTIONS = (
    *("view", "schedule", "unschedule", "alert", "favorite", "trash", "untrash", "leave", "keep", "days"),
    # The risky moments, three times as likely: dashboards warned and due for the trash in use again,
    # a guardian trash undone and redone by a person.
    *(("schedule_warned", "alert_warned", "retrash_ours") * 3),
)


class Killed(BaseException):
    """kill -9 of the applier, right after Looker applied a trash (the guardian never heard back)."""


class LookerYear(RuleBasedStateMachine):
    """People and the guardian on one instance; the invariants hold after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.state = LookerState(clock=lambda: self.now)
        self.server: Any = None
        self.tmp = tempfile.TemporaryDirectory(prefix="looker-year-")
        self.last_view: dict[str, datetime] = {}
        self.keeps: dict[str, datetime] = {}
        self.warned: dict[str, list[datetime]] = {}
        self.guardian_trashes: list[tuple[datetime, str, str]] = []  # (when, id, deleted_at)
        self.purges: list[tuple[datetime, str]] = []
        self.trash_schedules: dict[str, list[str]] = {}

    # -- setup --------------------------------------------------------------------------
    @initialize(ages=st.lists(st.integers(0, 400), min_size=4, max_size=7))
    def instance(self, ages: list[int]) -> None:
        from guardian.settings import load_settings

        state = self.state
        state.add_user(API_USER_ID, "Guardian", "Bot", "guardian-bot@example.com")
        for uid in OWNERS:
            state.add_user(uid, f"Owner{uid}", "Person", f"owner{uid}@example.com")
        state.add_folder("1", "Shared", None)
        state.add_folder("2", "Users", None)
        for i, age in enumerate(ages):
            seen = self.now - timedelta(days=age)
            dash = state.add_dashboard(
                title=f"Dash {i}",
                user_id=OWNERS[i % len(OWNERS)],
                folder_id="1",
                created_at=START - timedelta(days=900),
                last_accessed=seen,
            )
            self.last_view[str(dash["id"])] = seen
        self.server = start(state)
        self.settings = load_settings(
            data_dir=self.tmp.name,
            notify={"smtp_host": "127.0.0.1", "smtp_port": SMTP.port, "email_to": ["team@example.com"]},
            looker={
                "soft_delete_days": SOFT,
                "purge_days": PURGE,
                "warning_days": WARNING,
                "max_deletions": MAX_TRASH,
                "max_purges": MAX_PURGE,
                "breaker_window_days": WINDOW,
                "max_fraction": 1.0,
                "test_mode_limit": 2,
                "concurrency": 1,
                "rate_limit_per_second": 1000,
                "api_backoff_seconds": 0.01,
                "max_plan_age_hours": 1,
            },
        )
        self.store = get_store(self.settings)
        self.storage = default_storage(self.settings)
        self.client = LookerClient(
            GuardianApiSettings(base_url=self.server.url, client_id="sandbox-id", client_secret="sandbox-secret")
        )
        self.bob = LookerClient(
            GuardianApiSettings(base_url=self.server.url, client_id="bob-id", client_secret="bob-secret")
        )
        self.sent = len(SMTP.messages)

    def teardown(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.tmp.cleanup()

    # -- people -------------------------------------------------------------------------
    def _live(self) -> list[str]:
        return sorted(k for k, d in self.state.dashboards.items() if not d["deleted"])

    def _trashed(self) -> list[str]:
        return sorted(k for k, d in self.state.dashboards.items() if d["deleted"])

    @rule(
        action=st.sampled_from(PEOPLE_ACTIONS),
        pick=st.integers(0, 50),
        enabled=st.booleans(),
        days=st.integers(1, 120),
    )
    def people_act(self, action: str, pick: int, enabled: bool, days: int) -> None:
        """One thing a person does between two monthly runs."""
        live, trashed = self._live(), self._trashed()
        if action in ("schedule_warned", "alert_warned"):
            # The risky moment: warned, about to be trashed, and now in use again.
            live = [d for d in live if self.warned.get(d) and self.warned[d][-1] > self.last_view[d]]
            SEEN[action] += bool(live)
            action = action.removesuffix("_warned")
        if action == "retrash_ours":
            # A person restores what the guardian trashed, then trashes it again themselves.
            ours = [d for _, d, _ in self.guardian_trashes if d in trashed]
            SEEN[action] += bool(ours)
            if ours:
                self.bob.set_deleted(ours[pick % len(ours)], False)
                self.bob.set_deleted(ours[pick % len(ours)], True)
            return
        target = live[pick % len(live)] if live else None
        owner = OWNERS[pick % len(OWNERS)]
        if action == "days":
            self.now += timedelta(days=days % 10 + 1)
        elif action == "view" and target:
            self.state.view(target, self.now)
            self.last_view[target] = self.now
        elif action == "schedule" and target:
            self.state.add_schedule(target, owner, enabled=enabled)
        elif action == "unschedule" and self.state.scheduled_plans:
            plans = sorted(self.state.scheduled_plans)
            self.state.scheduled_plans[plans[pick % len(plans)]]["enabled"] = False
        elif action == "alert" and target:
            element = str(self.state.dashboards[target]["dashboard_elements"][0]["id"])
            self.state.add_alert(element, owner, disabled=not enabled)
        elif action == "favorite" and target:
            self.state.dashboards[target]["favorite_count"] = 1
        elif action == "trash" and target:
            self.bob.set_deleted(target, True)
        elif action == "untrash" and trashed:
            self.bob.set_deleted(trashed[pick % len(trashed)], False)
        elif action == "leave":
            self.state.users[owner]["is_disabled"] = True
        elif action == "keep" and target:
            until = keep(
                self.settings,
                self.store,
                target,
                until=self.now + timedelta(days=days),
                reason="quarterly review",
                actor="owner",
                now=self.now,
            ).until
            self.keeps[target] = max(until, self.keeps.get(target, until))

    # -- the guardian -------------------------------------------------------------------
    @rule(
        mode=st.sampled_from(["dry_run", "test", "apply", "apply"]),
        kill_after=st.one_of(st.none(), st.integers(1, 3)),
        days=st.integers(26, 35),
        react=st.sampled_from([None, "schedule", "alert", "retrash"]),
        again=st.booleans(),
    )
    def a_month_passes(self, mode: str, kill_after: int | None, days: int, react: str | None, again: bool) -> None:
        """The month turns and the guardian's monthly run happens (sometimes killed mid-apply).

        Just before it, someone may react: an owner schedules or alerts a dashboard that was
        warned and is due for the trash, or a person restores one of the guardian's trashes and
        trashes it again themselves. Sometimes someone runs it again by hand two weeks later.
        """
        self.now += timedelta(days=days)
        if react == "retrash":
            self.people_act("retrash_ours", days, True, 1)
        elif react is not None:
            self.people_act(f"{react}_warned", days, True, 1)
        self._run(mode, kill_after)
        if again:
            self.now += timedelta(days=WARNING + 1 + days % 5)
            self._run("apply", None)

    def _run(self, mode: str, kill_after: int | None) -> None:
        before = {k: dict(d) for k, d in self.state.dashboards.items()}
        enabled_schedules = {str(p["dashboard_id"]) for p in self.state.scheduled_plans.values() if p["enabled"]}
        all_schedules = {
            k: sorted(str(p["id"]) for p in self.state.scheduled_plans.values() if p["dashboard_id"] == k)
            for k in before
        }
        alerted = {
            self.state.element_dashboard(str(a["dashboard_element_id"]))
            for a in self.state.alerts.values()
            if not a["is_disabled"]
        }
        plan = make_plan(self.settings, self.client, self.store, now=self.now, actor="sim")
        send_warnings(self.settings, plan.id, client=self.client, store=self.store, now=self.now)
        self._read_mail()
        if mode != "dry_run":
            real = self.client.set_deleted
            calls = {"n": 0}

            def killing(dashboard_id: str, deleted: bool) -> dict[str, Any]:
                result = real(dashboard_id, deleted)
                calls["n"] += 1
                if kill_after is not None and calls["n"] == kill_after:
                    raise Killed
                return result

            self.client.set_deleted = killing  # type: ignore[method-assign]
            try:
                self._apply(plan.id, mode)
            except Killed:
                SEEN["killed"] += 1
                self.client.set_deleted = real  # type: ignore[method-assign]
                self._apply(plan.id, mode)  # the task's retry
            finally:
                self.client.set_deleted = real  # type: ignore[method-assign]
            send_notifications(self.settings, plan.id, client=self.client, store=self.store, mode=mode)
        for dashboard_id, was in before.items():
            now = self.state.dashboards.get(dashboard_id)
            if now is None:
                self._check_purge(dashboard_id, was)
            elif not was["deleted"] and now["deleted"]:
                assert str(now["deleter_id"]) == API_USER_ID, "only the guardian trashes during its run"
                self._check_trash(dashboard_id, was, enabled_schedules, alerted)
                self.guardian_trashes.append((self.now, dashboard_id, str(now["deleted_at"])))
                SEEN["trash"] += 1
                self.trash_schedules[dashboard_id] = all_schedules[dashboard_id]

    def _apply(self, plan_id: int, mode: str) -> None:
        from guardian.errors import SafetyGateTripped

        # Refused by the rolling breaker: nothing may change, the checks after the run see to it.
        with contextlib.suppress(SafetyGateTripped):
            apply_plan(
                self.settings,
                plan_id,
                client=self.client,
                store=self.store,
                storage=self.storage,
                mode="test" if mode == "test" else "apply",
                actor="sim",
                now=self.now,
            )
            return
        SEEN["refused"] += 1

    def _read_mail(self) -> None:
        from guardian.monitoring.receivers import body_text

        for msg in SMTP.messages[self.sent :]:
            if "moved to the trash soon" in str(msg["Subject"]):
                for dashboard_id in re.findall(r"^- \[([^\]]+)\]", body_text(msg), re.MULTILINE):
                    self.warned.setdefault(dashboard_id, []).append(self.now)
        self.sent = len(SMTP.messages)

    def _check_trash(self, dashboard_id: str, was: dict[str, Any], scheduled: set[str], alerted: set[Any]) -> None:
        assert dashboard_id not in scheduled, f"{dashboard_id} had an enabled schedule and was trashed"
        assert dashboard_id not in alerted, f"{dashboard_id} had an enabled alert and was trashed"
        last = self.last_view[dashboard_id]
        assert (self.now - last).days > SOFT, f"{dashboard_id} viewed {last} was trashed on {self.now}"
        assert self.keeps.get(dashboard_id, START) <= self.now, f"{dashboard_id} was kept and trashed"
        warnings = [w for w in self.warned.get(dashboard_id, []) if last < w <= self.now - timedelta(days=WARNING)]
        assert warnings, f"{dashboard_id} trashed on {self.now} without a warning {WARNING} days before"
        self._check_backup(dashboard_id, was)

    def _check_purge(self, dashboard_id: str, was: dict[str, Any]) -> None:
        ours = {(d, at) for _, d, at in self.guardian_trashes}
        assert was["deleted"] and (dashboard_id, str(was["deleted_at"])) in ours, (
            f"{dashboard_id} purged but it is not a trash the guardian made (deleter {was['deleter_id']})"
        )
        assert str(was["deleter_id"]) == API_USER_ID
        self._check_backup(dashboard_id, was)
        self.purges.append((self.now, dashboard_id))
        SEEN["purge"] += 1

    def _check_backup(self, dashboard_id: str, was: dict[str, Any]) -> None:
        backup = latest_backup(self.store, "default", dashboard_id)
        assert backup is not None, f"{dashboard_id} has no backup"
        document = read_backup(self.storage, backup.key, backup.sha256)
        assert lookml_problem(str(document["lookml"]), document["dashboard"]) is None
        assert document["dashboard"]["title"] == was["title"]

    @precondition(lambda self: bool(self.purges))
    @rule(pick=st.integers(0, 50))
    def an_owner_asks_for_a_purged_dashboard(self, pick: int) -> None:
        _, dashboard_id = self.purges[pick % len(self.purges)]
        backup = latest_backup(self.store, "default", dashboard_id)
        assert backup is not None
        expected = len(read_backup(self.storage, backup.key, backup.sha256)["schedules"])
        [result] = restore(
            self.settings, [dashboard_id], actor="owner", client=self.client, store=self.store, storage=self.storage
        )
        assert result.ok, result.detail
        new_id = str(result.new_dashboard_id)
        assert new_id in self.state.dashboards and not self.state.dashboards[new_id]["deleted"]
        schedules = [p for p in self.state.scheduled_plans.values() if p["dashboard_id"] == new_id]
        assert len(schedules) == expected, f"restored {len(schedules)} of {expected} schedules"
        self.last_view[new_id] = self.now
        SEEN["restore"] += 1
        self.purges = [(t, d) for t, d in self.purges if d != dashboard_id]

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def rolling_budget_holds(self) -> None:
        for when, _, _ in self.guardian_trashes:
            window = [t for t, _, _ in self.guardian_trashes if when - timedelta(days=WINDOW) < t <= when]
            assert len(window) <= MAX_TRASH, f"{len(window)} trashes in {WINDOW} days up to {when}"
        for when, _ in self.purges:
            window = [t for t, _ in self.purges if when - timedelta(days=WINDOW) < t <= when]
            assert len(window) <= MAX_PURGE, f"{len(window)} purges in {WINDOW} days up to {when}"


SMTP: Any = None
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def smtp_receiver() -> Any:
    from guardian.monitoring.receivers import SmtpReceiver

    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


def test_a_year_of_people_faults_and_monthly_runs(smtp_receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing scheduled, alerted, viewed in the window or kept is trashed; nothing is trashed without a
    warning WARNING days before; nothing a person trashed is purged; every trash and purge has a backup
    that restores it with its schedules; the rolling budget holds."""
    global SMTP
    SMTP = smtp_receiver
    for name in ("LOOKERSDK_BASE_URL", "LOOKERSDK_CLIENT_ID", "LOOKERSDK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    run_state_machine_as_test(
        LookerYear,
        settings=settings(
            max_examples=8,
            stateful_step_count=24,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The year exercised what the invariants are about (else they hold vacuously).
    print(dict(SEEN))
    assert min(SEEN[k] for k in ("trash", "purge", "killed", "restore")) > 0, SEEN
