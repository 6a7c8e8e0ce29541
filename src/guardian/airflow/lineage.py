"""Declare what a task read and wrote, for OpenLineage, at run time.

Tasks call :func:`report` with the URIs involved (``bigquery://project/dataset/table``,
``gs://bucket/path``, ``file:///path``, ``gsheets://<spreadsheet_id>/<tab>``,
``looker://<instance>/dashboards``). The URIs go to Airflow's hook-lineage collector, which
the OpenLineage provider turns into the inputs and outputs of the task's lineage events.
Run time, not parse time: the URIs depend on settings and params.
"""

from __future__ import annotations

from collections.abc import Iterable


def _context() -> object:
    from airflow.providers.common.compat.sdk import BaseHook

    class GuardianLineage(BaseHook):  # type: ignore[misc]
        """The 'hook' lineage is attributed to: the guardian domain call of this task."""

        conn_name_attr = "guardian_conn_id"
        hook_name = "Guardian"

        def get_conn(self) -> None:
            return None

    return GuardianLineage()


def report(inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
    """Record input and output dataset URIs of the running task."""
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    ctx = _context()
    for uri in inputs:
        collector.add_input_asset(ctx, uri=uri)
    for uri in outputs:
        collector.add_output_asset(ctx, uri=uri)
