"""Task listener: records each task try's resource use (peak RSS, CPU seconds, wall time).

Registered by the guardian plugin (``guardian.airflow.plugin``). The hooks run in the process
that runs the task, so ``getrusage`` there measures the task itself (plus the children it
waited for). A listener never raises: monitoring must not fail a task.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from airflow.providers.common.compat.sdk import hookimpl

log = logging.getLogger(__name__)
_started: dict[tuple[str, str, str, int], tuple[float, float]] = {}


def _key(ti: Any) -> tuple[str, str, str, int]:
    return (str(ti.dag_id), str(ti.task_id), str(ti.run_id), _map_index(ti))


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _map_index(ti: Any) -> int:
    # 0 is the first mapped instance, -1 an unmapped task: `or -1` would merge them.
    value = getattr(ti, "map_index", None)
    return -1 if value is None else int(value)


def _peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux: the high-water mark of this process and of its waited-for children.
    return 1024 * max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )


def usage_of(ti: Any, state: str) -> Any:
    """The TaskUsage of a task try that is ending now."""
    from guardian.monitoring.health import TaskUsage

    started = _started.pop(_key(ti), None)
    now_wall, now_cpu = time.monotonic(), _cpu_seconds()
    return TaskUsage(
        dag_id=str(ti.dag_id),
        task_id=str(ti.task_id),
        run_id=str(ti.run_id),
        try_number=int(getattr(ti, "try_number", 0) or 0),
        state=state,
        duration_s=round(now_wall - started[0], 3) if started else None,
        cpu_seconds=round(now_cpu - started[1], 3) if started else round(now_cpu, 3),
        peak_rss_bytes=_peak_rss_bytes(),
    )


def _record(ti: Any, state: str) -> None:
    try:
        from guardian.airflow.dagkit import task_settings
        from guardian.monitoring.health import record_task_usage
        from guardian.store import get_store

        settings = task_settings()
        if settings.monitoring.task_usage:
            record_task_usage(get_store(settings), usage_of(ti, state))
    except Exception:
        log.warning("guardian: could not record the resource use of %s", getattr(ti, "task_id", "?"), exc_info=True)


@hookimpl
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    """Hand the guardian's secrets to Airflow's masker; remember wall clock and CPU time."""
    try:
        _started[_key(task_instance)] = (time.monotonic(), _cpu_seconds())
    except Exception:
        log.debug("guardian listener: no start mark", exc_info=True)
    try:
        from guardian.airflow.callbacks import share_secrets_with_airflow
        from guardian.airflow.dagkit import task_settings

        share_secrets_with_airflow(task_settings())
        # Airflow's supervisor redacts task logs in a real deployment; in-process runs
        # (``airflow dags test``) have no supervisor, so our own filter masks log records too.
        from guardian.logging import install_masking_filter

        install_masking_filter()
    except Exception:
        log.warning("guardian: could not register secrets with the masker", exc_info=True)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    """Record the resource use of a successful try."""
    _record(task_instance, "success")


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    """Record the resource use of a failed try."""
    _record(task_instance, "failed")
