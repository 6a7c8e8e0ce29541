"""Airflow glue of the bigquery_sales_query DAG: one call per task, credentials from the connection.

In BigQuery mode the client comes from the Google provider's ``BigQueryHook`` on the
``google_cloud_default`` connection when that connection exists (else application-default
credentials, or the emulator endpoint from the settings). Errors that a retry cannot fix
(bad params, the cost guard, the quality gate, a result too large for a sheet) fail the task
at once instead of retrying.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from guardian.sales.params import ExtractParams
    from guardian.sales.service import Deps
    from guardian.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
GCP_CONN_ID = "google_cloud_default"

# Keys Airflow itself adds to a triggered run's conf (the OpenLineage provider puts the parent
# run there when TriggerDagRunOperator starts a run); they are not the user's params.
AIRFLOW_CONF_KEYS = frozenset({"openlineage"})


def user_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The params a person (or the Sheets trigger) gave, without keys Airflow injected."""
    return {key: value for key, value in raw.items() if key not in AIRFLOW_CONF_KEYS}


def bigquery_client(settings: Settings) -> Any | None:
    """A client from the google_cloud_default connection, or None to let the domain decide."""
    if settings.sales.backend != "bigquery" or settings.sales.bigquery_endpoint:
        return None
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        BaseHook.get_connection(GCP_CONN_ID)
    except AirflowNotFoundException:
        return None
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

    hook = BigQueryHook(gcp_conn_id=GCP_CONN_ID, location=settings.sales.location, use_legacy_sql=False)
    return hook.get_client(project_id=settings.sales.project, location=settings.sales.location)


def _fail_fast(exc: Exception) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    from guardian.errors import ValidationFailed
    from guardian.sales.service import QualityGateFailed, SheetTooLarge
    from guardian.sales.warehouse import CostLimitExceeded

    if isinstance(exc, ValidationFailed | CostLimitExceeded | QualityGateFailed | SheetTooLarge):
        raise AirflowFailException(str(exc)) from exc


def validate(raw: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Validate the params (again) and open the run record; return the params as JSON."""
    raw = user_params(raw)
    from airflow.providers.common.compat.sdk import AirflowFailException

    from guardian.airflow import dagkit
    from guardian.errors import ValidationFailed
    from guardian.sales import service
    from guardian.sales.params import validate_params

    settings = dagkit.task_settings()
    try:
        params = validate_params(raw, settings)
    except ValidationFailed as exc:
        service.reject(settings, raw, run_id, exc)
        raise AirflowFailException(str(exc)) from exc
    d = service.deps(settings, params, client=bigquery_client(settings))
    service.begin(d, params, run_id)
    return params.as_json()


def call(step: Callable[[Deps, ExtractParams, str], T], raw: Mapping[str, Any], run_id: str) -> T:
    """Run one domain step with this task's settings, store, warehouse and storage."""
    raw = user_params(raw)
    from guardian.airflow import dagkit
    from guardian.sales import service
    from guardian.sales.params import validate_params

    settings = dagkit.task_settings()
    params = validate_params(raw, settings)
    d = service.deps(settings, params, client=bigquery_client(settings))
    try:
        return step(d, params, run_id)
    except Exception as exc:
        _fail_fast(exc)
        raise


def finish(raw: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Close the record, report to the requester; fail the task (and the run) when the run failed."""
    raw = user_params(raw)
    from airflow.providers.common.compat.sdk import AirflowFailException

    from guardian.airflow import dagkit
    from guardian.errors import GuardianError
    from guardian.sales import service
    from guardian.sales.params import validate_params

    settings = dagkit.task_settings()
    params: ExtractParams | None
    try:
        params = validate_params(raw, settings)
    except GuardianError:
        params = None
    d = service.deps(settings, params, client=bigquery_client(settings))
    outcome = service.finish(
        d,
        params,
        run_id,
        dag_run_id=run_id,
        request_id=raw.get("request_id") or None,
        requested_by=raw.get("requested_by") or None,
    )
    print(service.summary_text(outcome))
    if not outcome.ok:
        # This task is the DAG's only leaf: it must fail for the run to be marked failed.
        raise AirflowFailException(f"sales run {run_id} failed: {outcome.error}")
    return {"run_id": run_id, "status": outcome.status, "rows": outcome.rows, "output_uri": outcome.output_uri}


def source_uri(settings: Settings) -> str:
    """The lineage URI of the sales table."""
    cfg = settings.sales
    if cfg.backend == "bigquery":
        return f"bigquery://{cfg.project}/{cfg.dataset}/{cfg.table}"
    return f"duckdb://{settings.duckdb_path}/{cfg.dataset}/{cfg.table}"
