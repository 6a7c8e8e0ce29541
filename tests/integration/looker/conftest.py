"""A Looker sandbox per test, with the LOOKERSDK_* variables pointing the real looker-sdk at it.

``settings`` also writes the guardian's side of the demo instance's past into the store (its
recorded trashes and a warning 15 days ago, :func:`guardian.sandbox.looker.history.seed_history`)
and points email at a local SMTP receiver, so warnings are really delivered and recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The demo-seeded sandbox; retries kept short so fault tests stay fast."""
    from guardian.sandbox import looker

    server = looker.start()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.5")
    monkeypatch.setenv("GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS", "Shared/Finance")
    monkeypatch.setenv("GUARDIAN_LOOKER__API_BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("GUARDIAN_LOOKER__RATE_LIMIT_PER_SECOND", "500")
    yield server
    server.stop()


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local SMTP receiver that the guardian's email goes to."""
    from guardian.monitoring.receivers import SmtpReceiver

    receiver = SmtpReceiver().start()
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(receiver.port))
    monkeypatch.setenv("GUARDIAN_NOTIFY__EMAIL_TO", "team@example.com")
    yield receiver
    receiver.stop()


@pytest.fixture
def settings(sandbox: Any, smtp: Any) -> Any:
    """Settings read after the sandbox variables are set, with the instance's history in the store."""
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings
    from guardian.store import get_store

    loaded = load_settings()
    seed_history(loaded, get_store(loaded), sandbox.state)
    return loaded
