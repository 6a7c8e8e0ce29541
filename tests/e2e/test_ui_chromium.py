"""The Guardian UI in real headless Chromium: login, every page with demo data, restore end to end.

Data comes from a demo-like run: the Looker service plans and applies against the Looker
sandbox (real looker-sdk over HTTP), a task failure is recorded by the real failure callback,
the health check snapshots runs, quality results are stored. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from guardian.web.auth import hash_password

PASSWORD = "e2e-password-Chromium"
HASH = hash_password(PASSWORD)  # GUARDIAN_WEB__USERS references an argon2 hash, never the password


@pytest.fixture
def looker_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from guardian.sandbox import looker

    server = looker.start()
    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.5")
    monkeypatch.setenv("GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS", "Shared/Finance")
    yield server
    server.stop()


def _demo_data(looker_state: Any) -> None:
    from guardian.airflow.callbacks import alert
    from guardian.looker import service as looker_service
    from guardian.monitoring.health import RunRecord, TaskUsage, record_task_usage
    from guardian.monitoring.service import run_health_check
    from guardian.quality.results import CheckResult, save_results
    from guardian.sandbox.looker.history import seed_history
    from guardian.settings import load_settings
    from guardian.store import get_store

    settings = load_settings()
    store = get_store(settings)
    # The instance's history: the guardian's earlier trashes and a warning past WARNING_DAYS, so the
    # first plan may trash (a dashboard is trashed only after its owner was warned).
    seed_history(settings, store, looker_state)
    plan = looker_service.plan(settings, actor="cli:e2e")
    looker_service.apply(settings, plan.id, mode="apply", actor="cli:e2e")

    class TI:
        dag_id, task_id, run_id, try_number, max_tries = "bigquery_sales_query", "run_query", "manual__demo", 3, 2

    try:
        raise RuntimeError("bytes estimated 12 GiB over the 10 GiB limit; raise max_bytes_billed or narrow dates")
    except RuntimeError as exc:
        alert({"ti": TI(), "exception": exc}, "failure")
    now = datetime.now(UTC)
    runs = [
        RunRecord(
            dag,
            f"scheduled__{i}",
            "failed" if (dag == "bigquery_sales_query" and i < 2) else "success",
            now - timedelta(minutes=5 * i + 1),
            now - timedelta(minutes=5 * i),
            failed_tasks=["run_query"] if (dag == "bigquery_sales_query" and i < 2) else [],
        )
        for dag in ("google_sheet_trigger_dag", "bigquery_sales_query", "looker_dashboard_deletion")
        for i in range(6)
    ]
    record_task_usage(
        store, TaskUsage("bigquery_sales_query", "run_query", "scheduled__3", 1, "success", 42.0, 3.2, 180 * 2**20)
    )
    from guardian.quality.drift import schema_check

    expected = [("order_date", "DATE"), ("country", "STRING"), ("revenue", "NUMERIC"), ("promo", "STRING")]
    actual = [("order_date", "DATE"), ("country", "STRING"), ("revenue", "FLOAT64"), ("discount", "FLOAT64")]
    save_results(
        store,
        "sales_extract",
        "manual__demo",
        [CheckResult("row_count", True, "1200 rows"), schema_check(expected, actual, severity="warn")],
    )
    run_health_check(settings, store, runs, notify=False)

    # A Sales run record and a Sheets request, through the services' own store functions.
    from guardian.sales.runs import finish_run, start_run
    from guardian.sheets import ledger

    start_run(store, "manual__demo", backend="duckdb", params={"country": "NL", "brand": "Acme"})
    finish_run(store, "manual__demo", ok=False, error="bytes estimated 12 GiB over the 10 GiB limit")
    with store.write() as conn:
        base = ledger.base_key("demo-control-sheet", "Requests", "NL|Acme", "")
        ledger.insert(
            conn,
            key=ledger.request_key(base, 0),
            base=base,
            gen=0,
            spreadsheet_id="demo-control-sheet",
            tab="Requests",
            row_number=7,
            target="bigquery_sales_query",
            conf={"country": "NL", "brand": "Acme"},
            requested_by="ana@example.com",
            at=now,
        )


def find(driver: Any, element_id: str) -> Any:
    """The element with this id, once the page that has it has loaded."""
    return WebDriverWait(driver, 20).until(ec.presence_of_element_located((By.ID, element_id)))


def _users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_UI_HASH", HASH)
    monkeypatch.setenv("GUARDIAN_WEB__USERS", "operator:operator:env:E2E_UI_HASH,viewer:viewer:env:E2E_UI_HASH")
    monkeypatch.setenv("GUARDIAN_WEB__SECURE_COOKIES", "false")  # plain http on 127.0.0.1 here


def _login(driver: Any, base: str, screenshot: Any, user: str = "operator") -> None:
    driver.get(base + "/")
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "login-form")))
    assert "/login" in driver.current_url
    screenshot(driver, "00_login")
    find(driver, "username").send_keys(user)
    find(driver, "password").send_keys(PASSWORD)
    find(driver, "login").click()
    WebDriverWait(driver, 10).until(ec.presence_of_element_located((By.ID, "current-user")))


def test_pages_and_restore_flow_in_chromium(
    browser: Any, looker_sandbox: Any, live_server: Any, screenshot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardian import audit
    from guardian.settings import load_settings
    from guardian.web.app import create_app

    _users(monkeypatch)
    _demo_data(looker_sandbox.state)
    server = live_server(create_app(load_settings()))
    base = server.url
    # Anonymous: the login page, and a wrong password stays there.
    browser.get(base + "/audit")
    assert "/login" in browser.current_url
    find(browser, "username").send_keys("operator")
    find(browser, "password").send_keys("wrong")
    find(browser, "login").click()
    assert "wrong password" in find(browser, "login-error").text
    _login(browser, base, screenshot)

    # Overview: health of every DAG, the open alert, the failure with its error.
    assert find(browser, "current-user").text == "operator"
    health = find(browser, "dag-health").text
    for dag in ("google_sheet_trigger_dag", "bigquery_sales_query", "looker_dashboard_deletion"):
        assert dag in health
    assert "failure_rate" in find(browser, "open-alerts").text
    assert "12 GiB over the 10 GiB limit" in find(browser, "failures").text
    screenshot(browser, "01_overview")

    browser.find_element(By.LINK_TEXT, "bigquery_sales_query").click()
    assert "run_query" in find(browser, "task-usage").text
    screenshot(browser, "02_dag")

    browser.find_element(By.CSS_SELECTOR, "a[data-nav=alerts]").click()
    assert "failure_rate" in find(browser, "alert-history").text
    screenshot(browser, "03_alerts")

    browser.find_element(By.CSS_SELECTOR, "a[data-nav=quality]").click()
    drift = find(browser, "quality-results").text
    assert "+ discount" in drift and "- promo" in drift and "~ revenue: decimal → float" in drift
    screenshot(browser, "06_quality")

    for nav, shot, table, expected in (
        ("sheets", "04_sheets", "service-table", "ana@example.com"),
        ("sales", "05_sales", "sales-runs", "12 GiB over the 10 GiB limit"),
    ):
        browser.find_element(By.CSS_SELECTOR, f"a[data-nav={nav}]").click()
        WebDriverWait(browser, 20).until(ec.url_contains(f"/{nav}"))
        assert expected in find(browser, table).text
        screenshot(browser, shot)

    # Looker: the applied plan, trashed and purged dashboards, backups, then restore #4.
    browser.find_element(By.CSS_SELECTOR, "a[data-nav=looker]").click()
    actions = find(browser, "looker-actions").text
    assert "soft_delete" in actions and "purge" in actions
    assert find(browser, "looker-backups").text
    screenshot(browser, "07_looker")
    assert looker_sandbox.state.dashboards["4"]["deleted"] is True
    browser.find_element(By.CSS_SELECTOR, "tr[data-dashboard='4'] a.restore-link").click()
    screenshot(browser, "08_restore_confirm")
    # A wrong confirmation restores nothing.
    find(browser, "confirm").send_keys("5")
    page = browser.find_element(By.TAG_NAME, "html")
    find(browser, "restore-submit").click()
    WebDriverWait(browser, 20).until(ec.staleness_of(page))
    assert "type the dashboard id 4" in find(browser, "flash").text
    assert looker_sandbox.state.dashboards["4"]["deleted"] is True
    find(browser, "confirm").send_keys("4")
    find(browser, "restore-submit").click()
    WebDriverWait(browser, 30).until(ec.url_matches(r"/looker$"))
    flash = find(browser, "flash").text
    assert "Dashboard 4: untrashed" in flash, flash
    assert looker_sandbox.state.dashboards["4"]["deleted"] is False
    restore_rows = find(browser, "looker-restores").text
    assert "untrashed" in restore_rows and "web:operator" in restore_rows
    assert "restored" in browser.find_element(By.CSS_SELECTOR, "tr[data-dashboard='4']").text
    screenshot(browser, "09_restored")

    # Audit: the restore is recorded under the UI user; search and chain verification.
    restores = [e for e in audit.iter_events() if e.actor == "web:operator" and "restore" in e.action]
    assert restores, "the restore must be audited with the UI user"
    browser.find_element(By.CSS_SELECTOR, "a[data-nav=audit]").click()
    box = find(browser, "audit-q")
    box.send_keys("restore")
    find(browser, "audit-search-button").click()
    WebDriverWait(browser, 20).until(ec.url_contains("q=restore"))
    assert "web:operator" in find(browser, "audit-events").text
    find(browser, "verify-chain").click()
    assert "chain OK" in find(browser, "verify-result").text
    screenshot(browser, "10_audit")


def test_a_viewer_cannot_restore_and_a_logged_out_cookie_is_dead_in_chromium(
    browser: Any, looker_sandbox: Any, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from guardian import audit
    from guardian.settings import load_settings
    from guardian.web.app import create_app

    _users(monkeypatch)
    _demo_data(looker_sandbox.state)
    base = live_server(create_app(load_settings())).url
    _login(browser, base, lambda *_: None, user="viewer")
    assert looker_sandbox.state.dashboards["4"]["deleted"] is True
    # The viewer reaches the confirmation page (reading is allowed) and submits it: refused.
    browser.get(base + "/looker/restore?dashboard_id=4")
    find(browser, "confirm").send_keys("4")
    find(browser, "restore-submit").click()
    WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "does not grant"))
    assert looker_sandbox.state.dashboards["4"]["deleted"] is True
    assert not [e for e in audit.iter_events() if "restore" in e.action]
    # The same form posted from another site (no CSRF token, the browser's own cookie): refused.
    browser.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "const i = document.createElement('input'); i.name = 'dashboard_id'; i.value = '4'; f.appendChild(i);"
        "document.body.appendChild(f); f.submit();",
        base + "/api/looker/restore",
    )
    WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "detail"))
    assert looker_sandbox.state.dashboards["4"]["deleted"] is True
    # Log out, then put the old cookie back: the server revoked the session.
    browser.get(base + "/")
    stolen = browser.get_cookie("guardian_session")
    assert stolen and stolen["httpOnly"] is True
    browser.find_element(By.CSS_SELECTOR, "form[action$='/logout'] button").click()
    WebDriverWait(browser, 20).until(ec.url_contains("/login"))
    browser.delete_all_cookies()
    browser.add_cookie({"name": "guardian_session", "value": stolen["value"], "path": "/"})
    browser.get(base + "/audit")
    WebDriverWait(browser, 20).until(ec.url_contains("/login"))
