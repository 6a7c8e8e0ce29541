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
