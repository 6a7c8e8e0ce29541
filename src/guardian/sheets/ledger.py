"""The request ledger: one row per accepted sheet request, the source of truth for exactly-once.

A request's key is a digest of the spreadsheet, the tab, the validated target and conf, the
Run ID cell as read and a generation number (how many requests that base key already has); a
unique constraint on it and the sheet's lock mean one request per `run` typed, however many
polls (retried, overlapping, restarted) see the row. The Airflow run id is derived from the key,
so triggering it twice is refused by Airflow itself.

A request is found again on the sheet by its row's developer-metadata tag (``tagged`` once the
tag is seen on the row it came from); a poll that stopped between recording and tagging leaves
an untagged request that the next poll *claims* by its base key instead of recording a new one
(:func:`claimable`). Only requests whose status reached their row are handed to Airflow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    false,
    func,
    select,
    text,
    true,
    update,
)
from sqlalchemy.engine import Connection

from guardian.store import Store
from guardian.store.schema import Id, metadata

RUN_ID_PREFIX = "sheets__"

# Ledger statuses (what the guardian knows) and what the row shows for each.
ACCEPTED, TRIGGERED, COMPLETED, FAILED, SUPERSEDED = "accepted", "triggered", "completed", "failed", "superseded"
ROW_STATUS = {ACCEPTED: "queued", TRIGGERED: "running", COMPLETED: "completed", FAILED: "failed"}
OPEN = (ACCEPTED, TRIGGERED)
GONE = "gone"  # sheet_status of a request whose row was deleted: nothing left to write to

sheets_requests = Table(
    "sheets_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("request_key", String(64), nullable=False, unique=True),
    Column("request_id", String(32), nullable=False, unique=True),
    Column("base_key", String(64), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("spreadsheet_id", String(200), nullable=False),
    Column("tab", String(200), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("target_dag", String(250), nullable=False),
    Column("dag_run_id", String(250), nullable=False),
    Column("conf", JSON, nullable=False),
    Column("requested_by", String(320), nullable=True),
    Column("status", String(20), nullable=False),
    Column("message", String(2000), nullable=False),
    Column("rows", BigInteger, nullable=True),
    Column("output_uri", String(2000), nullable=True),
    Column("executed_run_id", String(250), nullable=True),
    Column("sheet_status", String(20), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("acked_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("notified_at", DateTime(timezone=True), nullable=True),
    Column("tagged", Boolean, nullable=False, server_default=false()),
    Column("fingerprint", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("handed_at", DateTime(timezone=True), nullable=True),
    Column("run_state", String(20), nullable=True),
    Column("last_error", String(2000), nullable=True),
    Index("ix_sheets_requests_base_key", "base_key"),
    Index("ix_sheets_requests_sheet_status", "spreadsheet_id", "status"),
    Index("ix_sheets_requests_requested_by", "requested_by", "created_at"),
)
"""Accepted requests from control sheets, with their lifecycle."""

sheets_poll_state = Table(
    "sheets_poll_state",
    metadata,
    Column("source", String(500), primary_key=True),
    Column("last_poll_at", DateTime(timezone=True), nullable=True),
    Column("last_outcome", String(20), nullable=True),
    Column("alert_open", Boolean, nullable=False),
    Column("alert_reason", String(2000), nullable=True),
    Column("alert_since", DateTime(timezone=True), nullable=True),
)
"""Per control range: the last poll and the open failure alert."""


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the store only ever writes UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def base_key(spreadsheet_id: str, tab: str, params_key: str, run_id_cell: str) -> str:
    """Digest of what makes two `run` rows the same request (before the generation)."""
    payload = json.dumps([spreadsheet_id, tab, params_key, run_id_cell.strip()], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def request_key(base: str, generation: int) -> str:
    """The unique key of one request."""
    return hashlib.sha256(f"{base}:{generation}".encode()).hexdigest()


def request_id_of(key: str) -> str:
    """The short request id shown to people and passed to the target as ``request_id``."""
    return key[:16]


def dag_run_id_of(request_id: str) -> str:
    """The deterministic Airflow run id of a request."""
    return f"{RUN_ID_PREFIX}{request_id}"


@dataclass(frozen=True)
class Request:
    """One ledger row."""

    request_id: str
    request_key: str
    base_key: str
    generation: int
    spreadsheet_id: str
    tab: str
    row_number: int
    target_dag: str
    dag_run_id: str
    conf: dict[str, Any]
    requested_by: str | None
    status: str
    message: str
    rows: int | None
    output_uri: str | None
    executed_run_id: str | None
    sheet_status: str | None
    created_at: datetime
    updated_at: datetime
    acked_at: datetime | None
    finished_at: datetime | None
    notified_at: datetime | None
    tagged: bool = False
    fingerprint: str | None = None
    attempts: int = 0
    handed_at: datetime | None = None
    run_state: str | None = None
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Request:
        """Build from a result row."""
        m = dict(row._mapping)
        m.pop("id", None)
        for name in ("created_at", "updated_at", "acked_at", "finished_at", "notified_at", "handed_at"):
            m[name] = _aware(m[name])
        return cls(**m)

    @property
    def row_status(self) -> str:
        """What the sheet row should show for this request (a triggered run Airflow still queues: queued)."""
        if self.status == TRIGGERED and self.run_state == "queued":
            return "queued"
        return ROW_STATUS.get(self.status, self.status)

    @property
    def is_open(self) -> bool:
        """Not finished: accepted or triggered."""
        return self.status in OPEN

    def trigger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one mapped TriggerDagRunOperator."""
        return {"trigger_dag_id": self.target_dag, "trigger_run_id": self.dag_run_id, "conf": dict(self.conf)}


def lock_sheet(conn: Connection, spreadsheet_id: str) -> None:
    """Serialise writers of one spreadsheet's ledger (PostgreSQL; SQLite's BEGIN IMMEDIATE already does)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"sheets:{spreadsheet_id}".encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def by_key(conn: Connection, key: str) -> Request | None:
    """The request with this key, if recorded."""
    row = conn.execute(select(sheets_requests).where(sheets_requests.c.request_key == key)).first()
    return Request.from_row(row) if row else None


def insert(
    conn: Connection,
    *,
    key: str,
    base: str,
    gen: int,
    spreadsheet_id: str,
    tab: str,
    row_number: int,
    target: str,
    conf: dict[str, Any],
    requested_by: str | None,
    at: datetime,
    fingerprint: str | None = None,
) -> Request:
    """Record a new accepted request (status ``accepted``, row shows ``queued``); not yet tagged on its row."""
    request_id = request_id_of(key)
    values = {
        "request_key": key,
        "request_id": request_id,
        "base_key": base,
        "generation": gen,
        "spreadsheet_id": spreadsheet_id,
        "tab": tab,
        "row_number": row_number,
        "target_dag": target,
        "dag_run_id": dag_run_id_of(request_id),
        "conf": {**conf, "request_id": request_id},
        "requested_by": requested_by,
        "status": ACCEPTED,
        "message": "queued",
        "rows": None,
        "output_uri": None,
        "executed_run_id": None,
        "sheet_status": None,
        "created_at": at,
        "updated_at": at,
        "acked_at": None,
        "finished_at": None,
        "notified_at": None,
        "tagged": False,
        "fingerprint": fingerprint,
        "attempts": 0,
        "handed_at": None,
        "run_state": None,
        "last_error": None,
    }
    conn.execute(sheets_requests.insert().values(**values))
    return Request(**values)  # type: ignore[arg-type]


def open_for_sheet(conn: Connection, spreadsheet_id: str) -> list[Request]:
    """Requests of a spreadsheet that are not finished, or whose final status has not reached the row."""
    rows = conn.execute(
        select(sheets_requests)
        .where(sheets_requests.c.spreadsheet_id == spreadsheet_id)
        .where(
            sheets_requests.c.status.in_(OPEN)
            | (
                sheets_requests.c.status.in_((COMPLETED, FAILED))
                & (
                    (sheets_requests.c.sheet_status.is_(None))
                    | (
                        (sheets_requests.c.sheet_status != sheets_requests.c.status)
                        & (sheets_requests.c.sheet_status != GONE)
                    )
                )
            )
        )
        .order_by(sheets_requests.c.id)
    )
    return [Request.from_row(r) for r in rows]


def by_run_ids(conn: Connection, run_ids: list[str]) -> dict[str, Request]:
    """Requests by their Airflow run id."""
    if not run_ids:
        return {}
    out: dict[str, Request] = {}
    for i in range(0, len(run_ids), 500):
        chunk = run_ids[i : i + 500]
        for r in conn.execute(select(sheets_requests).where(sheets_requests.c.dag_run_id.in_(chunk))):
            req = Request.from_row(r)
            out[req.dag_run_id] = req
    return out


def set_fields(conn: Connection, request_id: str, **fields: Any) -> None:
    """Update one request (``updated_at`` set to now)."""
    fields.setdefault("updated_at", now_utc())
    conn.execute(update(sheets_requests).where(sheets_requests.c.request_id == request_id).values(**fields))


def get(store: Store, request_id: str) -> Request | None:
    """One request by id."""
    with store.read() as conn:
        row = conn.execute(select(sheets_requests).where(sheets_requests.c.request_id == request_id)).first()
    return Request.from_row(row) if row else None


def by_ids(conn: Connection, request_ids: list[str]) -> dict[str, Request]:
    """Requests by request id."""
    out: dict[str, Request] = {}
    for i in range(0, len(request_ids), 500):
        chunk = request_ids[i : i + 500]
        for r in conn.execute(select(sheets_requests).where(sheets_requests.c.request_id.in_(chunk))):
            req = Request.from_row(r)
            out[req.request_id] = req
    return out


def claimable(conn: Connection, spreadsheet_id: str, bases: list[str], read_started: datetime) -> dict[str, Request]:
    """Per base key, the request a `run` row with that base is (still) asking for: one recorded but not yet
    tagged on its row (a crash or an overlapping poll between recording and tagging), or one recorded after
    this poll's read began (an overlapping poll got there first)."""
    out: dict[str, Request] = {}
    for i in range(0, len(bases), 500):
        chunk = bases[i : i + 500]
        rows = conn.execute(
            select(sheets_requests)
            .where(
                sheets_requests.c.spreadsheet_id == spreadsheet_id,
                sheets_requests.c.base_key.in_(chunk),
                sheets_requests.c.status != SUPERSEDED,
                (sheets_requests.c.tagged == false()) | (sheets_requests.c.created_at >= read_started),
            )
            .order_by(sheets_requests.c.id)
        )
        for r in rows:
            req = Request.from_row(r)
            out.setdefault(req.base_key, req)
    return out


def generations(conn: Connection, bases: list[str]) -> dict[str, int]:
    """How many requests each base key already has (the next request's generation)."""
    out: dict[str, int] = {}
    for i in range(0, len(bases), 500):
        chunk = bases[i : i + 500]
        rows = conn.execute(
            select(sheets_requests.c.base_key, func.count())
            .where(sheets_requests.c.base_key.in_(chunk))
            .group_by(sheets_requests.c.base_key)
        )
        out.update({str(b): int(n) for b, n in rows})
    return out


def counts_since(conn: Connection, spreadsheet_id: str, since: datetime) -> tuple[int, dict[str, int]]:
    """Requests recorded since ``since`` (superseded ones excluded): in total and per requester (lower-cased)."""
    rows = conn.execute(
        select(sheets_requests.c.requested_by, func.count())
        .where(
            sheets_requests.c.spreadsheet_id == spreadsheet_id,
            sheets_requests.c.created_at >= since,
            sheets_requests.c.status != SUPERSEDED,
        )
        .group_by(sheets_requests.c.requested_by)
    )
    per: dict[str, int] = {}
    total = 0
    for who, n in rows:
        total += int(n)
        if who:
            per[str(who).lower()] = per.get(str(who).lower(), 0) + int(n)
    return total, per


def to_trigger(store: Store, spreadsheet_id: str) -> list[Request]:
    """Accepted requests whose row shows them (tagged, status written) and not yet seen in Airflow.

    A request is handed to Airflow only once its status reached its row: until then the person may
    still change the row, and the request is withdrawn instead (see :func:`guardian.sheets.plan.plan_rows`).
    """
    with store.read() as conn:
        rows = conn.execute(
            select(sheets_requests)
            .where(
                sheets_requests.c.spreadsheet_id == spreadsheet_id,
                sheets_requests.c.status == ACCEPTED,
                sheets_requests.c.tagged == true(),
                sheets_requests.c.acked_at.is_not(None),
            )
            .order_by(sheets_requests.c.id)
        )
        return [Request.from_row(r) for r in rows]


def mark_handed(store: Store, request_ids: list[str], at: datetime) -> None:
    """Record that these requests went to the trigger step (the next poll checks Airflow has their runs)."""
    if not request_ids:
        return
    with store.write() as conn:
        conn.execute(
            update(sheets_requests)
            .where(sheets_requests.c.request_id.in_(request_ids), sheets_requests.c.status == ACCEPTED)
            .values(handed_at=at)
        )


def list_requests(store: Store, limit: int = 100, *, status: str | None = None) -> list[dict[str, Any]]:
    """Newest requests first, as plain dicts (the web UI and ``guardian sheets requests`` list these).

    Keys: request_id, spreadsheet_id, tab, row_number, target_dag, dag_run_id, conf, requested_by,
    status (accepted/triggered/completed/failed/superseded), row_status (what the sheet shows),
    message, rows, output_uri, created_at, updated_at, finished_at.
    """
    query = select(sheets_requests).order_by(sheets_requests.c.id.desc()).limit(limit)
    if status:
        query = query.where(sheets_requests.c.status == status)
    with store.read() as conn:
        requests = [Request.from_row(r) for r in conn.execute(query)]
    return [
        {
            "request_id": r.request_id,
            "spreadsheet_id": r.spreadsheet_id,
            "tab": r.tab,
            "row_number": r.row_number,
            "target_dag": r.target_dag,
            "dag_run_id": r.dag_run_id,
            "conf": r.conf,
            "requested_by": r.requested_by,
            "status": r.status,
            "row_status": r.row_status,
            "message": r.message,
            "rows": r.rows,
            "output_uri": r.output_uri,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "finished_at": r.finished_at,
        }
        for r in requests
    ]


# -- poll state -------------------------------------------------------------------------
@dataclass(frozen=True)
class PollState:
    """The last poll of one control range and its open failure alert."""

    source: str
    alert_open: bool
    alert_reason: str | None


def poll_state(conn: Connection, source: str) -> PollState | None:
    """The stored state of a control range."""
    row = conn.execute(select(sheets_poll_state).where(sheets_poll_state.c.source == source)).first()
    if row is None:
        return None
    return PollState(row.source, bool(row.alert_open), row.alert_reason)


def save_poll(conn: Connection, source: str, *, outcome: str) -> None:
    """Record one poll's outcome and time."""
    now = now_utc()
    if poll_state(conn, source) is None:
        conn.execute(
            sheets_poll_state.insert().values(
                source=source, last_poll_at=now, last_outcome=outcome, alert_open=False, alert_reason=None
            )
        )
        return
    conn.execute(
        update(sheets_poll_state)
        .where(sheets_poll_state.c.source == source)
        .values(last_poll_at=now, last_outcome=outcome)
    )


def set_alert(conn: Connection, source: str, reason: str | None) -> bool:
    """Open (reason given) or clear (None) the failure alert; True when that changed anything."""
    state = poll_state(conn, source)
    if state is None:
        save_poll(conn, source, outcome="failed" if reason else "ok")
        state = poll_state(conn, source)
        assert state is not None
    if bool(reason) == state.alert_open:
        return False
    conn.execute(
        update(sheets_poll_state)
        .where(sheets_poll_state.c.source == source)
        .values(alert_open=bool(reason), alert_reason=reason, alert_since=now_utc() if reason else None)
    )
    return True
