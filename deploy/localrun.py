"""The Airflow Guardian topology as local processes (what `./start_airflow.sh --local` runs).

Reads deploy/topology.yaml, the same description the Compose files are checked against, and runs
the `local` topology: CeleryExecutor with N workers on the machine's PostgreSQL and Redis, the API
server, scheduler, DAG processor and triggerer, each a process group with a pid file, logging
under logs/. All state (Airflow home, generated secrets, pid files, Guardian data) lives in one
state folder (default var/local, gitignored).

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOPOLOGY_FILE = REPO / "deploy" / "topology.yaml"
VENV_BIN = Path(sys.executable).parent


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


def env_keys(topology: Mapping[str, Any], executor: str) -> list[str]:
    """The environment keys every Airflow component gets under an executor."""
    keys = list(topology["env"]["airflow"])
    if executor == "CeleryExecutor":
        keys += topology["env"]["celery"]
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
    def sandboxes_marker(self) -> Path:
        """Present while the topology was started with --sandboxes (stop and status include them)."""
        return self.state_dir / "sandboxes"

    @property
    def queue(self) -> str:
        """The Celery queue of this topology (tasks are sent to it, its workers read only it)."""
        return f"guardian-{self.instance}"

    def worker_name(self, i: int) -> str:
        """Celery node name of worker i (before the @host part)."""
        return f"worker{i}-{self.instance}"

    @property
    def workers_file(self) -> Path:
        """How many workers the running topology was started with."""
        return self.state_dir / "workers"

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
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(cfg.passwords_file),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
        "AIRFLOW__API__SECRET_KEY": values["API_SECRET_KEY"],
        "AIRFLOW__API_AUTH__JWT_SECRET": values["JWT_SECRET"],
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
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
    missing = set(env_keys(topology, executor)) - set(env)
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
            # The Guardian store: the guardian_db connection for tasks, GUARDIAN_STORE__URL for the CLI.
            "AIRFLOW_CONN_GUARDIAN_DB": "postgres://" + guardian_url.split("://", 1)[1],
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


def pid_file(cfg: Config, name: str) -> Path:
    """The pid file of one process."""
    return cfg.run_dir / f"{name}.pid"


def log_file(cfg: Config, name: str) -> Path:
    """The stdout/stderr log of one process."""
    return cfg.logs_dir / "local" / f"{name}.log"


def read_pid(cfg: Config, name: str) -> int | None:
    """The pid of a running process, or None (stale pid files are ignored)."""
    path = pid_file(cfg, name)
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
    except ValueError:
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in {"Z", "X"}


def spawn(cfg: Config, proc: Proc, env: Mapping[str, str]) -> int:
    """Start one process in its own session (so stop can signal its whole group); write its pid file."""
    log = log_file(cfg, proc.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {shlex.join(proc.argv)}\n".encode())
        child = subprocess.Popen(
            proc.argv,
            env={**env, **proc.env_overrides},
            cwd=cfg.state_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file(cfg, proc.name).write_text(f"{child.pid}\n")
    return child.pid


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
    for proc in processes(cfg, topology):
        pid = read_pid(cfg, proc.name)
        if pid is None:
            result[proc.name] = "stopped"
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
        if any(state == "stopped" for state in health.values()):
            return health
        time.sleep(2)
    return health


def run_init(cfg: Config, env: Mapping[str, str]) -> None:
    """The init job: databases, `airflow db migrate` (a no-op when current), Guardian store upgrade."""
    ensure_databases(cfg)
    log = log_file(cfg, "airflow-init")
    log.parent.mkdir(parents=True, exist_ok=True)
    steps = [[str(VENV_BIN / "airflow"), "db", "migrate"], [str(VENV_BIN / "guardian"), "db", "upgrade"]]
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


def start(cfg: Config, *, timeout: float = 300.0, only: Iterable[str] | None = None) -> dict[str, str]:
    """Start every process not already running; wait until healthy; print where things are."""
    topology = load_topology()
    for folder in (cfg.state_dir, cfg.run_dir, cfg.airflow_home, cfg.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if cfg.sandboxes:
        cfg.sandboxes_marker.write_text("looker-sandbox sheets-sandbox\n")
    cfg.workers_file.write_text(f"{cfg.workers}\n")
    env = environment(cfg, topology)
    write_env_script(cfg, env)
    wanted = set(only) if only else None
    procs = [p for p in processes(cfg, topology) if wanted is None or p.name in wanted]
    if all(read_pid(cfg, p.name) for p in procs):
        print("already running")
    else:
        print("init: databases, airflow db migrate, guardian db upgrade ...", flush=True)
        run_init(cfg, env)
        # The API server first: every other component talks to it (execution API).
        for proc in procs:
            if read_pid(cfg, proc.name) is None:
                pid = spawn(cfg, proc, env)
                print(f"started {proc.name} (pid {pid}), log {log_file(cfg, proc.name)}", flush=True)
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


def stop_process(cfg: Config, name: str, grace: float = 30.0) -> bool:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; remove the pid file."""
    import psutil

    pid = read_pid(cfg, name)
    path = pid_file(cfg, name)
    if pid is None:
        path.unlink(missing_ok=True)
        return False
    # Task processes run in sessions of their own: remember every descendant before signalling.
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    for proc in family:  # stragglers after the grace period (stuck task runners, server workers)
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return True


def stop(cfg: Config, grace: float = 30.0) -> list[str]:
    """Stop every process, workers first (they finish or hand back tasks), the API server last."""
    # Every process that may run, whatever the options were: all sandboxes, flower, every worker pid file.
    started = len(list(cfg.run_dir.glob("airflow-worker-*.pid"))) if cfg.run_dir.exists() else 0
    everything = {"with_flower": True, "sandboxes": True, "workers": max(cfg.workers, started)}
    procs = processes(Config(**{**cfg.__dict__, **everything}))
    order = sorted(procs, key=lambda p: 0 if "worker" in p.name else 2 if "apiserver" in p.name else 1)
    stopped = []
    for proc in order:
        if stop_process(cfg, proc.name, grace):
            stopped.append(proc.name)
            print(f"stopped {proc.name}", flush=True)
    cfg.sandboxes_marker.unlink(missing_ok=True)
    cfg.workers_file.unlink(missing_ok=True)
    if not stopped:
        print("nothing was running")
    return stopped


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
    for name, state in health.items():
        pid = read_pid(cfg, name)
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
    parser.add_argument("--logs-dir", type=Path, default=Config.logs_dir)
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_LOCAL_PORT", "8080")))
    parser.add_argument("--workers", type=int, default=None, help="Celery workers (default: as last started, else 2)")
    parser.add_argument("--flower", action="store_true", help="also run Celery Flower on :5555")
    parser.add_argument(
        "--sandboxes", action="store_true", help="also run the Looker and Sheets sandboxes and point the DAGs at them"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health on start")
    parser.add_argument("command", choices=["start", "stop", "status", "logs", "restart", "env"])
    parser.add_argument("service", nargs="?", help="logs: one service (e.g. airflow-scheduler)")
    parser.add_argument("-n", "--lines", type=int, default=50)
    parser.add_argument("-f", "--follow", action="store_true")
    args = parser.parse_args(argv)
    cfg = Config(
        state_dir=args.state_dir.resolve(),
        logs_dir=args.logs_dir.resolve(),
        port=args.port,
        workers=2,
        with_flower=args.flower,
    )
    # A topology started with --sandboxes or --workers N keeps them for status, stop and restart.
    cfg.sandboxes = args.sandboxes or cfg.sandboxes_marker.exists()
    saved = cfg.workers_file.read_text().strip() if cfg.workers_file.exists() else ""
    cfg.workers = args.workers or int(saved or os.environ.get("AIRFLOW_LOCAL_WORKERS", "2"))
    if args.command == "start":
        start(cfg, timeout=args.timeout)
    elif args.command == "stop":
        stop(cfg)
    elif args.command == "restart":
        stop(cfg)
        start(cfg, timeout=args.timeout)
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
