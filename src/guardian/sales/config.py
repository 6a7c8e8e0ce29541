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
        description="Byte budget of one run, across all its jobs (query, checks, exports): a run estimated "
        "above it is refused, and each job carries what remains as maximum_bytes_billed.",
    )
    allowed_destinations: CsvList = Field(
        default_factory=list,
        description="Storage prefixes an extract may be exported under (gs://bucket/prefix or file:///path); "
        "a destination param outside them is refused. Empty: only the configured storage root.",
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
    brands: CsvList = Field(
        default_factory=lambda: ["X", "Y", "Z", "NOVA", "ACME"],
        description="Brand codes that may be requested.",
    )
    currencies: CsvList = Field(
        default_factory=lambda: ["THB", "VND", "MYR", "SGD", "IDR", "PHP", "USD"],
        description="Currency codes the quality gate accepts in a result.",
    )
    results_dataset: str = Field(
        "guardian_results",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$",
        description="BigQuery dataset (in the sales project) holding each run's result table before export.",
    )
    results_expiration_hours: int = Field(
        48, ge=1, description="Hours a BigQuery result table is kept before BigQuery deletes it."
    )
    job_timeout: int = Field(600, ge=1, description="Seconds to wait for one BigQuery job (query, export).")
    default_format: Literal["parquet", "csv"] = Field(
        "parquet", description="Export format when a run does not name one: parquet (zstd) or csv (gzip)."
    )
    coverage_max_missing_days: int = Field(
        0,
        ge=0,
        description="Quality gate: days without rows a slice (country x brand) may have in the range before "
        "coverage fails; a whole empty month always fails.",
    )
    volume_min_ratio: float = Field(
        0.5, gt=0, description="Quality gate: lowest rows/day of a slice as a ratio of its median in earlier runs."
    )
    volume_max_ratio: float = Field(
        2.0, gt=0, description="Quality gate: highest rows/day of a slice as a ratio of its median in earlier runs."
    )
    volume_history_runs: int = Field(
        10, ge=1, description="Quality gate: earlier runs the volume median is taken over."
    )
    volume_min_history: int = Field(
        3, ge=1, description="Quality gate: earlier runs of a slice needed before its volume is judged."
    )
    freshness_max_lag_days: int = Field(
        0,
        ge=0,
        description="Quality gate: days the newest sale_date and load time may trail the range end.",
    )
    warn_only_checks: CsvList = Field(
        default_factory=list,
        description="Quality checks reported as warnings instead of failing the run: any of schema, not_null, "
        "currency_known, unique_entry_no, sign_consistent, coverage, volume, freshness, export_reconciled.",
    )
    sheet_tab: str = Field("sales", description="Default tab name for the optional sheet output.")
    duckdb_memory_mb: int = Field(
        160,
        ge=32,
        description="Memory limit of the DuckDB backend per query in MB (it spills to disk beyond it), "
        "which keeps an extract process well under 500 MB whatever the result size.",
    )
    duckdb_threads: int = Field(2, ge=1, le=64, description="Threads of the DuckDB backend per query.")
