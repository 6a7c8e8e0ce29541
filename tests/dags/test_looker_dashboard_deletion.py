"""looker_dashboard_deletion and looker_dashboard_restore end to end with dag.test() on the sandbox.

The real looker-sdk talks HTTP to the Looker sandbox; the store is the test's SQLite file and
backups go to a local storage folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_dag", REPO / "dags" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from guardian.sandbox import looker

    server = looker.start()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.5")
    monkeypatch.setenv("GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS", "Shared/Finance")
    yield server
    server.stop()


@pytest.mark.usefixtures("airflow_db")
def test_dry_run_default_plans_and_changes_nothing(sandbox: Any) -> None:
    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    before = {k: d["deleted"] for k, d in sandbox.state.dashboards.items()}
    run = _load("looker_dashboard_deletion").test()
    assert run.state == "success"
    plan = latest_plan(get_store(load_settings()))
    assert plan is not None and plan.counts["soft_delete"] == 5 and plan.counts["purge"] == 1
    assert {k: d["deleted"] for k, d in sandbox.state.dashboards.items()} == before


@pytest.mark.usefixtures("airflow_db")
def test_apply_mode_trashes_purges_with_backups_then_restore_dag(sandbox: Any) -> None:
    from guardian import audit
    from guardian.looker.backup import list_backups
    from guardian.looker.plan import latest_plan, list_actions
    from guardian.settings import load_settings
    from guardian.store import get_store

    run = _load("looker_dashboard_deletion").test(run_conf={"mode": "apply"})
    assert run.state == "success"
    store = get_store(load_settings())
    plan = latest_plan(store)
    assert plan is not None and plan.status == "applied"
    done = [a for a in list_actions(store, plan.id, kinds=["soft_delete", "purge"]) if a.state == "done"]
    assert {a.dashboard_id for a in done} == {"4", "5", "6", "7", "8", "17"}
    for dashboard_id in ("4", "5", "6", "7", "8"):
        assert sandbox.state.dashboards[dashboard_id]["deleted"] is True
    assert "17" not in sandbox.state.dashboards
    backed_up = {b.dashboard_id for b in list_backups(store)}
    assert backed_up >= {"4", "5", "6", "7", "8", "17"}
    assert audit.verify(store).ok

    restored = _load("looker_dashboard_restore").test(run_conf={"dashboard_ids": "4,17"})
    assert restored.state == "success"
    assert sandbox.state.dashboards["4"]["deleted"] is False
    reimported = [d for d in sandbox.state.dashboards.values() if d["title"] == "Trashed by Guardian long ago"]
    assert len(reimported) == 1 and reimported[0]["folder_id"] == "5"


@pytest.mark.usefixtures("airflow_db")
def test_breaker_fails_the_run_without_retries(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.2")
    run = _load("looker_dashboard_deletion").test(run_conf={"mode": "apply"})
    assert run.state == "failed"
    plan = latest_plan(get_store(load_settings()))
    assert plan is not None and plan.status == "refused"
    assert not any(d["deleted"] for k, d in sandbox.state.dashboards.items() if k in {"4", "5", "6", "7", "8"})


@pytest.mark.usefixtures("airflow_db")
def test_credentials_from_the_looker_default_connection(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from urllib.parse import urlsplit

    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    url = urlsplit(sandbox.url)
    for key in list(sandbox.env):
        monkeypatch.delenv(key)
    conn = {
        "conn_type": "http",
        "host": url.hostname,
        "port": url.port,
        "schema": "http",
        "login": "sandbox-id",
        "password": "sandbox-secret",
        "extra": {"verify_ssl": "false"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_LOOKER_DEFAULT", json.dumps(conn))
    run = _load("looker_dashboard_deletion").test()
    assert run.state == "success"
    plan = latest_plan(get_store(load_settings()))
    assert plan is not None and plan.inventory_size == 18
