"""The audit log against its own database owner, on real PostgreSQL.

The application connects as a role that may only INSERT and SELECT audit_log (migrations and
grants run as the owner role). The owner can do anything to the table: drop the triggers, cut
the newest rows, edit a row and re-hash every row after it. ``guardian audit verify`` must
fail each time and name what happened, because the owner has neither the HMAC key (outside
the database) nor write access to the anchors (write-once storage).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from guardian import audit
from guardian.settings import load_settings

pytestmark = pytest.mark.postgres
KEY = "k" * 16 + uuid.uuid4().hex  # 48 bytes


@pytest.fixture
def split_roles(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Owner and app roles on a fresh database; the guardian connects as the app role."""
    suffix = uuid.uuid4().hex[:8]
    owner, app = f"g_owner_{suffix}", f"g_app_{suffix}"
    url = make_url(pg_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", future=True)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {owner} LOGIN"))
        conn.execute(text(f"CREATE ROLE {app} LOGIN"))
        conn.execute(text(f'ALTER DATABASE "{url.database}" OWNER TO {owner}'))
    monkeypatch.setenv("GUARDIAN_STORE__URL", url.set(username=app).render_as_string(hide_password=False))
    monkeypatch.setenv("GUARDIAN_STORE__OWNER_USER", owner)
    monkeypatch.setenv("AUDIT_KEY", KEY)
    monkeypatch.setenv("GUARDIAN_AUDIT__HMAC_KEY_REF", "env:AUDIT_KEY")
    owner_engine = create_engine(url.set(username=owner), future=True)
    app_engine = create_engine(url.set(username=app), future=True)
    try:
        yield {"owner": owner_engine, "app": app_engine}
    finally:
        from guardian.store import reset_stores

        reset_stores()
        owner_engine.dispose()
        app_engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {app}"))
            conn.execute(text(f"DROP ROLE IF EXISTS {owner}"))
        admin.dispose()


def _history() -> None:
    settings = load_settings()
    for i in range(1, 7):
        audit.record("looker.trash", f"looker:dashboard:{i}", after={"n": i})
    assert audit.anchor(settings) is not None  # anchored at row 6
    audit.record("looker.trash", "looker:dashboard:7")
    assert audit.verify().ok


def _rehash_from(owner: Engine, first: int) -> None:
    """What an owner without the key can do: recompute the plain hash chain from row `first` on."""
    with owner.begin() as conn:
        rows = conn.execute(text("SELECT * FROM audit_log ORDER BY seq")).mappings().all()
        prev = audit.GENESIS
        for row in rows:
            if row["seq"] >= first:
                digest = audit.row_hash(
                    seq=row["seq"],
                    ts=row["ts"],
                    actor=row["actor"],
                    action=row["action"],
                    target=row["target"],
                    before=row["before"],
                    after=row["after"],
                    outcome=row["outcome"],
                    context=row["context"],
                    prev_hash=prev,
                )
                conn.execute(
                    text("UPDATE audit_log SET prev_hash = :p, hash = :h WHERE seq = :s"),
                    {"p": prev, "h": digest, "s": row["seq"]},
                )
                prev = digest
            else:
                prev = row["hash"]


def _drop_triggers(owner: Engine) -> None:
    with owner.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_update_delete ON audit_log"))
        conn.execute(text("DROP TRIGGER audit_log_no_truncate ON audit_log"))


def test_the_app_role_may_only_insert_and_select(split_roles: dict[str, Any]) -> None:
    _history()
    app = split_roles["app"]
    for statement in (
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq > 5",
        "TRUNCATE audit_log",
        "DROP TRIGGER audit_log_no_update_delete ON audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER ALL",
    ):
        with pytest.raises(DatabaseError, match=r"permission denied|must be owner"), app.begin() as conn:
            conn.execute(text(statement))
    # The app role still does its ordinary work on the other tables.
    with app.begin() as conn:
        conn.execute(text("DELETE FROM web_sessions"))
    assert audit.verify().ok


def test_owner_edits_a_row_and_rehashes_the_rest(split_roles: dict[str, Any]) -> None:
    _history()
    owner = split_roles["owner"]
    _drop_triggers(owner)
    with owner.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = 'looker:dashboard:99' WHERE seq = 3"))
    _rehash_from(owner, 3)
    result = CliRunner().invoke(_cli(), ["audit", "verify"])
    assert result.exit_code == 1
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 3 and "forged" in (report.reason or "")


def test_owner_cuts_the_tail(split_roles: dict[str, Any]) -> None:
    _history()
    owner = split_roles["owner"]
    _drop_triggers(owner)
    with owner.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 5"))
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 5
    assert "newest rows were cut" in (report.reason or "") and "row 6" in (report.reason or "")


def test_owner_replaces_the_tail_with_unkeyed_rows_and_plants_an_anchor(split_roles: dict[str, Any]) -> None:
    _history()
    owner = split_roles["owner"]
    _drop_triggers(owner)
    with owner.begin() as conn:
        conn.execute(text("UPDATE audit_log SET mac = NULL, actor = 'web:mallory' WHERE seq >= 4"))
    _rehash_from(owner, 4)
    # A planted anchor that matches the rewritten chain, without the key's MAC, is not believed.
    from guardian import storage

    settings = load_settings()
    with owner.connect() as conn:
        seq, digest = conn.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")).one()
    root = storage.open_storage(f"{settings.storage_root}/{audit.ANCHOR_PREFIX}", settings)
    root.put_once(f"{seq:012d}-99990101T000000000000Z.json", json.dumps({"seq": seq, "hash": digest}).encode())
    report = audit.verify()
    assert not report.ok and report.first_bad_seq == 4 and "no MAC" in (report.reason or "")


def _cli():  # type: ignore[no-untyped-def]
    from guardian.cli import app

    return app
