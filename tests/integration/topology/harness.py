"""Drive the local topology (deploy/localrun.py) from tests and benchmarks: start it isolated
(own state folder, databases, ports, Redis database), talk to its REST API, stop it."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[3]
PROBE_DAGS = Path(__file__).resolve().parent / "dags"
PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def localrun() -> ModuleType:
    """deploy/localrun.py as a module (it is a script, not part of the package)."""
    if "guardian_localrun" in sys.modules:
        return sys.modules["guardian_localrun"]
    spec = importlib.util.spec_from_file_location("guardian_localrun", REPO / "deploy" / "localrun.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["guardian_localrun"] = module
    spec.loader.exec_module(module)
    return module


def _admin_execute(*statements: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@dataclass
class Api:
    """A small client of the Airflow 3 REST API (v2) with the simple auth manager's token."""

    base: str
    password: str
    _token: str | None = None

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = requests.post(
                f"{self.base}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str, **params: Any) -> Any:
        """GET /api/v2/<path>, JSON body."""
        response = requests.get(f"{self.base}/api/v2/{path}", headers=self._headers(), params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def get_all(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list endpoint (the API caps a page at 100 items)."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.get(path, limit=100, offset=len(items), **params)[key]
            items += page
            if len(page) < 100:
                return items

    def wait_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Wait until the DAG processor has parsed dag_id; unpause it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = requests.get(f"{self.base}/api/v2/dags/{dag_id}", headers=self._headers(), timeout=30)
            if response.status_code == 200:
                requests.patch(
                    f"{self.base}/api/v2/dags/{dag_id}",
                    headers=self._headers(),
                    json={"is_paused": False},
                    timeout=30,
                ).raise_for_status()
                data: dict[str, Any] = response.json()
                return data
            time.sleep(2)
        errors = self.get("importErrors")
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout}s; import errors: {json.dumps(errors)[:2000]}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run now; return its run id."""
        response = requests.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns",
            headers=self._headers(),
            json={"logical_date": None, "conf": conf or {}},
            timeout=30,
        )
        response.raise_for_status()
        run_id: str = response.json()["dag_run_id"]
        return run_id

    def clear(self, dag_id: str, run_id: str, task_ids: list[str]) -> None:
        """Clear task instances of a run (whatever their state): the scheduler runs them again now."""
        response = requests.post(
            f"{self.base}/api/v2/dags/{dag_id}/clearTaskInstances",
            headers=self._headers(),
            json={"dry_run": False, "dag_run_id": run_id, "task_ids": task_ids, "only_failed": False},
            timeout=30,
        )
        response.raise_for_status()

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The DAG run."""
        data: dict[str, Any] = self.get(f"dags/{dag_id}/dagRuns/{run_id}")
        return data

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run finishes; return its final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state: str = self.run(dag_id, run_id)["state"]
            if state in {"success", "failed"}:
                return state
            time.sleep(1)
        raise TimeoutError(f"run {dag_id}/{run_id} not finished after {timeout}s: {self.task_states(dag_id, run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Task instances of a run."""
        data: list[dict[str, Any]] = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=500)[
            "task_instances"
        ]
        return data

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """task_id (with map index) -> state."""
        return {
            f"{ti['task_id']}[{ti['map_index']}]" if ti["map_index"] >= 0 else ti["task_id"]: ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task instance, with hostname and state."""
        data: list[dict[str, Any]] = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")[
            "task_instances"
        ]
        return data


@dataclass
class Running:
    """A started local topology."""

    cfg: Any
    api: Api
    module: ModuleType

    def stop(self) -> list[str]:
        """Stop every process of the topology."""
        stopped: list[str] = self.module.stop(self.cfg)
        return stopped

    def pid(self, name: str) -> int | None:
        """The pid of one process, None when it does not run."""
        pid: int | None = self.module.read_pid(self.cfg, name)
        return pid


def link_dags(target: Path, *, with_probe: bool = True) -> Path:
    """A DAGs folder with every repository DAG (symlinked) and the probe DAG."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "dags").glob("*.py")):
        (target / source.name).symlink_to(source)
    if with_probe:
        for source in sorted(PROBE_DAGS.glob("*.py")):
            (target / source.name).symlink_to(source)
    return target


@contextmanager
def local_topology(
    tmp: Path,
    *,
    workers: int = 2,
    worker_concurrency: int = 2,
    extra_env: dict[str, str] | None = None,
    dags_folder: Path | None = None,
    redis_db: int = 14,
    start_timeout: float = 300,
) -> Iterator[Running]:
    """Start an isolated local topology under tmp (own databases, ports, Redis db); stop and drop it."""
    import redis

    from guardian.sandbox.serve import free_port

    module = localrun()
    suffix = uuid.uuid4().hex[:8]
    redis_url = f"redis://127.0.0.1:6379/{redis_db}"
    cfg = module.Config(
        instance=f"it{suffix}",
        state_dir=tmp / "state",
        logs_dir=tmp / "logs",
        airflow_db=f"airflow_it_{suffix}",
        guardian_db=f"guardian_it_{suffix}",
        redis_url=redis_url,
        port=free_port(),
        scheduler_health_port=free_port(),
        flower_port=free_port(),
        workers=workers,
        worker_concurrency=worker_concurrency,
        dags_folder=dags_folder or link_dags(tmp / "dags"),
        extra_env={
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # A crashed worker's task is noticed within ~20 s instead of the 5 min default.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            **(extra_env or {}),
        },
    )
    try:
        began = time.monotonic()
        module.start(cfg, timeout=start_timeout, grace=20)
        print(f"local topology started (init + every service healthy) in {time.monotonic() - began:.1f} s")
        password = json.loads(cfg.passwords_file.read_text())["admin"]
        yield Running(cfg, Api(cfg.ui_url, password), module)
    finally:
        module.stop(cfg, grace=20)
        # Only this topology's queue: another may share the Redis database (CI beside a developer).
        client = redis.Redis.from_url(redis_url)
        client.delete(cfg.queue, f"_kombu.binding.{cfg.queue}")
        _admin_execute(
            f'DROP DATABASE IF EXISTS "{cfg.airflow_db}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{cfg.guardian_db}" WITH (FORCE)',
        )


@contextmanager
def probe_database() -> Iterator[str]:
    """A PostgreSQL database with the probe DAG's tables; yields its libpq DSN."""
    name = f"probe_{uuid.uuid4().hex[:8]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    from sqlalchemy import create_engine, text

    engine = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE probe_attempts (id serial PRIMARY KEY, run_id text NOT NULL, try_number int NOT NULL,"
                " worker text NOT NULL, pid int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE probe_effects (run_id text PRIMARY KEY, worker text NOT NULL,"
                " at timestamptz NOT NULL DEFAULT now())"
            )
        )
    engine.dispose()
    try:
        yield f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
