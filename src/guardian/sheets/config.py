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
    max_requests_per_day: int = Field(
        200, ge=1, le=100_000, description="New requests one control sheet may make per UTC day; further rows wait."
    )
    max_requests_per_requester_per_day: int = Field(
        20,
        ge=1,
        le=10_000,
        description="New requests one Requested by address may make per UTC day; further rows show `waiting`.",
    )
    max_trigger_attempts: int = Field(
        3,
        ge=1,
        le=50,
        description="Polls that may hand a request to Airflow without a run appearing before its row shows failed.",
    )
    run_timeout_hours: float = Field(
        24.0, gt=0, le=24 * 30, description="A request whose run is not finished this long after it was asked fails."
    )
    requester_email_domains: CsvList = Field(
        default_factory=list,
        description="Email domains a Requested by address must be in to receive the completion email "
        "(e.g. example.com); empty: nobody is emailed.",
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
