"""What every guardian DAG shares: tags, owner, retries, callbacks, the settings of a task.

DAG files import this at parse time, so it imports nothing heavy at module level.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.settings import Settings

OWNER = "data-platform"


class Tag(StrEnum):
    """The only tags a guardian DAG may carry (the DagBag test enforces it)."""

    GUARDIAN = "guardian"
    LOOKER = "looker"
    SALES = "sales"
    SHEETS = "sheets"
    PLATFORM = "platform"
    DESTRUCTIVE = "destructive"
    TRIGGER = "trigger"
    MONITORING = "monitoring"


def on_failure(context: Any) -> None:
    """Failure callback of every DAG and task (imported lazily: parse time stays light)."""
    from guardian.airflow.callbacks import on_failure as handler

    handler(context)


def on_retry(context: Any) -> None:
    """Retry callback of every task."""
    from guardian.airflow.callbacks import on_retry as handler

    handler(context)


def default_args(*, retries: int = 2, retry_delay_minutes: float = 2, **extra: Any) -> dict[str, Any]:
    """default_args for a guardian DAG: owner, bounded retries with backoff, callbacks."""
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": retries,
        "retry_delay": timedelta(minutes=retry_delay_minutes),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": on_failure,
        "on_retry_callback": on_retry,
    }
    args.update(extra)
    return args


def task_settings() -> Settings:
    """Settings inside a task: the same GUARDIAN_* settings as the CLI and the UI.

    The store is GUARDIAN_STORE__URL (+ GUARDIAN_STORE__PASSWORD_REF) everywhere: one source
    of truth. A ``guardian_db`` connection is no longer read; when one exists and the setting
    is unset, the task stops with the URL to set instead of silently using the SQLite default.
    Also points the Sheets client at the ``google_cloud_default`` connection's credentials.
    """
    from guardian.airflow.google import install as use_google_cloud_default_for_sheets
    from guardian.settings import load_settings

    # Integrations whose credentials come from Airflow connections inside tasks are wired here,
    # once per task, so the domain never has to know it runs under Airflow.
    use_google_cloud_default_for_sheets()
    settings = load_settings()
    if settings.store.url is None:
        conn = _connection("guardian_db")
        if conn is not None:
            from guardian.errors import ConfigError

            url, _ = connection_store_url(conn)
            raise ConfigError(
                f"GUARDIAN_STORE__URL is unset but a guardian_db connection exists; the store has one setting "
                f"for tasks, CLI and UI: set GUARDIAN_STORE__URL={url} and GUARDIAN_STORE__PASSWORD_REF, "
                "then delete the connection"
            )
    return settings


def connection_store_url(conn: Any) -> tuple[str, str | None]:
    """A SQLAlchemy URL without password, and the password, from an Airflow connection."""
    from sqlalchemy.engine import URL

    conn_type = (conn.conn_type or "").lower()
    if conn_type in {"postgres", "postgresql"}:
        url = URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )
        return url.render_as_string(hide_password=False), conn.password or None
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host}", None
    from guardian.errors import ConfigError

    raise ConfigError(f"connection guardian_db has type {conn_type!r}; use postgres (or sqlite for a laptop)")


def _connection(conn_id: str) -> Any | None:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
