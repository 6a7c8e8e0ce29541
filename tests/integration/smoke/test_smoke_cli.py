"""`guardian smoke` as a person meets it without a topology: missing settings, a wrong check name,
and an API server that does not answer (nothing listens on the port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _smoke(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "guardian"), "smoke", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_without_an_api_url_one_line_names_the_setting() -> None:
    out = _smoke()
    assert out.returncode == 2
    assert "GUARDIAN_MONITORING__AIRFLOW_API_URL is not set" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_unknown_check_name_lists_the_known_ones() -> None:
    out = _smoke("--only", "schedulr", GUARDIAN_MONITORING__AIRFLOW_API_URL="http://127.0.0.1:9")
    assert out.returncode == 2
    assert "--only schedulr: no such check" in out.stderr and "scheduler" in out.stderr


def test_an_api_server_that_does_not_answer_fails_with_the_fix() -> None:
    from guardian.sandbox.serve import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = _smoke("--json", "--only", "api_server", "--only", "dags", GUARDIAN_MONITORING__AIRFLOW_API_URL=url)
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert {c["name"]: c["status"] for c in doc["checks"]} == {"api_server": "FAIL", "dags": "FAIL"}
    api = doc["checks"][0]
    assert "unreachable" in api["detail"] and "GUARDIAN_MONITORING__AIRFLOW_API_URL" in api["detail"]
    # The table for people: the same verdict.
    table = _smoke("--only", "api_server", GUARDIAN_MONITORING__AIRFLOW_API_URL=url)
    assert table.returncode == 1
    assert "guardian smoke" in table.stdout and "api_server" in table.stdout and "FAIL" in table.stdout
