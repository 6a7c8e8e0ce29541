"""The one store setting on real PostgreSQL: URL-encoded user names, awkward passwords, sslmode."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from guardian.errors import ConfigError
from guardian.settings import load_settings
from guardian.store import get_store

pytestmark = pytest.mark.postgres


def test_encoded_user_awkward_password_and_sslmode(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    role = f"g app@{uuid.uuid4().hex[:6]}"
    url = make_url(pg_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT", future=True)
    password = "p@ss:w/rd#%?&= ü"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password.replace(chr(39), '')}'"))
        conn.execute(text(f'GRANT ALL ON SCHEMA public TO "{role}"'))
    try:
        store_url = f"postgresql+psycopg2://{quote(role, safe='')}@{url.host}:{url.port}/{url.database}?sslmode=disable"
        monkeypatch.setenv("GUARDIAN_STORE__URL", store_url)
        monkeypatch.setenv("STORE_PW", password)
        monkeypatch.setenv("GUARDIAN_STORE__PASSWORD_REF", "env:STORE_PW")
        store = get_store(load_settings())
        # The password survives the URL round trip exactly (SQLAlchemy encodes it), and is never shown.
        assert make_url(store.url.render_as_string(hide_password=False)).password == password
        assert password not in store.display_url
        with store.read() as conn:
            assert conn.execute(text("SELECT current_user")).scalar_one() == role
            assert conn.execute(text("SHOW ssl")).scalar_one() in {"on", "off"}
        store.dispose()
    finally:
        from guardian.store import reset_stores

        reset_stores()
        admin.dispose()
        cleanup = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", future=True)
        with cleanup.connect() as conn:
            # The role owns objects in the test database: that goes first.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        cleanup.dispose()


def test_a_bad_sslmode_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_STORE__URL", "postgresql+psycopg2://app@db/guardian?sslmode=yes-please")
    with pytest.raises(ConfigError, match=r"GUARDIAN_STORE__URL.*sslmode='yes-please'"):
        load_settings()
