"""`guardian smoke` and the blue-green switch on the local topology, from the world's side.

One topology (the harness of tests/integration/topology: CeleryExecutor on the real PostgreSQL and
Redis, the sandboxes for Looker, Sheets and Cloud Storage) serves every scenario, in file order:
all checks green; wrong Looker credentials; a blue-green promotion and rollback of the API server
through nginx under a request loop; a DAG file with an import error (and its repair); a scheduler
that stops heartbeating. `guardian smoke` runs as a separate process with the API server's own
environment, as `docker compose exec airflow-apiserver guardian smoke` would in a deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from topology import harness, scenarios

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow]

BIN = Path(sys.executable).parent
SWITCH = harness.REPO / "deploy" / "bluegreen" / "switch.py"
# Scheduler health threshold of the API server (default 30 s): a stopped scheduler shows sooner.
HEALTH_THRESHOLD = 15
GREEN_OK = {
    "api_server",
    "scheduler",
    "triggerer",
    "dag_processor",
    "dag_import_errors",
    "dags",
    "guardian_ui",
    "sales_estimate",
    "audit_chain",
    "doctor:store",
    "doctor:storage",
    "doctor:looker",
    "doctor:warehouse",
    "doctor:sheets",
    "doctor:security",
}


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[scenarios.Sandboxes]:
    with scenarios.sandboxes(tmp_path_factory.mktemp("smoke-sandboxes")) as running:
        yield running


@pytest.fixture(scope="module")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return harness.link_dags(tmp_path_factory.mktemp("smoke") / "dags", with_probe=False)


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, sandboxes: scenarios.Sandboxes, dags_folder: Path
) -> Iterator[harness.Running]:
    env = {
        **sandboxes.env,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": str(HEALTH_THRESHOLD),
    }
    tmp = tmp_path_factory.mktemp("smoke-topology")
    with harness.local_topology(
        tmp, workers=1, worker_concurrency=2, extra_env=env, dags_folder=dags_folder
    ) as running:
        yield running


@pytest.fixture(scope="module")
def deploy_env(topology: harness.Running) -> dict[str, str]:
    """The environment the topology gives its components (the harness's own, as in scenarios.py)."""
    env = {**os.environ, **topology.module.environment(topology.cfg)}
    assert env.get("GUARDIAN_MONITORING__AIRFLOW_API_URL"), "the deployment sets the smoke test's API URL"
    return env


def smoke(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """Run `guardian smoke --json` as its own process; exit status and document."""
    out = subprocess.run(
        [str(BIN / "guardian"), "smoke", "--json", *args], env=env, capture_output=True, text=True, check=False
    )
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def failing(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"] if c["status"] == "FAIL"}


def until(
    probe: Callable[[], tuple[int, dict[str, Any]]], done: Callable[[dict[str, Any]], bool], timeout: float
) -> tuple[int, dict[str, Any]]:
    """Repeat a smoke run until ``done`` holds (bounded); the last exit status and document."""
    deadline = time.monotonic() + timeout
    while True:
        rc, doc = probe()
        if done(doc) or time.monotonic() > deadline:
            return rc, doc
        time.sleep(2)


def test_all_checks_pass_on_a_healthy_deployment(deploy_env: dict[str, str]) -> None:
    started = time.monotonic()
    rc, doc = smoke(deploy_env, "--wait", "150", "--interval", "3")
    print(f"\nfirst green smoke (with DAG parsing) {time.monotonic() - started:.1f} s")
    assert rc == 0, failing(doc)
    assert doc["ok"] is True
    got = statuses(doc)
    assert {name for name, status in got.items() if status == "OK"} == GREEN_OK, got
    # Not configured in the topology: skipped, never silently passed.
    assert got["doctor:smtp"] == got["doctor:slack"] == "SKIPPED"
    started = time.monotonic()
    rc, doc = smoke(deploy_env, "--wait", "60", "--interval", "2")
    slowest = sorted(doc["checks"], key=lambda c: -c["seconds"])[:5]
    timings = [(c["name"], c["seconds"]) for c in slowest]
    print(f"steady-state smoke {time.monotonic() - started:.1f} s; slowest checks: {timings}")
    assert rc == 0


def exactly(env: dict[str, str], expected: set[str], *args: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
    """The failing checks once they are exactly ``expected``: a heartbeat that is late once on two
    shared cores is retried, a check that never fails (or never recovers) still fails the test."""
    rc, doc = until(lambda: smoke(env, *args), lambda d: set(failing(d)) == expected, timeout=timeout)
    assert (rc, doc["ok"]) == ((1, False) if expected else (0, True))
    bad = failing(doc)
    assert set(bad) == expected, bad
    return bad


def test_wrong_looker_credentials_fail_the_looker_check_with_its_fix(deploy_env: dict[str, str]) -> None:
    bad = exactly({**deploy_env, "LOOKERSDK_CLIENT_SECRET": "not-the-secret"}, {"doctor:looker"})
    assert "client id/secret" in bad["doctor:looker"]["fix"]


@dataclass
class RequestLoop:
    """GETs through the proxy from a thread, bounded in count and time; every outcome recorded."""

    url: str
    token: str
    max_requests: int = 5000
    max_seconds: float = 240
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (colour or "", "ok" or the failure)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        paths = ["/api/v2/monitor/health", "/guardian/api/overview", "/"]
        headers = {"Authorization": f"Bearer {self.token}"}
        deadline = time.monotonic() + self.max_seconds
        with requests.Session() as session:
            while not self._stop.is_set() and len(self.outcomes) < self.max_requests and time.monotonic() < deadline:
                path = paths[len(self.outcomes) % len(paths)]
                try:
                    response = session.get(self.url + path, headers=headers, timeout=30)
                    verdict = "ok" if response.status_code == 200 else f"HTTP {response.status_code} {path}"
                    self.outcomes.append((response.headers.get("X-Guardian-Colour", ""), verdict))
                except requests.RequestException as exc:
                    self.outcomes.append(("", f"{type(exc).__name__} {path}"))
                time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()

    def colours_since(self, index: int) -> set[str]:
        return {colour for colour, _ in self.outcomes[index:]}


def _wait_count(loop: RequestLoop, more: int) -> None:
    target = len(loop.outcomes) + more
    deadline = time.monotonic() + 30
    while len(loop.outcomes) < target and time.monotonic() < deadline:
        time.sleep(0.05)


def test_blue_green_promotion_and_rollback_lose_no_request(
    topology: harness.Running, deploy_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from guardian.sandbox.serve import free_port

    tmp = tmp_path_factory.mktemp("bluegreen")
    state = tmp / "proxy"
    blue = f"127.0.0.1:{topology.cfg.port}"
    green_port, proxy_port = free_port(), free_port()
    green = f"127.0.0.1:{green_port}"
    switch = [sys.executable, str(SWITCH), "--state", str(state)]
    subprocess.run([*switch, "init", "--upstream", blue, "--listen", f"127.0.0.1:{proxy_port}"], check=True)
    nginx = ["nginx", "-e", str(state / "error.log"), "-c", str(state / "nginx.conf")]
    subprocess.run(nginx, check=True)
    # The new version's stateless tier: a second API server on the same metadata database.
    green_env = {**deploy_env, "AIRFLOW__API__PORT": str(green_port)}
    with (tmp / "green.log").open("wb") as log:
        green_proc = subprocess.Popen(
            [str(BIN / "airflow"), "api-server", "--port", str(green_port)],
            env=green_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    token = requests.post(
        f"http://{blue}/auth/token", json={"username": "admin", "password": topology.api.password}, timeout=30
    ).json()["access_token"]
    loop = RequestLoop(f"http://127.0.0.1:{proxy_port}", token)
    thread = threading.Thread(target=loop.run, daemon=True)
    started = time.monotonic()
    try:
        thread.start()
        _wait_count(loop, 20)
        smoke_cmd = f"{BIN / 'guardian'} smoke --no-doctor --wait 60 --interval 3"
        promoted = subprocess.run(
            [*switch, "promote", "--upstream", green, "--smoke", smoke_cmd, "--timeout", "180"],
            env=deploy_env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert promoted.returncode == 0, promoted.stdout[-3000:] + promoted.stderr[-2000:]
        switched_at = len(loop.outcomes)
        _wait_count(loop, 30)
        assert loop.colours_since(switched_at + 3) == {"green"}, loop.outcomes[switched_at:]
        subprocess.run([*switch, "rollback"], check=True)
        rolled_at = len(loop.outcomes)
        _wait_count(loop, 30)
        assert loop.colours_since(rolled_at + 3) == {"blue"}
        # A standby whose smoke test fails never gets traffic (the smoke command here is `false`).
        refused = subprocess.run(
            [*switch, "promote", "--upstream", green, "--smoke", "false"], capture_output=True, text=True, check=False
        )
        assert refused.returncode == 1 and "traffic stays on blue" in refused.stderr, refused.stderr
        kept_at = len(loop.outcomes)
        _wait_count(loop, 10)
        assert loop.colours_since(kept_at) == {"blue"}
    finally:
        loop.stop()
        thread.join(timeout=60)
        subprocess.run([*nginx, "-s", "quit"], check=False)
        os.killpg(green_proc.pid, signal.SIGTERM)
        try:
            green_proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(green_proc.pid, signal.SIGKILL)
    failures = [outcome for outcome in loop.outcomes if outcome[1] != "ok"]
    seen = [colour for colour, _ in loop.outcomes]
    print(
        f"\nblue-green: {len(loop.outcomes)} requests in {time.monotonic() - started:.1f} s through the proxy, "
        f"{len(failures)} failed; blue {seen.count('blue')}, green {seen.count('green')}"
    )
    assert failures == []
    assert seen[0] == "blue" and "green" in seen and seen[-1] == "blue"


def test_a_dag_import_error_fails_its_check_and_clears_when_fixed(
    deploy_env: dict[str, str], dags_folder: Path
) -> None:
    broken = dags_folder / "smoke_broken_dag.py"
    broken.write_text("from airflow.sdk import DAG  # a DAG file\nimport guardian_module_that_does_not_exist\n")
    only = ("--only", "dag_import_errors")
    try:
        until(lambda: smoke(deploy_env, *only), lambda d: not d["ok"], timeout=120)
        bad = exactly(deploy_env, {"dag_import_errors"}, "--no-doctor")
        assert "smoke_broken_dag.py" in bad["dag_import_errors"]["detail"]
        assert "guardian_module_that_does_not_exist" in bad["dag_import_errors"]["detail"]
        assert "fix the file" in bad["dag_import_errors"]["fix"]
        # The post-deploy watch sees it too and asks for a rollback.
        reason = "smoke check(s) failing: dag_import_errors"
        rc, doc = until(
            lambda: smoke(deploy_env, "--no-doctor", "--watch", "1"), lambda d: d["regression"] == reason, timeout=60
        )
        assert (rc, doc["ok"], doc["regression"]) == (1, False, reason)
    finally:
        broken.unlink()
    _, doc = until(lambda: smoke(deploy_env, *only), lambda d: d["ok"], timeout=120)
    assert doc["ok"], failing(doc)
    rc, doc = until(lambda: smoke(deploy_env, "--no-doctor", "--watch", "1"), lambda d: d["ok"], timeout=60)
    assert (rc, doc["ok"], doc["regression"]) == (0, True, None)


def test_a_stopped_scheduler_fails_the_scheduler_check(topology: harness.Running, deploy_env: dict[str, str]) -> None:
    pid = topology.pid("airflow-scheduler")
    assert pid
    # SIGSTOP: the process is still there (a process check says "running") but it heartbeats no more.
    os.kill(pid, signal.SIGSTOP)
    try:
        until(lambda: smoke(deploy_env, "--only", "scheduler"), lambda d: not d["ok"], timeout=HEALTH_THRESHOLD * 6)
        bad = exactly(deploy_env, {"scheduler"}, "--no-doctor")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "unhealthy" in bad["scheduler"]["detail"]
    assert "start the scheduler" in bad["scheduler"]["fix"]
