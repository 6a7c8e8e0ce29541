"""Task and DAG callbacks: every failure is audited and alerted (email, and Slack for critical DAGs).

The alert names the DAG, task, run, try, the last lines of the error and a link to the log;
everything goes through the guardian masker and Airflow's, so no secret leaves in an alert.
Delivery uses the smtp and slack providers' hooks on ``smtp_default`` / ``slack_default``
(see :mod:`guardian.airflow.delivery`).
A callback never raises: an exception here would hide the task's own error.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

log = logging.getLogger(__name__)


def _airflow3() -> bool:
    import airflow

    return int(airflow.__version__.split(".")[0]) >= 3


def _error_text(exc: Any) -> str | None:
    if exc is None:
        return None
    from guardian.errors import GuardianError

    if isinstance(exc, GuardianError):
        # Our errors are one line naming the input and the fix: the traceback adds nothing.
        return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseException):
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return str(exc)


def _describe(context: Any) -> dict[str, Any]:
    ti = context.get("task_instance") or context.get("ti")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    reason = context.get("reason")
    error = _error_text(exc)
    try_number = getattr(ti, "try_number", None)
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(dag_run, "run_id", None),
        "try_number": int(try_number) if try_number is not None else None,
        "max_tries": (int(getattr(ti, "max_tries", 0) or 0) + 1) if ti is not None else None,
        "error": (error or reason or "").strip() or None,
        "error_type": type(exc).__name__ if isinstance(exc, BaseException) else ("DagRunFailed" if reason else None),
    }


def share_secrets_with_airflow(settings: Any) -> None:
    """Register the guardian's secrets with Airflow's masker too, so task logs mask them."""
    from guardian.logging import register_settings_secrets, registered_secrets

    register_settings_secrets(settings)
    try:
        from airflow.providers.common.compat.sdk import mask_secret

        for value in registered_secrets():
            mask_secret(value)
    except Exception:  # the masker is best effort; ours still masks every alert
        log.debug("airflow secrets masker unavailable", exc_info=True)


def alert_settings() -> Any:
    """The settings of a task (kept for callers; delivery settings now come from connections)."""
    from guardian.airflow.dagkit import task_settings

    return task_settings()


def alert(context: Any, kind: str) -> dict[str, Any]:
    """Audit (failures) and send the alert for a failure or retry; return what was sent."""
    from guardian.logging import mask_text
    from guardian.monitoring.messages import deliver, failure_message, slack_wanted, task_log_url

    info = _describe(context)
    info["error"] = mask_text(info["error"] or "") or None
    outcome: dict[str, Any] = {"info": info, "deliveries": []}
    try:
        from guardian.store import get_store

        settings = alert_settings()
        share_secrets_with_airflow(settings)
        info["error"] = mask_text(info["error"] or "") or None
        store = get_store(settings)
        if kind == "failure":
            from guardian import audit

            dag_level = bool(context.get("reason"))
            target = f"dag:{info['dag_id']}" + (f"/task:{info['task_id']}" if info["task_id"] and not dag_level else "")
            audit_info = dict(info, error=(info["error"] or "").strip().splitlines()[-1:] or None)
            action = "airflow.dag_failure" if dag_level else "airflow.failure"
            audit.record(action, target, outcome="failed", after=audit_info, context=audit_info, store=store)
            if context.get("reason") == "task_failure":
                # A DAG run that failed because a task failed: that task's callback already alerted.
                return outcome
        elif not settings.notify.alert_on_retry:
            return outcome
        log_url = (
            task_log_url(
                settings.notify.ui_base_url,
                info["dag_id"],
                info["run_id"],
                info["task_id"],
                info["try_number"],
                airflow3=_airflow3(),
            )
            if info["task_id"] and info["run_id"] and info["dag_id"]
            else None
        )
        message = failure_message(
            kind=kind,
            dag_id=info["dag_id"] or "?",
            task_id=info["task_id"],
            run_id=info["run_id"],
            try_number=info["try_number"],
            max_tries=info["max_tries"],
            error=info["error"],
            error_type=info["error_type"],
            log_url=log_url,
        )
        slack = kind == "failure" and slack_wanted(settings, info["dag_id"])
        from guardian.airflow.delivery import AirflowTransport

        outcome["deliveries"] = deliver(settings, message, slack=slack, store=store, transport=AirflowTransport())
    except Exception:
        log.exception("guardian: could not record or alert the %s of %s", kind, info)
    return outcome


def on_failure(context: Any) -> None:
    """Failure callback: audit the failure, email the team, Slack for critical DAGs."""
    alert(context, "failure")


def on_retry(context: Any) -> None:
    """Retry callback: log the retry; email it when GUARDIAN_NOTIFY__ALERT_ON_RETRY is set."""
    info = _describe(context)
    from guardian.logging import mask_text

    log.warning(
        "guardian: retrying %s.%s (try %s): %s",
        info["dag_id"],
        info["task_id"],
        info["try_number"],
        mask_text((info["error"] or "").strip().splitlines()[-1] if info["error"] else ""),
    )
    alert(context, "retry")
