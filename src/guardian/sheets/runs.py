"""Run states for the Sheets poll, through the client the deployment already uses for DAG health
(guardian.monitoring.airflow_api): Airflow's REST API (v2 on Airflow 3, v1 on 2.11) when
GUARDIAN_MONITORING__AIRFLOW_API_URL is set, else the metadata database read directly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guardian.settings import Settings


class AirflowRuns:
    """A :class:`guardian.sheets.poll.RunSource` over the monitoring client."""

    def __init__(self, settings: Settings, *, metadata_db_url: str | None = None) -> None:
        self._settings = settings
        self._db_url = metadata_db_url

    @property
    def _api(self) -> bool:
        return bool(self._settings.monitoring.airflow_api_url) or not self._db_url

    def states(self, run_ids: dict[str, list[str]], since: datetime) -> dict[str, str]:
        """Run id -> state of the wanted runs that exist (runs updated since ``since``, filtered)."""
        from guardian.monitoring.airflow_api import AirflowApi, collect_from_database

        if self._api:
            records = AirflowApi.from_settings(self._settings).runs_since(since)
        else:
            assert self._db_url is not None
            _dags, records = collect_from_database(self._db_url, since)
        wanted = {(dag, rid) for dag, rids in run_ids.items() for rid in rids}
        return {r.run_id: r.state for r in records if (r.dag_id, r.run_id) in wanted}

    def dag_ids(self) -> set[str] | None:
        """DAG ids Airflow knows."""
        from guardian.monitoring.airflow_api import AirflowApi, collect_from_database

        if self._api:
            return set(AirflowApi.from_settings(self._settings).dags())
        assert self._db_url is not None
        dags, _runs = collect_from_database(self._db_url, datetime.now(UTC))
        return set(dags)


def from_environment(settings: Settings, environ: dict[str, str]) -> AirflowRuns | None:
    """The run source outside Airflow (the CLI): the API if configured, else AIRFLOW__DATABASE__SQL_ALCHEMY_CONN."""
    db = environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if settings.monitoring.airflow_api_url or db:
        return AirflowRuns(settings, metadata_db_url=db)
    return None
