"""The looker-sdk adapter against the sandbox: retries, statuses, token expiry, timeouts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from guardian.errors import ConfigError
from guardian.looker.client import LookerAPIError, connect
from guardian.sandbox.looker import FaultRule, LookerState, SandboxConfig, seed_demo, start


def test_retries_429_and_5xx_then_succeeds(settings: Any, sandbox: Any) -> None:
    client = connect(settings)
    client.me()
    sandbox.set_faults(
        FaultRule(status=429, count=2, path="^/folders"), FaultRule(status=503, count=2, path="^/folders")
    )
    assert len(client.folders()) == 8
    assert sandbox.stats["GET /folders"] == 5
    assert sandbox.stats["faults"] == 4


def test_gives_up_after_bounded_retries_with_the_status(settings: Any, sandbox: Any) -> None:
    client = connect(settings)
    sandbox.set_faults(FaultRule(status=500, path="^/folders"))
    started = time.monotonic()
    with pytest.raises(LookerAPIError) as err:
        client.folders()
    assert err.value.status == 500 and "HTTP 500" in str(err.value)
    assert sandbox.stats["GET /folders"] == 1 + settings.looker.api_retries
    assert time.monotonic() - started < 10


def test_404_is_none_and_import_is_not_retried(settings: Any, sandbox: Any) -> None:
    client = connect(settings)
    assert client.dashboard("424242") is None
    sandbox.set_faults(FaultRule(status=503, count=1, path="^/dashboards/lookml$", method="POST"))
    with pytest.raises(LookerAPIError) as err:
        client.import_lookml("5", "- dashboard: x\n  title: Once\n")
    assert err.value.status == 503
    assert sandbox.stats["POST /dashboards/lookml"] == 1


def test_expired_token_logs_in_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.settings import load_settings

    server = start(seed_demo(LookerState()), SandboxConfig(token_ttl=12))
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        client = connect(load_settings())
        client.me()
        assert server.stats["POST /login"] == 1
        # looker-sdk renews a token 10 s before it expires: a 12 s token is stale after 2 s.
        time.sleep(2.5)
        assert client.dashboard("1") is not None
        assert server.stats["POST /login"] == 2
    finally:
        server.stop()


def test_slow_answers_time_out_and_are_retried(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_LOOKER__API_TIMEOUT", "1")
    client = connect(load_settings())
    client.me()
    sandbox.set_faults(FaultRule(delay_ms=1500, count=1, path="^/folders"))
    assert len(client.folders()) == 8
    assert sandbox.stats["GET /folders"] == 2


def test_wrong_secret_and_missing_env_are_one_line_errors(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    from guardian.settings import load_settings

    monkeypatch.setenv("LOOKERSDK_CLIENT_SECRET", "wrong")
    with pytest.raises(LookerAPIError) as err:
        connect(load_settings()).me()
    assert err.value.status == 404 and "LOOKERSDK_CLIENT_ID/SECRET" in str(err.value)
    monkeypatch.delenv("LOOKERSDK_BASE_URL")
    with pytest.raises(ConfigError, match="LOOKERSDK_BASE_URL"):
        connect(load_settings())


def test_paging_takes_ceil_rows_over_page_calls(settings: Any, sandbox: Any) -> None:
    client = connect(settings)
    client.me()
    pages = list(client.search_dashboards(deleted=False, fields="id", page_size=4))
    assert [len(p) for p in pages] == [4, 4, 4, 4]
    assert sandbox.stats["GET /dashboards/search"] == 4
    ids = [row["id"] for page in pages for row in page]
    # 16 user-defined dashboards: the search never returns the 2 LookML ones.
    assert len(ids) == len(set(ids)) == 16 and not any("::" in i for i in ids)
