"""A year of a Looker instance, month by month, with people, faults and the guardian (stateful PBT).

People view, schedule, alert, favorite, trash and restore dashboards and Looks; they put Looks
on dashboards and make Looks public; owners leave; owners keep dashboards and Looks; the
guardian runs each month in a random mode (dry run, test, apply), sometimes killed in the
middle of its apply and rerun. Everything goes through the real looker-sdk to the sandbox
(whose clock the simulation moves), a real SQLite store, and a real SMTP receiver: the
invariants are checked from the world's side (Looker's state before and after a run, the
emails actually delivered), not from the guardian's own records. Content is named by
(content type, id): Looker numbers Looks and dashboards separately, and the simulation's ids
overlap on purpose (Look 1 and dashboard 1 both exist).
"""

from __future__ import annotations

import contextlib
import os
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
from guardian.looker.backup import backed_up, backup_problem, latest_backup, read_backup
from guardian.looker.client import GuardianApiSettings, LookerClient
from guardian.looker.ledger import keep
from guardian.looker.messages import send_notifications, send_warnings
from guardian.looker.plan import make_plan
from guardian.looker.policy import label, parse_ref
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
    # Looks: put on a dashboard's tile, made public (a dashboard's "public" shows in System Activity).
    *("on_dashboard", "public"),
    # The risky moments, three times as likely: dashboards warned and due for the trash in use again,
    # a guardian trash undone and redone by a person.
    *(("schedule_warned", "alert_warned", "retrash_ours") * 3),
)


class Killed(BaseException):
    """kill -9 of the applier, right after Looker applied a trash (the guardian never heard back)."""


Ref = tuple[str, str]


class LookerYear(RuleBasedStateMachine):
    """People and the guardian on one instance; the invariants hold after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.state = LookerState(clock=lambda: self.now)
        self.server: Any = None
        self.tmp = tempfile.TemporaryDirectory(prefix="looker-year-")
        self.last_view: dict[Ref, datetime] = {}
        self.keeps: dict[Ref, datetime] = {}
        self.warned: dict[Ref, list[datetime]] = {}
        self.guardian_trashes: list[tuple[datetime, Ref, str]] = []  # (when, ref, deleted_at)
        self.purges: list[tuple[datetime, Ref]] = []

    def _objects(self, content_type: str) -> dict[str, dict[str, Any]]:
        return self.state.dashboards if content_type == "dashboard" else self.state.looks

    def _all(self) -> dict[Ref, dict[str, Any]]:
        return {(t, k): d for t in ("dashboard", "look") for k, d in self._objects(t).items()}

    # -- setup --------------------------------------------------------------------------
    @initialize(
        ages=st.lists(st.integers(0, 400), min_size=4, max_size=7),
        look_ages=st.lists(st.integers(0, 400), min_size=2, max_size=5),
    )
    def instance(self, ages: list[int], look_ages: list[int]) -> None:
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
            self.last_view[("dashboard", str(dash["id"]))] = seen
        for i, age in enumerate(look_ages):
            seen = self.now - timedelta(days=age)
            look = state.add_look(
                title=f"Look {i}",
                user_id=OWNERS[(i + 1) % len(OWNERS)],
                folder_id="1",
                created_at=START - timedelta(days=900),
                last_accessed=seen,
            )
            self.last_view[("look", str(look["id"]))] = seen
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
        what=st.sampled_from(["dashboard", "look"]),
    )
    def people_act(self, action: str, pick: int, enabled: bool, days: int, what: str = "dashboard") -> None:
        """One thing a person does between two monthly runs, to a dashboard or a Look."""
        objects = self._objects(what)
        live = sorted(k for k, d in objects.items() if not d["deleted"])
        trashed = sorted(k for k, d in objects.items() if d["deleted"])
        if action in ("schedule_warned", "alert_warned"):
            # The risky moment: warned, about to be trashed, and now in use again.
            live = [
                d for d in live if self.warned.get((what, d)) and self.warned[(what, d)][-1] > self.last_view[(what, d)]
            ]
            SEEN[action] += bool(live)
            action = action.removesuffix("_warned")
            if what == "look" and action == "alert":
                action = "on_dashboard"  # alerts sit on dashboard tiles; a Look's comeback is a tile
        if action == "retrash_ours":
            # A person restores what the guardian trashed, then trashes it again themselves.
            ours = [ref for _, ref, _ in self.guardian_trashes if ref[0] == what and ref[1] in trashed]
            SEEN[action] += bool(ours)
            if ours:
                content_type, content_id = ours[pick % len(ours)]
                self.bob.set_content_deleted(content_type, content_id, False)
                self.bob.set_content_deleted(content_type, content_id, True)
            return
        target = live[pick % len(live)] if live else None
        owner = OWNERS[pick % len(OWNERS)]
        if action == "days":
            self.now += timedelta(days=days % 10 + 1)
        elif action == "view" and target:
            if what == "dashboard":
                self.state.view(target, self.now)
            else:
                self.state.view_look(target, self.now)
            self.last_view[(what, target)] = self.now
        elif action == "schedule" and target:
            if what == "dashboard":
                self.state.add_schedule(target, owner, enabled=enabled)
            else:
                self.state.add_schedule(None, owner, enabled=enabled, look_id=target)
        elif action == "unschedule" and self.state.scheduled_plans:
            plans = sorted(self.state.scheduled_plans)
            self.state.scheduled_plans[plans[pick % len(plans)]]["enabled"] = False
        elif action == "alert" and target and what == "dashboard":
            element = str(self.state.dashboards[target]["dashboard_elements"][0]["id"])
            self.state.add_alert(element, owner, disabled=not enabled)
        elif action in ("alert", "on_dashboard") and target and what == "look":
            boards = sorted(self.state.dashboards)
            if boards:
                self.state.put_look_on_dashboard(boards[pick % len(boards)], target)
                SEEN["look_on_dashboard"] += 1
        elif action == "public" and target:
            if what == "look":
                objects[target]["public"] = True
            else:
                self.state.usage[target].public_total += 1
        elif action == "favorite" and target:
            objects[target]["favorite_count"] = 1
        elif action == "trash" and target:
            self.bob.set_content_deleted(what, target, True)
        elif action == "untrash" and trashed:
            self.bob.set_content_deleted(what, trashed[pick % len(trashed)], False)
        elif action == "leave":
            self.state.users[owner]["is_disabled"] = True
        elif action == "keep" and target:
            until = keep(
                self.settings,
                self.store,
                label(what, target),
                until=self.now + timedelta(days=days),
                reason="quarterly review",
                actor="owner",
                now=self.now,
            ).until
            self.keeps[(what, target)] = max(until, self.keeps.get((what, target), until))

    # -- the guardian -------------------------------------------------------------------
    @rule(
        mode=st.sampled_from(["dry_run", "test", "apply", "apply"]),
        kill_after=st.one_of(st.none(), st.integers(1, 3)),
        days=st.integers(26, 35),
        react=st.sampled_from([None, "schedule", "alert", "retrash"]),
        again=st.booleans(),
        what=st.sampled_from(["dashboard", "look"]),
    )
    def a_month_passes(
        self, mode: str, kill_after: int | None, days: int, react: str | None, again: bool, what: str
    ) -> None:
        """The month turns and the guardian's monthly run happens (sometimes killed mid-apply).

        Just before it, someone may react: an owner schedules or alerts a dashboard that was
        warned and is due for the trash, or a person restores one of the guardian's trashes and
        trashes it again themselves. Sometimes someone runs it again by hand two weeks later.
        """
        self.now += timedelta(days=days)
        if react == "retrash":
            self.people_act("retrash_ours", days, True, 1, what)
        elif react is not None:
            self.people_act(f"{react}_warned", days, True, 1, what)
        self._run(mode, kill_after)
        if again:
            self.now += timedelta(days=WARNING + 1 + days % 5)
            self._run("apply", None)

    def _run(self, mode: str, kill_after: int | None) -> None:
        before = {ref: dict(d) for ref, d in self._all().items()}
        plans = list(self.state.scheduled_plans.values())
        in_use: dict[Ref, str] = {}
        for p in plans:
            for content_type in ("dashboard", "look"):
                if p["enabled"] and p.get(f"{content_type}_id") is not None:
                    in_use[(content_type, str(p[f"{content_type}_id"]))] = "an enabled schedule"
        for a in self.state.alerts.values():
            if not a["is_disabled"]:
                in_use[("dashboard", str(self.state.element_dashboard(str(a["dashboard_element_id"]))))] = "an alert"
        for dash in self.state.dashboards.values():
            for element in dash["dashboard_elements"]:
                if element.get("look_id") is not None:
                    in_use[("look", str(element["look_id"]))] = f"a tile on dashboard {dash['id']}"
        for ref, obj in before.items():
            if obj.get("favorite_count"):
                in_use[ref] = "a favorite"
            public = obj.get("public") or (ref[0] == "dashboard" and self.state.usage[ref[1]].public_total)
            if public:
                in_use[ref] = "a public URL"
        all_schedules = {
            ref: sorted(str(p["id"]) for p in plans if str(p.get(f"{ref[0]}_id")) == ref[1]) for ref in before
        }
        plan = make_plan(self.settings, self.client, self.store, now=self.now, actor="sim")
        send_warnings(self.settings, plan.id, client=self.client, store=self.store, now=self.now)
        self._read_mail()
        if mode != "dry_run":
            real = self.client.set_content_deleted
            calls = {"n": 0}

            def killing(content_type: str, content_id: str, deleted: bool) -> dict[str, Any]:
                result = real(content_type, content_id, deleted)
                calls["n"] += 1
                if kill_after is not None and calls["n"] == kill_after:
                    raise Killed
                return result

            self.client.set_content_deleted = killing  # type: ignore[method-assign]
            try:
                self._apply(plan.id, mode)
            except Killed:
                SEEN["killed"] += 1
                self.client.set_content_deleted = real  # type: ignore[method-assign]
                self._apply(plan.id, mode)  # the task's retry
            finally:
                self.client.set_content_deleted = real  # type: ignore[method-assign]
            send_notifications(self.settings, plan.id, client=self.client, store=self.store, mode=mode)
        after = self._all()
        for ref, was in before.items():
            now = after.get(ref)
            if now is None:
                self._check_purge(ref, was)
            elif not was["deleted"] and now["deleted"]:
                assert str(now["deleter_id"]) == API_USER_ID, "only the guardian trashes during its run"
                assert ref not in in_use, f"{ref} had {in_use.get(ref)} and was trashed"
                self._check_trash(ref, was)
                self.guardian_trashes.append((self.now, ref, str(now["deleted_at"])))
                SEEN["trash" if ref[0] == "dashboard" else "look_trash"] += 1
                assert all_schedules[ref] == sorted(
                    str(p["id"]) for p in self.state.scheduled_plans.values() if str(p.get(f"{ref[0]}_id")) == ref[1]
                ), f"{ref}: its (disabled) schedules changed when it was trashed"

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
                for name in re.findall(r"^- \[([^\]]+)\]", body_text(msg), re.MULTILINE):
                    ref = parse_ref(name)
                    self.warned.setdefault(ref, []).append(self.now)
                    SEEN["warned" if ref[0] == "dashboard" else "look_warned"] += 1
        self.sent = len(SMTP.messages)

    def _check_trash(self, ref: Ref, was: dict[str, Any]) -> None:
        last = self.last_view[ref]
        assert (self.now - last).days > SOFT, f"{ref} viewed {last} was trashed on {self.now}"
        assert self.keeps.get(ref, START) <= self.now, f"{ref} was kept and trashed"
        warnings = [w for w in self.warned.get(ref, []) if last < w <= self.now - timedelta(days=WARNING)]
        assert warnings, f"{ref} trashed on {self.now} without a warning {WARNING} days before"
        self._check_backup(ref, was)

    def _check_purge(self, ref: Ref, was: dict[str, Any]) -> None:
        ours = {(r, at) for _, r, at in self.guardian_trashes}
        assert was["deleted"] and (ref, str(was["deleted_at"])) in ours, (
            f"{ref} purged but it is not a trash the guardian made (deleter {was['deleter_id']})"
        )
        assert str(was["deleter_id"]) == API_USER_ID
        self._check_backup(ref, was)
        self.purges.append((self.now, ref))
        SEEN["purge" if ref[0] == "dashboard" else "look_purge"] += 1

    def _check_backup(self, ref: Ref, was: dict[str, Any]) -> None:
        backup = latest_backup(self.store, "default", ref[1], ref[0])
        assert backup is not None, f"{ref} has no backup"
        document = read_backup(self.storage, backup.key, backup.sha256)
        assert document.get("content_type", "dashboard") == ref[0]
        assert backup_problem(document) is None
        assert backed_up(document)["title"] == was["title"]

    @precondition(lambda self: bool(self.purges))
    @rule(pick=st.integers(0, 50))
    def an_owner_asks_for_a_purged_dashboard_or_look(self, pick: int) -> None:
        _, ref = self.purges[pick % len(self.purges)]
        content_type, content_id = ref
        backup = latest_backup(self.store, "default", content_id, content_type)
        assert backup is not None
        expected = len(read_backup(self.storage, backup.key, backup.sha256)["schedules"])
        [result] = restore(
            self.settings,
            [label(content_type, content_id)],
            actor="owner",
            client=self.client,
            store=self.store,
            storage=self.storage,
        )
        assert result.ok, result.detail
        new_id = str(result.new_dashboard_id)
        objects = self._objects(content_type)
        assert new_id in objects and not objects[new_id]["deleted"]
        assert objects[new_id]["title"] == backed_up(read_backup(self.storage, backup.key))["title"]
        schedules = [p for p in self.state.scheduled_plans.values() if str(p.get(f"{content_type}_id")) == new_id]
        assert len(schedules) == expected, f"restored {len(schedules)} of {expected} schedules"
        self.last_view[(content_type, new_id)] = self.now
        SEEN["restore" if content_type == "dashboard" else "look_restore"] += 1
        self.purges = [(t, r) for t, r in self.purges if r != ref]

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
    """No dashboard or Look in use (scheduled, alerted, favorited, public, a Look on a dashboard tile),
    viewed in the window or kept is trashed; nothing is trashed without a warning WARNING days before;
    nothing a person trashed is purged; every trash and purge has a backup that restores it with its
    schedules; the rolling budget (dashboards and Looks together) holds."""
    global SMTP
    SMTP = smtp_receiver
    for name in ("LOOKERSDK_BASE_URL", "LOOKERSDK_CLIENT_ID", "LOOKERSDK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    run_state_machine_as_test(
        LookerYear,
        settings=settings(
            # make test runs 5 simulated years; PBT_LOOKER_YEAR_EXAMPLES=50 for a long run (not GUARDIAN_*:
            # the tests drop those and the settings refuse unknown ones).
            max_examples=int(os.environ.get("PBT_LOOKER_YEAR_EXAMPLES", "5")),
            stateful_step_count=24,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    # The year exercised what the invariants are about (else they hold vacuously).
    print(dict(SEEN))
    seen = ("trash", "purge", "killed", "restore", "look_trash", "look_purge", "look_restore", "look_on_dashboard")
    assert min(SEEN[k] for k in seen) > 0, SEEN
