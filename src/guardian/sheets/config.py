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
    api_endpoint: str | None = Field(
        None, description="Sheets API endpoint override (the sandbox), e.g. http://127.0.0.1:8766/."
    )
    credentials_file: str | None = Field(
        None, description="Service-account key file; unset means application default credentials."
    )
