"""deploy/bluegreen/deploy.sh, the host side of the production deployment, run for real against a
stand-in `docker` (there is no Docker engine here).

The stand-in keeps the state a Compose host would have (the image the scheduler tier runs, the
colour projects that exist) and computes its answers from it; like Compose it refuses a colour
project whose required variables (`${VAR:?...}` in docker-compose.colour.yml) are unset. The
real switch.py and a real HTTP health endpoint are used. What is checked is the order the issue
asks for (backup, migrations, standby, smoke, switch, scheduler tier) and what a rollback and a
failed smoke test leave behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from topology import harness

SCRIPT = harness.REPO / "deploy" / "bluegreen" / "deploy.sh"

FAKE_DOCKER = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    state_path, log_path = os.environ["FAKE_DOCKER_STATE"], os.environ["FAKE_DOCKER_LOG"]
    state = json.load(open(state_path))
    argv = sys.argv[1:]
    event = {{"argv": argv, "image": os.environ.get("GUARDIAN_IMAGE"), "colour": os.environ.get("BLUEGREEN_COLOUR")}}
    with open(log_path, "a") as log:
        log.write(json.dumps(event) + "\\n")
    if argv[0] == "inspect":
        print(state["tier_image"])
        sys.exit(0)
    assert argv[0] == "compose", argv
    args, files, project = argv[1:], [], None
    while args and args[0] in ("-p", "-f"):
        if args[0] == "-p":
            project = args[1]
        else:
            files.append(args[1])
        args = args[2:]
    command, rest = args[0], args[1:]
    if any(f.endswith("docker-compose.colour.yml") for f in files):
        for var in ("BLUEGREEN_COLOUR", "BLUEGREEN_PORT"):
            if not os.environ.get(var):
                sys.exit(f"required variable {{var}} is missing a value")
    colour = project.rsplit("-", 1)[1] if project and project.endswith(("-blue", "-green")) else None
    if command == "ps":
        print("cid-scheduler" if state["tier_image"] else "")
    elif command == "exec" and "pg_dump" in rest:
        print("PGDMP dump of", rest[-1])
    elif command == "exec" and "guardian" in rest:
        sys.exit(state["smoke_rc"])
    elif command == "up" and colour:
        state["colours"][colour] = os.environ.get("GUARDIAN_IMAGE")
    elif command == "up" and "airflow-scheduler" in rest or "--scale" in rest:
        state["tier_image"] = os.environ.get("GUARDIAN_IMAGE")
    elif command == "down" and colour:
        state["colours"].pop(colour, None)
    json.dump(state, open(state_path, "w"))
    """
)


class Host:
    """The stand-in Compose host: its state, the log of every docker call, and deploy.sh's environment."""

    def __init__(self, tmp: Path, health_port: int) -> None:
        self.state_path, self.log_path = tmp / "docker-state.json", tmp / "docker.log"
        self.bluegreen = tmp / "bluegreen-state"
        self.backups = tmp / "backups"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        docker = bin_dir / "docker"
        docker.write_text(FAKE_DOCKER.format(python=sys.executable))
        docker.chmod(0o755)
        self.state_path.write_text(json.dumps({"tier_image": "reg/guardian:1", "colours": {}, "smoke_rc": 0}))
        self.log_path.touch()
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_DOCKER_STATE": str(self.state_path),
            "FAKE_DOCKER_LOG": str(self.log_path),
            "BLUEGREEN_STATE": str(self.bluegreen),
            "BLUEGREEN_BACKUPS": str(self.backups),
            "BLUEGREEN_BLUE_PORT": str(health_port),
            "BLUEGREEN_GREEN_PORT": str(health_port),
        }

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def set(self, **values: Any) -> None:
        self.state_path.write_text(json.dumps({**self.state(), **values}))

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env=self.env, capture_output=True, text=True, check=False, timeout=120
        )

    def switch_state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.bluegreen / "bluegreen.json").read_text())
        return data


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    from fastapi import FastAPI

    from guardian.sandbox.serve import start_in_thread

    app = FastAPI()

    @app.get("/api/v2/monitor/health")
    def health() -> dict[str, Any]:
        return {"metadatabase": {"status": "healthy"}}

    handle = start_in_thread(app)
    try:
        yield Host(tmp_path, int(handle.url.rsplit(":", 1)[1]))
    finally:
        handle.stop()


def _first(calls: list[dict[str, Any]], *words: str, colour: str | None = None, last: str | None = None) -> int:
    for i, call in enumerate(calls):
        if (
            all(w in call["argv"] for w in words)
            and (colour is None or call["colour"] == colour)
            and (last is None or call["argv"][-1] == last)
        ):
            return i
    raise AssertionError(f"no docker call with {words} (colour {colour}): {[c['argv'] for c in calls]}")


def test_promote_runs_backup_migrations_standby_smoke_switch_then_the_scheduler_tier(host: Host) -> None:
    out = host.run("promote", "reg/guardian:2")
    assert out.returncode == 0, out.stderr[-2000:]
    calls = host.calls()
    # First blue-green deployment: the running release becomes blue.
    blue_up = _first(calls, "up", "airflow-apiserver", colour="blue")
    assert calls[blue_up]["image"] == "reg/guardian:1"
    order = [
        _first(calls, "pg_dump", last="airflow"),
        _first(calls, "pg_dump", last="guardian"),
        _first(calls, "run", "airflow-init"),
        _first(calls, "up", "airflow-apiserver", colour="green"),
        _first(calls, "guardian", "smoke", colour="green"),
        _first(calls, "nginx", "-t"),
        _first(calls, "nginx", "reload"),
        _first(calls, "up", "--no-deps", "airflow-scheduler", "airflow-worker"),
    ]
    assert order == sorted(order), order
    assert blue_up < order[0]
    assert calls[order[2]]["image"] == calls[order[3]]["image"] == calls[order[-1]]["image"] == "reg/guardian:2"
    assert host.state()["tier_image"] == "reg/guardian:2"
    assert host.switch_state()["active"] == "green" and host.switch_state()["previous"] == "blue"
    assert sorted(p.name.split("-")[0] for p in host.backups.iterdir()) == ["airflow", "guardian"]
    assert "airflow-apiserver-green:8080" in (host.bluegreen / "upstream.conf").read_text()

    # Rollback: the edge back to blue, the scheduler tier back to the image it ran before.
    before = len(host.calls())
    out = host.run("rollback")
    assert out.returncode == 0, out.stderr[-2000:]
    assert host.state()["tier_image"] == "reg/guardian:1"
    assert host.switch_state()["active"] == "blue"
    _first(host.calls()[before:], "nginx", "reload")
    assert "airflow-apiserver-blue:8080" in (host.bluegreen / "upstream.conf").read_text()


def test_a_failed_smoke_test_leaves_traffic_and_scheduler_tier_alone(host: Host) -> None:
    assert host.run("promote", "reg/guardian:2").returncode == 0
    assert host.run("finish").returncode == 0  # the watch passed: blue (release 1) is stopped
    assert "blue" not in host.state()["colours"]
    assert host.switch_state()["previous"] is None
    refused = host.run("rollback")
    assert refused.returncode != 0 and "nothing to roll back to" in refused.stderr

    host.set(smoke_rc=1)
    before = len(host.calls())
    out = host.run("promote", "reg/guardian:3")
    assert out.returncode != 0
    assert "smoke tests failed on blue" in out.stderr and "traffic stays on green" in out.stderr
    after = host.calls()[before:]
    assert not any("reload" in c["argv"] for c in after), "the edge was not switched"
    assert not any("airflow-scheduler" in c["argv"] and "up" in c["argv"] for c in after)
    assert host.state()["tier_image"] == "reg/guardian:2"
    assert host.switch_state()["active"] == "green"
    assert "airflow-apiserver-green:8080" in (host.bluegreen / "upstream.conf").read_text()
