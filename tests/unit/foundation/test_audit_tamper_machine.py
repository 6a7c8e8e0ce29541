"""The keyed, anchored audit chain against an owner who can rewrite the table (SQLite: drop the triggers).

Invariant: ``audit.verify`` passes exactly when no row at or before the newest anchor was
removed or changed and every row since keying carries its true MAC; a cut of rows written
after the newest anchor is the one rewrite it cannot see (the docs say so).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from guardian import audit
from guardian.settings import load_settings

KEY = "audit-key-" + "0123456789abcdef" * 3


def _owner(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return conn


def _rehash(conn: sqlite3.Connection, first: int) -> None:
    import json
    from datetime import datetime

    prev = audit.GENESIS
    for seq, ts, actor, action, target, before, after, outcome, context, digest in conn.execute(
        "SELECT seq, ts, actor, action, target, before, after, outcome, context, hash FROM audit_log ORDER BY seq"
    ).fetchall():
        if seq < first:
            prev = digest
            continue
        new = audit.row_hash(
            seq=seq,
            ts=datetime.fromisoformat(ts),
            actor=actor,
            action=action,
            target=target,
            before=json.loads(before) if before else None,
            after=json.loads(after) if after else None,
            outcome=outcome,
            context=json.loads(context),
            prev_hash=prev,
        )
        conn.execute("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, new, seq))
        prev = new


class OwnerAttack(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0  # rows in the table
        self.anchored = 0  # seq of the newest anchor
        self.forged: set[int] = set()  # rows whose MAC no longer matches (edited or re-hashed)
        self.anchor_broken = False  # a row at or before the newest anchor was cut or changed

    @property
    def tampered(self) -> bool:
        return self.anchor_broken or bool(self.forged)

    @property
    def db(self) -> Path:
        return load_settings().data_dir / "guardian.db"

    @rule(k=st.integers(1, 3))
    def honest_writes(self, k: int) -> None:
        for _ in range(k):
            audit.record("looker.trash", f"looker:dashboard:{self.n}")
            self.n += 1

    @precondition(lambda self: self.n > 0 and not self.tampered)
    @rule()
    def health_check_anchors(self) -> None:
        audit.anchor(load_settings())
        self.anchored = self.n

    @precondition(lambda self: self.n > 0)
    @rule(data=st.data())
    def owner_edits_and_rehashes(self, data: st.DataObject) -> None:
        seq = data.draw(st.integers(1, self.n))
        conn = _owner(self.db)
        conn.execute("UPDATE audit_log SET actor = 'web:mallory' WHERE seq = ?", (seq,))
        _rehash(conn, seq)
        conn.close()
        # Re-hashing changes every hash from `seq` on, so none of those MACs match any more.
        self.forged |= set(range(seq, self.n + 1))
        self.anchor_broken |= seq <= self.anchored

    @precondition(lambda self: self.n > 0)
    @rule(data=st.data())
    def owner_cuts_the_tail(self, data: st.DataObject) -> None:
        k = data.draw(st.integers(1, self.n))
        conn = _owner(self.db)
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (self.n - k,))
        conn.close()
        self.n -= k
        self.anchor_broken |= self.n < self.anchored
        self.forged = {s for s in self.forged if s <= self.n}

    @precondition(lambda self: self.n > 0)
    @rule()
    def owner_appends_an_unkeyed_row(self) -> None:
        conn = _owner(self.db)
        conn.execute(
            "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, context, prev_hash, hash, mac) "
            "SELECT seq + 1, ts, 'web:mallory', action, target, outcome, context, hash, "
            "'forged-' || seq, NULL FROM audit_log ORDER BY seq DESC LIMIT 1"
        )
        conn.close()
        fix = _owner(self.db)
        _rehash(fix, self.n + 1)
        fix.close()
        self.n += 1
        self.forged.add(self.n)

    @invariant()
    def verify_sees_exactly_the_visible_tampering(self) -> None:
        report = audit.verify()
        assert report.ok is (not self.tampered), report.reason


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_KEY", KEY)
    monkeypatch.setenv("GUARDIAN_AUDIT__HMAC_KEY_REF", "env:AUDIT_KEY")


def test_verify_catches_the_owner(keyed: None) -> None:
    class Fresh(OwnerAttack):
        def __init__(self) -> None:
            # One migrated store for all examples; the owner empties it (and the anchors) each time.
            audit.count()
            conn = _owner(self.db)
            conn.execute("DELETE FROM audit_log")
            conn.close()
            shutil.rmtree(load_settings().data_dir / "storage" / audit.ANCHOR_PREFIX, ignore_errors=True)
            super().__init__()

    Fresh.TestCase.settings = settings(
        max_examples=15,
        stateful_step_count=10,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    Fresh.TestCase().runTest()
