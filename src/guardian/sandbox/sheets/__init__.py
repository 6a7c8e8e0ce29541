"""A local stand-in for the Google Sheets API v4 (the methods the guardian uses).

Speaks the same URLs, parameters and JSON as ``sheets.googleapis.com`` so that the real
``google-api-python-client`` talks to it unchanged (``client_options={"api_endpoint": url}``).
Faults (429, 5xx, slow answers) and concurrent "person" edits can be injected through
``/_sandbox/...`` admin routes; see docs/services/sheets.md.
"""

from __future__ import annotations

from guardian.sandbox.sheets.app import SheetsSandbox, create_app

__all__ = ["SheetsSandbox", "create_app"]
