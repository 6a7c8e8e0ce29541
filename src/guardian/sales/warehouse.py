"""Warehouse backends of the sales extract: BigQuery, and DuckDB for the embedded default.

Both run the same BigQuery-dialect SQL (DuckDB through sqlglot) and expose the same steps:

- ``dry_run``: the bytes a query would bill (BigQuery's dry run; for DuckDB the same billing
  rules applied to per-partition column sizes),
- ``materialize``: run the query into a per-run result table, carrying the byte limit,
- ``query_one`` / ``fetch_rows`` / ``result_schema``: read the result table (checks, sheets),
- ``export_partition``: write one country x brand slice of the result to storage
  (BigQuery ``EXPORT DATA`` server-side; DuckDB ``COPY ... TO``), never streaming rows
  through Python,
- ``drop_result``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlglot
from sqlglot import exp

from guardian.errors import GuardianError, IntegrationError
from guardian.sales.sql import PARTITION_COLUMN, SOURCE_SCHEMA, TableRef, scan_plan, to_duckdb

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.storage import Storage

Params = dict[str, tuple[str, Any]]


class CostLimitExceeded(GuardianError):
    """A query's dry-run estimate (or the job itself) is over the byte limit."""


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
    """What running a query cost."""

    job_id: str
    bytes_processed: int | None
    bytes_billed: int | None
    slot_ms: int | None
    query_ms: int
    rows: int | None


@dataclass
class ExportedFile:
    """One file an export wrote."""

    key: str
    uri: str
    bytes: int
    sha256: str
    rows: int | None = None


@dataclass
class PartitionExport:
    """The files of one country x brand slice."""

    country: str
    brand: str
    rows: int
    files: list[ExportedFile] = field(default_factory=list)


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


class Warehouse(Protocol):
    """The operations the sales service needs from a warehouse."""

    backend: str
    source: TableRef

    def dry_run(self, sql: str, params: Params) -> Estimate: ...
    def materialize(self, sql: str, params: Params, name: str, *, maximum_bytes_billed: int) -> QueryStats: ...
    def result_table(self, name: str) -> exp.Table: ...
    def result_schema(self, name: str) -> list[tuple[str, str]]: ...
    def query_one(self, bigquery_sql: str, params: Params, name: str | None = None) -> dict[str, Any]: ...
    def partitions(self, name: str) -> list[tuple[str, str, int]]: ...
    def query_rows(
        self, bigquery_sql: str, params: Params, name: str, limit: int
    ) -> tuple[list[str], list[list[Any]]]: ...
    def export_partition(
        self, name: str, country: str, brand: str, fmt: str, storage: Storage, key_stem: str
    ) -> list[ExportedFile]: ...
    def drop_result(self, name: str) -> None: ...


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extension(fmt: str) -> str:
    """File extension of an export format."""
    return "parquet" if fmt == "parquet" else "csv.gz"


# -- DuckDB ---------------------------------------------------------------------------------
class DuckDBWarehouse:
    """The embedded warehouse: the sales table in a DuckDB file, results in a scratch DuckDB file.

    The warehouse file is attached read-only under the project's name, so the three-part
    BigQuery name ``project.dataset.table`` resolves unchanged after transpiling. Each run's
    result lives in its own scratch file (``<data_dir>/sales/scratch/<result>.duckdb``), so runs
    never share a writable DuckDB file.
    """

    backend = "duckdb"

    def __init__(
        self,
        path: Path,
        source: TableRef,
        scratch_dir: Path,
        *,
        memory_limit: str = "256MB",
        threads: int = 2,
    ) -> None:
        self.path = path
        self.source = source
        self.scratch_dir = scratch_dir
        self.memory_limit = memory_limit
        self.threads = threads

    @classmethod
    def from_settings(cls, settings: Settings) -> DuckDBWarehouse:
        """The DuckDB warehouse of these settings."""
        cfg = settings.sales
        return cls(
            settings.duckdb_path,
            TableRef(cfg.project, cfg.dataset, cfg.table),
            settings.data_dir / "sales" / "scratch",
            memory_limit=f"{cfg.duckdb_memory_mb}MB",
            threads=cfg.duckdb_threads,
        )

    def _require_source(self) -> None:
        if not self.path.exists():
            raise QueryFailed(f"DuckDB warehouse {self.path} does not exist; run `guardian sales demo-data`")

    @contextlib.contextmanager
    def _connect(self, name: str | None = None) -> Iterator[Any]:
        import duckdb

        self._require_source()
        if name is None:
            con = duckdb.connect(":memory:")
        else:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self.scratch_dir / f"{name}.duckdb"))
        try:
            # Bounded memory whatever the result size: DuckDB spills to the scratch folder.
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            con.execute(f"SET threads = {int(self.threads)}")
            con.execute(f"SET temp_directory = '{_sql_path(self.scratch_dir / 'spill')}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute(f"ATTACH '{_sql_path(self.path)}' AS \"{self.source.project}\" (READ_ONLY)")
            yield con
        except duckdb.Error as exc:
            raise QueryFailed(f"DuckDB: {_first_line(exc)}") from exc
        finally:
            con.close()

    def dry_run(self, sql: str, params: Params) -> Estimate:
        """Bytes the query would bill under BigQuery's rules, from per-partition column sizes."""
        values = {name: value for name, (_k, value) in params.items()}
        plan = scan_plan(sql, self.source, values)
        columns = sorted(plan.columns)
        if not columns:
            return Estimate(0, self.backend, (), 0, "no column of the source is read")
        schema = f'"{self.source.project}"."{self.source.dataset}"'
        where, binds = [], []
        if plan.start is not None:
            where.append(f"{PARTITION_COLUMN} >= ?")
            binds.append(plan.start)
        if plan.end is not None:
            where.append(f"{PARTITION_COLUMN} <= ?")
            binds.append(plan.end)
        clause = (" AND " + " AND ".join(where)) if where else ""
        with self._connect() as con:
            has_stats = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                [self.source.project, self.source.dataset, "_guardian_partition_bytes"],
            ).fetchone()[0]
            if has_stats:
                placeholders = ", ".join("?" for _ in columns)
                total, parts = con.execute(
                    f"SELECT COALESCE(SUM(bytes), 0), COUNT(DISTINCT {PARTITION_COLUMN}) "
                    f"FROM {schema}._guardian_partition_bytes WHERE column_name IN ({placeholders}){clause}",
                    [*columns, *binds],
                ).fetchone()
            else:
                total, parts = self._measure(con, columns, clause, binds)
        return Estimate(
            int(total),
            self.backend,
            tuple(columns),
            int(parts),
            f"{len(columns)} columns x {int(parts)} partitions",
        )

    def _measure(self, con: Any, columns: list[str], clause: str, binds: list[Any]) -> tuple[int, int]:
        from guardian.sales.demo import _bytes_expr

        kinds = dict(SOURCE_SCHEMA)
        exprs = " + ".join(f"COALESCE({_bytes_expr(c, kinds[c])}, 0)" for c in columns)
        row = con.execute(
            f"SELECT {exprs}, COUNT(DISTINCT {PARTITION_COLUMN}) FROM {_duck_table(self.source)} WHERE TRUE{clause}",
            binds,
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def materialize(self, sql: str, params: Params, name: str, *, maximum_bytes_billed: int) -> QueryStats:
        """Run the query into the run's scratch file (a re-run starts from an empty file)."""
        estimate = self.dry_run(sql, params)
        if estimate.bytes > maximum_bytes_billed:
            # BigQuery refuses such a job itself; the embedded backend behaves the same.
            raise CostLimitExceeded(
                f"query would process {format_bytes(estimate.bytes)}, over maximum_bytes_billed "
                f"{format_bytes(maximum_bytes_billed)}; narrow the request or raise GUARDIAN_SALES__MAX_BYTES_BILLED"
            )
        self.drop_result(name)
        values = {key: value for key, (_k, value) in params.items()}
        t0 = time.monotonic()
        with self._connect(name) as con:
            con.execute(f"CREATE TABLE result AS {to_duckdb(sql)}", values)
            rows = con.execute("SELECT count(*) FROM result").fetchone()[0]
            con.execute("CHECKPOINT")
        elapsed = int((time.monotonic() - t0) * 1000)
        return QueryStats(
            job_id=f"duckdb-{uuid.uuid4().hex[:12]}",
            bytes_processed=estimate.bytes,
            bytes_billed=estimate.bytes,
            slot_ms=None,
            query_ms=elapsed,
            rows=int(rows),
        )

    def result_table(self, name: str) -> exp.Table:
        """The result table as seen from a connection to the run's scratch file."""
        return exp.Table(this=exp.to_identifier("result", quoted=True))

    def result_schema(self, name: str) -> list[tuple[str, str]]:
        """Column names and DuckDB types of the result."""
        with self._connect(name) as con:
            return [(row[0], row[1]) for row in con.execute("DESCRIBE result").fetchall()]

    def query_one(self, bigquery_sql: str, params: Params, name: str | None = None) -> dict[str, Any]:
        """Run BigQuery SQL (transpiled) against the run's scratch file; return the first row."""
        values = {key: value for key, (_k, value) in params.items()}
        with self._connect(name) as con:
            cursor = con.execute(to_duckdb(bigquery_sql), values)
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return dict(zip(names, row or [None] * len(names), strict=True))

    def partitions(self, name: str) -> list[tuple[str, str, int]]:
        """(country, brand, rows) of the result, in order."""
        with self._connect(name) as con:
            rows = con.execute(
                "SELECT country_code, brand_code, count(*) FROM result GROUP BY ALL ORDER BY 1, 2"
            ).fetchall()
        return [(str(c), str(b), int(n)) for c, b, n in rows]

    def query_rows(self, bigquery_sql: str, params: Params, name: str, limit: int) -> tuple[list[str], list[list[Any]]]:
        """Up to ``limit`` rows of a query on the result (small results only: the sheet output)."""
        values = {key: value for key, (_k, value) in params.items()}
        with self._connect(name) as con:
            cursor = con.execute(to_duckdb(bigquery_sql), values)
            rows = [list(row) for row in cursor.fetchmany(limit)]
            names = [d[0] for d in cursor.description]
        return names, rows

    def export_partition(
        self, name: str, country: str, brand: str, fmt: str, storage: Storage, key_stem: str
    ) -> list[ExportedFile]:
        """COPY one slice to a local file (streamed by DuckDB), hash it, put it in storage."""
        key = f"{key_stem}-00000.{extension(fmt)}"
        local = self.scratch_dir / f"{name}.export" / key.replace("/", "__")
        local.parent.mkdir(parents=True, exist_ok=True)
        options = (
            "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
            if fmt == "parquet"
            else "FORMAT csv, HEADER true, COMPRESSION gzip"
        )
        try:
            with self._connect(name) as con:
                copied = con.execute(
                    f"COPY (SELECT * FROM result WHERE country_code = $country AND brand_code = $brand) "
                    f"TO '{_sql_path(local)}' ({options})",
                    {"country": country, "brand": brand},
                ).fetchone()
            rows = int(copied[0]) if copied else None
            size = local.stat().st_size
            digest = _sha256_file(local)
            uri = storage.put(key, local)
        finally:
            local.unlink(missing_ok=True)
        return [ExportedFile(key=key, uri=uri, bytes=size, sha256=digest, rows=rows)]

    def drop_result(self, name: str) -> None:
        """Delete the run's scratch file (and its export staging folder)."""
        import shutil

        for suffix in (".duckdb", ".duckdb.wal"):
            (self.scratch_dir / f"{name}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.scratch_dir / f"{name}.export", ignore_errors=True)


def _duck_table(ref: TableRef) -> str:
    return f'"{ref.project}"."{ref.dataset}"."{ref.table}"'


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# -- BigQuery -------------------------------------------------------------------------------
class BigQueryWarehouse:
    """BigQuery through google-cloud-bigquery: dry runs, guarded jobs, server-side export.

    Every API call has a timeout and the client library's bounded retry (exponential backoff
    with jitter on 429/5xx and BigQuery's transient reasons); query jobs are retried the same
    way when they fail with a transient error.
    """

    backend = "bigquery"

    def __init__(self, client: Any, source: TableRef, results_dataset: str, settings: Settings) -> None:
        self.client = client
        self.source = source
        self.results = TableRef(source.project, results_dataset, "placeholder")
        self.settings = settings
        cfg = settings.sales
        from google.cloud import bigquery

        self._retry = bigquery.DEFAULT_RETRY.with_deadline(float(cfg.job_timeout)).with_delay(
            initial=0.5, maximum=16.0, multiplier=2.0
        )
        self._job_retry = bigquery.retry.DEFAULT_JOB_RETRY.with_deadline(float(cfg.job_timeout))
        self._timeout = float(min(cfg.job_timeout, 120))
        self._dataset_ready = False

    @classmethod
    def from_settings(cls, settings: Settings, client: Any | None = None) -> BigQueryWarehouse:
        """A warehouse for these settings; ``client`` overrides how credentials are found."""
        cfg = settings.sales
        return cls(
            client or make_client(settings),
            TableRef(cfg.project, cfg.dataset, cfg.table),
            cfg.results_dataset,
            settings,
        )

    # -- helpers
    def _job_config(self, params: Params, **kwargs: Any) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(query_parameters=query_parameters(params), **kwargs)

    def _run(self, sql: str, params: Params, **kwargs: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            job = self.client.query(
                sql,
                job_config=self._job_config(params, **kwargs),
                location=self.settings.sales.location,
                retry=self._retry,
                timeout=self._timeout,
                job_retry=None if kwargs.get("dry_run") else self._job_retry,
            )
            if not kwargs.get("dry_run"):
                job.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry)
            return job
        except gexc.GoogleAPIError as exc:
            raise _translate(exc, kwargs.get("maximum_bytes_billed")) from exc
        except TimeoutError as exc:
            raise QueryFailed(
                f"BigQuery job did not finish in {self.settings.sales.job_timeout}s; "
                "raise GUARDIAN_SALES__JOB_TIMEOUT or narrow the request"
            ) from exc

    def _ensure_results_dataset(self) -> None:
        if self._dataset_ready:
            return
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.results.project}.{self.results.dataset}")
        dataset.location = self.settings.sales.location
        dataset.default_table_expiration_ms = self.settings.sales.results_expiration_hours * 3600 * 1000
        try:
            self.client.create_dataset(dataset, exists_ok=True, retry=self._retry, timeout=self._timeout)
        except gexc.GoogleAPIError as exc:
            raise IntegrationError(
                f"BigQuery dataset {dataset.dataset_id} cannot be created ({_first_line(exc)}); "
                "create it or grant bigquery.datasets.create"
            ) from exc
        self._dataset_ready = True

    def _table_id(self, name: str) -> str:
        return f"{self.results.project}.{self.results.dataset}.{name}"

    # -- protocol
    def dry_run(self, sql: str, params: Params) -> Estimate:
        """BigQuery's own estimate (a dry-run job)."""
        job = self._run(sql, params, dry_run=True, use_query_cache=False)
        total = int(job.total_bytes_processed or 0)
        return Estimate(total, self.backend, detail="BigQuery dry run")

    def materialize(self, sql: str, params: Params, name: str, *, maximum_bytes_billed: int) -> QueryStats:
        """Run the query into the run's result table (replaced on a re-run), capped by bytes billed."""
        self._ensure_results_dataset()
        t0 = time.monotonic()
        # CREATE OR REPLACE TABLE ... AS: one job, billed and capped like the SELECT itself, and
        # a re-run replaces its own result table. The table name is built from checked parts.
        ctas = exp.Create(
            this=self.result_table(name),
            kind="TABLE",
            replace=True,
            expression=sqlglot.parse_one(sql, read="bigquery"),
        ).sql(dialect="bigquery")
        job = self._run(
            ctas,
            params,
            maximum_bytes_billed=maximum_bytes_billed,
            use_query_cache=False,
            labels={"guardian": "sales"},
        )
        elapsed = int((time.monotonic() - t0) * 1000)
        if job.started and job.ended:
            elapsed = int((job.ended - job.started).total_seconds() * 1000)
        table = self.client.get_table(self._table_id(name), retry=self._retry, timeout=self._timeout)
        return QueryStats(
            job_id=str(job.job_id),
            bytes_processed=_int(job.total_bytes_processed),
            bytes_billed=_int(job.total_bytes_billed),
            slot_ms=_int(job.slot_millis),
            query_ms=elapsed,
            rows=_int(table.num_rows),
        )

    def result_table(self, name: str) -> exp.Table:
        """The result table's fully qualified name."""
        return exp.Table(
            this=exp.to_identifier(name, quoted=True),
            db=exp.to_identifier(self.results.dataset, quoted=True),
            catalog=exp.to_identifier(self.results.project, quoted=True),
        )

    def result_schema(self, name: str) -> list[tuple[str, str]]:
        """Column names and BigQuery types of the result table."""
        table = self.client.get_table(self._table_id(name), retry=self._retry, timeout=self._timeout)
        return [(f.name, f.field_type) for f in table.schema]

    def query_one(self, bigquery_sql: str, params: Params, name: str | None = None) -> dict[str, Any]:
        """Run a query server-side; return its first row."""
        job = self._run(bigquery_sql, params)
        rows = list(job.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry))
        return dict(rows[0].items()) if rows else {}

    def partitions(self, name: str) -> list[tuple[str, str, int]]:
        """(country, brand, rows) of the result, in order."""
        sql = (
            f"SELECT country_code, brand_code, COUNT(*) AS n FROM {self.result_table(name).sql(dialect='bigquery')} "
            "GROUP BY country_code, brand_code ORDER BY country_code, brand_code"
        )
        job = self._run(sql, {})
        result = job.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry)
        return [(str(r["country_code"]), str(r["brand_code"]), int(r["n"])) for r in result]

    def query_rows(self, bigquery_sql: str, params: Params, name: str, limit: int) -> tuple[list[str], list[list[Any]]]:
        """Up to ``limit`` rows of a query on the result table (the bounded sheet output)."""
        job = self._run(bigquery_sql, params)
        result = job.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry, max_results=limit)
        names = [f.name for f in result.schema]
        return names, [list(row.values()) for row in result]

    def export_partition(
        self, name: str, country: str, brand: str, fmt: str, storage: Storage, key_stem: str
    ) -> list[ExportedFile]:
        """``EXPORT DATA`` of one slice straight from BigQuery to Cloud Storage, then hash the files."""
        pattern = storage.uri(f"{key_stem}-*.{extension(fmt)}")
        if not pattern.startswith("gs://") or not _EXPORT_URI.match(pattern):
            raise GuardianError(
                f"export destination {pattern} is not a gs:// URI BigQuery can write; "
                "set GUARDIAN_STORAGE__ROOT (or the destination param) to gs://bucket/prefix"
            )
        options = (
            "format = 'PARQUET', compression = 'ZSTD'"
            if fmt == "parquet"
            else "format = 'CSV', compression = 'GZIP', header = true"
        )
        # The URI is a literal by BigQuery's grammar; it is built from checked parts only
        # (bucket and prefix from settings, codes from the allow-lists, a hex token) and
        # matched against _EXPORT_URI above. The values of the slice are query parameters.
        sql = (
            f"EXPORT DATA OPTIONS (uri = '{pattern}', {options}, overwrite = true) AS "
            f"SELECT * FROM {self.result_table(name).sql(dialect='bigquery')} "
            "WHERE country_code = @country AND brand_code = @brand"
        )
        self._run(sql, {"country": ("STRING", country), "brand": ("STRING", brand)})
        folder = key_stem.rsplit("/", 1)[0] + "/"
        stem = key_stem.rsplit("/", 1)[1]
        import tempfile

        files = []
        with tempfile.TemporaryDirectory(prefix="guardian-sales-") as tmp:
            local = Path(tmp) / "part"
            for key in storage.list(folder):
                if key.rsplit("/", 1)[1].startswith(stem + "-"):
                    # Streamed to disk and hashed in chunks: a file of any size, bounded memory.
                    storage.download(key, local)
                    files.append(
                        ExportedFile(
                            key=key, uri=storage.uri(key), bytes=local.stat().st_size, sha256=_sha256_file(local)
                        )
                    )
                    local.unlink()
        return files

    def drop_result(self, name: str) -> None:
        """Delete the run's result table (it would expire on its own)."""
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.GoogleAPIError):
            self.client.delete_table(self._table_id(name), not_found_ok=True, retry=self._retry, timeout=self._timeout)


_EXPORT_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}/[A-Za-z0-9._=/*-]+$")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def query_parameters(params: Params) -> list[Any]:
    """BigQuery typed query parameters from (type, value) pairs."""
    from google.cloud import bigquery

    out: list[Any] = []
    for name, (kind, value) in params.items():
        if kind.startswith("ARRAY<"):
            out.append(bigquery.ArrayQueryParameter(name, kind[6:-1], list(value)))
        else:
            out.append(bigquery.ScalarQueryParameter(name, kind, value))
    return out


def _translate(exc: Exception, limit: int | None) -> GuardianError:
    text = _first_line(exc)
    reasons = {err.get("reason") for err in getattr(exc, "errors", None) or [] if isinstance(err, dict)}
    if "bytesBilledLimitExceeded" in reasons or "bytesBilledLimitExceeded" in text:
        return CostLimitExceeded(
            f"BigQuery refused the job: over maximum_bytes_billed {format_bytes(limit)} ({text}); "
            "narrow the request or raise GUARDIAN_SALES__MAX_BYTES_BILLED"
        )
    return QueryFailed(f"BigQuery: {text}")


def make_client(settings: Settings) -> Any:
    """A BigQuery client: the emulator endpoint with anonymous credentials, else default credentials."""
    from google.cloud import bigquery

    cfg = settings.sales
    if cfg.bigquery_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=cfg.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=cfg.bigquery_endpoint),
            location=cfg.location,
        )
    try:
        return bigquery.Client(project=cfg.project, location=cfg.location)
    except Exception as exc:  # google.auth raises several types when no credentials exist
        raise IntegrationError(
            f"no BigQuery credentials ({_first_line(exc)}); set GOOGLE_APPLICATION_CREDENTIALS "
            "or the google_cloud_default connection"
        ) from exc


def open_warehouse(settings: Settings, client: Any | None = None) -> Warehouse:
    """The configured warehouse (GUARDIAN_SALES__BACKEND)."""
    if settings.sales.backend == "bigquery":
        return BigQueryWarehouse.from_settings(settings, client)
    return DuckDBWarehouse.from_settings(settings)


def bigquery_dry_run_check(settings: Settings, client: Any | None = None) -> str:
    """``guardian doctor``: dry-run a query touching one day of the sales table; one line."""
    warehouse = BigQueryWarehouse.from_settings(settings, client)
    today = date.today()
    sql = f"SELECT COUNT(entry_no) AS n FROM {warehouse.source.node().sql(dialect='bigquery')} WHERE sale_date = @day"
    estimate = warehouse.dry_run(sql, {"day": ("DATE", today)})
    return (
        f"BigQuery dry run on {warehouse.source} ok ({format_bytes(estimate.bytes)} for one day; "
        f"limit {format_bytes(settings.sales.max_bytes_billed)})"
    )
