"""bigquery_sales_query: a cost-guarded, quality-checked sales extract to storage (manual)."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import Param, TriggerRule, dag, task

from guardian.airflow import dagkit
from guardian.airflow.dagkit import Tag

DOC = """
### bigquery_sales_query (manual, params)

Extracts sales entries (or day / month aggregates) for a date range, countries and brands from
BigQuery (or the embedded DuckDB warehouse), checks the result and exports it to storage as
Parquet (zstd) or CSV (gzip) under `sales/run_id=<run>/country=<c>/brand=<b>/` with a
`_manifest.json` written last. Optionally writes the result to a Google Sheet tab.

Tasks: `validate_params` -> `cost_guard` (the whole run's estimate vs its byte budget
`GUARDIAN_SALES__MAX_BYTES_BILLED`) -> `run_query` (one idempotent job into a clustered result
table) -> `quality_gate` -> `export` -> `sheet_output` -> `finish` (always runs: run record,
Sheets request status, email summary). Every BigQuery job carries what remains of the budget as
`maximum_bytes_billed` and labels naming dag, task, run and requester; a retry reattaches to its job.
`run_query`, `quality_gate`, `export` and `sheet_output` wait on BigQuery jobs and run in the
`bigquery_sales` pool: when it is full they queue instead of holding more workers.

**Triage**
- `validate_params` failed: the log's last line names the param and the fix; trigger again.
- *cost guard* in any task: narrow the range/countries/brands, or raise
  `GUARDIAN_SALES__MAX_BYTES_BILLED` after checking `guardian sales estimate`.
- `quality_gate` failed: `guardian sales show <run_id>` lists each check; `coverage` names missing
  days per country/brand, `volume` the ratio to earlier runs, `freshness` the newest sale/load.
  Data problems go to the source owners; any check can be made warn-only with
  `GUARDIAN_SALES__WARN_ONLY_CHECKS`.
- `export` failed: nothing of the attempt is committed; clear the task to retry, also after the
  run finished (the result is kept until the export succeeds, or rebuilt within the budget).
- `finish` failed: the run failed upstream (its error is in the log); it reports to the requester.
See docs/services/sales.md.
"""

# Tasks that wait on BigQuery jobs share this pool, so a long query or export holds at most its
# slots of the workers and never starves the other DAGs; create it once per deployment with
# `airflow pools set bigquery_sales 2 "sales extract tasks waiting on BigQuery"` (docs/services/sales.md).
SALES_POOL = "bigquery_sales"

_CODES = {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,20}$"}, "minItems": 1}


@dag(
    dag_id="bigquery_sales_query",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    doc_md=DOC,
    tags=[Tag.GUARDIAN, Tag.SALES],
    default_args=dagkit.default_args(retries=2, retry_delay_minutes=1),
    on_failure_callback=dagkit.on_failure,
    params={
        "start_date": Param("2026-01-01", type="string", format="date", description="First day (YYYY-MM-DD)."),
        "end_date": Param("2026-03-31", type="string", format="date", description="Last day, inclusive."),
        "countries": Param(["TH"], **_CODES, description='Country codes, e.g. ["TH", "VN"].'),
        "brands": Param(["X"], **_CODES, description="Brand codes."),
        "granularity": Param("entry", enum=["entry", "day", "month"], description="Rows per entry, day or month."),
        "format": Param("parquet", enum=["parquet", "csv"], description="parquet (zstd) or csv (gzip)."),
        "destination": Param(
            None, type=["null", "string"], description="Storage root override: gs://bucket/prefix or file:///path."
        ),
        "sheet_id": Param(None, type=["null", "string"], description="Spreadsheet id for the result (optional)."),
        "sheet_tab": Param(None, type=["null", "string"], description="Tab name (default from settings)."),
        "dry_run": Param(False, type="boolean", description="Estimate the cost only."),
        "request_id": Param(None, type=["null", "string"], description="Sheets trigger request id."),
        "requested_by": Param(None, type=["null", "string"], description="Requester's email for the summary."),
    },
)
def bigquery_sales_query() -> None:
    """validate -> cost guard -> query -> quality gate -> export -> sheet -> finish."""

    @task(retries=0)
    def validate_params(params: dict | None = None, run_id: str | None = None) -> dict:  # type: ignore[type-arg]
        from guardian.airflow import sales

        return sales.validate(params or {}, str(run_id))

    @task(retries=0)
    def cost_guard(params: dict | None = None, run_id: str | None = None) -> str:  # type: ignore[type-arg]
        from guardian.airflow import sales
        from guardian.sales import service

        line = sales.call(lambda d, p, r: service.cost_step(d, p, r).line(), params or {}, str(run_id))
        print(line)
        return line

    @task(pool=SALES_POOL)
    def run_query(params: dict | None = None, run_id: str | None = None) -> dict:  # type: ignore[type-arg]
        from guardian.airflow import dagkit, lineage, sales
        from guardian.sales import service

        if (params or {}).get("dry_run"):
            return {"dry_run": True}
        stats = sales.call(service.query_step, params or {}, str(run_id))
        lineage.report(inputs=[sales.source_uri(dagkit.task_settings())])
        return {"job_id": stats.job_id, "rows": stats.rows, "bytes_processed": stats.bytes_processed}

    @task(retries=0, pool=SALES_POOL)
    def quality_gate(params: dict | None = None, run_id: str | None = None) -> list:  # type: ignore[type-arg]
        from guardian.airflow import sales
        from guardian.sales import service

        if (params or {}).get("dry_run"):
            return []
        results = sales.call(service.quality_step, params or {}, str(run_id))
        return [{"check": r.check, "passed": r.passed, "message": r.message} for r in results]

    @task(pool=SALES_POOL)
    def export(params: dict | None = None, run_id: str | None = None) -> dict:  # type: ignore[type-arg]
        from guardian.airflow import lineage, sales
        from guardian.sales import service

        if (params or {}).get("dry_run"):
            return {}
        result = sales.call(service.export_step, params or {}, str(run_id))
        lineage.report(outputs=[result.output_uri])
        return {"manifest": result.manifest_uri, "rows": result.rows, "files": len(result.files)}

    @task(pool=SALES_POOL)
    def sheet_output(params: dict | None = None, run_id: str | None = None) -> str | None:  # type: ignore[type-arg]
        from guardian.airflow import lineage, sales
        from guardian.sales import service

        p = params or {}
        if p.get("dry_run") or not p.get("sheet_id"):
            return None
        written = sales.call(service.sheet_step, p, str(run_id))
        lineage.report(outputs=[f"gsheets://{p['sheet_id']}/{p.get('sheet_tab') or 'sales'}"])
        return written

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=0)
    def finish(params: dict | None = None, run_id: str | None = None) -> dict:  # type: ignore[type-arg]
        from guardian.airflow import sales

        return sales.finish(params or {}, str(run_id))

    (validate_params() >> cost_guard() >> run_query() >> quality_gate() >> export() >> sheet_output() >> finish())


bigquery_sales_query()
