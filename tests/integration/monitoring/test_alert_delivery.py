"""Failure and threshold alerts delivered to a real SMTP server and a local Slack webhook receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from guardian.airflow.callbacks import alert
from guardian.monitoring.health import RunRecord
from guardian.monitoring.receivers import SlackReceiver, SmtpReceiver, body_text
from guardian.monitoring.service import run_health_check
from guardian.settings import load_settings
from guardian.store import get_store


class FakeTI:
    """The attributes a callback context's task instance carries (pure data)."""

    def __init__(self, try_number: int = 2) -> None:
        self.dag_id = "bigquery_sales_query"
        self.task_id = "run_query"
        self.run_id = "manual__2026-11-28T10:00:00+00:00"
        self.try_number = try_number
        self.max_tries = 2


def _failing_context(secret: str) -> dict[str, Any]:
    try:
        raise RuntimeError(
            f"warehouse said no to key {secret}\nconnection string postgresql://svc:{secret}@db/x\nquota exceeded"
        )
    except RuntimeError as exc:
        return {"ti": FakeTI(), "exception": exc}


def test_failure_alert_reaches_email_and_slack_without_secrets(
    alert_env: tuple[SmtpReceiver, SlackReceiver], monkeypatch: Any
) -> None:
    smtp, slack = alert_env
    secret = "s3cr3t-Pa55word-xyz"
    # A secret the settings reference: the callback registers it with the maskers itself.
    monkeypatch.setenv("AIRFLOW_API_PASSWORD_FOR_TEST", secret)
    monkeypatch.setenv("GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF", "env:AIRFLOW_API_PASSWORD_FOR_TEST")

    outcome = alert(_failing_context(secret), "failure")

    assert [d.channel for d in outcome["deliveries"]] == ["email", "slack"]
    assert all(d.delivered for d in outcome["deliveries"])
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    text = body_text(mail)
    assert mail["To"] == "oncall@example.com"
    assert "bigquery_sales_query.run_query FAILED (try 2)" in mail["Subject"]
    for expected in ("DAG: bigquery_sales_query", "Task: run_query", "Run: manual__2026-11-28", "Try: 2 of 3"):
        assert expected in text
    assert "quota exceeded" in text and "RuntimeError" in text
    assert (
        "/dags/bigquery_sales_query/runs/manual__2026-11-28T10%3A00%3A00%2B00%3A00/tasks/run_query?try_number=2" in text
    )
    assert secret not in mail.as_string()
    assert len(slack.payloads) == 1
    payload = slack.payloads[0]
    assert "bigquery_sales_query.run_query" in payload["text"] and "quota exceeded" in payload["text"]
    assert secret not in str(payload)
    assert slack.paths[0].startswith("/services/")


def test_failure_is_audited(alert_env: tuple[SmtpReceiver, SlackReceiver]) -> None:
    from guardian import audit

    alert(_failing_context("nothing-secret-here"), "failure")
    events = list(audit.iter_events(action_prefix="airflow.failure"))
    assert len(events) == 1
    assert events[0].target == "dag:bigquery_sales_query/task:run_query"
    assert audit.verify().ok


def test_non_critical_dag_alerts_by_email_only(alert_env: tuple[SmtpReceiver, SlackReceiver], monkeypatch: Any) -> None:
    smtp, slack = alert_env
    monkeypatch.setenv("GUARDIAN_NOTIFY__SLACK_DAGS", "looker_dashboard_deletion")
    outcome = alert(_failing_context("x"), "failure")
    assert [d.channel for d in outcome["deliveries"]] == ["email"]
    assert len(smtp.messages) == 1 and slack.payloads == []


def test_slack_429_is_retried(alert_env: tuple[SmtpReceiver, SlackReceiver]) -> None:
    _, slack = alert_env
    slack.fail_next = [429, 503]
    outcome = alert(_failing_context("x"), "failure")
    assert all(d.delivered for d in outcome["deliveries"])
    assert len(slack.payloads) == 1


def test_unreachable_smtp_does_not_raise(monkeypatch: Any) -> None:
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", "9")
    outcome = alert(_failing_context("x"), "failure")
    assert [(d.channel, d.delivered) for d in outcome["deliveries"]] == [("email", False)]


def test_retry_alert_only_when_enabled(alert_env: tuple[SmtpReceiver, SlackReceiver], monkeypatch: Any) -> None:
    smtp, slack = alert_env
    alert(_failing_context("x"), "retry")
    assert smtp.messages == []
    monkeypatch.setenv("GUARDIAN_NOTIFY__ALERT_ON_RETRY", "true")
    alert(_failing_context("x"), "retry")
    assert len(smtp.messages) == 1 and "retrying" in smtp.messages[0]["Subject"]
    assert slack.payloads == []  # retries are email only


def test_threshold_alert_once_when_it_starts_once_when_it_clears(
    alert_env: tuple[SmtpReceiver, SlackReceiver], monkeypatch: Any
) -> None:
    smtp, slack = alert_env
    monkeypatch.setenv("GUARDIAN_MONITORING__EXPECTED_INTERVALS", "")
    settings = load_settings()
    store = get_store(settings)
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)

    def run(i: int, state: str) -> RunRecord:
        end = now - timedelta(minutes=5 * (100 - i))
        return RunRecord("google_sheet_trigger_dag", f"r{i}", state, end - timedelta(seconds=30), end)

    runs = [run(i, "failed" if i % 2 else "success") for i in range(10)]
    first = run_health_check(settings, store, runs, now=now)
    assert [t.condition.key for t in first.transitions] == ["failure_rate:google_sheet_trigger_dag"]
    assert len(smtp.messages) == 1 and "ALERT" in smtp.messages[0]["Subject"]
    assert len(slack.payloads) == 1

    # Still failing an hour later: no new message.
    second = run_health_check(settings, store, [], now=now + timedelta(hours=1))
    assert second.transitions == [] and len(smtp.messages) == 1 and len(slack.payloads) == 1

    # 20 good runs push the failures out of the window: one RESOLVED message.
    good = [run(100 + i, "success") for i in range(20)]
    good = [
        RunRecord(r.dag_id, r.run_id, r.state, r.start_date + timedelta(hours=9), r.end_date + timedelta(hours=9))
        for r in good
    ]
    third = run_health_check(settings, store, good, now=now + timedelta(hours=2))
    assert [(t.condition.key, t.started) for t in third.transitions] == [
        ("failure_rate:google_sheet_trigger_dag", False)
    ]
    assert len(smtp.messages) == 2 and "RESOLVED" in smtp.messages[1]["Subject"]
    fourth = run_health_check(settings, store, [], now=now + timedelta(hours=3))
    assert fourth.transitions == [] and len(smtp.messages) == 2


def test_dag_failure_after_a_task_failure_is_audited_not_alerted_twice(
    alert_env: tuple[SmtpReceiver, SlackReceiver],
) -> None:
    from guardian import audit

    smtp, slack = alert_env
    alert(_failing_context("x"), "failure")
    alert({"ti": FakeTI(), "reason": "task_failure"}, "failure")
    assert len(smtp.messages) == 1 and len(slack.payloads) == 1
    actions = [e.action for e in audit.iter_events()]
    assert actions == ["airflow.failure", "airflow.dag_failure"]
    # A DAG run that failed for another reason (e.g. it timed out) does alert.
    alert({"ti": FakeTI(), "reason": "timed_out"}, "failure")
    assert len(smtp.messages) == 2 and "timed_out" in body_text(smtp.messages[1])


def test_airflow_connections_carry_smtp_and_slack_when_settings_do_not(
    smtp: SmtpReceiver, slack: SlackReceiver, monkeypatch: Any
) -> None:
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        # Airflow's semantics: SSL and STARTTLS are on unless the connection turns them off.
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 1, "timeout": 10},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_DEFAULT",
        json.dumps(
            {"conn_type": "slackwebhook", "host": f"http://127.0.0.1:{slack.port}", "password": "services/T1/B2/tok3n"}
        ),
    )
    outcome = alert(_failing_context("x"), "failure")
    assert [(d.channel, d.delivered) for d in outcome["deliveries"]] == [("email", True), ("slack", True)]
    assert len(smtp.messages) == 1 and slack.paths == ["/services/T1/B2/tok3n"]
    assert "tok3n" not in json.dumps(slack.payloads)
    import os

    # Nothing secret was copied into the environment of the process.
    assert not [k for k, v in os.environ.items() if "tok3n" in v and k != "AIRFLOW_CONN_SLACK_DEFAULT"]


def _flapping_runs(now: datetime) -> list[RunRecord]:
    out = []
    for i in range(10):
        end = now - timedelta(minutes=5 * (100 - i))
        out.append(
            RunRecord("google_sheet_trigger_dag", f"r{i}", "failed" if i % 2 else "success", end - timedelta(30), end)
        )
    return out


def test_smtp_down_for_two_health_runs_the_alert_arrives_once_on_the_third(monkeypatch: Any) -> None:
    smtp = SmtpReceiver().start()
    port = smtp.port
    smtp.stop()  # down
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(port))
    monkeypatch.setenv("GUARDIAN_MONITORING__EXPECTED_INTERVALS", "")
    settings = load_settings()
    store = get_store(settings)
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    first = run_health_check(settings, store, _flapping_runs(now), now=now)
    assert [t.started for t in first.transitions] == [True]
    assert [(d.channel, d.delivered) for d in first.deliveries] == [("email", False)]
    second = run_health_check(settings, store, [], now=now + timedelta(hours=1))
    assert second.transitions == [] and [d.delivered for d in second.deliveries] == [False]
    from guardian.monitoring import outbox

    [pending] = outbox.undelivered(store)
    assert pending["attempts"] == 2 and pending["expired_at"] is None and "refused" in pending["last_error"]
    smtp = SmtpReceiver(port=port).start()  # back
    try:
        third = run_health_check(settings, store, [], now=now + timedelta(hours=2))
        fourth = run_health_check(settings, store, [], now=now + timedelta(hours=3))
        assert [d.delivered for d in third.deliveries] == [True] and fourth.deliveries == []
        assert len(smtp.messages) == 1 and "ALERT" in smtp.messages[0]["Subject"]
        assert outbox.undelivered(store) == []
    finally:
        smtp.stop()


def test_an_alert_no_server_takes_expires_and_stays_visible(monkeypatch: Any) -> None:
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", "9")
    monkeypatch.setenv("GUARDIAN_NOTIFY__OUTBOX_EXPIRY_HOURS", "2")
    monkeypatch.setenv("GUARDIAN_MONITORING__EXPECTED_INTERVALS", "")
    settings = load_settings()
    store = get_store(settings)
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    run_health_check(settings, store, _flapping_runs(now), now=now)
    for hours in (1, 2, 3):
        run_health_check(settings, store, [], now=now + timedelta(hours=hours))
    from guardian.monitoring import outbox

    [row] = outbox.undelivered(store)
    assert row["expired_at"] is not None and row["attempts"] == 3  # tried at 0 h, 1 h, 2 h; expired at 2 h
    assert outbox.counts(store) == {("email", "expired"): 1}


def test_undelivered_alerts_show_on_the_overview_and_in_metrics(monkeypatch: Any) -> None:
    from fastapi.testclient import TestClient

    from guardian.web.app import create_app
    from guardian.web.auth import hash_password

    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", "9")
    monkeypatch.setenv("GUARDIAN_MONITORING__EXPECTED_INTERVALS", "")
    monkeypatch.setenv("UI_HASH", hash_password("viewer password!"))
    monkeypatch.setenv("GUARDIAN_WEB__USERS", "v:viewer:env:UI_HASH")
    monkeypatch.setenv("SCRAPE", "scrape")
    monkeypatch.setenv("GUARDIAN_WEB__METRICS_TOKEN_REF", "env:SCRAPE")
    settings = load_settings()
    now = datetime.now(UTC)
    run_health_check(settings, get_store(settings), _flapping_runs(now), now=now)
    client = TestClient(create_app(settings), base_url="https://testserver")
    metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape"}).text
    assert 'guardian_alerts_undelivered{channel="email",state="pending"} 1.0' in metrics
    client.post("/login", data={"username": "v", "password": "viewer password!"})
    page = client.get("/").text
    assert 'id="undelivered"' in page and "failure_rate:google_sheet_trigger_dag" in page and "retrying" in page


def test_outbox_delivers_every_transition_exactly_once_whatever_smtp_does(monkeypatch: Any) -> None:
    """Invariant: no alert transition is ever emailed twice, and after an hourly health run with
    SMTP up every earlier transition has been emailed exactly once."""
    from hypothesis import HealthCheck
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
    from sqlalchemy import delete

    from guardian.monitoring import outbox
    from guardian.monitoring.alerts import Condition, reconcile
    from guardian.monitoring.tables import alert_outbox, alerts, notifications

    probe = SmtpReceiver().start()
    port = probe.port
    probe.stop()
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(port))
    settings = load_settings()
    store = get_store(settings)

    class Outbox(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with store.write() as conn:
                for table in (alert_outbox, alerts, notifications):
                    conn.execute(delete(table))
            self.smtp: SmtpReceiver | None = None
            self.now = datetime(2026, 11, 28, tzinfo=UTC)
            self.holding: set[str] = set()
            self.created: dict[tuple[str, str], int] = {}
            self.up_since_last_transition = False

        def received(self) -> dict[tuple[str, str], int]:
            out: dict[tuple[str, str], int] = {}
            for m in self.smtp.messages if self.smtp else []:
                state, dag = str(m["Subject"]).split(": ", 1)[0].split()[-1], str(m["Subject"]).rsplit(" ", 1)[-1]
                out[(dag, state)] = out.get((dag, state), 0) + 1
            return {k: v + self.earlier.get(k, 0) for k, v in out.items()} | {
                k: v for k, v in self.earlier.items() if k not in out
            }

        earlier: dict[tuple[str, str], int] = {}  # noqa: RUF012  (messages of receivers already stopped)

        @rule(dag=st.sampled_from(["a", "b"]))
        def condition_flips(self, dag: str) -> None:
            self.holding ^= {dag}

        @rule()
        def smtp_up(self) -> None:
            if self.smtp is None:
                self.smtp = SmtpReceiver(port=port).start()

        @rule()
        def smtp_down(self) -> None:
            if self.smtp is not None:
                self.earlier = self.received()
                self.smtp.stop()
                self.smtp = None

        @rule()
        def hourly_health_run(self) -> None:
            self.now += timedelta(hours=1)
            conditions = [Condition(f"slow_run:{d}", "slow_run", f"{d} is slow", d, 1.0) for d in sorted(self.holding)]
            for t in reconcile(store, conditions, self.now, settings=settings):
                state = "ALERT" if t.started else "RESOLVED"
                key = (str(t.condition.dag_id), state)
                self.created[key] = self.created.get(key, 0) + 1
            outbox.drain(settings, store, self.now)
            self.up_since_last_transition = self.smtp is not None

        @invariant()
        def never_twice_and_all_after_an_up_run(self) -> None:
            got = self.received()
            for key, n in got.items():
                assert n <= self.created.get(key, 0), (key, n, self.created)
            if self.up_since_last_transition:
                assert got == {k: v for k, v in self.created.items() if v}, (got, self.created)

        def teardown(self) -> None:
            if self.smtp is not None:
                self.smtp.stop()
            type(self).earlier = {}

    Outbox.TestCase.settings = hsettings(
        max_examples=12,
        stateful_step_count=14,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    Outbox.TestCase().runTest()


def test_smtp_default_keeps_airflows_tls_semantics(smtp: SmtpReceiver, monkeypatch: Any) -> None:
    """SSL unless disable_ssl, STARTTLS unless disable_tls: a server without TLS gets no message
    and no login, instead of a password in clear."""
    import json

    def connection(**extra: Any) -> None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_SMTP_DEFAULT",
            json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "login": "alerts",
                    "password": "smtp-secret-9",
                    "extra": {"retry_limit": 1, "timeout": 2, **extra},
                }
            ),
        )

    for extra in ({}, {"disable_ssl": True}):  # implicit SSL; then STARTTLS the server does not offer
        connection(**extra)
        outcome = alert(_failing_context("x"), "failure")
        assert [(d.channel, d.delivered) for d in outcome["deliveries"]] == [("email", False)], extra
        assert "smtp-secret-9" not in json.dumps([d.error for d in outcome["deliveries"]])
    assert smtp.messages == []
