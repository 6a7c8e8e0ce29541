"""Known fake secrets never appear in task logs, alerts, the audit log or the monitoring tables.

Real DAG runs (`airflow dags test`): guardian_health with every guardian secret reference set
(its API collection fails against a closed port, so retry and failure alerts go out), and a
probe DAG whose task logs the secrets and raises an error that contains them. Emails go to a
real SMTP server, Slack posts to a local webhook receiver; then the log records of the runs,
every email (decoded), every Slack post and the store's tables are searched for each secret.

Scope: `airflow dags test` runs tasks in its own process without Airflow's supervisor, and
prints Airflow's traceback of a failed task (and anything a task print()s) unredacted; in a
deployment the supervisor redacts both with the secrets the guardian listener registers
with Airflow's masker at the start of every task. The log records checked here are the
timestamped records of the runs (guardian's, the task's own logging, Airflow's).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from guardian.monitoring.receivers import SlackReceiver, SmtpReceiver

REPO = Path(__file__).resolve().parents[3]
SECRETS = {
    "FAKE_AIRFLOW_API_PASSWORD": "fake-airflow-pw-8c1f2e",
    "FAKE_SMTP_PASSWORD": "fake-smtp-pw-77aa01",
    "FAKE_LOOKER_CLIENT_SECRET": "fake-looker-secret-5d9e3b",
    "FAKE_UI_PASSWORD": "fake-ui-password-1b2c3d",
}
PROBE = """
from __future__ import annotations
import logging, os
import pendulum
from airflow.providers.common.compat.sdk import dag, task
from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

@dag(dag_id="secret_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     doc_md="probe", tags=[Tag.GUARDIAN], default_args=dagkit.default_args(retries=0),
     on_failure_callback=dagkit.on_failure)
def secret_probe():
    @task
    def leak():
        values = [os.environ[k] for k in sorted(os.environ) if k.startswith("FAKE_")]
        logging.getLogger("probe").warning("careless log line: %s", " ".join(values))
        raise RuntimeError("login failed for password=" + values[0] + " and token " + values[1])
    leak()
secret_probe()
"""


@pytest.fixture
def receivers() -> Any:
    smtp, slack = SmtpReceiver().start(), SlackReceiver().start()
    yield smtp, slack
    smtp.stop()
    slack.stop()


def _decoded(message: Any) -> str:
    return "\n".join(str(part.get_content()) for part in message.walk() if not part.is_multipart())


def _airflow(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True, text=True, timeout=400
    )


def test_no_secret_leaks_from_failing_dag_runs(
    tmp_path: Path, airflow_db: Path, guardian_env: Path, receivers: tuple[SmtpReceiver, SlackReceiver]
) -> None:
    smtp, slack = receivers
    dags = tmp_path / "dags"
    dags.mkdir()
    # The DAG as shipped, but its one retry after 1 s instead of 30 s: the retry alert is what is
    # checked here, not the delay.
    source = (REPO / "dags" / "guardian_health.py").read_text()
    assert "retry_delay_minutes=0.5" in source
    (dags / "guardian_health.py").write_text(source.replace("retry_delay_minutes=0.5", "retry_delay_minutes=1 / 60"))
    (dags / "secret_probe.py").write_text(PROBE)
    logs = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(SECRETS)
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(logs),
        GUARDIAN_DATA_DIR=str(guardian_env),
        GUARDIAN_NOTIFY__SMTP_HOST="127.0.0.1",
        GUARDIAN_NOTIFY__SMTP_PORT=str(smtp.port),
        GUARDIAN_NOTIFY__SLACK_DAGS="*",
        GUARDIAN_NOTIFY__ALERT_ON_RETRY="true",
        FAKE_SLACK_WEBHOOK=slack.url,
        GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF="env:FAKE_SLACK_WEBHOOK",
        GUARDIAN_NOTIFY__SMTP_PASSWORD_REF="env:FAKE_SMTP_PASSWORD",
        GUARDIAN_MONITORING__AIRFLOW_API_URL="http://127.0.0.1:9",
        GUARDIAN_MONITORING__AIRFLOW_USERNAME="monitor",
        GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF="env:FAKE_AIRFLOW_API_PASSWORD",
        GUARDIAN_MONITORING__API_TIMEOUT="2",
        GUARDIAN_LOOKER__CLIENT_SECRET_REF="env:FAKE_LOOKER_CLIENT_SECRET",
        GUARDIAN_WEB__USERS="ops:env:FAKE_UI_PASSWORD",
    )
    health = _airflow(["dags", "test", "guardian_health"], env)
    probe = _airflow(["dags", "test", "secret_probe"], env)
    outputs = health.stdout + health.stderr + probe.stdout + probe.stderr

    # Both runs failed for real and alerted: the failures reached both receivers.
    subjects = [m["Subject"] for m in smtp.messages]
    assert any("guardian_health.collect_runs FAILED" in s for s in subjects), subjects
    assert any("guardian_health.collect_runs retrying" in s for s in subjects), subjects
    assert any("secret_probe.leak FAILED" in s for s in subjects), subjects
    assert any("secret_probe.leak" in p["text"] for p in slack.payloads)
    probe_mail = next(m for m in smtp.messages if "secret_probe.leak FAILED" in m["Subject"])
    assert "login failed for password=*** and token ***" in _decoded(probe_mail)

    # `dags test` writes the task logs to its own output (log files too, when it makes any).
    raw = outputs + "\n".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())
    task_logs = "\n".join(line for line in raw.splitlines() if re.match(r"^\d{4}-\d\d-\d\dT\d\d:", line))
    assert "careless log line: *** ***" in task_logs
    assert "Airflow API http://127.0.0.1:9 unreachable" in task_logs
    # Decoded parts: a secret inside quoted-printable or base64 would not show in the raw text.
    mails = "\n".join(str(m.items()) + _decoded(m) for m in smtp.messages)
    posts = json.dumps(slack.payloads)
    engine = create_engine(f"sqlite:///{guardian_env / 'guardian.db'}")
    with engine.connect() as conn:
        stored = json.dumps(
            [
                [list(map(str, row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
                for table in ("audit_log", "monitoring_notifications", "monitoring_alerts", "monitoring_dag_runs")
            ]
        )
    engine.dispose()
    token = slack.url.rsplit("/", 1)[-1]
    for name, value in {**SECRETS, "slack webhook token": token}.items():
        for where, haystack in (
            ("task logs", task_logs),
            ("emails", mails),
            ("slack posts", posts),
            ("store", stored),
        ):
            assert value not in haystack, f"{name} leaked into {where}"
