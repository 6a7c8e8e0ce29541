"""Airflow glue of the Sheets trigger: credentials from ``google_cloud_default``, the poll and confirm steps.

The DAG's poll task returns the keyword arguments of one ``TriggerDagRunOperator`` per request
to (re)trigger; the trigger task is mapped over them with the request's deterministic run id,
so a retried or overlapping poll can only ever meet "run already exists" (skipped).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient

log = logging.getLogger(__name__)

GCP_CONN_ID = "google_cloud_default"


def sheets_client(settings: Settings) -> SheetsClient:
    """The Sheets client inside a task: sandbox or key-file settings first, else google_cloud_default, else ADC."""
    from guardian.sheets.client import SheetsClient

    install()
    return SheetsClient.from_settings(settings)


def _connection_credentials() -> Any | None:
    """Credentials of ``google_cloud_default`` through the Google provider's hook (None: no such connection)."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        BaseHook.get_connection(GCP_CONN_ID)
    except AirflowNotFoundException:
        return None  # application default credentials
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

    from guardian.sheets.client import SCOPES

    hook = GoogleBaseHook(gcp_conn_id=GCP_CONN_ID)
    creds = hook.get_credentials()
    # Connection scopes may not include Sheets; ask for them when the credentials allow it.
    if getattr(creds, "requires_scopes", False) or hasattr(creds, "with_scopes"):
        with contextlib.suppress(AttributeError, NotImplementedError):
            creds = creds.with_scopes(SCOPES)  # type: ignore[attr-defined]
    return creds


def poll() -> list[dict[str, Any]]:
    """The DAG's poll step: one poll; returns TriggerDagRunOperator kwargs for each request to trigger."""
    from guardian.airflow import lineage
    from guardian.airflow.dagkit import task_settings
    from guardian.sheets.poll import run_poll
    from guardian.store import get_store

    settings = task_settings()
    store = get_store(settings)
    result = run_poll(settings, store, lambda: sheets_client(settings))
    log.info("sheets poll: %s", result.as_dict())
    sid, tab = settings.sheets.spreadsheet_id, settings.sheets.range.split("!")[0].strip("'")
    lineage.report(
        inputs=[f"gsheets://{sid}/{tab}"],
        outputs=[f"gsheets://{sid}/{tab}"] if result.written_rows else [],
    )
    return [req.trigger_kwargs() for req in result.to_trigger]


def confirm(requests: list[dict[str, Any]]) -> int:
    """After every mapped trigger succeeded or was skipped (run already exists): mark the requests triggered."""
    from guardian.airflow.dagkit import task_settings
    from guardian.sheets import ledger
    from guardian.store import get_store

    ids = [str(r["conf"]["request_id"]) for r in requests or []]
    changed = ledger.mark_triggered(get_store(task_settings()), ids)
    log.info("sheets: %d request(s) confirmed in Airflow (%d newly)", len(ids), changed)
    return changed


def install() -> None:
    """Make the domain's Sheets client take credentials from google_cloud_default (when no key file is set)."""
    from guardian.sheets.client import set_credentials_provider

    set_credentials_provider(_connection_credentials)
