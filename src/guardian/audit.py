"""Append-only, hash-chained, keyed audit log.

Every row stores the SHA-256 of its canonical JSON, which includes the previous row's hash,
so editing, deleting or reordering a row breaks the chain from that row on and
:func:`verify` names it. Writers serialise on the chain head (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent Celery workers never fork it. The
database refuses UPDATE and DELETE on the table (triggers, see migration 0001).

A plain hash chain can be recomputed by anyone who can write the table. So, when
``GUARDIAN_AUDIT__HMAC_KEY_REF`` is set, every row also carries ``mac``, an HMAC-SHA256 of
its hash under a key that lives outside the database: whoever rewrites rows and re-hashes the
rest cannot make their MACs. And :func:`anchor` writes the chain head, MAC'd, to write-once
object storage: a cut tail (the newest rows deleted) leaves a chain that is valid on its own,
and only the anchor shows that rows are missing. :func:`verify` checks all three.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection

from guardian.errors import SafetyGateTripped
from guardian.store import Store, get_store
from guardian.store.schema import audit_log

if TYPE_CHECKING:
    from guardian.settings import Settings

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
    mac: str | None = None

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
            "mac": self.mac,
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
    keyed: bool = False
    anchor_seq: int | None = None


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
    key = _conn_key(conn)
    mac = row_mac(key, digest) if key else None
    conn.execute(insert(audit_log).values(**values, hash=digest, mac=mac))
    return AuditEvent(**values, hash=digest, mac=mac)


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
        mac=row.mac,
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


def row_mac(key: bytes, digest: str) -> str:
    """HMAC-SHA256 of a row's hash under the audit key."""
    return hmac.new(key, digest.encode("ascii"), hashlib.sha256).hexdigest()


def _conn_key(conn: Connection) -> bytes | None:
    store = conn.info.get("guardian.store")
    return store.audit_key() if store is not None else None


def verify(
    store: Store | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    settings: Settings | None = None,
    anchors: bool = True,
) -> VerifyReport:
    """Walk the chain from the first row; report the first edited, deleted, reordered or forged row.

    With an audit key, every row written since the key was set must carry a matching MAC;
    with anchors (write-once storage), the newest anchor's row must still be there, unchanged.
    ``progress`` is called with the number of rows checked so far, every 1,000 rows.
    """
    if settings is None:
        from guardian.settings import load_settings

        settings = load_settings()
        # Anchors belong to the configured store: another store (a test's, a restore being
        # checked) is verified on its own chain and MACs.
        anchors = anchors and (store is None or store is get_store(settings))
    store = store or get_store(settings)
    key = store.audit_key()
    head = newest_anchor(settings, key) if anchors else None
    expected_seq = 1
    prev = GENESIS
    rows = 0
    keyed_from: int | None = None
    anchored_hash: str | None = None
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
        if key is not None:
            if event.mac is not None:
                if not hmac.compare_digest(event.mac, row_mac(key, event.hash)):
                    return VerifyReport(
                        False,
                        rows,
                        event.seq,
                        f"row {event.seq} is forged: its MAC does not match (rewritten and re-hashed "
                        "by someone without the audit key)",
                        prev,
                    )
                keyed_from = keyed_from or event.seq
            elif keyed_from is not None or (head is not None and event.seq > head["seq"]):
                return VerifyReport(
                    False,
                    rows,
                    event.seq,
                    f"row {event.seq} has no MAC although earlier rows are keyed: "
                    "written or rewritten without the audit key",
                    prev,
                )
        if head is not None and event.seq == head["seq"]:
            anchored_hash = event.hash
        prev = event.hash
        expected_seq += 1
    if head is not None:
        if rows < head["seq"]:
            return VerifyReport(
                False,
                rows,
                rows + 1,
                f"the newest rows were cut: the anchor of {head['ts']} saw row {head['seq']}, "
                f"the log ends at row {rows}",
                prev,
                anchor_seq=head["seq"],
            )
        if anchored_hash != head["hash"]:
            return VerifyReport(
                False,
                rows,
                head["seq"],
                f"row {head['seq']} differs from the anchor of {head['ts']}: the chain up to it was rewritten",
                prev,
                anchor_seq=head["seq"],
            )
    return VerifyReport(True, rows, head_hash=prev, keyed=key is not None, anchor_seq=head["seq"] if head else None)


ANCHOR_PREFIX = "audit-anchors"


def _anchor_storage(settings: Settings) -> Any:
    from guardian import storage

    root = settings.audit.anchor_root or f"{settings.storage_root}/{ANCHOR_PREFIX}"
    return storage.open_storage(root, settings)


def anchor(settings: Settings, store: Store | None = None, *, check: bool = True) -> dict[str, Any] | None:
    """Write the chain head to write-once storage (GCS ``if_generation_match=0``); None when the log is empty.

    The anchor names the newest row's seq and hash, and carries an HMAC under the audit key
    so a planted anchor is refused. Called by every health check and by ``guardian audit anchor``.
    A chain that fails verification is never anchored (that would bless the damage);
    ``check=False`` is for a caller that has just verified.
    """
    store = store or get_store(settings)
    if check:
        report = verify(store, settings=settings)
        if not report.ok:
            raise SafetyGateTripped(
                f"audit chain fails verification ({report.reason}); not anchoring it: investigate first "
                "(docs/operations.md, audit log)"
            )
    with store.read() as conn:
        head = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    if head is None:
        return None
    now = datetime.now(UTC)
    body: dict[str, Any] = {"seq": int(head.seq), "hash": str(head.hash), "ts": _ts_text(now)}
    key = store.audit_key()
    if key is not None:
        body["mac"] = row_mac(key, canonical_json({k: body[k] for k in ("seq", "hash", "ts")}))
    name = f"{int(head.seq):012d}-{now.strftime('%Y%m%dT%H%M%S%fZ')}.json"
    _anchor_storage(settings).put_once(name, canonical_json(body).encode())
    return body


def newest_anchor(settings: Settings, key: bytes | None) -> dict[str, Any] | None:
    """The anchor with the highest seq whose MAC checks (any anchor when no key is set)."""
    storage = _anchor_storage(settings)
    try:
        names = sorted(n for n in storage.list("") if n.endswith(".json"))
    except Exception:  # no anchors written yet (the folder does not exist)
        return None
    for name in reversed(names):
        try:
            body = json.loads(storage.get(name))
        except (ValueError, OSError):
            continue
        if key is not None:
            expected = row_mac(key, canonical_json({k: body.get(k) for k in ("seq", "hash", "ts")}))
            if not hmac.compare_digest(str(body.get("mac", "")), expected):
                continue  # planted or damaged: not ours
        return dict(body)
    return None


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
