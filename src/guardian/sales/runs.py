"""Run records of sales extracts: params, cost, rows, files, checks and outcome.

One row per run id (a re-run of the same id updates it). The web UI and the CLI read them
through :func:`list_runs` and :func:`get_run`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, String, Table, insert, select, update

from guardian.store import Store
from guardian.store.schema import Id, metadata

sales_runs = Table(
    "sales_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("backend", String(20), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("params", JSON, nullable=False),
    Column("requested_by", String(320), nullable=True),
    Column("query_hash", String(64), nullable=True),
    Column("job_id", String(200), nullable=True),
    Column("bytes_estimated", BigInteger, nullable=True),
    Column("bytes_processed", BigInteger, nullable=True),
    Column("bytes_billed", BigInteger, nullable=True),
    Column("slot_ms", BigInteger, nullable=True),
    Column("query_ms", BigInteger, nullable=True),
    Column("duration_ms", BigInteger, nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("output_uri", String(1000), nullable=True),
    Column("files", JSON, nullable=True),
    Column("checks", JSON, nullable=True),
    Column("sheet_range", String(300), nullable=True),
    # Every job of the run with its bytes (guardian.sales.budget.JobStats); the bytes columns are their sums.
    Column("jobs", JSON, nullable=True),
    Column("error", String(2000), nullable=True),
    Index("ix_sales_runs_started_at", "started_at"),
    Index("ix_sales_runs_status", "status"),
)

STATUSES = ("running", "estimated", "succeeded", "failed")


def start_run(store: Store, run_id: str, *, backend: str, params: dict[str, Any]) -> None:
    """Create the record of a run, or reset it for a new attempt of the same run id."""
    now = datetime.now(UTC)
    fresh = {
        "status": "running",
        "backend": backend,
        "started_at": now,
        "finished_at": None,
        "params": params,
        "requested_by": params.get("requested_by"),
        "error": None,
    }
    with store.write() as conn:
        existing = conn.execute(select(sales_runs.c.attempts).where(sales_runs.c.run_id == run_id)).first()
        if existing is None:
            conn.execute(insert(sales_runs).values(run_id=run_id, attempts=1, **fresh))
        else:
            conn.execute(
                update(sales_runs)
                .where(sales_runs.c.run_id == run_id)
                .values(attempts=int(existing.attempts) + 1, **fresh)
            )


def update_run(store: Store, run_id: str, **values: Any) -> None:
    """Set fields of a run record (unknown fields are a bug and raise)."""
    unknown = set(values) - set(sales_runs.c.keys())
    if unknown:
        raise KeyError(f"sales_runs has no column(s) {sorted(unknown)}")
    if values.get("error"):
        values["error"] = str(values["error"])[:2000]
    with store.read() as conn:
        conn.execute(update(sales_runs).where(sales_runs.c.run_id == run_id).values(**values))


def finish_run(store: Store, run_id: str, *, ok: bool, error: str | None = None, **values: Any) -> None:
    """Mark a run succeeded or failed, with its total duration."""
    now = datetime.now(UTC)
    run = get_run(store, run_id)
    duration = None
    if run and run.get("started_at"):
        started = run["started_at"]
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        duration = int((now - started).total_seconds() * 1000)
    update_run(
        store,
        run_id,
        status="succeeded" if ok else "failed",
        finished_at=now,
        duration_ms=duration,
        error=error,
        **values,
    )


def list_runs(store: Store, limit: int = 50, *, status: str | None = None) -> list[dict[str, Any]]:
    """Newest sales runs first (every column), optionally only those with ``status``."""
    query = select(sales_runs).order_by(sales_runs.c.started_at.desc(), sales_runs.c.id.desc()).limit(limit)
    if status:
        query = query.where(sales_runs.c.status == status)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def get_run(store: Store, run_id: str) -> dict[str, Any] | None:
    """One sales run by its run id (the Airflow dag_run_id or the CLI's id), or None."""
    with store.read() as conn:
        row = conn.execute(select(sales_runs).where(sales_runs.c.run_id == run_id)).first()
    return dict(row._mapping) if row else None
