"""Against a real Airflow 3 API server: the REST API v2 collector, and the UI plugin behind Airflow's auth.

A probe DAG fails (one retry) under `airflow dags test`; then `airflow api-server` serves the
same metadata DB with the simple auth manager. The collector logs in at /auth/token and reads
runs and task instances; the guardian plugin's UI at /guardian refuses anonymous requests and
serves the Overview to a logged-in Airflow user; the menu entry is registered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
PROBE = """
from __future__ import annotations
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

@dag(dag_id="api_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     doc_md="probe", tags=[Tag.GUARDIAN], default_args=dagkit.default_args(retries=1, retry_delay_minutes=0.02),
     on_failure_callback=dagkit.on_failure)
def api_probe():
    @task
    def flaky():
        raise RuntimeError("warehouse quota exceeded")
    flaky()
api_probe()
"""
PASSWORD = "monitor-password-42"
OP_PASSWORD = "operator-password-42"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[dict[str, Any]]:
    import socket

    tmp_path = tmp_path_factory.mktemp("api-server")
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "guardian_health.py", dags / "guardian_health.py")
    (dags / "api_probe.py").write_text(PROBE)
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"monitor": PASSWORD, "operator": OP_PASSWORD}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="monitor:viewer,operator:op",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API_AUTH__JWT_SECRET="test-jwt-secret-for-the-guardian-suite",
        GUARDIAN_DATA_DIR=str(tmp_path / "guardian-data"),
        GUARDIAN_WEB__SECURE_COOKIES="false",  # plain http on 127.0.0.1 in this test
    )
    airflow = str(Path(sys.executable).parent / "airflow")
    probe = subprocess.run([airflow, "dags", "test", "api_probe"], env=env, capture_output=True, text=True, timeout=300)
    assert "warehouse quota exceeded" in probe.stdout + probe.stderr
    log = (tmp_path / "api-server.log").open("w")
    proc = subprocess.Popen(
        [airflow, "api-server", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/api/v2/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "api-server did not start"
            time.sleep(0.5)
        yield {"base": base}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_collector_and_plugin_against_the_api_server(api_server: dict[str, Any]) -> None:
    from guardian.errors import IntegrationError
    from guardian.monitoring.airflow_api import AirflowApi
    from guardian.monitoring.health import latest_snapshots
    from guardian.monitoring.service import run_health_check
    from guardian.settings import load_settings
    from guardian.store import get_store

    base = api_server["base"]
    api = AirflowApi(base, username="monitor", password=PASSWORD, page_size=2)
    assert api.version == "v2"
    assert {"api_probe", "guardian_health"} <= set(api.dags())
    runs = [r for r in api.runs_since(datetime.now(UTC) - timedelta(days=2)) if r.dag_id == "api_probe"]
    assert runs, "the probe run must be listed"
    newest = max(runs, key=lambda r: r.end_date or datetime.min.replace(tzinfo=UTC))
    assert newest.state == "failed" and newest.failed_tasks == ["flaky"] and newest.retries == 1
    assert newest.duration_s is not None and newest.duration_s > 0

    settings = load_settings()
    report = run_health_check(settings, get_store(settings), runs, source="api-v2", notify=False)
    # The test Airflow DB is kept between sessions: earlier probe runs are listed too.
    failed_runs = sum(1 for r in runs if r.state == "failed")
    assert latest_snapshots(get_store(settings))["api_probe"]["failing_tasks"] == {"flaky": failed_runs}
    assert report.collected >= 1

    with pytest.raises(IntegrationError, match="refused the login of 'monitor'"):
        _ = AirflowApi(base, username="monitor", password="wrong").version

    # The UI inside the API server: Airflow's login guards it; a logged-in user sees the Overview.
    anonymous = httpx.get(base + "/guardian/", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/auth/login")
    assert httpx.get(base + "/guardian/api/overview").status_code == 401
    token = httpx.post(base + "/auth/token", json={"username": "monitor", "password": PASSWORD}).json()["access_token"]
    page = httpx.get(base + "/guardian/", cookies={"_token": token})
    assert page.status_code == 200 and "<h1>Overview</h1>" in page.text and ">monitor<" in page.text
    overview = httpx.get(base + "/guardian/api/overview", headers={"Authorization": f"Bearer {token}"})
    assert overview.status_code == 200 and "dags" in overview.json()
    plugins = httpx.get(base + "/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    [guardian] = [p for p in plugins if p["name"] == "guardian"]
    assert guardian["external_views"][0]["href"] == "/guardian/"
    assert guardian["external_views"][0]["name"] == "Guardian"


def test_guardian_in_the_airflow_ui_menu_in_chromium(api_server: dict[str, Any]) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base = api_server["base"]
    token = httpx.post(base + "/auth/token", json={"username": "monitor", "password": PASSWORD}).json()["access_token"]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--window-size=1400,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    shots = REPO / "docs" / "screenshots"
    try:
        driver.get(base + "/api/v2/version")
        driver.add_cookie({"name": "_token", "value": token, "path": "/"})
        driver.get(base + "/")
        browse = WebDriverWait(driver, 30).until(ec.element_to_be_clickable((By.XPATH, "//*[text()='Browse']")))
        browse.click()
        entry = WebDriverWait(driver, 10).until(ec.visibility_of_element_located((By.XPATH, "//*[text()='Guardian']")))
        driver.save_screenshot(str(shots / "11_airflow_menu.png"))
        entry.click()
        frame = WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.TAG_NAME, "iframe")))
        driver.switch_to.frame(frame)
        WebDriverWait(driver, 30).until(ec.text_to_be_present_in_element((By.ID, "current-user"), "monitor"))
        assert "Overview" in driver.find_element(By.TAG_NAME, "h1").text
        driver.switch_to.default_content()
        driver.save_screenshot(str(shots / "12_airflow_plugin.png"))
    finally:
        driver.quit()


def test_plugin_checks_roles_through_airflows_auth_manager(api_server: dict[str, Any]) -> None:
    """A viewer cannot restore by any door; an operator can, with a bearer token or cookie plus CSRF."""
    base = api_server["base"]

    def token(user: str, password: str) -> str:
        return str(
            httpx.post(base + "/auth/token", json={"username": user, "password": password}).json()["access_token"]
        )

    viewer, operator = token("monitor", PASSWORD), token("operator", OP_PASSWORD)
    restore = base + "/guardian/api/looker/restore"
    form = {"dashboard_id": "42"}
    as_viewer = httpx.post(restore, data=form, headers={"Authorization": f"Bearer {viewer}"})
    assert as_viewer.status_code == 403 and "restore" in as_viewer.text
    assert httpx.post(restore, data=form, cookies={"_token": viewer}).status_code == 403
    # The operator's browser session (cookie) still needs the CSRF token of its Guardian session.
    no_csrf = httpx.post(restore, data=form, cookies={"_token": operator})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    with httpx.Client(base_url=base, cookies={"_token": operator}) as browser:
        page = browser.get("/guardian/audit")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf
        by_cookie = browser.post("/guardian/api/looker/restore", data={**form, "csrf": csrf.group(1)})
        assert by_cookie.status_code not in (401, 403), by_cookie.text
    by_token = httpx.post(restore, data=form, headers={"Authorization": f"Bearer {operator}"})
    assert by_token.status_code not in (401, 403), by_token.text
    # /metrics never answers anonymously inside Airflow (no token is configured here: always 401).
    assert httpx.get(base + "/guardian/metrics").status_code == 401
    assert httpx.get(base + "/guardian/metrics", headers={"Authorization": f"Bearer {viewer}"}).status_code == 401
    page = httpx.get(base + "/guardian/", cookies={"_token": viewer})
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]


def test_every_plugin_route_with_a_viewer_and_an_operator(api_server: dict[str, Any]) -> None:
    """The routes come from the app itself: a route added later is walked as soon as it declares its permission."""
    from fastapi.routing import APIRoute

    from guardian.settings import load_settings
    from guardian.web.app import PUBLIC_ROUTES, create_app, route_permission
    from guardian.web.auth import Permission

    base = api_server["base"]
    granted = {"monitor": {Permission.READ}, "operator": {Permission.READ, Permission.RESTORE}}
    passwords = {"monitor": PASSWORD, "operator": OP_PASSWORD}
    routes = [r for r in create_app(load_settings(), user_resolver=_no_user).routes if isinstance(r, APIRoute)]
    walked = 0
    for user, perms in granted.items():
        answer = httpx.post(base + "/auth/token", json={"username": user, "password": passwords[user]})
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        for route in routes:
            needed = route_permission(route)
            if route.path in PUBLIC_ROUTES or needed is None:
                continue
            url = base + "/guardian" + re.sub(r"\{[^}]+\}", "x", route.path)
            for method in route.methods:
                data = {"dashboard_id": "1", "confirm": "1"} if method != "GET" else None
                params = {"dashboard_id": "1"} if method == "GET" else None
                status = httpx.request(method, url, headers=headers, data=data, params=params, timeout=60).status_code
                walked += 1
                if needed in perms:
                    assert status not in (401, 403), (user, method, route.path, status)
                else:
                    assert status == 403, (user, method, route.path, status)
    assert walked >= 2 * 15


async def _no_user(_request: Any) -> None:
    return None
