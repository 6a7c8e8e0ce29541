"""The Sheets API v4 client adapter over google-api-python-client.

Built from the discovery document the library ships (``static_discovery=True``: no network
fetch of the document), pointed at the sandbox by ``client_options={"api_endpoint": ...}``.
Every call has a timeout and bounded retries with exponential backoff and jitter on 429, 5xx
and network errors; other errors become one actionable line (:class:`IntegrationError`).

Credentials: anonymous for the sandbox; a service-account key file or application default
credentials from ``GUARDIAN_SHEETS__*``; inside Airflow the glue passes the credentials of
the ``google_cloud_default`` connection (see guardian.airflow.sheets).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from guardian.errors import ConfigError, IntegrationError
from guardian.sheets.a1 import A1Range, quote_sheet

if TYPE_CHECKING:
    from guardian.settings import Settings

log = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF = 60.0


def cell_text(value: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, booleans as the sheet shows them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


_provider: Callable[[], Any | None] | None = None


def set_credentials_provider(provider: Callable[[], Any | None] | None) -> None:
    """Install where credentials come from when no key file is set (the Airflow glue: google_cloud_default)."""
    global _provider
    _provider = provider


def _provided_credentials() -> Any | None:
    # Inside Airflow tasks the glue installs google_cloud_default as the provider
    # (guardian.airflow.dagkit.task_settings); elsewhere there is none.
    return _provider() if _provider is not None else None


def credentials_from_settings(settings: Settings) -> Any:
    """Credentials for the Sheets API: anonymous (sandbox), a key file, the Airflow connection, or ADC."""
    cfg = settings.sheets
    if cfg.anonymous or (_is_loopback(cfg.api_endpoint) and not cfg.credentials_file):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    if cfg.credentials_file:
        from google.oauth2 import service_account

        try:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                cfg.credentials_file, scopes=SCOPES
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"GUARDIAN_SHEETS__CREDENTIALS_FILE={cfg.credentials_file}: cannot read a service-account key "
                f"({type(exc).__name__}); point it at the JSON key file"
            ) from None
    provided = _provided_credentials()
    if provided is not None:
        return provided
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        creds, _project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        raise ConfigError(
            "no Google credentials found: set GUARDIAN_SHEETS__CREDENTIALS_FILE or configure application default "
            "credentials (gcloud auth application-default login)"
        ) from None
    return creds


class SheetsClient:
    """The few Sheets API methods the guardian uses, with timeouts, retries and clear errors."""

    def __init__(
        self,
        service: Any,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._service = service
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self.calls: Counter[str] = Counter()  # HTTP attempts per method, retries included
        self._sheets_resource: Any = None
        self._values_resource: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, *, credentials: Any | None = None) -> SheetsClient:
        """Build the client from settings; ``credentials`` (e.g. from an Airflow connection) win."""
        cfg = settings.sheets
        return cls.build(
            credentials if credentials is not None else credentials_from_settings(settings),
            api_endpoint=cfg.api_endpoint,
            timeout=cfg.timeout,
            retries=cfg.retries,
            backoff=cfg.backoff_seconds,
        )

    @classmethod
    def build(
        cls,
        credentials: Any,
        *,
        api_endpoint: str | None = None,
        timeout: float = 30,
        retries: int = 5,
        backoff: float = 1.0,
    ) -> SheetsClient:
        """Build over google-api-python-client from its shipped discovery document."""
        import google_auth_httplib2  # type: ignore[import-untyped]
        import httplib2  # type: ignore[import-untyped]
        from googleapiclient.discovery import build

        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        service = build(
            "sheets",
            "v4",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        return cls(service, retries=retries, backoff=backoff)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, method: str, target: str, request: Any) -> Any:
        from googleapiclient.errors import HttpError

        attempt = 0
        while True:
            self.calls[method] += 1
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                status = int(exc.resp.status)
                reason = _reason(exc)
                if status not in RETRY_STATUSES or attempt >= self._retries:
                    raise _http_error(method, target, status, reason, attempt) from None
                log.warning("sheets %s %s: HTTP %s (%s); retry %d", method, target, status, reason, attempt + 1)
            except _transport_errors() as exc:
                # DNS, refused or reset connections, timeouts and a failed token refresh: transient as
                # often as not, so retried like a 5xx, then one integration error naming what to check.
                if attempt >= self._retries:
                    raise IntegrationError(
                        f"Sheets API {method} on {target} failed after {attempt + 1} tries "
                        f"({type(exc).__name__}: {mask(str(exc))}); check GUARDIAN_SHEETS__API_ENDPOINT, the network "
                        "and the credentials (google_cloud_default or GUARDIAN_SHEETS__CREDENTIALS_FILE)"
                    ) from None
                log.warning("sheets %s %s: %s; retry %d", method, target, type(exc).__name__, attempt + 1)
            attempt += 1
            self._sleep(min(MAX_BACKOFF, self._backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))

    @property
    def _sheets(self) -> Any:
        # Building a resource from the discovery document is costly (it generates every method): once per client.
        if self._sheets_resource is None:
            self._sheets_resource = self._service.spreadsheets()
        return self._sheets_resource

    @property
    def _values(self) -> Any:
        if self._values_resource is None:
            self._values_resource = self._sheets.values()
        return self._values_resource

    # -- API ------------------------------------------------------------------------------
    def spreadsheet(self, spreadsheet_id: str) -> dict[str, Any]:
        """spreadsheets.get without grid data: title and tabs."""
        req = self._sheets.get(spreadsheetId=spreadsheet_id, includeGridData=False)
        result: dict[str, Any] = self._call("spreadsheets.get", spreadsheet_id, req)
        return result

    def title(self, spreadsheet_id: str) -> str:
        """The spreadsheet's title (guardian doctor uses it as a reachability check)."""
        return str(self.spreadsheet(spreadsheet_id)["properties"]["title"])

    def get_values(self, spreadsheet_id: str, a1_range: str, *, render: str = "FORMATTED_VALUE") -> list[list[str]]:
        """values.get: rows of cell texts (trailing empty cells and rows are absent, as the API sends them)."""
        req = self._values.get(
            spreadsheetId=spreadsheet_id,
            range=a1_range,
            majorDimension="ROWS",
            valueRenderOption=render,
            dateTimeRenderOption="FORMATTED_STRING",
        )
        result = self._call("values.get", f"{spreadsheet_id} {a1_range}", req)
        return [[cell_text(v) for v in row] for row in result.get("values", [])]

    def batch_get_values(
        self, spreadsheet_id: str, ranges: Sequence[str], *, render: str = "FORMATTED_VALUE"
    ) -> list[list[list[str]]]:
        """values.batchGet: one list of rows per range, in order."""
        req = self._values.batchGet(
            spreadsheetId=spreadsheet_id,
            ranges=list(ranges),
            majorDimension="ROWS",
            valueRenderOption=render,
            dateTimeRenderOption="FORMATTED_STRING",
        )
        result = self._call("values.batchGet", spreadsheet_id, req)
        return [[[cell_text(v) for v in row] for row in vr.get("values", [])] for vr in result.get("valueRanges", [])]

    def update_values(self, spreadsheet_id: str, a1_range: str, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """values.update with RAW input: a value is stored as given, never parsed as a formula."""
        req = self._values.update(
            spreadsheetId=spreadsheet_id,
            range=a1_range,
            valueInputOption="RAW",
            body={"range": a1_range, "majorDimension": "ROWS", "values": [list(r) for r in rows]},
        )
        result: dict[str, Any] = self._call("values.update", f"{spreadsheet_id} {a1_range}", req)
        return result

    def batch_update_values(
        self, spreadsheet_id: str, data: Sequence[tuple[str, Sequence[Sequence[Any]]]] | Sequence[dict[str, Any]]
    ) -> dict[str, Any]:
        """values.batchUpdate with RAW input: many ranges in one call, applied together."""
        body_data = [
            item
            if isinstance(item, dict)
            else {"range": item[0], "majorDimension": "ROWS", "values": [list(r) for r in item[1]]}
            for item in data
        ]
        req = self._values.batchUpdate(
            spreadsheetId=spreadsheet_id, body={"valueInputOption": "RAW", "data": body_data}
        )
        result: dict[str, Any] = self._call("values.batchUpdate", spreadsheet_id, req)
        return result

    def clear_values(self, spreadsheet_id: str, a1_range: str) -> dict[str, Any]:
        """values.clear of a range."""
        req = self._values.clear(spreadsheetId=spreadsheet_id, range=a1_range, body={})
        result: dict[str, Any] = self._call("values.clear", f"{spreadsheet_id} {a1_range}", req)
        return result

    def batch_update_spreadsheet(
        self, spreadsheet_id: str, requests: list[dict[str, Any]], *, response_ranges: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """spreadsheets.batchUpdate, applied whole or not at all; with ``response_ranges`` the answer carries
        the spreadsheet as it is right after the update (grid data and row metadata of those ranges)."""
        body: dict[str, Any] = {"requests": requests}
        if response_ranges is not None:
            body.update(
                includeSpreadsheetInResponse=True, responseRanges=list(response_ranges), responseIncludeGridData=True
            )
        req = self._sheets.batchUpdate(spreadsheetId=spreadsheet_id, body=body)
        result: dict[str, Any] = self._call("spreadsheets.batchUpdate", spreadsheet_id, req)
        return result

    def get_grid(self, spreadsheet_id: str, a1_range: str) -> dict[str, Any]:
        """spreadsheets.get of one range with grid data: cell values (formulas as formulas) and the
        developer metadata of each row, in one call."""
        req = self._sheets.get(
            spreadsheetId=spreadsheet_id,
            ranges=[a1_range],
            includeGridData=True,
            fields=GRID_FIELDS,
        )
        result: dict[str, Any] = self._call("spreadsheets.get", f"{spreadsheet_id} {a1_range}", req)
        return result

    def batch_get_by_filter(
        self, spreadsheet_id: str, filters: Sequence[dict[str, Any]], *, render: str = "FORMULA"
    ) -> list[dict[str, Any]]:
        """values.batchGetByDataFilter: the MatchedValueRange of every range the filters select."""
        req = self._values.batchGetByDataFilter(
            spreadsheetId=spreadsheet_id,
            body={"dataFilters": list(filters), "majorDimension": "ROWS", "valueRenderOption": render},
        )
        result = self._call("values.batchGetByDataFilter", spreadsheet_id, req)
        return list(result.get("valueRanges", []))

    def batch_update_by_filter(self, spreadsheet_id: str, data: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """values.batchUpdateByDataFilter with RAW input: each DataFilterValueRange written to the ranges its
        filter selects (null cells are skipped), the whole batch or nothing."""
        req = self._values.batchUpdateByDataFilter(
            spreadsheetId=spreadsheet_id, body={"valueInputOption": "RAW", "data": list(data)}
        )
        result: dict[str, Any] = self._call("values.batchUpdateByDataFilter", spreadsheet_id, req)
        return result

    def write_table(self, spreadsheet_id: str, tab: str, rows: Sequence[Sequence[Any]]) -> str:
        """Replace the content of tab ``tab`` (created if missing) with ``rows``, RAW; return the A1 range written.

        Idempotent: running it twice leaves the same tab, so a retried task is safe.
        """
        height = max(1, len(rows))
        width = max(1, max((len(r) for r in rows), default=1))
        meta = self.spreadsheet(spreadsheet_id)
        existing = next((s["properties"] for s in meta.get("sheets", []) if s["properties"]["title"] == tab), None)
        if existing is None:
            self.batch_update_spreadsheet(
                spreadsheet_id,
                [
                    {
                        "addSheet": {
                            "properties": {"title": tab, "gridProperties": {"rowCount": height, "columnCount": width}}
                        }
                    }
                ],
            )
        else:
            grid = existing.get("gridProperties", {})
            if grid.get("rowCount", 0) < height or grid.get("columnCount", 0) < width:
                self.batch_update_spreadsheet(
                    spreadsheet_id,
                    [
                        {
                            "updateSheetProperties": {
                                "properties": {
                                    "sheetId": existing["sheetId"],
                                    "gridProperties": {
                                        "rowCount": max(height, grid.get("rowCount", 0)),
                                        "columnCount": max(width, grid.get("columnCount", 0)),
                                    },
                                },
                                "fields": "gridProperties.rowCount,gridProperties.columnCount",
                            }
                        }
                    ],
                )
            self.clear_values(spreadsheet_id, quote_sheet(tab))
        target = A1Range(tab, 1, 1, width, height).format()
        values = [["" if v is None else v for v in row] for row in rows]
        if values:
            self.update_values(spreadsheet_id, target, values)
        return target


GRID_FIELDS = (
    "sheets(properties(sheetId,title),data(startRow,startColumn,"
    "rowData(values(userEnteredValue)),rowMetadata(developerMetadata(metadataId,metadataKey,metadataValue))))"
)
# On top of guardian.logging.mask_text (known secrets, tokens, passwords, URL credentials): what a shared
# sheet must not show either: OAuth access tokens, email addresses and URLs (internal hosts, signed links).
_SHEET_PRIVATE = re.compile(r"ya29\.[\w.\-]+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def mask(text: str, limit: int = 300) -> str:
    """Error text fit for a shared sheet: secrets, tokens, email addresses and URLs masked; one line."""
    from guardian.logging import MASK, mask_text

    one_line = " ".join(mask_text(text).split())
    return _SHEET_PRIVATE.sub(MASK, one_line)[:limit]


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httplib2
    from google.auth.exceptions import RefreshError, TransportError

    return (TimeoutError, ConnectionError, OSError, httplib2.HttpLib2Error, TransportError, RefreshError)


def _reason(exc: Any) -> str:
    try:
        import json

        body = json.loads(exc.content.decode("utf-8"))
        return str(body.get("error", {}).get("message") or exc.reason)
    except Exception:
        return str(getattr(exc, "reason", "") or exc)


def _http_error(method: str, target: str, status: int, reason: str, attempts: int) -> IntegrationError:
    if status == 404:
        fix = "check GUARDIAN_SHEETS__SPREADSHEET_ID and that the sheet is shared with the service account"
    elif status in (401, 403):
        fix = "share the spreadsheet with the service account (editor) and check the credentials"
    elif status == 400:
        fix = "check GUARDIAN_SHEETS__RANGE and the tab name"
    else:
        fix = f"the API kept failing after {attempts + 1} tries; retry later or raise GUARDIAN_SHEETS__RETRIES"
    return IntegrationError(f"Sheets API {method} on {target}: HTTP {status} ({reason}); {fix}")
