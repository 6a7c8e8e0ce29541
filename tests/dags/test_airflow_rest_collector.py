"""The health collector against the running Airflow's own stable REST API v1 on Airflow 2.11
(`airflow webserver`, basic auth), in the Airflow 2.11 CI job; uses only runtime dependencies.

On Airflow 3 the same collector is proven against `airflow api-server` (v2, simple auth manager,
token login, a failed run with a retry, paging, a refused login) by
tests/integration/monitoring/test_airflow_api_server.py, which also serves the UI plugin; starting a
second API server here for a subset of those checks cost about 45 s of `make test`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

PASSWORD = "collector-password-7"


def _airflow_major() -> int:
    import airflow

    return int(airflow.__version__.split(".")[0])


pytestmark = pytest.mark.skipif(
    _airflow_major() >= 3, reason="Airflow 3: tests/integration/monitoring/test_airflow_api_server.py covers API v2"
)


@pytest.fixture(scope="module")
def rest_api(tmp_path_factory: pytest.TempPathFactory, airflow_db: Path) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("rest")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["GUARDIAN_DATA_DIR"] = str(tmp / "guardian-data")
    env.update(
        AIRFLOW__API__AUTH_BACKENDS="airflow.api.auth.backend.basic_auth",
        AIRFLOW__WEBSERVER__SECRET_KEY="collector-test-secret-key",
        # Airflow 2's webserver refuses a SQLite metadata DB with the LocalExecutor.
        AIRFLOW__CORE__EXECUTOR="SequentialExecutor",
    )
    command = [airflow, "webserver", "--port", str(port), "--workers", "1"]
    ready = "/health"
    run = subprocess.run(
        [airflow, "dags", "test", "guardian_health"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    log = (tmp / "server.log").open("w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(base + ready, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Airflow API did not start"
            time.sleep(0.5)
        # Roles exist once the webserver has started; the API lists DAGs known to the DB.
        for cmd in (
            [
                "users",
                "create",
                "-u",
                "collector",
                "-p",
                PASSWORD,
                "-r",
                "Viewer",
                "-f",
                "C",
                "-l",
                "T",
                "-e",
                "c@example.com",
            ],
            ["dags", "reserialize"],
        ):
            done = subprocess.run([airflow, *cmd], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield {"base": base, "version": "v1"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_collector_reads_runs_through_the_stable_rest_api(rest_api: dict[str, Any]) -> None:
    from guardian.errors import IntegrationError
    from guardian.monitoring.airflow_api import AirflowApi

    api = AirflowApi(rest_api["base"], username="collector", password=PASSWORD, page_size=1)
    assert api.version == rest_api["version"]
    assert "guardian_health" in api.dags()
    runs = [r for r in api.runs_since(datetime.now(UTC) - timedelta(hours=6)) if r.dag_id == "guardian_health"]
    # The test Airflow DB keeps runs of earlier sessions: the newest is the one made above.
    newest = max(runs, key=lambda r: r.start_date or datetime.min.replace(tzinfo=UTC))
    assert newest.state == "success" and newest.failed_tasks == [] and newest.retries == 0
    assert newest.duration_s is not None and newest.duration_s > 0
    assert newest.start_date and newest.start_date > datetime.now(UTC) - timedelta(minutes=30)

    wrong = AirflowApi(rest_api["base"], username="collector", password="wrong", attempts=1)
    with pytest.raises(IntegrationError):
        wrong.runs_since(datetime.now(UTC) - timedelta(hours=1))
