"""The sales extract, step by step: the DAG's tasks and the CLI call these functions.

validate -> estimate (cost guard) -> query (dry run again, then the job with
``maximum_bytes_billed``) -> quality gate -> export (manifest last) -> optional sheet -> finish.
Every step records what it did in the run record (:mod:`guardian.sales.runs`); a failing
step records its error before raising, so ``finish`` knows the outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from guardian import audit
from guardian.errors import GuardianError
from guardian.quality import checks as qc
from guardian.quality.drift import schema_check
from guardian.quality.results import CheckResult, save_results
from guardian.sales import runs
from guardian.sales.export import ExportResult, export_result, run_prefix
from guardian.sales.params import ExtractParams, validate_params
from guardian.sales.sql import DATE_COLUMN, RESULT_SCHEMAS, SalesQuery, TableRef, build_query, sheet_sql
from guardian.sales.warehouse import (
    CostLimitExceeded,
    Estimate,
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


# -- estimate / cost guard -----------------------------------------------------------------
@dataclass(frozen=True)
class CostCheck:
    """A dry run's estimate against the limit."""

    estimate: Estimate
    limit: int
    query_hash: str

    @property
    def ok(self) -> bool:
        """True when the estimate is within the limit."""
        return self.estimate.bytes <= self.limit

    def line(self) -> str:
        """One line for people."""
        verdict = "within" if self.ok else "OVER"
        return (
            f"estimated {format_bytes(self.estimate.bytes)} ({self.estimate.bytes} bytes) to process, "
            f"{verdict} the limit of {format_bytes(self.limit)} [{self.estimate.backend}"
            + (f": {self.estimate.detail}" if self.estimate.detail else "")
            + "]"
        )


def estimate(d: Deps, params: ExtractParams) -> CostCheck:
    """Dry-run the request's query; nothing is billed or written."""
    query = query_for(d.settings, params)
    est = d.warehouse.dry_run(query.bigquery_sql, query.params)
    return CostCheck(est, d.settings.sales.max_bytes_billed, query.query_hash)


def guard(check: CostCheck) -> None:
    """Stop when the estimate is over the limit, with the numbers and the fix."""
    if not check.ok:
        raise CostLimitExceeded(
            f"cost guard: query would process {format_bytes(check.estimate.bytes)} "
            f"({check.estimate.bytes} bytes), over GUARDIAN_SALES__MAX_BYTES_BILLED="
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
    """Estimate, record the estimate, apply the guard."""
    with _step(d, run_id, "cost guard"):
        check = estimate(d, params)
        runs.update_run(d.store, run_id, bytes_estimated=check.estimate.bytes, query_hash=check.query_hash)
        guard(check)
        return check


def query_step(d: Deps, params: ExtractParams, run_id: str) -> QueryStats:
    """A fresh dry run and guard, then the job (with maximum_bytes_billed) into the result table."""
    with _step(d, run_id, "query"):
        check = estimate(d, params)
        runs.update_run(d.store, run_id, bytes_estimated=check.estimate.bytes, query_hash=check.query_hash)
        guard(check)
        query = query_for(d.settings, params)
        stats = d.warehouse.materialize(
            query.bigquery_sql,
            query.params,
            result_name(run_id),
            maximum_bytes_billed=d.settings.sales.max_bytes_billed,
        )
        runs.update_run(
            d.store,
            run_id,
            job_id=stats.job_id,
            bytes_processed=stats.bytes_processed,
            bytes_billed=stats.bytes_billed,
            slot_ms=stats.slot_ms,
            query_ms=stats.query_ms,
            rows=stats.rows,
        )
        return stats


def sales_checks(settings: Settings, params: ExtractParams) -> list[qc.Check]:
    """The SQL checks of a result at this granularity (the schema check runs first, separately)."""
    cfg = settings.sales
    date_col = DATE_COLUMN[params.granularity]
    low = params.start_date.replace(day=1) if params.granularity == "month" else params.start_date
    checks = [
        qc.row_count(allow_empty=cfg.allow_empty),
        qc.not_null(KEY_COLUMNS[params.granularity]),
        qc.between(date_col, low, params.end_date, "DATE", name="dates_in_range"),
        qc.accepted_values("currency_code", cfg.currencies, name="currency_known"),
        qc.accepted_values("country_code", list(params.countries), name="countries_requested"),
        qc.accepted_values("brand_code", list(params.brands), name="brands_requested"),
    ]
    if params.granularity == "entry":
        checks.append(qc.unique("entry_no", name="unique_entry_no"))
        checks.append(qc.rule("sign_consistent", SIGN_RULE, "entries whose quantity/amount sign contradicts the type"))
    else:
        checks.append(
            qc.rule(
                "aggregates_consistent",
                "entries <= 0 OR transactions <= 0 OR transactions > entries",
                "groups with no entries or more transactions than entries",
            )
        )
    return checks


def quality_step(d: Deps, params: ExtractParams, run_id: str) -> list[CheckResult]:
    """Schema (drift), completeness and business rules on the result; stored; blocking failures raise."""
    with _step(d, run_id, "quality gate"):
        name = result_name(run_id)
        query = query_for(d.settings, params)
        warn_only = d.settings.sales.warn_only_checks
        actual = d.warehouse.result_schema(name)
        schema = schema_check(query.result_schema, actual, severity="warn" if "schema" in warn_only else "error")
        results = [schema]
        missing = set(schema.details.get("removed", [])) | {r["column"] for r in schema.details.get("retyped", [])}
        if not missing:
            runner = _Runner(d.warehouse, name)
            sql_results, _rows = qc.run_checks(
                runner, d.warehouse.result_table(name), sales_checks(d.settings, params), warn_only=warn_only
            )
            results.extend(sql_results)
        else:
            results.append(
                CheckResult("rules_not_run", False, "column checks not run: expected columns are missing or retyped")
            )
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


class _Runner:
    """Adapts a warehouse to quality's SqlRunner for one run's result."""

    def __init__(self, warehouse: Warehouse, name: str) -> None:
        self.warehouse = warehouse
        self.name = name

    def query_one(self, bigquery_sql: str, params: qc.Params) -> dict[str, Any]:
        return self.warehouse.query_one(bigquery_sql, params, self.name)


def export_step(d: Deps, params: ExtractParams, run_id: str) -> ExportResult:
    """Write the result under run_id=<run>/ with the manifest last (audited: it replaces a prior export)."""
    with _step(d, run_id, "export"):
        cfg = d.settings.sales
        name = result_name(run_id)
        query = query_for(d.settings, params)
        target = d.storage.uri(run_prefix(cfg.export_prefix, run_id).rstrip("/"))
        audit.record(
            "sales.export.start",
            target,
            after={"format": params.format, "granularity": params.granularity},
            store=d.store,
        )
        run = runs.get_run(d.store, run_id) or {}
        try:
            result = export_result(
                d.warehouse,
                name,
                d.storage,
                export_prefix=cfg.export_prefix,
                run_id=run_id,
                fmt=params.format,
                schema=d.warehouse.result_schema(name),
                manifest_fields={
                    "granularity": params.granularity,
                    "params": params.as_json(),
                    "query_hash": query.query_hash,
                    "query": query.bigquery_sql,
                    "source": str(query.table),
                    "backend": d.warehouse.backend,
                    "job_id": run.get("job_id"),
                    "bytes_processed": run.get("bytes_processed"),
                    "bytes_billed": run.get("bytes_billed"),
                    "checks": run.get("checks"),
                },
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
            files=[{k: f[k] for k in ("path", "rows", "bytes", "sha256")} for f in result.files],
        )
        return result


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
        query = query_for(d.settings, params)
        sql = sheet_sql(params.granularity, d.warehouse.result_table(name))
        # Only the month template (the entry summary) has params; DuckDB refuses unused ones.
        binds = query.params if params.granularity == "entry" else {}
        height = int(d.warehouse.query_one(f"SELECT COUNT(*) AS n FROM ({sql})", binds, name)["n"]) + 1
        width = len(RESULT_SCHEMAS["month" if params.granularity == "entry" else params.granularity])
        cells = width * height
        if cells > cfg.sheet_max_cells:
            raise SheetTooLarge(
                f"param sheet_id: the sheet view has {height - 1} rows x {width} columns = {cells} cells, over the "
                f"sheet limit of {cfg.sheet_max_cells} (GUARDIAN_SALES__SHEET_MAX_CELLS); use granularity "
                "month, fewer countries/brands or a shorter range (the files in storage have it all)"
            )
        header, rows = d.warehouse.query_rows(sql, binds, name, height)
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
    try:
        d.warehouse.drop_result(result_name(run_id))
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
        f"bytes processed: {format_bytes(rec.get('bytes_processed'))}",
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
