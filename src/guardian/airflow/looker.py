"""Looker glue for tasks: the ``looker_default`` connection, else the LOOKERSDK_* env vars.

The connection's login is the API client id, its password the client secret; the base URL is
``extra.base_url``, or the host (with ``schema`` as the scheme and the port when given).
``extra.verify_ssl`` (default true) and ``extra.timeout`` are honoured. No environment
variable is set or changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings

CONN_ID = "looker_default"


def api_settings_from_connection(conn: Any, settings: Settings) -> Any:
    """looker-sdk settings (an ApiSettings subclass) from an Airflow connection."""
    from guardian.errors import ConfigError
    from guardian.looker.client import GuardianApiSettings

    extra = conn.extra_dejson or {}
    base_url = str(extra.get("base_url") or "")
    if not base_url:
        host = str(conn.host or "")
        if not host:
            raise ConfigError(f"connection {CONN_ID} has no host; set it to the Looker URL, e.g. https://x.looker.com")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        base_url = f"{host}:{conn.port}" if conn.port else host
    if not conn.login or not conn.password:
        raise ConfigError(f"connection {CONN_ID} needs login (API client id) and password (client secret)")
    verify = str(extra.get("verify_ssl", "true")).lower() not in ("0", "false", "no")
    return GuardianApiSettings(
        base_url=base_url,
        client_id=conn.login,
        client_secret=conn.password,
        timeout=int(extra.get("timeout") or settings.looker.api_timeout),
        verify_ssl=verify,
    )


def client(settings: Settings) -> LookerClient:
    """The Looker client of a task: ``looker_default`` when defined, else LOOKERSDK_* env vars."""
    from guardian.airflow.dagkit import _connection
    from guardian.looker.client import connect

    conn = _connection(CONN_ID)
    if conn is None:
        return connect(settings)
    return connect(settings, api=api_settings_from_connection(conn, settings))


APPROVAL_TIMEOUT_HOURS = 72
"""How long the monthly run waits for a person to approve a plan; no answer counts as Reject."""


def approval_operator_class() -> Any | None:
    """The standard provider's ApprovalOperator (Airflow 3.1+), or None (Airflow 2.11: no HITL)."""
    from airflow import __version__

    # Checked first: on 2.11 the provider's hitl module imports half of Airflow before refusing.
    major, minor = (int(part) for part in __version__.split(".")[:2])
    if (major, minor) < (3, 1):
        return None
    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator
    except Exception:  # ImportError, or the provider's "needs Airflow 3.1+" feature exception
        return None
    return ApprovalOperator


def resolve_mode(param: object, scheduled_mode: str) -> str:
    """The run's mode: the trigger's ``mode``, or ``GUARDIAN_LOOKER__SCHEDULED_MODE`` for "scheduled"."""
    mode = str(param or "scheduled")
    return scheduled_mode if mode == "scheduled" else mode


def route(mode: str, *, skip_approval: bool, approval_available: bool) -> list[str]:
    """Task ids the gate follows: dry run reports only; test/apply go through approval when Airflow has it."""
    if mode == "dry_run":
        return ["report"]
    if approval_available and not skip_approval:
        return ["approve", "report"]
    return ["apply", "report"]
