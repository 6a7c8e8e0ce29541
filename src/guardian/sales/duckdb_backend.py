"""The embedded warehouse: the sales table in a DuckDB file, each run's result in a scratch file.

The warehouse file is attached read-only under the project's name, so the three-part BigQuery
name ``project.dataset.table`` resolves unchanged after transpiling. Each run's result lives
in its own scratch file (``<data_dir>/sales/scratch/<result>.duckdb``), so runs never share a
writable DuckDB file. DuckDB bills nothing: a job's ``bytes_processed`` is what BigQuery would
charge for reading the source (its billing rules over per-partition column sizes), reads of
the local scratch result count zero, and ``bytes_billed`` stays None.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from guardian.sales.budget import CostLimitExceeded, JobSpec, JobStats
from guardian.sales.sql import PARTITION_COLUMN, SOURCE_SCHEMA, TableRef, scan_plan, to_duckdb
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

_JOB_TABLE = "_guardian_job"


class DuckDBWarehouse:
    """The DuckDB backend of :class:`~guardian.sales.warehouse.Warehouse`."""

    backend = "duckdb"
    min_job_bytes = 0

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

    def _scratch(self, name: str) -> Path:
        return self.scratch_dir / f"{name}.duckdb"

    @contextlib.contextmanager
    def _connect(self, name: str | None = None) -> Iterator[Any]:
        import duckdb

        self._require_source()
        if name is None:
            con = duckdb.connect(":memory:")
        else:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(self._scratch(name)))
        try:
            # Bounded memory whatever the result size: DuckDB spills to the scratch folder.
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            con.execute(f"SET threads = {int(self.threads)}")
            con.execute(f"SET temp_directory = '{sql_path(self.scratch_dir / 'spill')}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute(f"ATTACH '{sql_path(self.path)}' AS \"{self.source.project}\" (READ_ONLY)")
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
        from guardian.sales.demo import bytes_expr

        kinds = dict(SOURCE_SCHEMA)
        exprs = " + ".join(f"COALESCE({bytes_expr(c, kinds[c])}, 0)" for c in columns)
        row = con.execute(
            f"SELECT {exprs}, COUNT(DISTINCT {PARTITION_COLUMN}) FROM {_duck_table(self.source)} WHERE TRUE{clause}",
            binds,
        ).fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def _finished_job(self, name: str) -> dict[str, Any] | None:
        """The job that wrote the run's scratch result, if the result is complete."""
        if not self._scratch(name).exists():
            return None
        with self._connect(name) as con:
            tables = {
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
                ).fetchall()
            }
            if not {"result", _JOB_TABLE} <= tables:
                return None
            row = con.execute(f"SELECT job_id, bytes_processed, query_ms, rows FROM {_JOB_TABLE}").fetchone()
        return dict(zip(("job_id", "bytes_processed", "query_ms", "rows"), row, strict=True)) if row else None

    def materialize(self, sql: str, params: Params, name: str, job: JobSpec) -> QueryStats:
        """Run the query into the run's scratch file, or reattach to the result its job already wrote."""
        done = self._finished_job(name)
        if done is not None and str(done["job_id"]).startswith(job.base_id):
            stats = JobStats(
                done["job_id"],
                job.step,
                int(done["bytes_processed"]),
                None,
                None,
                job.maximum_bytes_billed,
                int(done["rows"]),
            )
            job.on_done(stats)
            return QueryStats(
                stats.job_id, stats.bytes_processed, None, None, int(done["query_ms"]), stats.rows, reattached=True
            )
        estimate = self.dry_run(sql, params)
        if estimate.bytes > job.maximum_bytes_billed:
            # BigQuery refuses such a job itself (bytesBilledLimitExceeded); the embedded backend does the same.
            raise CostLimitExceeded(
                f"query would process {format_bytes(estimate.bytes)}, over maximum_bytes_billed "
                f"{format_bytes(job.maximum_bytes_billed)}; narrow the request or raise "
                "GUARDIAN_SALES__MAX_BYTES_BILLED"
            )
        self.drop_result(name)
        values = {key: value for key, (_k, value) in params.items()}
        job_id = _new_id(job)
        t0 = time.monotonic()
        with self._connect(name) as con:
            # Ordered by the slice columns: DuckDB's zonemaps then skip other slices, like BigQuery clustering.
            order = ", ".join(SLICE_COLUMNS)
            con.execute(f"CREATE TABLE result AS SELECT * FROM ({to_duckdb(sql)}) ORDER BY {order}", values)
            rows = int(con.execute("SELECT count(*) FROM result").fetchone()[0])
            elapsed = int((time.monotonic() - t0) * 1000)
            # Written last, in the same file: a result without it is incomplete and is redone.
            con.execute(
                f"CREATE TABLE {_JOB_TABLE} AS SELECT ? AS job_id, ? AS bytes_processed, ? AS query_ms, ? AS rows",
                [job_id, estimate.bytes, elapsed, rows],
            )
            con.execute("CHECKPOINT")
        job.on_done(JobStats(job_id, job.step, estimate.bytes, None, None, job.maximum_bytes_billed, rows))
        return QueryStats(job_id, estimate.bytes, None, None, elapsed, rows)

    def result_exists(self, name: str) -> bool:
        """True when the run's scratch file holds a complete result."""
        return self._finished_job(name) is not None

    def result_bytes(self, name: str) -> int:
        """Reads of the local scratch result bill nothing."""
        return 0

    def result_table(self, name: str) -> exp.Table:
        """The result table as seen from a connection to the run's scratch file."""
        return exp.Table(this=exp.to_identifier("result", quoted=True))

    def result_schema(self, name: str) -> list[tuple[str, str]]:
        """Column names and DuckDB types of the result."""
        with self._connect(name) as con:
            return [(row[0], row[1]) for row in con.execute("DESCRIBE result").fetchall()]

    def query_one(self, bigquery_sql: str, params: Params, name: str, job: JobSpec) -> dict[str, Any]:
        """Run BigQuery SQL (transpiled) against the run's scratch file; return the first row."""
        values = {key: value for key, (_k, value) in params.items()}
        with self._connect(name) as con:
            cursor = con.execute(to_duckdb(bigquery_sql), values)
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        job.on_done(JobStats(_new_id(job), job.step, 0, None, None, job.maximum_bytes_billed))
        return dict(zip(names, row or [None] * len(names), strict=True))

    def query_rows(
        self, bigquery_sql: str, params: Params, name: str, limit: int, job: JobSpec
    ) -> tuple[list[str], list[list[Any]]]:
        """Up to ``limit`` rows of a query on the result (small results only: the sheet output)."""
        values = {key: value for key, (_k, value) in params.items()}
        with self._connect(name) as con:
            cursor = con.execute(to_duckdb(bigquery_sql), values)
            rows = [list(row) for row in cursor.fetchmany(limit)]
            names = [d[0] for d in cursor.description]
        job.on_done(JobStats(_new_id(job), job.step, 0, None, None, job.maximum_bytes_billed))
        return names, rows

    @contextlib.contextmanager
    def local_copy(self, name: str, storage: Storage, staging: str, job: JobSpec) -> Iterator[LocalCopy]:
        """The run's scratch result itself (``result``), with a scratch folder beside it; nothing is copied.

        (``storage`` and ``staging`` are for backends whose result lives elsewhere.)
        """
        folder = self.scratch_dir / f"{name}.export"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            with self._connect(name) as con:
                yield LocalCopy(con, folder)
            job.on_done(JobStats(_new_id(job), job.step, 0, None, None, job.maximum_bytes_billed))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def expire_results(self, max_age_hours: int) -> None:
        """Delete scratch results older than ``max_age_hours`` (BigQuery's table expiration, locally)."""
        if not self.scratch_dir.exists():
            return
        cutoff = time.time() - max_age_hours * 3600
        for path in self.scratch_dir.glob("*.duckdb"):
            if path.stat().st_mtime < cutoff:
                self.drop_result(path.name.removesuffix(".duckdb"))

    def drop_result(self, name: str) -> None:
        """Delete the run's scratch file (and its export staging folder)."""
        for suffix in (".duckdb", ".duckdb.wal"):
            (self.scratch_dir / f"{name}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.scratch_dir / f"{name}.export", ignore_errors=True)


def _new_id(job: JobSpec) -> str:
    # Nothing is billed here, so nothing to reattach to but a finished result: each execution
    # is its own job in the record.
    return f"{job.base_id}_{uuid.uuid4().hex[:8]}"


def _duck_table(ref: TableRef) -> str:
    return f'"{ref.project}"."{ref.dataset}"."{ref.table}"'


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
