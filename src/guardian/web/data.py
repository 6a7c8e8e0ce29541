"""What each page shows: the monitoring service's own queries, and the other services' query
functions (Looker, Sheets, Sales, Quality), each called only if its module provides it.

Every service page degrades to an explanation, never an error, when a service has no data yet.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from guardian.monitoring.alerts import alert_history, open_alerts
from guardian.monitoring.health import latest_snapshots, recent_runs
from guardian.monitoring.outbox import undelivered
from guardian.monitoring.tables import notifications
from guardian.store import Store
from guardian.store.schema import audit_log

# Scan at most this many of the newest audit rows for recent failures (seq is the primary key).
_FAILURE_SCAN = 5000


def plain(value: Any) -> Any:
    """Dataclasses, rows and datetimes as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "_mapping"):
        return {k: plain(v) for k, v in value._mapping.items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def service_function(module: str, *names: str) -> Callable[..., Any] | None:
    """The first of these functions that the service module provides (None if none yet)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    for name in names:
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


def recent_failures(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The newest task failures from the audit log (a bounded primary-key range)."""
    with store.read() as conn:
        head = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)).scalar() or 0
        rows = conn.execute(
            select(audit_log.c.seq, audit_log.c.ts, audit_log.c.target, audit_log.c.after)
            .where(audit_log.c.seq > head - _FAILURE_SCAN, audit_log.c.action == "airflow.failure")
            .order_by(audit_log.c.seq.desc())
            .limit(limit)
        ).all()
    out = []
    for r in rows:
        after = r.after or {}
        error = after.get("error")
        out.append(
            {
                "seq": r.seq,
                "ts": plain(r.ts),
                "dag_id": after.get("dag_id"),
                "task_id": after.get("task_id"),
                "run_id": after.get("run_id"),
                "try_number": after.get("try_number"),
                "error": (error[-1] if isinstance(error, list) and error else error) or "",
            }
        )
    return out


def recent_notifications(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The newest alert deliveries."""
    with store.read() as conn:
        rows = conn.execute(select(notifications).order_by(notifications.c.id.desc()).limit(limit)).all()
    return [plain(r) for r in rows]


def overview(store: Store) -> dict[str, Any]:
    """Everything the Overview page shows."""
    snaps = latest_snapshots(store)
    alerts_now = [plain(a) for a in open_alerts(store)]
    alerted = {a["dag_id"] for a in alerts_now if a.get("dag_id")}
    dags = []
    for dag_id, s in sorted(snaps.items()):
        status = "failing" if s.get("last_run_state") == "failed" else "ok"
        if dag_id in alerted:
            status = "alert"
        dags.append({**s, "status": status})
    return {
        "dags": dags,
        "open_alerts": alerts_now,
        "failures": recent_failures(store),
        "notifications": recent_notifications(store),
        "undelivered": [plain(u) for u in undelivered(store)],
        "runs": [plain(r) for r in recent_runs(store, 15)],
    }


def alerts_page(store: Store) -> dict[str, Any]:
    """Open alerts and the alert history."""
    return {"open": [plain(a) for a in open_alerts(store)], "history": [plain(a) for a in alert_history(store, 100)]}


def dag_detail(store: Store, dag_id: str) -> dict[str, Any]:
    """One DAG: its newest snapshot and runs."""
    return {
        "dag_id": dag_id,
        "snapshot": latest_snapshots(store).get(dag_id),
        "runs": [plain(r) for r in recent_runs(store, 50, dag_id=dag_id)],
    }


def audit_search(
    store: Store, *, q: str | None = None, actor: str | None = None, action: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest audit events whose target, actor or action contain the search terms."""
    query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(min(limit, 1000))
    if q:
        like = f"%{q}%"
        query = query.where(
            audit_log.c.target.ilike(like) | audit_log.c.action.ilike(like) | audit_log.c.actor.ilike(like)
        )
    if actor:
        query = query.where(audit_log.c.actor.ilike(f"%{actor}%"))
    if action:
        query = query.where(audit_log.c.action.startswith(action))
    with store.read() as conn:
        return [plain(r) for r in conn.execute(query)]


def call_list(fn: Callable[..., Any] | None, store: Store, **kwargs: Any) -> list[dict[str, Any]] | None:
    """Call a service's list function with the store (None when the service has none)."""
    if fn is None:
        return None
    try:
        rows = fn(store, **kwargs)
    except TypeError:
        rows = fn(store)
    return [plain(r) for r in (rows or [])]
