"""The sales extract, step by step: the DAG's tasks and the CLI call these functions.

validate -> estimate (cost guard) -> query (the job into a clustered result table) -> quality
gate -> export (manifest last) -> optional sheet -> finish.

One byte budget covers the whole run (:mod:`guardian.sales.budget`): every job carries what
remains of it as ``maximum_bytes_billed`` and the labels of its dag, task, run and requester;
each job's bytes are recorded on the run record once, however often its task is retried.
Every step records what it did in the run record (:mod:`guardian.sales.runs`); a failing step
records its error before raising and a succeeding step clears its own earlier error, so
``finish`` knows the outcome. Any step can be rerun after the run finished: a step that needs
the result table and finds it gone (dropped after a successful export, or expired) runs the
query again under what remains of the budget.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from guardian import audit
from guardian.errors import GuardianError
from guardian.quality import checks as qc
from guardian.quality import gate
from guardian.quality.drift import schema_check
from guardian.quality.results import CheckResult, Severity, latest_results, save_results
from guardian.sales import runs
from guardian.sales.budget import CostLimitExceeded, RunBudget, stable_json
from guardian.sales.export import ExportResult, export_result, run_prefix, staging_prefix
from guardian.sales.params import ExtractParams, validate_params
from guardian.sales.sql import DATE_COLUMN, RESULT_SCHEMAS, SalesQuery, TableRef, build_query, sheet_sql
from guardian.sales.warehouse import (
    Estimate,
    PartitionExport,
    QueryStats,
    Warehouse,
    format_bytes,
    open_warehouse,
    result_name,
)
from guardian.settings import Settings
from guardian.storage import Storage, default_storage, open_storage
from guardian.store import Store, get_store

log = logging.getLogger(__name__)
SUITE = "sales_extract"
T = TypeVar("T")

KEY_COLUMNS = {
    "entry": [
        "entry_no",
        "transaction_no",
        "sale_date",
        "country_code",
        "brand_code",
        "item_no",
        "entry_type",
        "quantity",
        "net_amount",
        "currency_code",
    ],
    "day": ["sale_date", "country_code", "brand_code", "store_no", "currency_code"],
    "month": ["sale_month", "country_code", "brand_code", "currency_code"],
}
SIGN_RULE = (
    "entry_type NOT IN ('SALE', 'RETURN')"
    " OR (entry_type = 'SALE' AND (quantity <= 0 OR net_amount < 0))"
    " OR (entry_type = 'RETURN' AND (quantity >= 0 OR net_amount > 0))"
)


class QualityGateFailed(GuardianError):
    """A blocking data-quality check failed on the result."""


class SheetTooLarge(GuardianError):
    """The result does not fit the sheet-size bound."""


@dataclass
class Deps:
    """Where a run reads and writes: overridable for tests (an emulator client, a storage)."""

    settings: Settings
    warehouse: Warehouse
    storage: Storage
    store: Store


def deps(settings: Settings, params: ExtractParams | None = None, *, client: Any | None = None) -> Deps:
    """The configured warehouse, storage (the destination param wins) and store."""
    storage = open_storage(params.destination, settings) if params and params.destination else default_storage(settings)
    return Deps(settings, open_warehouse(settings, client), storage, get_store(settings))


def source_table(settings: Settings) -> TableRef:
    """The configured sales table (each part checked)."""
    cfg = settings.sales
    return TableRef(cfg.project, cfg.dataset, cfg.table)


def query_for(settings: Settings, params: ExtractParams) -> SalesQuery:
    """The SQL of this request."""
    return build_query(params, source_table(settings))


def freshness_sql(table: TableRef) -> str:
    """Newest load time of the requested slices in the last partitions of the range (a cheap, pruned read)."""
    return (
        f"SELECT MAX(created_at) AS loaded_at FROM {table.node().sql(dialect='bigquery')} "
        "WHERE sale_date BETWEEN @fresh_from AND @end_date "
        "AND country_code IN UNNEST(@countries) AND brand_code IN UNNEST(@brands)"
    )


def _freshness_params(settings: Settings, params: ExtractParams) -> dict[str, tuple[str, Any]]:
    start = max(params.start_date, params.end_date - timedelta(days=settings.sales.freshness_max_lag_days))
    return {
        "fresh_from": ("DATE", start),
        "end_date": ("DATE", params.end_date),
        "countries": ("ARRAY<STRING>", list(params.countries)),
        "brands": ("ARRAY<STRING>", list(params.brands)),
    }


# -- estimate / cost guard -----------------------------------------------------------------


@dataclass(frozen=True)
class CostCheck:
    """The whole run's estimate against its budget."""

    estimate: Estimate
    limit: int
    query_hash: str
    parts: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        """Bytes the run is estimated to bill: every job's part."""
        return sum(n for _step, n in self.parts) if self.parts else self.estimate.bytes

    @property
    def ok(self) -> bool:
        """True when the estimate is within the limit."""
        return self.total <= self.limit

    def line(self) -> str:
        """One line for people."""
        verdict = "within" if self.ok else "OVER"
        breakdown = ", ".join(f"{step} {format_bytes(n)}" for step, n in self.parts)
        return (
            f"estimated {format_bytes(self.total)} ({self.total} bytes) for the run ({breakdown}), "
            f"{verdict} the budget of {format_bytes(self.limit)} [{self.estimate.backend}"
            + (f": {self.estimate.detail}" if self.estimate.detail else "")
            + "]; the quality gate and the export read a copy of the result, which bills nothing"
        )


def estimate(d: Deps, params: ExtractParams) -> CostCheck:
    """Dry-run the run's source jobs; nothing is billed or written.

    The parts: the query (BigQuery's dry run, an upper bound on clustered tables) and the
    freshness probe. Nothing else bills: the gate's pass and the export read the result's local
    copy (on BigQuery an extract job, which BigQuery does not bill); only a step that finds the
    result gone runs the query again, checked against what remains of the budget before it runs.
    """
    query = query_for(d.settings, params)
    est = d.warehouse.dry_run(query.bigquery_sql, query.params)
    fresh = d.warehouse.dry_run(freshness_sql(source_table(d.settings)), _freshness_params(d.settings, params))
    minimum = d.warehouse.min_job_bytes
    parts = (("query", max(est.bytes, minimum)), ("freshness", max(fresh.bytes, minimum)))
    return CostCheck(est, d.settings.sales.max_bytes_billed, query.query_hash, parts)


def guard(check: CostCheck) -> None:
    """Stop when the estimate is over the limit, with the numbers and the fix."""
    if not check.ok:
        raise CostLimitExceeded(
            f"cost guard: the run would bill {format_bytes(check.total)} "
            f"({check.total} bytes), over GUARDIAN_SALES__MAX_BYTES_BILLED="
            f"{check.limit} ({format_bytes(check.limit)}); narrow the dates, countries or brands, "
            "or raise GUARDIAN_SALES__MAX_BYTES_BILLED"
        )


# -- steps with run records ----------------------------------------------------------------
@contextmanager
def _step(d: Deps, run_id: str, step: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        message = str(exc) if isinstance(exc, GuardianError) else f"{type(exc).__name__}: {exc}"
        runs.update_run(d.store, run_id, error=message if message.startswith(step) else f"{step}: {message}")
        raise
    # A rerun of this step succeeded: its earlier failure no longer decides the run's outcome.
    record = runs.get_run(d.store, run_id) or {}
    if str(record.get("error") or "").startswith(f"{step}:"):
        runs.update_run(d.store, run_id, error=None)


def budget_for(d: Deps, params: ExtractParams, run_id: str) -> RunBudget:
    """The run's budget as its record stands; every job it records is saved on the record at once."""
    record = runs.get_run(d.store, run_id)
    budget = RunBudget.from_record(d.settings.sales.max_bytes_billed, run_id, record, requester=params.requested_by)

    def save(b: RunBudget) -> None:
        processed, billed = b.totals()
        runs.update_run(d.store, run_id, jobs=b.as_json(), bytes_processed=processed, bytes_billed=billed)

    budget.on_record = save
    return budget


def begin(d: Deps, params: ExtractParams, run_id: str) -> None:
    """Create (or reset, on a re-run) the run record."""
    runs.start_run(d.store, run_id, backend=d.warehouse.backend, params=params.as_json())


def reject(settings: Settings, raw: Mapping[str, Any], run_id: str, error: GuardianError) -> None:
    """Record a run whose params were rejected (so the record and the requester show why)."""
    store = get_store(settings)
    safe = {k: (v if isinstance(v, str | int | float | bool | list | None) else str(v)) for k, v in raw.items()}
    runs.start_run(store, run_id, backend=settings.sales.backend, params=safe)
    runs.update_run(store, run_id, error=f"params: {error}")


def cost_step(d: Deps, params: ExtractParams, run_id: str) -> CostCheck:
    """Estimate the whole run, record the estimate, apply the guard against what remains of the budget."""
    with _step(d, run_id, "cost guard"):
        check = estimate(d, params)
        runs.update_run(d.store, run_id, bytes_estimated=check.total, query_hash=check.query_hash)
        budget = budget_for(d, params, run_id)
        guard(CostCheck(check.estimate, budget.remaining, check.query_hash, check.parts))
        return check


def _fingerprint(params: ExtractParams, query: SalesQuery) -> str:
    return query.query_hash + stable_json(params.as_json())


def _materialize(d: Deps, params: ExtractParams, run_id: str, budget: RunBudget) -> QueryStats:
    query = query_for(d.settings, params)
    est = d.warehouse.dry_run(query.bigquery_sql, query.params)
    runs.update_run(d.store, run_id, query_hash=query.query_hash)
    spec = budget.spec("run_query", _fingerprint(params, query), need=max(est.bytes, d.warehouse.min_job_bytes))
    stats = d.warehouse.materialize(query.bigquery_sql, query.params, result_name(run_id), spec)
    runs.update_run(
        d.store, run_id, job_id=stats.job_id, slot_ms=stats.slot_ms, query_ms=stats.query_ms, rows=stats.rows
    )
    return stats


def query_step(d: Deps, params: ExtractParams, run_id: str) -> QueryStats:
    """The query into the run's result table: one idempotent job capped by what remains of the budget.

    A retry reattaches to the job an earlier attempt submitted (same job id), so it is billed once.
    """
    with _step(d, run_id, "query"):
        return _materialize(d, params, run_id, budget_for(d, params, run_id))


def _ensure_result(d: Deps, params: ExtractParams, run_id: str, budget: RunBudget) -> None:
    """Run the query again when the result is gone (a step rerun after the export dropped it, or expiry)."""
    if not d.warehouse.result_exists(result_name(run_id)):
        log.info("result of %s is gone; running the query again under the remaining budget", run_id)
        _materialize(d, params, run_id, budget)


def _need(d: Deps, name: str, jobs: int) -> int:
    return d.warehouse.result_bytes(name) + jobs * d.warehouse.min_job_bytes


def sales_checks(settings: Settings, params: ExtractParams) -> list[qc.Check]:
    """The row-level SQL checks of a result at this granularity; each can fail on data the query returns.

    (Checks that restate the query's WHERE clause, dates in range and the requested countries
    and brands, cannot fail and are not run; an empty result is the coverage check's business.)
    """
    checks = [
        qc.not_null(KEY_COLUMNS[params.granularity], name="not_null"),
        qc.accepted_values("currency_code", settings.sales.currencies, name="currency_known"),
    ]
    if params.granularity == "entry":
        checks.append(qc.unique("entry_no", name="unique_entry_no"))
        checks.append(qc.rule("sign_consistent", SIGN_RULE, "entries whose quantity/amount sign contradicts the type"))
    return checks


def gate_groups(params: ExtractParams) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The groups (period x slice) and measures of the gate's one pass over the result."""
    group = [
        (DATE_COLUMN[params.granularity], "period"),
        ("country_code", "country_code"),
        ("brand_code", "brand_code"),
    ]
    return group, [("COUNT(*)", "n"), ("SUM(net_amount)", "amount")]


def _volume_history(d: Deps, params: ExtractParams, run_id: str) -> dict[str, list[float]]:
    """Rows per period of each slice in earlier runs of the same granularity, newest first."""
    cfg = d.settings.sales
    history: dict[str, list[float]] = {}
    seen: set[str] = set()
    for row in latest_results(d.store, suite=SUITE, limit=2000):
        if row["check_name"] != "coverage" or row["subject"] == run_id or row["subject"] in seen:
            continue
        details = row.get("details") or {}
        if details.get("granularity") != params.granularity:
            continue
        seen.add(row["subject"])
        for key, value in (details.get("per_period") or {}).items():
            if len(history.setdefault(key, [])) < cfg.volume_history_runs:
                history[key].append(float(value))
    return history


def _severity(settings: Settings, name: str) -> Severity:
    return "warn" if name in settings.sales.warn_only_checks else "error"


def quality_step(d: Deps, params: ExtractParams, run_id: str) -> list[CheckResult]:
    """Schema, row checks, coverage per period x slice, volume against history, freshness; stored.

    Blocking failures raise :class:`QualityGateFailed`.
    """
    with _step(d, run_id, "quality gate"):
        cfg = d.settings.sales
        name = result_name(run_id)
        budget = budget_for(d, params, run_id)
        _ensure_result(d, params, run_id, budget)
        query = query_for(d.settings, params)
        fingerprint = _fingerprint(params, query) + str((runs.get_run(d.store, run_id) or {}).get("job_id"))
        actual = d.warehouse.result_schema(name)
        schema = schema_check(query.result_schema, actual, severity=_severity(d.settings, "schema"))
        results = [schema]
        missing = set(schema.details.get("removed", [])) | {r["column"] for r in schema.details.get("retyped", [])}
        if missing:
            # Same severity as the schema check: a warn-only schema does not fail the run through this.
            results.append(
                CheckResult(
                    "rules_not_run",
                    False,
                    "row checks, coverage and volume not run: expected columns are missing or retyped",
                    schema.severity,
                )
            )
        else:
            # Checked before anything bills: the freshness probe is the gate's only billed job.
            budget.spec("quality_gate", fingerprint, need=d.warehouse.min_job_bytes)
            token = hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
            staging = staging_prefix(cfg.export_prefix, run_id, "gate", token)
            copy_spec = budget.spec("quality_gate", fingerprint + "copy", free=True)
            # One pass over the local copy of the result (on BigQuery an extract, not billed): the
            # row checks and the rows and net amount per period x slice (coverage, volume,
            # freshness and the export's reconciliation read those).
            with d.warehouse.local_copy(name, d.storage, staging, copy_spec) as local:
                sql_results, groups = qc.run_grouped_checks(
                    local,
                    local.table,
                    sales_checks(d.settings, params),
                    *gate_groups(params),
                    warn_only=cfg.warn_only_checks,
                )
            results.extend(sql_results)
            job_id = (runs.get_run(d.store, run_id) or {}).get("job_id")
            results.extend(_coverage_checks(d, params, run_id, budget, fingerprint, groups, job_id))
        save_results(d.store, SUITE, run_id, results)
        summary = [
            {"check": r.check, "passed": r.passed, "severity": r.severity, "message": r.message} for r in results
        ]
        runs.update_run(d.store, run_id, checks=summary)
        blocking = [r for r in results if r.blocking]
        if blocking:
            raise QualityGateFailed(
                f"quality gate failed for run {run_id}: "
                + "; ".join(f"{r.check}: {r.message}" for r in blocking)
                + " (see `guardian sales show RUN_ID`; a check may be made warn-only with "
                "GUARDIAN_SALES__WARN_ONLY_CHECKS)"
            )
        return results


def _coverage_checks(
    d: Deps,
    params: ExtractParams,
    run_id: str,
    budget: RunBudget,
    fingerprint: str,
    groups: list[dict[str, Any]],
    job_id: Any,
) -> list[CheckResult]:
    cfg = d.settings.sales
    name = result_name(run_id)
    counts: dict[tuple[str, str, date], int] = {}
    totals: dict[str, list[float]] = {}
    for rec in groups:
        period = rec["period"]
        period = period.date() if isinstance(period, datetime) else period
        counts[(str(rec["country_code"]), str(rec["brand_code"]), period)] = int(rec["n"])
        total = totals.setdefault(f"{rec['country_code']}/{rec['brand_code']}", [0, 0.0])
        total[0] += int(rec["n"])
        total[1] += float(rec["amount"] or 0)
    grain = "month" if params.granularity == "month" else "day"
    slices = [(c, b) for c in params.countries for b in params.brands]
    start = params.start_date.replace(day=1) if grain == "month" else params.start_date
    coverage = gate.coverage(
        counts,
        slices,
        start,
        params.end_date,
        grain=grain,
        max_missing=cfg.coverage_max_missing_days,
        severity=_severity(d.settings, "coverage"),
    )
    periods = len(gate.expected_periods(start, params.end_date, grain))
    per_period = {
        gate.slice_name(s): sum(n for (c, b, _p), n in counts.items() if (c, b) == s) / periods for s in slices
    }
    coverage = CheckResult(
        coverage.check,
        coverage.passed,
        coverage.message,
        coverage.severity,
        {
            **coverage.details,
            "granularity": params.granularity,
            "per_period": per_period,
            # What the export reconciles its files with, for this result (the job that made it).
            "result_job": job_id,
            "slices": {key: [int(n), round(amount, 6)] for key, (n, amount) in sorted(totals.items())},
        },
    )
    volume = gate.volume(
        per_period,
        _volume_history(d, params, run_id),
        min_ratio=cfg.volume_min_ratio,
        max_ratio=cfg.volume_max_ratio,
        min_history=cfg.volume_min_history,
        severity=_severity(d.settings, "volume"),
    )
    newest_sale = max((p for (_c, _b, p) in counts), default=None)
    if grain == "month" and newest_sale is not None:
        # A month row covers the month up to the range end at best.
        newest_sale = min(params.end_date, (newest_sale + timedelta(days=32)).replace(day=1) - timedelta(days=1))
    fresh = d.warehouse.query_one(
        freshness_sql(source_table(d.settings)),
        _freshness_params(d.settings, params),
        name,
        budget.spec("quality_gate", fingerprint + "freshness"),
    )
    loaded = fresh.get("loaded_at")
    freshness = gate.freshness(
        newest_sale,
        loaded if isinstance(loaded, datetime) else None,
        params.end_date,
        max_lag_days=cfg.freshness_max_lag_days,
        severity=_severity(d.settings, "freshness"),
    )
    return [coverage, volume, freshness]


def listing_sql(table: str) -> str:
    """Rows and net amount per slice of the result (what the export must hold)."""
    return (
        f"SELECT country_code, brand_code, COUNT(*) AS n, SUM(net_amount) AS amount FROM {table} "
        "GROUP BY country_code, brand_code ORDER BY country_code, brand_code"
    )


def _gate_listing(d: Deps, run_id: str, job_id: Any) -> list[dict[str, Any]] | None:
    """Rows and net amount per slice from the gate's pass over this very result, or None.

    The gate read them from the result made by ``job_id``; a result made by another job (the
    query ran again after the result was dropped or expired) must be listed anew.
    """
    for row in latest_results(d.store, suite=SUITE, subject=run_id, limit=50):
        if row["check_name"] != "coverage":
            continue
        details = row.get("details") or {}
        if job_id is None or details.get("result_job") != job_id or "slices" not in details:
            return None
        out = []
        for key, (n, amount) in sorted(details["slices"].items()):
            country, brand = key.split("/", 1)
            if int(n) > 0:
                out.append({"country_code": country, "brand_code": brand, "n": int(n), "amount": amount})
        return out
    return None


def export_step(d: Deps, params: ExtractParams, run_id: str) -> ExportResult:
    """Write the result under run_id=<run>/ with the manifest last (audited: it replaces a prior export).

    The export bills nothing (it writes the slices from the local copy of the result: on
    BigQuery one extract job, not billed); what can bill is the query run again when the result
    is gone, refused before it bills when it does not fit what remains of the budget. The files
    are reconciled with the result (rows and net amount per slice) before the manifest commits.
    """
    with _step(d, run_id, "export"):
        cfg = d.settings.sales
        name = result_name(run_id)
        budget = budget_for(d, params, run_id)
        _ensure_result(d, params, run_id, budget)
        query = query_for(d.settings, params)
        run = runs.get_run(d.store, run_id) or {}
        generation = str(run.get("job_id"))
        fingerprint = _fingerprint(params, query) + generation
        listing = _gate_listing(d, run_id, run.get("job_id"))
        expected: dict[str, tuple[int, float | None]] = {}
        # Same result job, same files: a retried export reattaches to its jobs and rewrites the same keys.
        token = hashlib.sha256(f"{run_id}:{generation}:{params.format}".encode()).hexdigest()[:12]
        staging = staging_prefix(cfg.export_prefix, run_id, "export", token)
        target = d.storage.uri(run_prefix(cfg.export_prefix, run_id).rstrip("/"))
        audit.record(
            "sales.export.start",
            target,
            after={"format": params.format, "granularity": params.granularity},
            store=d.store,
        )

        def reconcile(parts: list[PartitionExport]) -> None:
            actual = {f"{p.country}/{p.brand}": (p.exported_rows, p.exported_amount) for p in parts}
            check = gate.reconcile(expected, actual, severity=_severity(d.settings, "export_reconciled"))
            save_results(d.store, SUITE, run_id, [check])
            record = runs.get_run(d.store, run_id) or {}
            others = [c for c in record.get("checks") or [] if c.get("check") != check.check]
            summary = {
                "check": check.check,
                "passed": check.passed,
                "severity": check.severity,
                "message": check.message,
            }
            runs.update_run(d.store, run_id, checks=[*others, summary])
            if check.blocking:
                raise QualityGateFailed(
                    f"export of run {run_id} does not match its result: {check.message}; nothing was committed, "
                    "clear the export task to retry"
                )

        def manifest_fields() -> dict[str, Any]:
            record = runs.get_run(d.store, run_id) or {}
            return {
                "granularity": params.granularity,
                "params": params.as_json(),
                "query_hash": query.query_hash,
                "query": query.bigquery_sql,
                "source": str(query.table),
                "backend": d.warehouse.backend,
                "job_id": record.get("job_id"),
                "jobs": record.get("jobs"),
                "bytes_processed": record.get("bytes_processed"),
                "bytes_billed": record.get("bytes_billed"),
                "budget": cfg.max_bytes_billed,
                "checks": record.get("checks"),
            }

        try:
            schema = d.warehouse.result_schema(name)
            copy_spec = budget.spec("export", f"{fingerprint}:{token}", free=True)
            with d.warehouse.local_copy(name, d.storage, staging, copy_spec) as local:
                if listing is None:
                    # The gate's figures are of another result (the query ran again): list this one.
                    cols, rows = local.query_rows(listing_sql(local.table.sql(dialect="bigquery")), {})
                    listing = [dict(zip(cols, row, strict=True)) for row in rows]
                slices = [(str(r["country_code"]), str(r["brand_code"]), int(r["n"])) for r in listing]
                expected.update(
                    {f"{r['country_code']}/{r['brand_code']}": (int(r["n"]), _num(r["amount"])) for r in listing}
                )
                result = export_result(
                    local,
                    d.storage,
                    export_prefix=cfg.export_prefix,
                    run_id=run_id,
                    token=token,
                    fmt=params.format,
                    slices=slices,
                    gate=reconcile,
                    manifest_fields=manifest_fields,
                    schema=schema,
                )
        except Exception as exc:
            audit.record(
                "sales.export.failed", target, after={"error": str(exc)[:500]}, outcome="failed", store=d.store
            )
            raise
        audit.record(
            "sales.export.done",
            target,
            after={"rows": result.rows, "files": len(result.files), "bytes": result.bytes, "replaced": result.replaced},
            store=d.store,
        )
        runs.update_run(
            d.store,
            run_id,
            output_uri=result.manifest_uri,
            files=[{k: f[k] for k in ("path", "rows", "bytes", "md5")} for f in result.files],
        )
        return result


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _cell(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if value is None or isinstance(value, int | float | str | bool):
        return value
    return str(value)


def sheet_step(d: Deps, params: ExtractParams, run_id: str) -> str | None:
    """Write the result's sheet view to the requested tab (values RAW), if it fits the size bound.

    Entry results are summed per month (country, brand, currency) for the sheet; day and month
    results are written as they are. The files in storage always hold the full result.
    """
    if not params.sheet_id:
        return None
    with _step(d, run_id, "sheet output"):
        cfg = d.settings.sales
        name = result_name(run_id)
        budget = budget_for(d, params, run_id)
        _ensure_result(d, params, run_id, budget)
        query = query_for(d.settings, params)
        sql = sheet_sql(params.granularity, d.warehouse.result_table(name))
        # Only the month template (the entry summary) has params; DuckDB refuses unused ones.
        binds = query.params if params.granularity == "entry" else {}
        width = len(RESULT_SCHEMAS["month" if params.granularity == "entry" else params.granularity])
        max_rows = max(0, cfg.sheet_max_cells // width - 1)
        fingerprint = _fingerprint(params, query) + str((runs.get_run(d.store, run_id) or {}).get("job_id"))
        budget.spec("sheet_output", fingerprint, need=_need(d, name, 1))
        # One job, at most one row more than fits: enough to tell "too large" without reading it all.
        header, rows = d.warehouse.query_rows(sql, binds, name, max_rows + 1, budget.spec("sheet_output", fingerprint))
        if len(rows) > max_rows:
            raise SheetTooLarge(
                f"param sheet_id: the sheet view has more than {max_rows} rows x {width} columns, over the "
                f"sheet limit of {cfg.sheet_max_cells} cells (GUARDIAN_SALES__SHEET_MAX_CELLS); use granularity "
                "month, fewer countries/brands or a shorter range (the files in storage have it all)"
            )
        from guardian.sheets.client import SheetsClient

        tab = params.sheet_tab or cfg.sheet_tab
        client = SheetsClient.from_settings(d.settings)
        written = client.write_table(params.sheet_id, tab, [header, *[[_cell(v) for v in row] for row in rows]])
        runs.update_run(d.store, run_id, sheet_range=f"{params.sheet_id}!{written}")
        return str(written)


@dataclass
class Outcome:
    """How a run ended (what finish reports)."""

    run_id: str
    ok: bool
    status: str
    rows: int | None = None
    output_uri: str | None = None
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def finish(
    d: Deps,
    params: ExtractParams | None,
    run_id: str,
    *,
    dag_run_id: str | None = None,
    request_id: str | None = None,
    requested_by: str | None = None,
) -> Outcome:
    """Close the run record from what the steps recorded, drop the result, report to the requester.

    ``request_id`` / ``requested_by`` are used when the params were rejected (``params`` None),
    so a Sheets request still hears back.
    """
    record = runs.get_run(d.store, run_id) or {}
    error = record.get("error")
    if params is None:
        ok = False
        error = error or "params were rejected"
    elif params.dry_run:
        ok = error is None and record.get("bytes_estimated") is not None
    else:
        ok = error is None and bool(record.get("output_uri"))
        if ok and params.sheet_id and not record.get("sheet_range"):
            ok, error = False, "sheet output did not complete"
    if not ok and not error:
        error = "a step did not complete (see the task logs)"
    if record:
        if params is not None and params.dry_run and ok:
            runs.update_run(d.store, run_id, status="estimated", finished_at=datetime.now(UTC))
        else:
            runs.finish_run(d.store, run_id, ok=ok, error=error)
    # The result is kept until the export succeeded (a failed run's export can be retried from
    # it); then it is dropped. Kept results expire (GUARDIAN_SALES__RESULTS_EXPIRATION_HOURS).
    try:
        if ok:
            d.warehouse.drop_result(result_name(run_id))
        d.warehouse.expire_results(d.settings.sales.results_expiration_hours)
    except Exception as exc:  # the result expires anyway; a cleanup failure must not hide the outcome
        log.warning("could not drop result of %s: %s", run_id, exc)
    record = runs.get_run(d.store, run_id) or record
    outcome = Outcome(
        run_id,
        ok,
        str(record.get("status", "failed")),
        record.get("rows"),
        record.get("output_uri"),
        error,
        record,
    )
    if params is not None:
        request_id, requested_by = params.request_id, params.requested_by
    _report(d, request_id, requested_by, outcome, dag_run_id or run_id)
    return outcome


def summary_text(outcome: Outcome) -> str:
    """A short, plain summary of a run for the requester."""
    rec = outcome.record
    lines = [
        f"Sales extract {outcome.run_id}: {'succeeded' if outcome.ok else 'FAILED'}",
        f"rows: {outcome.rows if outcome.rows is not None else '-'}",
        f"bytes processed: {format_bytes(rec.get('bytes_processed'))} over {len(rec.get('jobs') or [])} jobs",
        f"bytes billed: {format_bytes(rec.get('bytes_billed'))}",
    ]
    if outcome.output_uri:
        lines.append(f"manifest: {outcome.output_uri}")
    if rec.get("sheet_range"):
        lines.append(f"sheet: {rec['sheet_range']}")
    if outcome.error:
        lines.append(f"error: {outcome.error}")
    return "\n".join(lines)


def _report(d: Deps, request_id: str | None, requested_by: str | None, outcome: Outcome, dag_run_id: str) -> None:
    """Tell the Sheets ledger (which also emails the requester), else email the requester directly."""
    reported = False
    if request_id:
        try:
            from guardian.sheets.completion import report_run  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            log.warning("guardian.sheets.completion is not available; request %s not reported", request_id)
        else:
            try:
                report_run(
                    d.settings,
                    request_id=request_id,
                    dag_run_id=dag_run_id,
                    ok=outcome.ok,
                    rows=outcome.rows,
                    output_uri=outcome.output_uri,
                    error=outcome.error,
                )
                reported = True
            except GuardianError as exc:
                # The run's outcome stands; the Sheets poll converges the row from the ledger.
                log.warning("could not report request %s to the Sheets ledger: %s", request_id, exc)
    if requested_by and not reported:
        from guardian.notify import email_configured, send_email

        if email_configured(d.settings):
            try:
                send_email(
                    d.settings,
                    [requested_by],
                    f"[guardian] sales extract {'done' if outcome.ok else 'failed'}: {outcome.run_id}",
                    summary_text(outcome),
                )
            except GuardianError as exc:
                log.warning("summary email to %s failed: %s", requested_by, exc)


# -- the whole run (CLI) --------------------------------------------------------------------
@dataclass
class RunReport:
    """What ``guardian sales run`` prints."""

    outcome: Outcome
    cost: CostCheck | None = None
    stats: QueryStats | None = None
    checks: list[CheckResult] = field(default_factory=list)
    export: ExportResult | None = None
    sheet_range: str | None = None


def run_extract(
    settings: Settings,
    raw: Mapping[str, Any],
    run_id: str,
    *,
    client: Any | None = None,
    storage: Storage | None = None,
    on_step: Callable[[str], None] | None = None,
) -> RunReport:
    """Every step in order (the CLI's ``run``); raises the first step's error after finishing the record."""
    params = validate_params(raw, settings)
    d = deps(settings, params, client=client)
    if storage is not None:
        d.storage = storage
    report = RunReport(Outcome(run_id, False, "running"))
    begin(d, params, run_id)

    def step(label: str, fn: Callable[[], T]) -> T:
        if on_step:
            on_step(label)
        return fn()

    failure: BaseException | None = None
    try:
        report.cost = step("cost guard", lambda: cost_step(d, params, run_id))
        if not params.dry_run:
            report.stats = step("query", lambda: query_step(d, params, run_id))
            report.checks = step("quality gate", lambda: quality_step(d, params, run_id))
            report.export = step("export", lambda: export_step(d, params, run_id))
            report.sheet_range = step("sheet", lambda: sheet_step(d, params, run_id))
    except BaseException as exc:
        failure = exc
    report.outcome = finish(d, params, run_id)
    if failure is not None:
        raise failure
    return report
