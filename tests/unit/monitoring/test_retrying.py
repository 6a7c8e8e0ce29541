"""The one retry loop: bounded tries, Retry-After honoured and capped, non-retryable errors stop at once;
and the CLI's SMTP sender never logs in over a clear connection."""

from __future__ import annotations

import pytest

from guardian.errors import IntegrationError
from guardian.retrying import Retry, backoff, with_retries


def test_retries_until_success_and_honours_retry_after() -> None:
    waits: list[float] = []
    outcomes = [Retry(IntegrationError("a"), after=3), Retry(IntegrationError("b"), after=999), "ok"]

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert with_retries(attempt, attempts=3, sleep=waits.append) == "ok"
    assert waits == [3, 30.0]  # a huge Retry-After is capped


def test_gives_up_with_the_final_error_and_stops_on_others() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise Retry(IntegrationError(f"try {len(calls)}"))

    with pytest.raises(IntegrationError, match="try 4"):
        with_retries(always, attempts=4, sleep=lambda _: None)
    assert len(calls) == 4

    def fatal() -> None:
        calls.append(1)
        raise IntegrationError("revoked")

    calls.clear()
    with pytest.raises(IntegrationError, match="revoked"):
        with_retries(fatal, attempts=4, sleep=lambda _: None)
    assert len(calls) == 1
    assert all(0 < backoff(n) <= 8.0 for n in range(1, 10))


def test_smtp_password_never_goes_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian import notify
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", "587")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_USER", "alerts")
    monkeypatch.setenv("SMTP_PW", "pw")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PASSWORD_REF", "env:SMTP_PW")
    with pytest.raises(IntegrationError, match="in clear"):
        notify.send_email(load_settings(), ["a@example.com"], "s", "t")
