"""The monitoring files in deploy/ parse, and every Guardian metric the dashboard and rules use exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(guardian_[a-z0-9_]+)", expr))


def test_files_parse() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert {job["job_name"] for job in prom["scrape_configs"]} == {"guardian", "airflow-statsd"}
    mapping = yaml.safe_load((DEPLOY / "statsd" / "mapping.yml").read_text())
    assert all("match" in m and "name" in m for m in mapping["mappings"])
    assert yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "airflow-guardian.json").read_text())
    assert dash["uid"] == "airflow-guardian" and len(dash["panels"]) >= 10


def test_dashboard_and_rules_use_metrics_the_ui_exports(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from guardian.monitoring.health import RunRecord, TaskUsage, record_task_usage
    from guardian.monitoring.messages import Message, deliver
    from guardian.monitoring.service import run_health_check
    from guardian.settings import load_settings
    from guardian.store import get_store
    from guardian.web.app import create_app

    monkeypatch.setenv("SCRAPE", "scrape-token")
    monkeypatch.setenv("GUARDIAN_WEB__METRICS_TOKEN_REF", "env:SCRAPE")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SMTP_PORT", "9")
    settings = load_settings()
    store = get_store(settings)
    now = datetime.now(UTC)
    record_task_usage(store, TaskUsage("d", "t", "r0", 1, "success", 1.0, 0.5, 2**20))
    run_health_check(
        settings,
        store,
        [
            RunRecord("d", f"r{i}", "failed", now - timedelta(minutes=i + 1), now - timedelta(minutes=i))
            for i in range(5)
        ]
        + [RunRecord("d", "ok", "success", now - timedelta(hours=2), now - timedelta(hours=1))],
        notify=False,
    )
    deliver(settings, Message("test", "s", "t", "h", "x"), slack=False, store=store, email=True)
    exported = set(
        re.findall(
            r"^(guardian_[a-z0-9_]+?)(?:_total|_created)?(?:\{| )",
            TestClient(create_app(settings)).get("/metrics", headers={"Authorization": "Bearer scrape-token"}).text,
            re.M,
        )
    )
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "airflow-guardian.json").read_text())
    used = {n for p in dash["panels"] for t in p["targets"] for n in _metric_names(t["expr"])}
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    used |= {n for g in rules["groups"] for r in g["rules"] for n in _metric_names(r["expr"])}
    used = {re.sub(r"_total$", "", n) for n in used}
    assert used and used <= exported, used - exported


def test_alertmanager_is_wired_and_owns_only_platform_alerts() -> None:
    am = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    receivers = {r["name"]: r for r in am["receivers"]}
    routes = [am["route"], *am["route"].get("routes", [])]
    assert all(r["receiver"] in receivers for r in routes)
    assert any("email_configs" in r for r in receivers.values()) and any(
        "slack_configs" in r for r in receivers.values()
    )
    assert am["route"]["group_by"] and "inhibit_rules" in am
    # Secrets by file only.
    assert "smtp_auth_password" not in am["global"] and "slack_api_url" not in am["global"]
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [target] = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.prod.yml").read_text())
    service = compose["services"]["alertmanager"]
    assert target == "alertmanager:9093" and any("9093" in str(p) for p in service["ports"])
    [guardian_job] = [j for j in prom["scrape_configs"] if j["job_name"] == "guardian"]
    assert guardian_job["authorization"]["type"] == "Bearer"
    rules = {
        r["alert"]: r
        for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
        for r in g["rules"]
    }
    assert 'up{job="guardian"} == 0' in rules["GuardianDown"]["expr"]
    assert "absent" in rules["GuardianSilent"]["expr"]
    # The guardian delivers its own threshold alerts; Prometheus must not fire them a second time.
    assert not [
        name for name, r in rules.items() if "guardian_alerts_open" in r["expr"] or "guardian_alert_open" in r["expr"]
    ]
    inhibited = {m for rule in am["inhibit_rules"] for m in rule["target_matchers"]}
    assert all(name in rules for m in inhibited for name in m.split('"')[1].split("|"))
