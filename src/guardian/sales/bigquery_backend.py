"""BigQuery through google-cloud-bigquery: dry runs, idempotent capped jobs, an unbilled export.

The run's data is read by BigQuery once, by the query into the result table; the gate's pass
reads the result's checked columns; the export is an extract job, which BigQuery does not bill.

Every API call has a timeout and the client library's bounded retry (exponential backoff with
jitter on 429/5xx). Every job has a deterministic id (``<JobSpec.base_id>_<generation>``): a
retried task first looks the job up and reattaches to it (waits for it, reads its statistics)
instead of submitting a second billed job; jobs.insert of an id that exists answers 409
(https://cloud.google.com/bigquery/docs/running-jobs#generate-jobid), which is also treated as
"reattach". Only a job that failed (BigQuery bills nothing for it) or whose output is gone
(the result table was dropped, the exported files deleted) makes the next generation run.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from guardian.errors import GuardianError, IntegrationError
from guardian.sales.budget import CostLimitExceeded, JobSpec, JobStats
from guardian.sales.sql import TableRef
from guardian.sales.warehouse import (
    SLICE_COLUMNS,
    Estimate,
    LocalCopy,
    Params,
    QueryFailed,
    QueryStats,
    format_bytes,
    sql_path,
)

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.storage import Storage

# Generations of one job id stem before giving up (each needs a failed job or lost output).
MAX_GENERATIONS = 5
# An extract job bills nothing, and its staged files are deleted once cut into slices, so every
# rerun of a finished export (same result, same job id stem) needs a new generation; the bound
# only stops a loop.
MAX_FREE_GENERATIONS = 100
# https://cloud.google.com/bigquery/docs/error-messages: reasons worth a new job.
TRANSIENT_REASONS = frozenset({"backendError", "internalError", "rateLimitExceeded", "jobBackendError"})
_EXPORT_URI = __import__("re").compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}/[A-Za-z0-9._=/*-]+$")


class BigQueryWarehouse:
    """The BigQuery backend of :class:`~guardian.sales.warehouse.Warehouse`."""

    backend = "bigquery"
    # On-demand pricing bills at least 10 MB per table a query references
    # (https://cloud.google.com/bigquery/pricing#on_demand_pricing).
    min_job_bytes = 10 * 1024 * 1024

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

    # -- jobs
    def _job_config(self, params: Params, **kwargs: Any) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(query_parameters=query_parameters(params), **kwargs)

    def _get_job(self, job_id: str) -> Any | None:
        from google.api_core import exceptions as gexc

        try:
            return self.client.get_job(
                job_id, location=self.settings.sales.location, retry=self._retry, timeout=self._timeout
            )
        except gexc.NotFound:
            return None

    def _stats(self, job: Any, spec: JobSpec) -> JobStats:
        # An extract job has no byte statistics: BigQuery does not bill it.
        return JobStats(
            str(job.job_id),
            spec.step,
            int(getattr(job, "total_bytes_processed", None) or 0),
            int(getattr(job, "total_bytes_billed", None) or 0),
            _int(getattr(job, "slot_millis", None)),
            _int(getattr(job, "maximum_bytes_billed", None)),
        )

    def _job(self, sql: str, params: Params, spec: JobSpec, *, valid: Callable[[Any], bool] | None = None) -> Any:
        """Run ``sql`` as the query job of ``spec`` (capped by what remains of the budget), reattaching."""

        def submit(job_id: str) -> Any:
            config = self._job_config(
                params, maximum_bytes_billed=spec.require(), labels=spec.labels, use_query_cache=False
            )
            return self.client.query(
                sql,
                job_config=config,
                job_id=job_id,
                location=self.settings.sales.location,
                retry=self._retry,
                timeout=self._timeout,
                job_retry=None,  # a new attempt is a new generation, decided here
            )

        return self._idempotent(submit, spec, valid=valid)

    def _idempotent(
        self,
        submit: Callable[[str], Any],
        spec: JobSpec,
        *,
        valid: Callable[[Any], bool] | None = None,
        generations: int = MAX_GENERATIONS,
    ) -> Any:
        """Run ``submit``'s job as the job of ``spec``, reattaching to the newest generation already submitted.

        Every earlier generation that finished was billed, so it is recorded too (once: the
        budget keys jobs by id) before a new generation gets what remains as its cap.
        """
        from google.api_core import exceptions as gexc

        existing: list[Any] = []
        while len(existing) < generations:
            found = self._get_job(f"{spec.base_id}_{len(existing)}")
            if found is None:
                break
            existing.append(found)
        for old in existing[:-1]:
            if getattr(old, "state", None) == "DONE" and old.error_result is None:
                spec.on_done(self._stats(old, spec))
        generation = max(len(existing) - 1, 0)
        while generation < generations:
            job_id = f"{spec.base_id}_{generation}"
            job = existing[generation] if generation < len(existing) else None
            reattached = job is not None
            try:
                if job is None:
                    try:
                        job = submit(job_id)
                    except gexc.Conflict:
                        job, reattached = self._get_job(job_id), True
                        if job is None:
                            raise
                job.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry)
            except gexc.GoogleAPIError as exc:
                if _reasons(exc) & TRANSIENT_REASONS:
                    generation += 1  # the job failed: nothing billed; the next generation runs it again
                    continue
                raise _translate(exc, spec.maximum_bytes_billed) from exc
            except TimeoutError as exc:
                raise QueryFailed(
                    f"BigQuery job {job_id} did not finish in {self.settings.sales.job_timeout}s (it keeps running "
                    "and a retry reattaches to it); raise GUARDIAN_SALES__JOB_TIMEOUT or narrow the request"
                ) from exc
            # Billed, so counted, even when its output is gone and the next generation must run.
            spec.on_done(self._stats(job, spec))
            if reattached and valid is not None and not valid(job):
                generation += 1
                continue
            return job
        raise QueryFailed(
            f"BigQuery job {spec.base_id} needed more than {generations} generations; clear the task later"
        )

    def _ensure_results_dataset(self) -> None:
        if self._dataset_ready:
            return
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        dataset = bigquery.Dataset(f"{self.results.project}.{self.results.dataset}")
        dataset.location = self.settings.sales.location
        # A result nobody exported expires on its own (BigQuery deletes it).
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

    def _get_table(self, name: str) -> Any | None:
        from google.api_core import exceptions as gexc

        try:
            return self.client.get_table(self._table_id(name), retry=self._retry, timeout=self._timeout)
        except gexc.NotFound:
            return None

    # -- protocol
    def dry_run(self, sql: str, params: Params) -> Estimate:
        """BigQuery's own estimate (a dry-run job: nothing runs, nothing is billed)."""
        from google.api_core import exceptions as gexc

        try:
            job = self.client.query(
                sql,
                job_config=self._job_config(params, dry_run=True, use_query_cache=False),
                location=self.settings.sales.location,
                retry=self._retry,
                timeout=self._timeout,
                job_retry=None,
            )
        except gexc.GoogleAPIError as exc:
            raise _translate(exc, None) from exc
        return Estimate(int(job.total_bytes_processed or 0), self.backend, detail="BigQuery dry run")

    def materialize(self, sql: str, params: Params, name: str, job: JobSpec) -> QueryStats:
        """Run the query into the run's result table, clustered by the slice columns, as one capped job."""
        self._ensure_results_dataset()
        t0 = time.monotonic()
        # CREATE OR REPLACE TABLE ... CLUSTER BY ... AS: one job, billed and capped like the SELECT
        # itself; clustering lets each export slice read only its own blocks
        # (https://cloud.google.com/bigquery/docs/clustered-tables#block-pruning).
        ctas = exp.Create(
            this=self.result_table(name),
            kind="TABLE",
            replace=True,
            expression=sqlglot.parse_one(sql, read="bigquery"),
            properties=exp.Properties(
                expressions=[exp.ClusterProperty(expressions=[exp.column(c) for c in SLICE_COLUMNS])]
            ),
        ).sql(dialect="bigquery")
        done = self._job(ctas, params, job, valid=lambda _job: self._get_table(name) is not None)
        elapsed = int((time.monotonic() - t0) * 1000)
        if done.started and done.ended:
            elapsed = int((done.ended - done.started).total_seconds() * 1000)
        table = self._get_table(name)
        return QueryStats(
            job_id=str(done.job_id),
            bytes_processed=_int(done.total_bytes_processed),
            bytes_billed=_int(done.total_bytes_billed),
            slot_ms=_int(done.slot_millis),
            query_ms=elapsed,
            rows=_int(table.num_rows) if table is not None else None,
        )

    def result_exists(self, name: str) -> bool:
        """True when the run's result table exists (it expires after GUARDIAN_SALES__RESULTS_EXPIRATION_HOURS)."""
        return self._get_table(name) is not None

    def result_bytes(self, name: str) -> int:
        """Logical bytes of the result table (what reading all of it once bills)."""
        table = self._get_table(name)
        return int(table.num_bytes or 0) if table is not None else 0

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

    def query_one(self, bigquery_sql: str, params: Params, name: str, job: JobSpec) -> dict[str, Any]:
        """Run a query server-side as a capped job; return its first row."""
        done = self._job(bigquery_sql, params, job)
        rows = list(done.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry))
        return dict(rows[0].items()) if rows else {}

    def query_rows(
        self, bigquery_sql: str, params: Params, name: str, limit: int, job: JobSpec
    ) -> tuple[list[str], list[list[Any]]]:
        """Up to ``limit`` rows of a query on the result table (the bounded sheet output)."""
        done = self._job(bigquery_sql, params, job)
        result = done.result(timeout=float(self.settings.sales.job_timeout), retry=self._retry, max_results=limit)
        names = [f.name for f in result.schema]
        return names, [list(row.values()) for row in result]

    @contextlib.contextmanager
    def local_copy(self, name: str, storage: Storage, staging: str, job: JobSpec) -> Iterator[LocalCopy]:
        """The result as ``result`` on a bounded-memory DuckDB: one extract job to ``staging``, downloaded.

        BigQuery bills no bytes for extract jobs (https://cloud.google.com/bigquery/pricing#free:
        "Exporting data"), where reading the result with queries (the gate's pass, an
        ``EXPORT DATA`` per slice) bills the result's columns again. An extract cannot filter (it
        writes a whole table, https://cloud.google.com/bigquery/docs/exporting-data#export_limitations),
        so the gate's pass and the slices run on this worker over the staged Parquet files, in a
        DuckDB bounded by GUARDIAN_SALES__DUCKDB_MEMORY_MB that spills to a temporary folder. The
        staged objects are deleted when the copy is closed.
        """
        import duckdb

        pattern = storage.uri(f"{staging}part-*.parquet")
        if not pattern.startswith("gs://") or not _EXPORT_URI.match(pattern):
            raise GuardianError(
                f"export destination {pattern} is not a gs:// URI BigQuery can write; "
                "set GUARDIAN_STORAGE__ROOT (or the destination param) to gs://bucket/prefix"
            )
        self._extract(name, pattern, job, valid=lambda _job: bool(storage.list(staging)))
        cfg = self.settings.sales
        try:
            with tempfile.TemporaryDirectory(prefix="guardian-sales-") as tmp:
                folder = Path(tmp)
                staged = folder / "staged"
                staged.mkdir()
                keys = storage.list(staging)
                if not keys:
                    raise QueryFailed(f"BigQuery's extract of {name} wrote no file to {pattern}; clear the task")
                for i, key in enumerate(keys):
                    storage.download(key, staged / f"{i:05d}.parquet")
                con = duckdb.connect(":memory:")
                try:
                    # Bounded memory whatever the result size: DuckDB spills to the temporary folder.
                    con.execute(f"SET memory_limit = '{int(cfg.duckdb_memory_mb)}MB'")
                    con.execute(f"SET threads = {int(cfg.duckdb_threads)}")
                    con.execute(f"SET temp_directory = '{sql_path(folder / 'spill')}'")
                    con.execute("SET preserve_insertion_order = false")
                    con.execute(f"CREATE VIEW result AS SELECT * FROM read_parquet('{sql_path(staged)}/*.parquet')")
                    yield LocalCopy(con, folder)
                except duckdb.Error as exc:
                    raise QueryFailed(f"local copy of {name}: {_first_line(exc)}") from exc
                finally:
                    con.close()
        finally:
            for key in storage.list(staging):
                storage.delete(key)

    def _extract(self, name: str, pattern: str, spec: JobSpec, *, valid: Callable[[Any], bool]) -> Any:
        """The result table to ``pattern`` as Parquet: one idempotent extract job (not billed, labelled)."""
        from google.cloud import bigquery

        def submit(job_id: str) -> Any:
            config = bigquery.ExtractJobConfig(  # type: ignore[no-untyped-call]
                destination_format=bigquery.DestinationFormat.PARQUET,
                compression=bigquery.Compression.SNAPPY,
                labels=spec.labels,
            )
            return self.client.extract_table(
                self._table_id(name),
                [pattern],
                job_id=job_id,
                job_config=config,
                location=self.settings.sales.location,
                retry=self._retry,
                timeout=self._timeout,
            )

        return self._idempotent(submit, spec, valid=valid, generations=MAX_FREE_GENERATIONS)

    def expire_results(self, max_age_hours: int) -> None:
        """Nothing to do: the results dataset's default table expiration deletes old results."""

    def drop_result(self, name: str) -> None:
        """Delete the run's result table (it would expire on its own)."""
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.GoogleAPIError):
            self.client.delete_table(self._table_id(name), not_found_ok=True, retry=self._retry, timeout=self._timeout)


def _reasons(exc: Exception) -> set[str]:
    return {str(err.get("reason")) for err in getattr(exc, "errors", None) or [] if isinstance(err, dict)}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


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
    if "bytesBilledLimitExceeded" in _reasons(exc) or "bytesBilledLimitExceeded" in text:
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


def dry_run_check(settings: Settings, client: Any | None = None) -> str:
    """``guardian doctor``: dry-run a query touching one day of the sales table; one line."""
    warehouse = BigQueryWarehouse.from_settings(settings, client)
    today = date.today()
    sql = f"SELECT COUNT(entry_no) AS n FROM {warehouse.source.node().sql(dialect='bigquery')} WHERE sale_date = @day"
    estimate = warehouse.dry_run(sql, {"day": ("DATE", today)})
    return (
        f"BigQuery dry run on {warehouse.source} ok ({format_bytes(estimate.bytes)} for one day; "
        f"limit {format_bytes(settings.sales.max_bytes_billed)})"
    )
