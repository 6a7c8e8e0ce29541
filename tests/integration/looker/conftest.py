"""A Looker sandbox per test, with the LOOKERSDK_* variables pointing the real looker-sdk at it."""

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
def settings(sandbox: Any) -> Any:
    """Settings read after the sandbox variables are set."""
    from guardian.settings import load_settings

    return load_settings()
