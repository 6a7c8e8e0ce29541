"""The warehouse protocol of the sales extract, and the pieces both backends share.

Backends, one module each: :mod:`guardian.sales.bigquery_backend` (BigQuery through
google-cloud-bigquery) and :mod:`guardian.sales.duckdb_backend` (the embedded default). Both
run the same BigQuery-dialect SQL and expose the same steps:

- ``dry_run``: the bytes a query would bill (nothing runs),
- ``materialize``: the query into a per-run result table clustered by the slice columns,
  as one idempotent job carrying what remains of the run's byte budget,
- ``query_one`` / ``query_rows`` / ``result_schema``: read the result (checks, sheets),
- ``local_copy``: the result as the table ``result`` of a bounded-memory DuckDB connection
  (DuckDB: the run's scratch file; BigQuery: one extract job of the result, which BigQuery
  does not bill, downloaded from storage), on which the quality gate's pass runs and the export
  writes every country x brand slice with one ``COPY ... (PARTITION_BY ...)``
  (:func:`write_slices`), never streaming rows through Python,
- ``result_exists`` / ``result_bytes`` / ``drop_result``.

Every job a backend runs takes a :class:`~guardian.sales.budget.JobSpec` (deterministic id,
labels, ``maximum_bytes_billed``) and reports what it cost through ``spec.on_done``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlglot import exp

from guardian.errors import IntegrationError
from guardian.sales.budget import CostLimitExceeded, JobSpec
from guardian.sales.sql import TableRef

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.storage import Storage

Params = dict[str, tuple[str, Any]]
SLICE_COLUMNS = ("country_code", "brand_code")

__all__ = [
    "SLICE_COLUMNS",
    "CostLimitExceeded",
    "Estimate",
    "ExportedFile",
    "LocalCopy",
    "PartitionExport",
    "QueryFailed",
    "QueryStats",
    "Warehouse",
    "extension",
    "format_bytes",
    "open_warehouse",
    "result_name",
    "sql_path",
    "write_slices",
]


class QueryFailed(IntegrationError):
    """The warehouse rejected or failed a query."""


@dataclass(frozen=True)
class Estimate:
    """A dry run's answer: bytes the query would process (and bill)."""

    bytes: int
    backend: str
    columns: tuple[str, ...] = ()
    partitions: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class QueryStats:
    """What the main query job cost, and the rows of its result."""

    job_id: str
    bytes_processed: int | None
    bytes_billed: int | None
    slot_ms: int | None
    query_ms: int
    rows: int | None
    reattached: bool = False


@dataclass
class ExportedFile:
    """One file an export wrote, with the storage's own checksum of it."""

    key: str
    uri: str
    bytes: int
    md5: str
    rows: int | None = None
    crc32c: str | None = None


@dataclass
class PartitionExport:
    """The files of one country x brand slice."""

    country: str
    brand: str
    rows: int
    files: list[ExportedFile] = field(default_factory=list)
    exported_rows: int | None = None  # what the export job itself reports writing
    exported_amount: float | None = None  # sum of net_amount in the written files, where it is read back


SpecFor = Callable[[str, str], JobSpec]


@dataclass
class LocalCopy:
    """The run's result as the table ``result`` on a DuckDB connection, and a scratch folder to write in."""

    con: Any
    folder: Path

    def query_rows(self, bigquery_sql: str, params: Params) -> tuple[list[str], list[list[Any]]]:
        """Column names and rows of a query in BigQuery's dialect (sqlglot translates it) over ``result``."""
        from guardian.sales.sql import to_duckdb

        cursor = self.con.execute(to_duckdb(bigquery_sql), {k: v for k, (_t, v) in params.items()})
        names = [d[0] for d in cursor.description]
        return names, [list(row) for row in cursor.fetchall()]

    @property
    def table(self) -> exp.Table:
        """The result's table name in :meth:`query_rows` queries."""
        return exp.Table(this=exp.to_identifier("result", quoted=True))


def format_bytes(n: int | None) -> str:
    """Human-readable bytes (binary units)."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def result_name(run_id: str) -> str:
    """A table name for a run's result: readable, safe and unique per run id."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", run_id).strip("_")[:60] or "run"
    return f"sales_{slug}_{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def extension(fmt: str) -> str:
    """File extension of an export format."""
    return "parquet" if fmt == "parquet" else "csv.gz"


class Warehouse(Protocol):
    """The operations the sales service needs from a warehouse."""

    backend: str
    source: TableRef
    min_job_bytes: int  # the least a billed job is charged (BigQuery: 10 MB), 0 where nothing bills

    def dry_run(self, sql: str, params: Params) -> Estimate: ...
    def materialize(self, sql: str, params: Params, name: str, job: JobSpec) -> QueryStats: ...
    def result_exists(self, name: str) -> bool: ...
    def result_bytes(self, name: str) -> int: ...
    def result_table(self, name: str) -> exp.Table: ...
    def result_schema(self, name: str) -> list[tuple[str, str]]: ...
    def query_one(self, bigquery_sql: str, params: Params, name: str, job: JobSpec) -> dict[str, Any]: ...
    def query_rows(
        self, bigquery_sql: str, params: Params, name: str, limit: int, job: JobSpec
    ) -> tuple[list[str], list[list[Any]]]: ...
    def local_copy(
        self, name: str, storage: Storage, staging: str, job: JobSpec
    ) -> contextlib.AbstractContextManager[LocalCopy]: ...
    def drop_result(self, name: str) -> None: ...
    def expire_results(self, max_age_hours: int) -> None: ...


def write_slices(
    con: Any,
    relation: str,
    folder: Path,
    fmt: str,
    slices: list[tuple[str, str, int]],
    storage: Storage,
    stem: Callable[[str, str], str],
) -> list[PartitionExport]:
    """Every slice of ``relation`` in one DuckDB ``COPY ... (PARTITION_BY ...)`` pass into ``folder``, then to storage.

    Rows and net amount per slice are counted from the written files themselves (what the
    export is reconciled with); each file's size and checksums are the storage's own
    (:meth:`~guardian.storage.Storage.hash`) of the object it now holds. ``relation`` is a
    DuckDB table or table function; the connection's memory limit bounds the pass.
    """
    out = folder / "out"
    ext = extension(fmt)
    options = (
        "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
        if fmt == "parquet"
        else "FORMAT csv, HEADER true, COMPRESSION gzip"
    )
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    # The CSV reader's default 32 MB buffer per file and thread would not fit the memory limit.
    csv_options = "" if fmt == "parquet" else ", header = true, buffer_size = 4194304"
    con.execute(
        f"COPY (SELECT * FROM {relation}) TO '{sql_path(out)}' "
        f"({options}, PARTITION_BY ({', '.join(SLICE_COLUMNS)}), "
        f"WRITE_PARTITION_COLUMNS true, FILENAME_PATTERN 'part_{{i}}')"
    )
    counts: dict[tuple[str, str], tuple[int, float | None]] = {}
    if any(out.rglob(f"*.{ext}")):
        counts = {
            (str(c), str(b)): (int(n), None if amount is None else float(amount))
            for c, b, n, amount in con.execute(
                f"SELECT country_code, brand_code, count(*), sum(net_amount) "
                f"FROM {reader}('{sql_path(out)}/**/*.{ext}', hive_partitioning = false{csv_options}) GROUP BY ALL"
            ).fetchall()
        }
    parts: list[PartitionExport] = []
    for country, brand, rows in slices:
        slice_folder = out / f"country_code={country}" / f"brand_code={brand}"
        files = []
        for i, local in enumerate(sorted(slice_folder.glob(f"*.{ext}")) if slice_folder.exists() else []):
            key = f"{stem(country, brand)}-{i:05d}.{ext}"
            uri = storage.put(key, local)
            stored = storage.hash(key)
            files.append(ExportedFile(key, uri, stored.size, stored.md5 or "", crc32c=stored.crc32c))
        got_rows, got_amount = counts.get((country, brand), (0, None))
        part = PartitionExport(country, brand, rows, files, got_rows, got_amount)
        if len(files) == 1:
            files[0].rows = part.exported_rows
        parts.append(part)
    return parts


def sql_path(path: Path) -> str:
    """A path as a DuckDB string literal's content."""
    return str(path).replace("'", "''")


def open_warehouse(settings: Settings, client: Any | None = None) -> Warehouse:
    """The configured warehouse (GUARDIAN_SALES__BACKEND)."""
    if settings.sales.backend == "bigquery":
        from guardian.sales.bigquery_backend import BigQueryWarehouse

        return BigQueryWarehouse.from_settings(settings, client)
    from guardian.sales.duckdb_backend import DuckDBWarehouse

    return DuckDBWarehouse.from_settings(settings)


def bigquery_dry_run_check(settings: Settings, client: Any | None = None) -> str:
    """``guardian doctor``: dry-run a query touching one day of the sales table; one line."""
    from guardian.sales.bigquery_backend import dry_run_check

    return dry_run_check(settings, client)
