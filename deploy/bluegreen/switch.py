#!/usr/bin/env python3
"""Blue-green switch of the Guardian's stateless tier (Airflow API server with the UI) behind nginx.

Two colours of the API server run side by side on one metadata database; nginx sends all traffic
to the active one. ``promote`` smoke-tests the standby colour directly (not through the proxy),
and only when every check passes points nginx at it and reloads. nginx's reload is graceful (the
master starts workers with the new configuration; old workers finish their requests and exit:
https://nginx.org/en/docs/control.html#reconfiguration), so no request is dropped. The previous
colour keeps running until the pipeline's post-deploy watch is over, so ``rollback`` is one more
reload. Scheduler, DAG processor and migrations are not switched here (docs/cicd.md).

Standard library only: it runs on a Compose host, in CI and in the tests.

  switch.py --state DIR init --listen 127.0.0.1:8000 --color blue --upstream 127.0.0.1:8080
  switch.py --state DIR promote --upstream 127.0.0.1:8081 --smoke 'guardian smoke --json'
  switch.py --state DIR rollback
  switch.py --state DIR finish      # the previous colour is stopped: no rollback by switch after this
  switch.py --state DIR status
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

COLOURS = ("blue", "green")
UPSTREAM = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
HERE = Path(__file__).resolve().parent


class SwitchError(Exception):
    """A step refused or failed; the message names the input and the fix."""


@dataclass(frozen=True)
class State:
    """Which colour serves, where each colour listens, and which colour a rollback returns to."""

    active: str
    upstreams: dict[str, str]
    previous: str | None = None

    def other(self) -> str:
        """The standby colour."""
        return COLOURS[1 - COLOURS.index(self.active)]


# -- pure planning (tested on its own, tests/integration/smoke/test_bluegreen.py) --------------
def plan_promote(state: State, upstream: str, smoke_passed: bool) -> State:
    """The state after starting a release on the standby colour at ``upstream`` and smoke-testing it."""
    if not UPSTREAM.match(upstream):
        raise SwitchError(f"--upstream {upstream!r} is not host:port; give the standby API server's address")
    if upstream == state.upstreams.get(state.active):
        raise SwitchError(f"--upstream {upstream} is the active colour's address; start the new version elsewhere")
    target = state.other()
    upstreams = {**state.upstreams, target: upstream}
    if not smoke_passed:
        # Traffic stays, but the standby colour now runs the failed release: whatever it held
        # before (the rollback target) is gone, so a rollback must not send traffic there.
        return State(state.active, upstreams, previous=None)
    return State(target, upstreams, previous=state.active)


def plan_rollback(state: State) -> State:
    """The state after returning traffic to the previous colour."""
    if state.previous is None:
        raise SwitchError("nothing to roll back to: no promotion since init (or already rolled back)")
    return State(state.previous, state.upstreams, previous=None)


def plan_finish(state: State) -> State:
    """The state once the previous colour is stopped: nothing left to roll back to by a switch."""
    return State(state.active, {state.active: state.upstreams[state.active]}, previous=None)


def upstream_conf(state: State) -> str:
    """nginx's upstream block for the active colour (the only file a switch rewrites)."""
    return (
        f"# written by deploy/bluegreen/switch.py: active colour {state.active}\n"
        f"upstream guardian_active {{\n    server {state.upstreams[state.active]};\n    keepalive 16;\n}}\n"
        f"map $host $guardian_colour {{\n    default {state.active};\n}}\n"
    )


def nginx_conf(state_dir: Path, listen: str) -> str:
    """A whole nginx.conf for a proxy run by an unprivileged user under ``state_dir`` (local, CI)."""
    site = (HERE / "nginx" / "guardian.conf.template").read_text(encoding="utf-8")
    site = site.replace("${PROXY_LISTEN}", listen).replace("${PROXY_CONF_DIR}", str(state_dir))
    return (
        "worker_processes 1;\n"
        f"pid {state_dir}/nginx.pid;\n"
        f"error_log {state_dir}/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {state_dir}/access.log;\n"
        f"    client_body_temp_path {state_dir}/tmp/body;\n"
        f"    proxy_temp_path {state_dir}/tmp/proxy;\n"
        f"    fastcgi_temp_path {state_dir}/tmp/fastcgi;\n"
        f"    uwsgi_temp_path {state_dir}/tmp/uwsgi;\n"
        f"    scgi_temp_path {state_dir}/tmp/scgi;\n" + "".join(f"    {line}\n" for line in site.splitlines()) + "}\n"
    )


# -- I/O ------------------------------------------------------------------------------------
def _state_file(state_dir: Path) -> Path:
    return state_dir / "bluegreen.json"


def load(state_dir: Path) -> State:
    """The recorded state (SwitchError when init never ran)."""
    path = _state_file(state_dir)
    if not path.exists():
        raise SwitchError(f"{path} does not exist; run `switch.py --state {state_dir} init` first")
    data = json.loads(path.read_text(encoding="utf-8"))
    return State(data["active"], dict(data["upstreams"]), data.get("previous"))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # nginx never reads a half-written file


def _run(command: str, *, env: dict[str, str] | None = None, what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        shlex.split(command), env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SwitchError(f"{what} failed (exit {result.returncode}): {detail[-1] if detail else command}")
    return result


def apply(state_dir: Path, state: State, reload_cmd: str, test_cmd: str | None) -> None:
    """Write the upstream for ``state``, check the configuration, reload, then record the state.

    The old upstream file is kept until nginx accepted the new one: a refused configuration leaves
    the running proxy and the recorded state untouched.
    """
    conf = state_dir / "upstream.conf"
    before = conf.read_text(encoding="utf-8") if conf.exists() else None
    _write_atomic(conf, upstream_conf(state))
    try:
        if test_cmd:
            _run(test_cmd, what="nginx -t")
        _run(reload_cmd, what="nginx reload")
    except SwitchError:
        if before is not None:
            _write_atomic(conf, before)
        raise
    _write_atomic(_state_file(state_dir), json.dumps(asdict(state), indent=2) + "\n")


def wait_answers(url: str, timeout: float) -> None:
    """Wait until ``url`` answers 200 (the standby's health endpoint)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    raise SwitchError(f"{url} did not answer 200 within {timeout:.0f} s ({last}); read the new colour's log")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state", type=Path, required=True, help="state folder: bluegreen.json, upstream.conf")
    parser.add_argument("--reload", default=None, help="reload command (default: nginx -s reload on the local conf)")
    parser.add_argument("--test", default=None, help="config test command (default: nginx -t on the local conf)")
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="record the first colour and write the proxy configuration")
    init.add_argument("--color", choices=COLOURS, default="blue")
    init.add_argument("--upstream", required=True, help="host:port of the running API server")
    init.add_argument("--listen", default=None, help="write a standalone nginx.conf listening here (local, CI)")
    promote = sub.add_parser("promote", help="smoke-test the standby colour, then send traffic to it")
    promote.add_argument("--upstream", required=True, help="host:port of the new version's API server")
    promote.add_argument(
        "--smoke",
        default="",
        help="smoke command against the standby ({url} is replaced by its URL, also exported as "
        "GUARDIAN_MONITORING__AIRFLOW_API_URL); '' skips",
    )
    promote.add_argument("--probe", default=None, help="URL the standby answers on from here (default http://UPSTREAM)")
    promote.add_argument("--health-path", default="/api/v2/monitor/health")
    promote.add_argument("--timeout", type=float, default=180, help="seconds to wait for the standby to answer")
    sub.add_parser("rollback", help="send traffic back to the previous colour")
    sub.add_parser("finish", help="record that the previous colour is stopped (no rollback by switch after this)")
    sub.add_parser("status", help="print the recorded state as JSON")
    args = parser.parse_args(argv)

    state_dir: Path = args.state
    local_conf = state_dir / "nginx.conf"
    # -e: nginx opens its error log before reading the configuration; an unprivileged user cannot
    # write the packaged default (/var/log/nginx).
    local_nginx = f"nginx -e {state_dir / 'error.log'} -c {local_conf}"
    reload_cmd = args.reload or f"{local_nginx} -s reload"
    test_cmd = args.test if args.test is not None else f"{local_nginx} -t -q"
    try:
        if args.command == "init":
            if not UPSTREAM.match(args.upstream):
                raise SwitchError(f"--upstream {args.upstream!r} is not host:port")
            state_dir.mkdir(parents=True, exist_ok=True)
            for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (state_dir / "tmp" / name).mkdir(parents=True, exist_ok=True)
            state = State(args.color, {args.color: args.upstream})
            _write_atomic(state_dir / "upstream.conf", upstream_conf(state))
            if args.listen:
                _write_atomic(local_conf, nginx_conf(state_dir, args.listen))
            _write_atomic(_state_file(state_dir), json.dumps(asdict(state), indent=2) + "\n")
            print(json.dumps(asdict(state)))
        elif args.command == "promote":
            state = load(state_dir)
            plan_promote(state, args.upstream, smoke_passed=False)  # validates the input before any I/O
            url = (args.probe or f"http://{args.upstream}").rstrip("/")
            wait_answers(f"{url}{args.health_path}", args.timeout)
            passed = True
            if args.smoke:
                env = {**os.environ, "GUARDIAN_MONITORING__AIRFLOW_API_URL": url}
                smoke = subprocess.run(shlex.split(args.smoke.replace("{url}", url)), env=env, check=False)
                passed = smoke.returncode == 0
            new = plan_promote(state, args.upstream, smoke_passed=passed)
            if not passed:
                _write_atomic(_state_file(state_dir), json.dumps(asdict(new), indent=2) + "\n")
                raise SwitchError(
                    f"smoke tests failed on {state.other()} ({args.upstream}); traffic stays on {state.active}"
                )
            apply(state_dir, new, reload_cmd, test_cmd)
            print(json.dumps(asdict(new)))
        elif args.command == "rollback":
            new = plan_rollback(load(state_dir))
            apply(state_dir, new, reload_cmd, test_cmd)
            print(json.dumps(asdict(new)))
        elif args.command == "finish":
            new = plan_finish(load(state_dir))
            _write_atomic(_state_file(state_dir), json.dumps(asdict(new), indent=2) + "\n")
            print(json.dumps(asdict(new)))
        else:
            print(json.dumps(asdict(load(state_dir))))
    except SwitchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
