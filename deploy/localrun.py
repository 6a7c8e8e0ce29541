"""The Airflow Guardian topology as local processes (what `./start_airflow.sh --local` runs).

Reads deploy/topology.yaml, the same description the Compose files are checked against, and runs
the `local` topology: CeleryExecutor with N workers on the machine's PostgreSQL and Redis, the API
server, scheduler, DAG processor and triggerer. The processes run under supervisord (PyPI
`supervisor`): restarted when they die (with backoff when they die at start), stopped as whole
process groups, logging under logs/local/. This file only adds what is ours: which programs,
their environment, generated secrets and the init job. All state (Airflow home, secrets, the
supervisord configuration and socket, Guardian data) lives in one state folder (default var/local,
gitignored).

Usage: python deploy/localrun.py [--state-dir DIR] [--logs-dir DIR] [--port N] [--workers N]
       {start,stop,status,logs,restart,env}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY_FILE = REPO / "deploy" / "topology.yaml"
VENV_BIN = Path(sys.executable).parent
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def load_topology(path: Path = TOPOLOGY_FILE) -> dict[str, Any]:
    """The shared topology description (deploy/topology.yaml)."""
    import yaml

    with path.open() as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def local_services(topology: Mapping[str, Any], *, include_optional: bool = False) -> dict[str, dict[str, Any]]:
    """Long-running services of the local topology, in start order."""
    out = {}
    for name, spec in topology["services"].items():
        if "local" not in spec["topologies"] or spec.get("oneshot"):
            continue
        if spec.get("optional") and not include_optional:
            continue
        out[name] = spec
    return out


def env_keys(topology: Mapping[str, Any], executor: str, auth: str = "simple") -> list[str]:
    """The environment keys every Airflow component gets under an executor and auth manager."""
    keys = list(topology["env"]["airflow"])
    if executor == "CeleryExecutor":
        keys += topology["env"]["celery"]
    if auth == "simple":
        keys += topology["env"]["simple-auth"]
    return keys


@dataclass
class Config:
    """Where and how the local topology runs; every field has a working default."""

    state_dir: Path = REPO / "var" / "local"
    logs_dir: Path = REPO / "logs"
    pg_admin: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    airflow_db: str = "airflow_local"
    guardian_db: str = "guardian_local"
    redis_url: str = "redis://127.0.0.1:6379/1"
    # Several topologies may share one Redis database (tests, CI, a developer's): each has its own
    # Celery queue and worker names, so none runs another's tasks.
    instance: str = "local"
    port: int = 8080
    scheduler_health_port: int = 8974
    flower_port: int = 5555
    workers: int = 2
    worker_concurrency: int = 2
    parallelism: int = 16
    dags_folder: Path = REPO / "dags"
    with_flower: bool = False
    sandboxes: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME of every local component."""
        return self.state_dir / "airflow"

    @property
    def run_dir(self) -> Path:
        """Pid files."""
        return self.state_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        """Generated secrets (mode 0700)."""
        return self.state_dir / "secrets"

    @property
    def secrets_file(self) -> Path:
        """Fernet key, JWT secret and API secret key, generated on first start."""
        return self.secrets_dir / "airflow-secrets.env"

    @property
    def passwords_file(self) -> Path:
        """The simple auth manager's users and passwords (JSON), generated on first start."""
        return self.secrets_dir / "simple_auth_manager_passwords.json"

    @property
    def queue(self) -> str:
        """The Celery queue of this topology (tasks are sent to it, its workers read only it)."""
        return f"guardian-{self.instance}"

    def worker_name(self, i: int) -> str:
        """Celery node name of worker i (before the @host part)."""
        return f"worker{i}-{self.instance}"

    @property
    def admin_password_file(self) -> Path:
        """The admin password alone (what GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF points at)."""
        return self.secrets_dir / "admin_password"

    @property
    def ui_url(self) -> str:
        """Address of the Airflow UI and REST API."""
        return f"http://127.0.0.1:{self.port}"

    def pg_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """A URL of a database on the local PostgreSQL server."""
        from sqlalchemy.engine import make_url

        url = make_url(self.pg_admin).set(drivername=driver, database=database)
        return url.render_as_string(hide_password=False)


# ---------------------------------------------------------------------------------------------
# State: secrets, databases, environment


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def ensure_secrets(cfg: Config) -> dict[str, str]:
    """Generate the Fernet key, JWT secret, API secret and admin password when absent; return them."""
    cfg.secrets_dir.mkdir(parents=True, exist_ok=True)
    cfg.secrets_dir.chmod(0o700)
    generated = []
    values = _read_env_file(cfg.secrets_file) if cfg.secrets_file.exists() else {}
    if not values.get("FERNET_KEY"):
        from cryptography.fernet import Fernet

        values["FERNET_KEY"] = Fernet.generate_key().decode()
        generated.append("Fernet key")
    for key in ("JWT_SECRET", "API_SECRET_KEY"):
        if not values.get(key):
            values[key] = secrets.token_urlsafe(48)
            generated.append(key.lower().replace("_", " "))
    if generated:
        _write_private(
            cfg.secrets_file,
            "# Generated by start_airflow.sh; keep private. Rotation: docs/runbooks/rotate-credential.md\n"
            + "".join(f"{k}={v}\n" for k, v in values.items()),
        )
    passwords = json.loads(cfg.passwords_file.read_text()) if cfg.passwords_file.exists() else {}
    if "admin" not in passwords:
        passwords["admin"] = secrets.token_urlsafe(18)
        _write_private(cfg.passwords_file, json.dumps(passwords) + "\n")
        generated.append("admin password")
    # The same password as a bare file, for file: references (the health DAG's REST API login).
    if not cfg.admin_password_file.exists() or cfg.admin_password_file.read_text().strip() != passwords["admin"]:
        _write_private(cfg.admin_password_file, passwords["admin"] + "\n")
    if generated:
        print(f"generated {', '.join(generated)} in {cfg.secrets_dir}")
    return values


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def ensure_databases(cfg: Config) -> None:
    """Create the Airflow metadata and Guardian store databases on the local PostgreSQL if absent."""
    from sqlalchemy import create_engine, text

    engine = create_engine(cfg.pg_admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            existing = {row[0] for row in conn.execute(text("SELECT datname FROM pg_database"))}
            for name in (cfg.airflow_db, cfg.guardian_db):
                if name not in existing:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                    print(f"created PostgreSQL database {name}")
    finally:
        engine.dispose()


def environment(cfg: Config, topology: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The environment of every local Airflow component: exactly the topology's keys, plus extras."""
    topology = topology or load_topology()
    values = ensure_secrets(cfg)
    executor = topology["topologies"]["local"]["executor"]
    airflow_url = cfg.pg_url(cfg.airflow_db)
    guardian_url = cfg.pg_url(cfg.guardian_db)
    env = {
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism),
        "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": values["FERNET_KEY"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.ui_url}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(cfg.passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
        "AIRFLOW__API__SECRET_KEY": values["API_SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": values["JWT_SECRET"],
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(cfg.logs_dir / "airflow"),
        # Local runs read connections from env vars and the metadata DB; prod uses Secret Manager.
        "AIRFLOW__SECRETS__BACKEND": "",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": "",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(cfg.logs_dir / "openlineage.jsonl")}
        ),
        "GUARDIAN_ENVIRONMENT": "dev",
        "GUARDIAN_DATA_DIR": str(cfg.state_dir / "guardian-data"),
        "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + cfg.pg_url(cfg.airflow_db, "postgresql"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
    }
    env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] = cfg.queue
    missing = set(env_keys(topology, executor, topology["topologies"]["local"]["auth"])) - set(env)
    if missing:  # the shared description grew a key this runner does not set yet
        raise SystemExit(f"deploy/localrun.py does not set {sorted(missing)} named in deploy/topology.yaml")
    env.update(
        {
            "AIRFLOW_HOME": str(cfg.airflow_home),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(cfg.scheduler_health_port),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(cfg.port),
            "AIRFLOW__API__BASE_URL": cfg.ui_url,
            # One API worker process: two cores are shared by everything here.
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CELERY__FLOWER_PORT": str(cfg.flower_port),
            "AIRFLOW__CELERY__FLOWER_HOST": "127.0.0.1",
            # The Guardian store: one setting for tasks, the CLI and the UI.
            "GUARDIAN_STORE__URL": guardian_url,
            # guardian_health reads run history through the REST API, as in production.
            "GUARDIAN_MONITORING__AIRFLOW_API_URL": cfg.ui_url,
            "GUARDIAN_MONITORING__AIRFLOW_USERNAME": "admin",
            "GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF": f"file:{cfg.admin_password_file}",
            "GUARDIAN_NOTIFY__UI_BASE_URL": cfg.ui_url,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if cfg.sandboxes:
        env.update(sandbox_env(topology))
    env.update(cfg.extra_env)
    return env


def sandbox_env(topology: Mapping[str, Any]) -> dict[str, str]:
    """Point the connections and settings at the local Looker and Sheets sandboxes (public test credentials)."""
    ports = topology["ports"]
    looker = {
        "conn_type": "http",
        "host": f"http://127.0.0.1:{ports['looker-sandbox']}",
        "login": "sandbox-id",
        "password": "sandbox-secret",
        "extra": {"verify_ssl": "false"},
    }
    return {
        "AIRFLOW_CONN_LOOKER_DEFAULT": json.dumps(looker),
        # The same sandbox for the guardian CLI outside Airflow (`guardian looker ...`, doctor).
        "LOOKERSDK_BASE_URL": looker["host"],
        "LOOKERSDK_CLIENT_ID": "sandbox-id",
        "LOOKERSDK_CLIENT_SECRET": "sandbox-secret",
        "LOOKERSDK_VERIFY_SSL": "false",
        # The demo instance's policy (as in scripts/demo/10_looker.sh): its plan trashes 5 of 18
        # dashboards, above the default circuit breaker, which would refuse it.
        "GUARDIAN_LOOKER__MAX_FRACTION": "0.5",
        "GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS": "Shared/Finance",
        "GUARDIAN_SHEETS__SPREADSHEET_ID": "demo-control-sheet",
        "GUARDIAN_SHEETS__API_ENDPOINT": f"http://127.0.0.1:{ports['sheets-sandbox']}/",
    }


def write_env_script(cfg: Config, env: Mapping[str, str]) -> Path:
    """var/local/env.sh: `source` it to point the airflow and guardian CLIs at this topology."""
    path = cfg.state_dir / "env.sh"
    lines = ["# Generated by start_airflow.sh: `source var/local/env.sh` to use the local topology's CLIs."]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k != "PATH"]
    lines.append(f'export PATH={shlex.quote(str(VENV_BIN))}:"$PATH"')
    _write_private(path, "\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Proc:
    """One local process of the topology (a service replica)."""

    name: str
    argv: list[str]
    env_overrides: dict[str, str]
    health: dict[str, Any] | None


def processes(cfg: Config, topology: Mapping[str, Any] | None = None) -> list[Proc]:
    """Every process the local topology runs, in start order."""
    topology = topology or load_topology()
    airflow = str(VENV_BIN / "airflow")
    procs: list[Proc] = []
    if cfg.sandboxes:
        guardian = str(VENV_BIN / "guardian")
        for name, kind in (("looker-sandbox", "looker"), ("sheets-sandbox", "sheets")):
            port = str(topology["ports"][name])
            health = dict(topology["infra"][name]["health"])
            procs.append(Proc(name, [guardian, "sandbox", kind, "--port", port], {}, health))
    for name, spec in local_services(topology, include_optional=cfg.with_flower).items():
        if name == "guardian-web":
            continue  # started by its own service's command when it exists; see docs/deployment.md
        argv = [airflow, *spec["command"]]
        if name == "airflow-apiserver":
            argv = [airflow, "api-server", "--port", str(cfg.port), "--host", "127.0.0.1"]
        if name == "airflow-worker":
            for i in range(1, cfg.workers + 1):
                procs.append(
                    Proc(
                        f"airflow-worker-{i}",
                        [
                            *argv,
                            "--celery-hostname",
                            f"{cfg.worker_name(i)}@%h",
                            "--queues",
                            cfg.queue,
                            "--concurrency",
                            str(cfg.worker_concurrency),
                            "--skip-serve-logs",
                            "--without-mingle",
                            "--without-gossip",
                        ],
                        {"LOCAL_WORKER_NAME": f"worker{i}"},
                        spec.get("health"),
                    )
                )
            continue
        procs.append(Proc(name, argv, {}, spec.get("health")))
    return procs


def log_file(cfg: Config, name: str) -> Path:
    """The stdout/stderr log of one process (written by supervisord, rotated at 50 MB)."""
    return cfg.logs_dir / "local" / f"{name}.log"


def alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


# ---------------------------------------------------------------------------------------------
# supervisord: the processes, their restarts, logs and group kills. Ours is only what is specific to
# the guardian: which programs (deploy/topology.yaml), their environment and secrets (above).

# Linux prctl(2) option: orphans of a program (a SIGKILLed worker's task processes, the scheduler's
# health-check server) are re-parented to supervisord instead of init, so the orphan reaper and
# `stop` still find them.
PR_SET_CHILD_SUBREAPER = 36
# Programs start in this order and supervisord stops them in reverse: workers first (they finish or
# hand back their tasks), the API server last (every other component talks to it).
PRIORITY = {"sandbox": 10, "airflow-apiserver": 100, "airflow-worker": 300}


def supervisor_conf(cfg: Config) -> Path:
    """The generated supervisord configuration of this topology."""
    return cfg.run_dir / "supervisord.conf"


def socket_path(cfg: Config) -> Path:
    """supervisord's control socket (mode 0700: only this user drives the topology)."""
    return cfg.run_dir / "supervisor.sock"


def saved_config(cfg: Config) -> Path:
    """The options the running topology was started with (status, stop and logs read them)."""
    return cfg.run_dir / "topology.json"


def _ini(value: str) -> str:
    # supervisord expands %(name)s in its configuration: a literal % is written %%.
    return value.replace("%", "%%")


def write_supervisor_conf(
    cfg: Config,
    topology: Mapping[str, Any] | None = None,
    grace: float = 30.0,
    *,
    procs: list[Proc] | None = None,
    startsecs: int = 5,
) -> Path:
    """Write supervisord.conf: one program per process of the topology (or `procs`), plus the
    orphan reaper. A program counts as started after `startsecs` seconds up."""
    sock = socket_path(cfg)
    if len(str(sock)) > 100:  # AF_UNIX path limit (108 bytes on Linux)
        raise SystemExit(f"state folder path too long for a control socket: {sock}; use a shorter --state-dir")
    logs = cfg.logs_dir / "local"
    lines = [
        "; Generated by start_airflow.sh (deploy/localrun.py) from deploy/topology.yaml; do not edit.",
        "[unix_http_server]",
        f"file={_ini(str(sock))}",
        "chmod=0700",
        "[supervisord]",
        f"logfile={_ini(str(logs / 'supervisord.log'))}",
        "logfile_maxbytes=10MB",
        f"pidfile={_ini(str(cfg.run_dir / 'supervisord.pid'))}",
        f"childlogdir={_ini(str(logs))}",
        "nodaemon=true",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{_ini(str(sock))}",
        # Kills what a dead program left behind before it is started again (deploy/reap_orphans.py).
        "[eventlistener:reap-orphans]",
        f"command={_ini(shlex.join([str(VENV_BIN / 'python'), str(REPO / 'deploy' / 'reap_orphans.py')]))}",
        "events=PROCESS_STATE_EXITED,PROCESS_STATE_STOPPED",
        "priority=1",
        "autorestart=true",
        f"stderr_logfile={_ini(str(logs / 'reap-orphans.log'))}",
        "stdout_logfile=NONE",  # a listener's stdout is the event protocol
    ]
    for proc in procs if procs is not None else processes(cfg, topology):
        kind = "sandbox" if proc.name.endswith("-sandbox") else proc.name.rstrip("-0123456789")
        lines += [
            f"[program:{proc.name}]",
            f"command={_ini(shlex.join(proc.argv))}",
            f"directory={_ini(str(cfg.state_dir))}",
            f"priority={PRIORITY.get(kind, 200)}",
            "autostart=true",
            # Restarted whenever it exits; a program that dies within startsecs is retried with a
            # growing delay (1 s, 2 s, ...) and marked FATAL after startretries attempts.
            "autorestart=true",
            f"startsecs={startsecs}",
            "startretries=5",
            # stop: SIGTERM to the program's whole process group, SIGKILL after the grace period.
            "stopsignal=TERM",
            f"stopwaitsecs={int(grace)}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_ini(str(log_file(cfg, proc.name)))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=3",
        ]
        if proc.env_overrides:
            pairs = ",".join(f'{k}="{_ini(v)}"' for k, v in proc.env_overrides.items())
            lines.append(f"environment={pairs}")
    path = supervisor_conf(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, "\n".join(lines) + "\n")
    return path


def rpc(cfg: Config) -> Any:
    """supervisord's XML-RPC interface over the topology's control socket."""
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket_path(cfg)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def supervisor_pid(cfg: Config) -> int | None:
    """supervisord's pid when it runs and answers, else None."""
    try:
        pid = int(rpc(cfg).supervisor.getPID())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def process_info(cfg: Config) -> dict[str, dict[str, Any]]:
    """supervisord's view of every program: name -> {statename, pid, ...}; empty when it is down."""
    try:
        infos = rpc(cfg).supervisor.getAllProcessInfo()
    except OSError:
        return {}
    return {info["name"]: info for info in infos if info["name"] != "reap-orphans"}


def read_pid(cfg: Config, name: str) -> int | None:
    """The pid of a running program, or None."""
    info = process_info(cfg).get(name)
    if not info or info["statename"] not in {"RUNNING", "STARTING"} or not info["pid"]:
        return None
    pid = int(info["pid"])
    return pid if alive(pid) else None


def stop_process(cfg: Config, name: str, grace: float | None = None) -> bool:
    """Stop one program (its whole process group) and keep it stopped; False if it was not running.
    `grace` is accepted for callers of the earlier launcher: supervisord's stopwaitsecs, set by
    `start`, is the grace period."""
    import xmlrpc.client

    try:
        return bool(rpc(cfg).supervisor.stopProcess(name, True))
    except xmlrpc.client.Fault as fault:  # NOT_RUNNING
        if "NOT_RUNNING" in fault.faultString:
            return False
        raise


def start_process(cfg: Config, name: str) -> int:
    """Start one stopped program again; return its pid."""
    rpc(cfg).supervisor.startProcess(name, True)
    pid = read_pid(cfg, name)
    if pid is None:
        raise SystemExit(f"{name} did not start; see {log_file(cfg, name)}")
    return pid


def spawn(cfg: Config, proc: Proc, env: Mapping[str, str] | None = None) -> int:
    """Start one program of the running topology again (the earlier launcher's name for it); the
    environment is supervisord's, fixed at `start`."""
    return start_process(cfg, proc.name)


def descendants(pid: int) -> list[Any]:
    """Every live descendant of pid (psutil processes)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _subreaper() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def start_supervisor(cfg: Config, env: Mapping[str, str], timeout: float = 60.0) -> int:
    """Start supervisord (in the foreground of its own session) with the topology's environment."""
    conf = supervisor_conf(cfg)
    out = log_file(cfg, "supervisord-console")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("ab") as fh:
        child = subprocess.Popen(
            [str(VENV_BIN / "supervisord"), "-c", str(conf)],
            env=dict(env),
            cwd=cfg.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_subreaper,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"supervisord exited ({child.returncode}); see {out}")
        if supervisor_pid(cfg) == child.pid:
            return child.pid
        time.sleep(0.2)
    raise SystemExit(f"supervisord did not answer on {socket_path(cfg)} within {timeout:.0f}s; see {out}")


def http_ok(url: str, timeout: float = 10.0) -> tuple[bool, str]:
    """GET url; healthy on 2xx. Returns (ok, short body or error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300, resp.read(2000).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return False, str(exc)


def health_url(cfg: Config, topology: Mapping[str, Any], health: Mapping[str, Any]) -> str:
    """The local URL of an http health check."""
    ports = {"api-server": cfg.port, "scheduler-health": cfg.scheduler_health_port, "flower": cfg.flower_port}
    port = ports.get(health["port"], topology["ports"][health["port"]])
    return f"http://127.0.0.1:{port}{health['http']}"


def component_health(cfg: Config, topology: Mapping[str, Any]) -> dict[str, str]:
    """Health of each service: http probes, and the API server's monitor for job-based services."""
    result: dict[str, str] = {}
    ok, body = http_ok(f"{cfg.ui_url}/api/v2/monitor/health")
    monitor: dict[str, Any] = {}
    if ok:
        try:
            monitor = json.loads(body)
        except ValueError:
            monitor = {}
    infos = process_info(cfg)
    for proc in processes(cfg, topology):
        info = infos.get(proc.name)
        if info is None or info["statename"] != "RUNNING" or not alive(int(info["pid"])):
            # stopped, starting, backoff (restarting after a crash), exited or fatal (gave up)
            state = info["statename"].lower() if info else "stopped"
            result[proc.name] = "starting" if state == "running" else state
            continue
        health = proc.health or {}
        if "http" in health:
            good, _ = http_ok(health_url(cfg, topology, health))
            result[proc.name] = "healthy" if good else "starting"
        elif "monitor" in health:
            status = (monitor.get(health["monitor"]) or {}).get("status")
            result[proc.name] = "healthy" if status == "healthy" else "starting"
        else:
            result[proc.name] = "running"
    return result


def worker_ping(env: Mapping[str, str], timeout: float = 5.0, instance: str | None = None) -> list[str]:
    """Names of Celery workers that answer a ping through the broker (of one topology when named)."""
    code = (
        "import json;from airflow.providers.celery.executors.celery_executor import app;"
        f"r=app.control.ping(timeout={timeout});print(json.dumps(sorted(k for d in r for k in d)))"
    )
    out = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], env=dict(env), capture_output=True, text=True, timeout=120
    )
    try:
        names: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return []
    return [n for n in names if instance is None or n.split("@")[0].endswith(f"-{instance}")]


def wait_healthy(cfg: Config, topology: Mapping[str, Any], timeout: float) -> dict[str, str]:
    """Poll until every service is healthy or running (workers) or the timeout passes."""
    deadline = time.monotonic() + timeout
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        health = component_health(cfg, topology)
        if all(state in {"healthy", "running"} for state in health.values()):
            return health
        if any(state in {"stopped", "fatal"} for state in health.values()):
            return health
        time.sleep(2)
    return health


def run_init(cfg: Config, env: Mapping[str, str]) -> None:
    """The init job: databases, `airflow db migrate` (a no-op when current), Guardian store upgrade."""
    ensure_databases(cfg)
    log = log_file(cfg, "airflow-init")
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        [str(VENV_BIN / "guardian"), "db", "upgrade"],
        # The sales extract's BigQuery-waiting tasks run in this pool (docs/services/sales.md).
        [str(VENV_BIN / "airflow"), "pools", "set", "bigquery_sales", "2", "sales extract tasks waiting on BigQuery"],
    ]
    warehouse = Path(env["GUARDIAN_DATA_DIR"]) / "warehouse.duckdb"
    if cfg.sandboxes and not warehouse.exists():
        steps.append([str(VENV_BIN / "guardian"), "sales", "demo-data", "--rows", "50000"])
    for argv in steps:
        with log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
            out.flush()
            rc = subprocess.run(argv, env=dict(env), cwd=cfg.state_dir, stdout=out, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise SystemExit(f"init step `{shlex.join(argv[-3:])}` failed (exit {rc}); see {log}\n{tail}")


def save_config(cfg: Config) -> None:
    """Remember the options of a started topology, so status, stop and logs need no flags."""
    fields = {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()}
    _write_private(saved_config(cfg), json.dumps(fields, indent=1) + "\n")


def load_config(state_dir: Path) -> Config | None:
    """The options the topology in state_dir was started with, or None."""
    path = state_dir / "run" / "topology.json"
    if not path.exists():
        return None
    fields = json.loads(path.read_text())
    for key in ("state_dir", "logs_dir", "dags_folder"):
        fields[key] = Path(fields[key])
    return Config(**fields)


def start(cfg: Config, *, timeout: float = 300.0, grace: float = 30.0) -> dict[str, str]:
    """Init, then hand every process to supervisord; wait until healthy; print where things are."""
    topology = load_topology()
    for folder in (cfg.state_dir, cfg.run_dir, cfg.airflow_home, cfg.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    cfg.run_dir.chmod(0o700)
    env = environment(cfg, topology)
    write_env_script(cfg, env)
    if supervisor_pid(cfg) is not None:
        print("already running (stop first to change its options)")
    else:
        print("init: databases, airflow db migrate, guardian db upgrade ...", flush=True)
        run_init(cfg, env)
        write_supervisor_conf(cfg, topology, grace)
        save_config(cfg)
        pid = start_supervisor(cfg, env)
        print(f"supervisord (pid {pid}) runs {len(processes(cfg, topology))} programs; logs in {cfg.logs_dir}/local/")
    health = wait_healthy(cfg, topology, timeout)
    for name, state in health.items():
        print(f"  {name:24} {state}")
    bad = [n for n, s in health.items() if s not in {"healthy", "running"}]
    print(f"\nAirflow UI and API: {cfg.ui_url}  (user admin)")
    print(f"admin password:     {cfg.passwords_file}  (generated; JSON user -> password)")
    print(f"Fernet key etc.:    {cfg.secrets_file}")
    print(f"logs:               {cfg.logs_dir}/local/<service>.log, task logs in {cfg.logs_dir}/airflow")
    print(f"CLIs against it:    source {cfg.state_dir / 'env.sh'}")
    if bad:
        raise SystemExit(f"not healthy after {timeout:.0f}s: {', '.join(bad)}; see {cfg.logs_dir}/local/<service>.log")
    return health


def stop(cfg: Config, grace: float = 30.0) -> list[str]:
    """Stop every program (supervisord: workers first, API server last, whole process groups), then
    supervisord; finally kill anything of the topology that escaped its group (a task process in a
    session of its own). Returns the names of the programs that were running."""
    pid = supervisor_pid(cfg)
    if pid is None:
        print("nothing was running")
        return []
    running = [name for name, info in process_info(cfg).items() if info["statename"] in {"RUNNING", "STARTING"}]
    family = descendants(pid)
    with contextlib.suppress(OSError):
        rpc(cfg).supervisor.shutdown()
    # supervisord waits up to stopwaitsecs per program, then SIGKILLs the group.
    deadline = time.monotonic() + grace + 30
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    family += descendants(pid)
    import psutil

    stragglers = []
    for proc in family:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
                stragglers.append(proc)
    psutil.wait_procs(stragglers, timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    socket_path(cfg).unlink(missing_ok=True)
    for name in running:
        print(f"stopped {name}", flush=True)
    if stragglers:
        print(f"killed {len(stragglers)} process(es) left behind by the programs")
    return running


def status(cfg: Config, *, ping_workers: bool = True) -> dict[str, str]:
    """Print and return the state of each process."""
    topology = load_topology()
    health = component_health(cfg, topology)
    names: list[str] = []
    if ping_workers and any("worker" in n and s == "running" for n, s in health.items()):
        names = worker_ping(environment(cfg, topology), instance=cfg.instance)
        for name in health:
            if name.startswith("airflow-worker-") and health[name] == "running":
                short = cfg.worker_name(int(name.rsplit("-", 1)[1])) + "@"
                health[name] = "healthy" if any(n.startswith(short) for n in names) else "not answering"
    infos = process_info(cfg)
    for name, state in health.items():
        info = infos.get(name) or {}
        pid = info.get("pid") if info.get("statename") == "RUNNING" else None
        print(f"{name:24} {state:14} {'pid ' + str(pid) if pid else ''}")
    if any(s != "stopped" for s in health.values()):
        print(f"UI: {cfg.ui_url}  (admin password in {cfg.passwords_file})")
    return health


def logs(cfg: Config, service: str | None, lines: int, follow: bool) -> None:
    """Show the last lines of one service's log, or of all."""
    files = sorted((cfg.logs_dir / "local").glob(f"{service or '*'}*.log"))
    if not files:
        raise SystemExit(f"no logs for {service or 'any service'} in {cfg.logs_dir / 'local'}")
    argv = ["tail", f"-n{lines}", *(["-F"] if follow else []), *map(str, files)]
    os.execvp("tail", argv)


def main(argv: list[str] | None = None) -> int:
    """Command line of the local topology."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=Config.state_dir)
    parser.add_argument("--logs-dir", type=Path, default=None, help="default: logs/ (or as started)")
    parser.add_argument("--port", type=int, default=None, help="API server port (default 8080, or as started)")
    parser.add_argument("--workers", type=int, default=None, help="Celery workers (default 2, or as started)")
    parser.add_argument("--flower", action="store_true", default=None, help="also run Celery Flower on :5555")
    parser.add_argument(
        "--sandboxes",
        action="store_true",
        default=None,
        help="also run the Looker and Sheets sandboxes and point the DAGs at them",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health on start")
    parser.add_argument("command", choices=["start", "stop", "status", "logs", "restart", "env"])
    parser.add_argument("service", nargs="?", help="logs: one service (e.g. airflow-scheduler)")
    parser.add_argument("-n", "--lines", type=int, default=50)
    parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    # Whatever options `start` was given, status, stop, logs and restart act on what it started.
    cfg = load_config(state_dir) or Config(
        state_dir=state_dir,
        port=int(os.environ.get("AIRFLOW_LOCAL_PORT", "8080")),
        workers=int(os.environ.get("AIRFLOW_LOCAL_WORKERS", "2")),
    )
    wanted = {
        "logs_dir": args.logs_dir.resolve() if args.logs_dir else None,
        "port": args.port,
        "workers": args.workers,
        "with_flower": args.flower,
        "sandboxes": args.sandboxes,
    }
    changes = {k: v for k, v in wanted.items() if v is not None}
    if args.command == "start":
        # A fresh start takes the defaults and the flags given; a running topology stays as it is.
        fresh = Config(
            state_dir=state_dir,
            port=int(os.environ.get("AIRFLOW_LOCAL_PORT", "8080")),
            workers=int(os.environ.get("AIRFLOW_LOCAL_WORKERS", "2")),
        )
        start(cfg if supervisor_pid(cfg) else Config(**{**fresh.__dict__, **changes}), timeout=args.timeout)
    elif args.command == "stop":
        stop(cfg)
    elif args.command == "restart":
        stop(cfg)
        start(Config(**{**cfg.__dict__, **changes}), timeout=args.timeout)
    elif args.command == "status":
        health = status(cfg)
        return 0 if health and all(s == "healthy" or s == "running" for s in health.values()) else 3
    elif args.command == "logs":
        logs(cfg, args.service, args.lines, args.follow)
    elif args.command == "env":
        print(write_env_script(cfg, environment(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
