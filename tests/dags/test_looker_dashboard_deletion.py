"""looker_dashboard_deletion and looker_dashboard_restore end to end with dag.test() on the sandbox.

The real looker-sdk talks HTTP to the Looker sandbox; the store is the test's SQLite file and
backups go to a local storage folder. The store starts with the demo instance's history (the
guardian's past trashes and a warning 15 days ago), email goes to a local SMTP receiver.
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


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A local SMTP receiver (aiosmtpd, in both the Airflow 3 and the Airflow 2.11 venv)."""
    from guardian.monitoring.receivers import SmtpReceiver

    receiver = SmtpReceiver().start()
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", str(receiver.port))
    monkeypatch.setenv("GUARDIAN_NOTIFY__EMAIL_TO", "team@example.com")
    yield receiver
    receiver.stop()


@pytest.fixture
def history(sandbox: Any, smtp: Any) -> None:
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings
    from guardian.store import get_store

    settings = load_settings()
    seed_history(settings, get_store(settings), sandbox.state)


def _hitl() -> bool:
    from guardian.airflow.looker import approval_operator_class

    return approval_operator_class() is not None


@pytest.mark.usefixtures("airflow_db", "history")
def test_scheduled_default_is_a_dry_run_that_still_warns(sandbox: Any, smtp: Any) -> None:
    from guardian.looker.ledger import latest_warnings
    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    before = {k: d["deleted"] for k, d in sandbox.state.dashboards.items()}
    run = _load("looker_dashboard_deletion").test()
    assert run.state == "success"
    store = get_store(load_settings())
    plan = latest_plan(store)
    assert plan is not None and plan.counts["soft_delete"] == 5 and plan.counts["purge"] == 1
    assert {k: d["deleted"] for k, d in sandbox.state.dashboards.items()} == before
    # Dry run or not, the owners of dashboards 9 and 10 were warned and the ledger knows it.
    assert {("dashboard", "9"), ("dashboard", "10")} <= set(latest_warnings(store, "default"))
    assert {str(m["To"]) for m in smtp.messages} >= {"carol@example.com", "alice@example.com"}


@pytest.mark.usefixtures("airflow_db", "history")
def test_apply_mode_trashes_purges_with_backups_then_restore_dag(sandbox: Any) -> None:
    from guardian import audit
    from guardian.looker.backup import list_backups
    from guardian.looker.plan import latest_plan, list_actions
    from guardian.settings import load_settings
    from guardian.store import get_store

    run = _load("looker_dashboard_deletion").test(run_conf={"mode": "apply", "skip_approval": True})
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


@pytest.mark.usefixtures("airflow_db", "history")
def test_breaker_fails_the_run_without_retries(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.2")
    run = _load("looker_dashboard_deletion").test(run_conf={"mode": "apply", "skip_approval": True})
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
    assert plan is not None and plan.inventory_size == 16


@pytest.mark.usefixtures("airflow_db", "history")
def test_scheduled_apply_waits_for_approval_then_applies(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow 3: apply needs the approve task (here marked approved); Airflow 2.11 falls back to the breaker."""
    from guardian.looker.plan import latest_plan
    from guardian.settings import load_settings
    from guardian.store import get_store

    monkeypatch.setenv("GUARDIAN_LOOKER__SCHEDULED_MODE", "apply")
    dag = _load("looker_dashboard_deletion")
    if _hitl():
        approve = dag.get_task("approve")
        assert type(approve).__name__ == "ApprovalOperator" and approve.defaults == ["Reject"]
        assert "apply" in approve.downstream_task_ids
        run = dag.test(mark_success_pattern="^approve$")
    else:
        assert "approve" not in dag.task_ids
        run = dag.test()
    assert run.state == "success"
    plan = latest_plan(get_store(load_settings()))
    assert plan is not None and plan.status == "applied"
    assert all(sandbox.state.dashboards[k]["deleted"] for k in ("4", "5", "6", "7", "8"))
