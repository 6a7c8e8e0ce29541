"""Google credentials inside tasks: the Google provider's hook on ``google_cloud_default``.

:func:`install` makes the domain's Sheets client take its credentials from that connection
(when no key file is set). It lives here, not in the Sheets glue, so ``dagkit`` can call it
without importing a service's module (which imports dagkit back).
"""

from __future__ import annotations

import contextlib
from typing import Any

GCP_CONN_ID = "google_cloud_default"


def connection_credentials() -> Any | None:
    """Credentials of ``google_cloud_default`` through the Google provider's hook (None: no such connection)."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        BaseHook.get_connection(GCP_CONN_ID)
    except AirflowNotFoundException:
        return None  # application default credentials
    from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

    from guardian.sheets.client import SCOPES

    creds = GoogleBaseHook(gcp_conn_id=GCP_CONN_ID).get_credentials()
    # Connection scopes may not include Sheets; ask for them when the credentials allow it.
    if getattr(creds, "requires_scopes", False) or hasattr(creds, "with_scopes"):
        with contextlib.suppress(AttributeError, NotImplementedError):
            creds = creds.with_scopes(SCOPES)  # type: ignore[attr-defined]
    return creds


def install() -> None:
    """Make the domain's Sheets client take credentials from google_cloud_default (when no key file is set)."""
    from guardian.sheets.client import set_credentials_provider

    set_credentials_provider(connection_credentials)
