"""The web UI over HTTP (FastAPI's TestClient): login, no anonymous access, CSRF, audit, pages, API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from guardian import audit
from guardian.monitoring.health import RunRecord
from guardian.monitoring.service import run_health_check
from guardian.settings import load_settings
from guardian.store import get_store
from guardian.web.auth import hash_password

ALICE_HASH = hash_password("correct horse battery")


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    from guardian.web.app import create_app

    monkeypatch.setenv("UI_PW_ALICE", ALICE_HASH)
    monkeypatch.setenv("GUARDIAN_WEB__USERS", "alice:admin:env:UI_PW_ALICE")
    monkeypatch.setenv("SCRAPE_TOKEN", "scrape-token-123")
    monkeypatch.setenv("GUARDIAN_WEB__METRICS_TOKEN_REF", "env:SCRAPE_TOKEN")
    return TestClient(create_app(load_settings()), base_url="https://testserver")


def _login(client: TestClient, user: str = "alice", password: str = "correct horse battery") -> None:
    response = client.post("/login", data={"username": user, "password": password, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text


def _seed() -> None:
    settings = load_settings()
    now = datetime.now(UTC)
    runs = [
        RunRecord(
            "bigquery_sales_query",
            f"manual__{i}",
            "failed" if i < 3 else "success",
            now - timedelta(hours=i, seconds=40),
            now - timedelta(hours=i),
            failed_tasks=["run_query"] if i < 3 else [],
        )
        for i in range(8)
    ]
    run_health_check(settings, get_store(settings), runs, notify=False)


def test_every_page_and_api_needs_a_login(client: TestClient) -> None:
    for path in ("/", "/alerts", "/audit", "/looker", "/sheets", "/sales", "/quality", "/dags/x"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    for path in ("/api/overview", "/api/audit", "/api/alerts", "/api/quality", "/api/looker"):
        assert client.get(path).status_code == 401, path
    assert client.post("/looker/restore", data={"dashboard_id": "1"}, follow_redirects=False).status_code == 303


def test_wrong_password_is_refused_and_audited(client: TestClient) -> None:
    response = client.post("/login", data={"username": "alice", "password": "nope", "next": "/"})
    assert response.status_code == 401 and "wrong password" in response.text
    assert client.get("/api/overview").status_code == 401
    [event] = list(audit.iter_events(action_prefix="web.login"))
    assert event.outcome == "failed" and event.target == "user:alice"
    assert "nope" not in str(event.as_dict())


def test_overview_shows_health_alerts_and_timing(client: TestClient) -> None:
    _seed()
    _login(client)
    page = client.get("/")
    assert page.status_code == 200
    assert "bigquery_sales_query" in page.text and 'id="dag-health"' in page.text
    assert "failure_rate" in page.text  # 3 of 8 failed > 20%
    assert "alice" in page.text
    assert "render;dur=" in page.headers["server-timing"]
    api = client.get("/api/overview").json()
    [dag] = [d for d in api["dags"] if d["dag_id"] == "bigquery_sales_query"]
    assert dag["runs_7d"] == 8 and dag["failed_7d"] == 3 and dag["failing_tasks"] == {"run_query": 3}
    assert [a["key"] for a in api["open_alerts"]] == ["failure_rate:bigquery_sales_query"]


def test_metrics_expose_health_and_alerts(client: TestClient) -> None:
    _seed()
    text = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"}).text
    assert 'guardian_dag_runs{dag_id="bigquery_sales_query",window="7d"} 8.0' in text
    assert 'guardian_dag_success_ratio{dag_id="bigquery_sales_query",window="7d"} 0.625' in text
    assert 'guardian_alerts_open{kind="failure_rate"} 1.0' in text
    assert re.search(
        r'guardian_dag_duration_seconds\{dag_id="bigquery_sales_query",quantile="0.5",window="7d"\} 40', text
    )


def test_metrics_token_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.web.app import create_app

    monkeypatch.setenv("SCRAPE_TOKEN", "scrape-token-123")
    monkeypatch.setenv("GUARDIAN_WEB__METRICS_TOKEN_REF", "env:SCRAPE_TOKEN")
    monkeypatch.setenv("UI_PW", ALICE_HASH)
    monkeypatch.setenv("GUARDIAN_WEB__USERS", "bob:viewer:env:UI_PW")
    c = TestClient(create_app(load_settings()), base_url="https://testserver")
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer scrape-token-124"}).status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"}).status_code == 200
    monkeypatch.delenv("GUARDIAN_WEB__METRICS_TOKEN_REF")
    open_by_default = TestClient(create_app(load_settings()), base_url="https://testserver")
    assert open_by_default.get("/metrics").status_code == 401  # no token configured: never anonymous


def test_audit_search_and_verify_need_csrf(client: TestClient) -> None:
    audit.record("looker.trash", "looker:dashboard:42", after={"title": "Old sales"})
    audit.record("sheets.request", "sheet:control/row:7")
    _login(client)
    page = client.get("/audit", params={"q": "dashboard:42"})
    assert "looker:dashboard:42" in page.text and "sheet:control/row:7" not in page.text
    assert client.post("/audit/verify", data={"csrf": "forged"}).status_code == 403
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    verified = client.post("/audit/verify", data={"csrf": token.group(1)})
    assert "chain OK" in verified.text
    assert client.get("/api/audit/verify").json()["ok"] is True


def test_logout_ends_the_session(client: TestClient) -> None:
    _login(client)
    assert client.get("/api/overview").status_code == 200
    client.post("/logout")
    assert client.get("/api/overview").status_code == 401


def test_openapi_document_describes_the_json_api(client: TestClient) -> None:
    doc = client.get("/api/openapi.json").json()
    from openapi_schema_validator import OAS31Validator  # noqa: F401  (the document is OpenAPI 3.1)

    assert doc["openapi"].startswith("3.")
    for path in ("/api/overview", "/api/audit", "/api/audit/verify", "/api/looker/restore", "/metrics"):
        assert path in doc["paths"], path
    assert "/login" not in doc["paths"]


def test_open_redirect_is_refused(client: TestClient) -> None:
    response = client.post(
        "/login",
        data={"username": "alice", "password": "correct horse battery", "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_bad_users_setting_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.errors import ConfigError
    from guardian.web.app import create_app

    monkeypatch.setenv("GUARDIAN_WEB__USERS", "alice:admin:plaintextpassword")
    with pytest.raises(ConfigError, match="must be a reference"):
        create_app(load_settings())
