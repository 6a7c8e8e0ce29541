"""Append-only, hash-chained audit log.

Every row stores the SHA-256 of its canonical JSON, which includes the previous row's hash,
so editing, deleting or reordering a row breaks the chain from that row on and
:func:`verify` names it. Writers serialise on the chain head (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent Celery workers never fork it. The
database refuses UPDATE and DELETE on the table (triggers, see migration 0001).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection

from guardian.store import Store, get_store
from guardian.store.schema import audit_log

GENESIS = "0" * 64
_CHAIN_LOCK_KEY = 0x61756469  # "audi": any constant shared by every guardian process

_AIRFLOW_CONTEXT_VARS = {
    "dag_id": "AIRFLOW_CTX_DAG_ID",
    "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
    "task_id": "AIRFLOW_CTX_TASK_ID",
    "try_number": "AIRFLOW_CTX_TRY_NUMBER",
}


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log."""

    seq: int
    ts: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    outcome: str
    context: dict[str, Any]
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (used by exports and the web UI)."""
        return {
            "seq": self.seq,
            "ts": _ts_text(self.ts),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
            "outcome": self.outcome,
            "context": self.context,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyReport:
    """Result of walking the chain: ok, or the first bad row and why."""

    ok: bool
    rows: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _ts_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    return str(value)


def _ts_text(ts: datetime) -> str:
    # SQLite hands back naive datetimes; every ts is written in UTC.
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _normalise(value: Any) -> Any:
    # What is hashed must be exactly what the JSON column gives back.
    return None if value is None else json.loads(canonical_json(value))


def row_hash(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    before: Any,
    after: Any,
    outcome: str,
    context: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 of a row's canonical JSON (the previous row's hash included)."""
    body = {
        "seq": seq,
        "ts": _ts_text(ts),
        "actor": actor,
        "action": action,
        "target": target,
        "before": before,
        "after": after,
        "outcome": outcome,
        "context": dict(context),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def current_context() -> dict[str, Any]:
    """Who is acting: the Airflow task (dag/run/task/try) inside Airflow, else the OS user."""
    ctx: dict[str, Any] = {}
    for key, var in _AIRFLOW_CONTEXT_VARS.items():
        if os.environ.get(var):
            ctx[key] = os.environ[var]
    if ctx:
        ctx["runtime"] = "airflow"
    else:
        ctx["runtime"] = "cli"
        try:
            ctx["os_user"] = getpass.getuser()
        except (KeyError, OSError):
            ctx["os_user"] = str(os.getuid())
    ctx["host"] = socket.gethostname()
    ctx["pid"] = os.getpid()
    return ctx


def default_actor() -> str:
    """``airflow:<dag_id>`` inside a task, ``cli:<os user>`` elsewhere."""
    ctx = current_context()
    if ctx["runtime"] == "airflow":
        return f"airflow:{ctx.get('dag_id', 'unknown')}"
    return f"cli:{ctx['os_user']}"


def record(
    action: str,
    target: str,
    *,
    actor: str | None = None,
    before: Any = None,
    after: Any = None,
    outcome: str = "ok",
    context: Mapping[str, Any] | None = None,
    store: Store | None = None,
) -> AuditEvent:
    """Append one event to the chain and return it (committed when this returns)."""
    store = store or get_store()
    merged = current_context()
    if context:
        merged.update(context)
    with store.write() as conn:
        return append(
            conn,
            actor=actor or default_actor(),
            action=action,
            target=target,
            before=before,
            after=after,
            outcome=outcome,
            context=merged,
        )


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str,
    before: Any,
    after: Any,
    outcome: str,
    context: Mapping[str, Any],
) -> AuditEvent:
    """Append inside the caller's transaction, so an action and its audit row commit together.

    The caller's transaction must come from ``Store.write()``.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK_KEY})
    head = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq = (head.seq + 1) if head else 1
    prev_hash = head.hash if head else GENESIS
    ts = datetime.now(UTC)
    values = {
        "seq": seq,
        "ts": ts,
        "actor": actor,
        "action": action,
        "target": target,
        "before": _normalise(before),
        "after": _normalise(after),
        "outcome": outcome,
        "context": _normalise(dict(context)),
        "prev_hash": prev_hash,
    }
    digest = row_hash(**values)
    conn.execute(insert(audit_log).values(**values, hash=digest))
    return AuditEvent(**values, hash=digest)


def _row_to_event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        before=row.before,
        after=row.after,
        outcome=row.outcome,
        context=row.context,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def iter_events(
    store: Store | None = None,
    *,
    since: datetime | None = None,
    target: str | None = None,
    action_prefix: str | None = None,
    newest_first: bool = False,
    limit: int | None = None,
    batch: int = 1000,
) -> Iterator[AuditEvent]:
    """Stream events in chain order (or newest first), filtered."""
    store = store or get_store()
    query = select(audit_log)
    if since is not None:
        query = query.where(audit_log.c.ts >= since)
    if target is not None:
        query = query.where(audit_log.c.target == target)
    if action_prefix is not None:
        query = query.where(audit_log.c.action.startswith(action_prefix))
    query = query.order_by(audit_log.c.seq.desc() if newest_first else audit_log.c.seq)
    if limit is not None:
        query = query.limit(limit)
    with store.read() as conn:
        result = conn.execution_options(yield_per=batch).execute(query)
        for row in result:
            yield _row_to_event(row)


def count(store: Store | None = None) -> int:
    """Number of rows in the log."""
    store = store or get_store()
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def verify(store: Store | None = None, *, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk the chain from the first row; report the first edited, deleted or reordered row.

    ``progress`` is called with the number of rows checked so far, every 1,000 rows.
    """
    expected_seq = 1
    prev = GENESIS
    rows = 0
    for event in iter_events(store):
        rows += 1
        if progress is not None and rows % 1000 == 0:
            progress(rows)
        if event.seq != expected_seq:
            return VerifyReport(
                False,
                rows,
                expected_seq,
                f"row {expected_seq} is missing (deleted?): next row present is {event.seq}",
                prev,
            )
        if event.prev_hash != prev:
            return VerifyReport(
                False,
                rows,
                event.seq,
                f"row {event.seq} does not follow row {event.seq - 1} (prev_hash differs: reordered, "
                "or the previous row was replaced)",
                prev,
            )
        recomputed = row_hash(
            seq=event.seq,
            ts=event.ts,
            actor=event.actor,
            action=event.action,
            target=event.target,
            before=event.before,
            after=event.after,
            outcome=event.outcome,
            context=event.context,
            prev_hash=event.prev_hash,
        )
        if recomputed != event.hash:
            return VerifyReport(
                False,
                rows,
                event.seq,
                f"row {event.seq} was edited (its content no longer matches its hash)",
                prev,
            )
        prev = event.hash
        expected_seq += 1
    return VerifyReport(True, rows, head_hash=prev)


def export(since: date, to_uri: str, *, store: Store | None = None) -> tuple[str, int]:
    """Write events from ``since`` (UTC midnight) as JSON Lines to a storage URI, write-once.

    A URI ending in ``/`` is a folder: the file is named after the range. Returns the object
    URI and the number of events.
    """
    from guardian import storage

    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    if to_uri.endswith("/"):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        to_uri = f"{to_uri}audit-{since.isoformat()}-to-{stamp}.jsonl"
    import tempfile
    from pathlib import Path

    # Streamed to a temporary file so a long log never sits in memory, then put once.
    with tempfile.TemporaryDirectory(prefix="guardian-audit-") as tmp:
        path = Path(tmp) / "export.jsonl"
        written = 0
        with path.open("w", encoding="utf-8") as handle:
            for event in iter_events(store, since=start):
                handle.write(canonical_json(event.as_dict()) + "\n")
                written += 1
        storage.put_once_uri(to_uri, path)
    return to_uri, written
