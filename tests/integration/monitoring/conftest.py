from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardian.monitoring.receivers import SlackReceiver, SmtpReceiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """A real local SMTP server (aiosmtpd)."""
    server = SmtpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def slack() -> Iterator[SlackReceiver]:
    """A local HTTP receiver for the Slack webhook."""
    server = SlackReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def alert_env(
    smtp: SmtpReceiver, slack: SlackReceiver, monkeypatch: pytest.MonkeyPatch
) -> tuple[SmtpReceiver, SlackReceiver]:
    """GUARDIAN_NOTIFY__* pointing at both receivers."""
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("GUARDIAN_NOTIFY__EMAIL_TO", "oncall@example.com")
    monkeypatch.setenv("TEST_SLACK_WEBHOOK", slack.url)
    monkeypatch.setenv("GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF", "env:TEST_SLACK_WEBHOOK")
    return smtp, slack
