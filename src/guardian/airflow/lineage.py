"""Declare what a task read and wrote, for OpenLineage, at run time.

Tasks call :func:`report` with the URIs involved (``bigquery://project/dataset/table``,
``gs://bucket/path``, ``file:///path``, ``gsheets://<spreadsheet_id>/<tab>``,
``looker://<instance>/dashboards``, ``guardian://store/<table>``). The URIs go to Airflow's
hook-lineage collector, which the OpenLineage provider turns into the inputs and outputs of the task's lineage events.
Run time, not parse time: the URIs depend on settings and params. The ``gsheets``, ``looker``
and ``guardian`` schemes get their OpenLineage names from :func:`to_openlineage`, which the
guardian package registers with Airflow as a provider (entry point ``apache_airflow_provider``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _context() -> object:
    from airflow.providers.common.compat.sdk import BaseHook

    class GuardianLineage(BaseHook):
        """The 'hook' lineage is attributed to: the guardian domain call of this task."""

        conn_name_attr = "guardian_conn_id"
        hook_name = "Guardian"

        def get_conn(self) -> None:
            return None

    return GuardianLineage()


def report(inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
    """Record input and output dataset URIs of the running task."""
    from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector

    collector = get_hook_lineage_collector()  # type: ignore[no-untyped-call]
    ctx = _context()
    for uri in inputs:
        collector.add_input_asset(ctx, uri=uri)
    for uri in outputs:
        collector.add_output_asset(ctx, uri=uri)


# Schemes of the guardian's own systems; bigquery://, gs:// and file:// are the Google and
# common-io providers' own and already convert.
GUARDIAN_SCHEMES = ["gsheets", "looker", "guardian"]


def to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """OpenLineage dataset of a ``gsheets://``, ``looker://`` or ``guardian://`` asset.

    Namespace ``<scheme>://<authority>`` (spreadsheet id, Looker instance, guardian component),
    name the rest of the path: the same shape the Google provider uses for ``gs://``.
    """
    from urllib.parse import urlsplit

    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = urlsplit(asset.uri)
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/") or "/")


def provider_info() -> dict[str, Any]:
    """Provider metadata (``apache_airflow_provider`` entry point): the guardian's asset URI schemes."""
    uris = [{"schemes": GUARDIAN_SCHEMES, "handler": None, "to_openlineage_converter": f"{__name__}.to_openlineage"}]
    return {
        "package-name": "airflow-guardian",
        "name": "Airflow Guardian",
        "description": "Asset URI schemes of the guardian (Google Sheets, Looker, the guardian store) for OpenLineage.",
        "asset-uris": uris,
        "dataset-uris": uris,
    }
