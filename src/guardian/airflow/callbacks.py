"""Task and DAG callbacks: every failure is audited (alerts: see guardian.notify)."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _describe(context: Any) -> dict[str, Any]:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": (str(exc).strip().splitlines() or [""])[-1][:500] if exc else None,
        "error_type": type(exc).__name__ if exc else None,
    }


def on_failure(context: Any) -> None:
    """Record the failure in the audit log; a callback never raises."""
    info = _describe(context)
    try:
        from guardian import audit
        from guardian.airflow.dagkit import task_settings
        from guardian.store import get_store

        target = f"dag:{info['dag_id']}" + (f"/task:{info['task_id']}" if info["task_id"] else "")
        audit.record(
            "airflow.failure",
            target,
            outcome="failed",
            after=info,
            context=info,
            store=get_store(task_settings()),
        )
    except Exception:  # a callback that raises would hide the task's own error
        log.exception("guardian: could not record the failure of %s", info)


def on_retry(context: Any) -> None:
    """Log a retry with its try number."""
    info = _describe(context)
    log.warning(
        "guardian: retrying %s.%s (try %s): %s",
        info["dag_id"],
        info["task_id"],
        info["try_number"],
        info["error"],
    )
