"""Google Sheets trigger settings (``GUARDIAN_SHEETS__*``)."""

from __future__ import annotations

from pydantic import Field

from guardian.config_types import CsvList, Section


class SheetsSettings(Section):
    """Where the control sheet is and what it may start."""

    spreadsheet_id: str | None = Field(
        None,
        description="Id of the control spreadsheet; unset means the Sheets trigger is not configured.",
    )
    range: str = Field("Requests!A1:Z", description="A1 range of the control table, header row first.")
    allowed_targets: CsvList = Field(
        default_factory=lambda: ["bigquery_sales_query"],
        description="DAG ids a sheet row may start.",
    )
    default_target: str = Field(
        "bigquery_sales_query",
        description="DAG started by a row whose Target cell is blank (must be in allowed_targets).",
    )
    api_endpoint: str | None = Field(
        None, description="Sheets API endpoint override (the sandbox), e.g. http://127.0.0.1:8766/."
    )
    credentials_file: str | None = Field(
        None, description="Service-account key file; unset means application default credentials."
    )
    anonymous: bool = Field(
        False,
        description="Send no credentials (the sandbox); also implied by an api_endpoint on 127.0.0.1/localhost.",
    )
    timeout: int = Field(30, ge=1, le=600, description="Timeout in seconds of one Sheets API call.")
    retries: int = Field(5, ge=0, le=20, description="Retries of a Sheets API call on 429, 5xx or a network error.")
    backoff_seconds: float = Field(
        1.0, ge=0, le=60, description="First retry delay in seconds; doubled each retry, with jitter, capped at 60."
    )
    countries: CsvList | None = Field(
        None, description="Country codes a row may request (default: GUARDIAN_SALES__COUNTRIES)."
    )
    max_cell_chars: int = Field(200, ge=10, le=50_000, description="Longest cell value accepted in a request row.")
    max_requests_per_poll: int = Field(
        200, ge=1, le=1000, description="Circuit breaker: new requests accepted by one poll; the rest wait."
    )
    recheck_after_seconds: float = Field(
        10.0,
        ge=0,
        description="If more than this passed between the read and the write-back, re-read the rows about to be "
        "written (one values.batchGet) and leave those a person edited meanwhile; 0 re-checks every time.",
    )
    poll_schedule: str = Field(
        "*/5 * * * *",
        pattern=r"^[0-9*/,\- ]+$",
        description="Cron schedule of google_sheet_trigger_dag, read by the DAG file from the environment of the "
        "DAG processor (a .env file is not read there); e.g. * * * * * for every minute.",
    )
    alert_email: bool = Field(
        True, description="Email GUARDIAN_NOTIFY__EMAIL_TO when the poll starts failing (once until it recovers)."
    )
