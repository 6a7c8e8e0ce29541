"""Production's airflow-init, run for real: the metadata database migrated with the FAB auth manager's
tables, the Guardian store upgraded, and the `admin` user created with the Admin role and the
generated password; run again (every `up -d`), it keeps that user as it is."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.postgres, pytest.mark.airflow, pytest.mark.slow]


@pytest.fixture
def store_url(pg_url: str) -> Iterator[str]:
    """A second fresh database (the Guardian store), beside pg_url (the metadata database)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"guardian_s_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_production_init_creates_the_fab_admin_once(pg_url: str, store_url: str, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text
    from werkzeug.security import check_password_hash

    prod = yaml.safe_load((REPO / "docker-compose.prod.yml").read_text())
    service = prod["services"]["airflow-init"]
    auth_manager = prod["x-airflow-common"]["environment"]["AIRFLOW__CORE__AUTH_MANAGER"]
    # The container's paths -> this checkout; Compose's $$ -> $.
    script = service["command"][-1].replace("$$", "$").replace("/opt/guardian/deploy/", f"{REPO}/deploy/")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    password = "s3cret:/@" + uuid.uuid4().hex[:6]
    (secrets / "admin_password").write_text(password + "\n")
    home = tmp_path / "airflow"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__AUTH_MANAGER": auth_manager,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW_SECRETS_DIR": str(secrets),
        "DOCKER_SECRETS_DIR": str(tmp_path / "none"),
        "GUARDIAN_STORE__URL": store_url,
        "GUARDIAN_DATA_DIR": str(tmp_path / "data"),
    }
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=False, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "airflow-init: databases ready" in out.stdout
    # The next `up -d` runs it again: the user step must accept an existing admin (the migrations
    # are Airflow's and Alembic's own no-ops, not run twice here to spare a minute of the suite).
    (create,) = [step.strip() for step in script.split("&&") if "airflow users create" in step]
    again = subprocess.run(["bash", "-c", create], env=env, capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "already exist" in again.stdout + again.stderr
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            users = conn.execute(
                text(
                    "SELECT u.username, u.password, r.name FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id"
                    " JOIN ab_role r ON r.id = ur.role_id"
                )
            ).all()
    finally:
        engine.dispose()
    assert [(u, role) for u, _, role in users] == [("admin", "Admin")]
    assert check_password_hash(users[0][1], password)
    store = create_engine(store_url)
    try:
        with store.connect() as conn:
            tables = {row[0] for row in conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))}
    finally:
        store.dispose()
    assert "audit_log" in tables or any(t.startswith("audit") for t in tables), sorted(tables)
