"""Sales analytics settings (``GUARDIAN_SALES__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guardian.config_types import CsvList, Section

_IDENT = r"^[A-Za-z_][A-Za-z0-9_-]{0,1023}$"


class SalesSettings(Section):
    """Warehouse, cost guard and export settings of the sales extract service."""

    backend: Literal["duckdb", "bigquery"] = Field(
        "duckdb", description="Warehouse: the embedded DuckDB file or BigQuery."
    )
    project: str = Field("guardian-demo", pattern=_IDENT, description="BigQuery project of the sales table.")
    dataset: str = Field(
        "sales",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$",
        description="BigQuery dataset of the sales table.",
    )
    table: str = Field(
        "sales_entries",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$",
        description="Sales-entry fact table.",
    )
    location: str = Field("US", description="BigQuery location of jobs.")
    bigquery_endpoint: str | None = Field(
        None, description="API endpoint override (an emulator), e.g. http://127.0.0.1:9050."
    )
    duckdb_path: str | None = Field(
        None,
        description="DuckDB file of the embedded warehouse (default: <data_dir>/warehouse.duckdb).",
    )
    max_bytes_billed: int = Field(
        10 * 1024**3,
        ge=1,
        description="Cost guard: a query estimated above this many bytes is refused.",
    )
    max_range_days: int = Field(366, ge=1, description="Longest date range one extract may request.")
    countries: CsvList = Field(
        default_factory=lambda: ["TH", "VN", "MY", "SG", "ID", "PH"],
        description="Country codes that may be requested.",
    )
    export_prefix: str = Field("sales", description="Key prefix of extracts under the storage root.")
    demo_rows: int = Field(200_000, ge=1, description="Rows generated for the demo DuckDB table.")
    sheet_max_cells: int = Field(
        100_000, ge=1, description="Largest result (rows x columns) written to a Google Sheet."
    )
