"""Shared fixtures: an isolated guardian environment per test, real PostgreSQL and Redis,
fake-gcs-server, and an Airflow home with a migrated metadata database.

Airflow reads its configuration when first imported, so the AIRFLOW_* variables are set
here, before any test module imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# One Airflow home per virtualenv: the Airflow 3 and 2.11 metadata schemas differ.
AIRFLOW_HOME = REPO / ".airflow" / f"test-{Path(sys.prefix).name.lstrip('.')}"
PG_ADMIN_URL = os.environ.get("GUARDIAN_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("GUARDIAN_TEST_REDIS", "redis://127.0.0.1:6379/15")

AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
_airflow_env = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__FERNET_KEY": "",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_HOME / "logs"),
    "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "False",
    "AIRFLOW__OPENLINEAGE__DISABLED": "True",
}
for _key, _value in _airflow_env.items():
    os.environ[_key] = _value
# A developer's own GUARDIAN_* variables must never leak into tests.
for _key in [k for k in os.environ if k.startswith("GUARDIAN_") and not k.startswith("GUARDIAN_TEST_")]:
    del os.environ[_key]
for _key in [k for k in os.environ if k.startswith("LOOKERSDK_")]:
    del os.environ[_key]


@pytest.fixture(autouse=True)
def guardian_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data dir (SQLite store, local storage, DuckDB) and cwd."""
    from guardian.store import reset_stores

    data_dir = tmp_path / "guardian-data"
    monkeypatch.setenv("GUARDIAN_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    _clear_task_context()
    reset_stores()
    yield data_dir
    reset_stores()
    # dag.test() runs tasks in this process and leaves Airflow's task context variables set;
    # a later test would then look as if it ran inside a task.
    _clear_task_context()


def _clear_task_context() -> None:
    for key in [k for k in os.environ if k.startswith("AIRFLOW_CTX_")]:
        del os.environ[key]


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", future=True)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"guardian_t_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from guardian.store import reset_stores

        reset_stores()
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def pg_env(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the guardian's store at a fresh PostgreSQL database."""
    monkeypatch.setenv("GUARDIAN_STORE__URL", pg_url)
    return pg_url


@pytest.fixture
def redis_client():  # type: ignore[no-untyped-def]
    """The real Redis, database 15, flushed before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[object]:
    """A fake-gcs-server for the session (in memory)."""
    from guardian.sandbox import fakegcs

    server = fakegcs.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated Airflow metadata database (SQLite) in the test AIRFLOW_HOME."""
    marker = AIRFLOW_HOME / ".migrated"
    version = subprocess.run(
        [sys.executable, "-c", "import airflow; print(airflow.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not marker.exists() or marker.read_text() != version:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        marker.write_text(version)
    return AIRFLOW_HOME
