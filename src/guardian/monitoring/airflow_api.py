"""Where DAG runs come from: Airflow's stable REST API (v2 on Airflow 3, v1 on 2.x), or the
metadata database read directly (a laptop or ``airflow dags test``, where no API server runs).

Both return :class:`~guardian.monitoring.health.RunRecord` rows updated since a moment, with
each run's failed tasks and retry count.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from guardian.errors import ConfigError, IntegrationError
from guardian.monitoring.health import RunRecord
from guardian.retrying import Retry, with_retries

if TYPE_CHECKING:
    import requests

    from guardian.settings import Settings


def _parse_ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class AirflowApi:
    """A small client for the runs and task instances of Airflow's stable REST API."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 15,
        page_size: int = 100,
        attempts: int = 4,
    ) -> None:
        import requests

        self.base = base_url.rstrip("/")
        self.username, self._password = username, password
        self.timeout, self.page_size, self.attempts = timeout, page_size, attempts
        self.session = requests.Session()
        self._version: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowApi:
        """Client for GUARDIAN_MONITORING__AIRFLOW_API_URL (ConfigError if unset)."""
        cfg = settings.monitoring
        if not cfg.airflow_api_url:
            raise ConfigError("GUARDIAN_MONITORING__AIRFLOW_API_URL is not set; set it to the Airflow API server URL")
        password = None
        if cfg.airflow_password_ref:
            from guardian.secrets import resolve

            password = resolve(
                cfg.airflow_password_ref, setting="GUARDIAN_MONITORING__AIRFLOW_PASSWORD_REF"
            ).get_secret_value()
        return cls(
            cfg.airflow_api_url,
            username=cfg.airflow_username,
            password=password,
            timeout=cfg.api_timeout,
            page_size=cfg.api_page_size,
        )

    # -- HTTP -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        import requests

        url = self.base + path

        def attempt() -> requests.Response:
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise Retry(
                    IntegrationError(
                        f"Airflow API {self.base} unreachable ({type(exc).__name__}); "
                        "check GUARDIAN_MONITORING__AIRFLOW_API_URL and that the API server runs"
                    )
                ) from exc
            if response.status_code != 429 and response.status_code < 500:
                return response
            raise Retry(
                IntegrationError(f"Airflow API {path} failed after {self.attempts} tries (HTTP {response.status_code})")
            )

        return with_retries(attempt, attempts=self.attempts)

    @property
    def version(self) -> str:
        """'v2' (Airflow 3) or 'v1' (Airflow 2.x), detected once."""
        if self._version is None:
            if self._request("GET", "/api/v2/version").status_code == 200:
                self._version = "v2"
                self._login_v2()
            else:
                self._version = "v1"
                if self.username:
                    self.session.auth = (self.username, self._password or "")
        return self._version

    def _login_v2(self) -> None:
        # Airflow 3: exchange user and password for a JWT at /auth/token (simple and FAB auth managers).
        body = {"username": self.username, "password": self._password} if self.username else {}
        response = self._request("POST", "/auth/token", json=body)
        if response.status_code not in (200, 201):
            raise IntegrationError(
                f"Airflow API {self.base} refused the login of {self.username!r} (HTTP {response.status_code}); "
                "check GUARDIAN_MONITORING__AIRFLOW_USERNAME and ..._PASSWORD_REF"
            )
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self._request("GET", f"/api/{self.version}{path}", params=params)
        if response.status_code in (401, 403):
            raise IntegrationError(
                f"Airflow API refused {path} (HTTP {response.status_code}); the API user needs read access to DAG runs"
            )
        if response.status_code != 200:
            raise IntegrationError(f"Airflow API {path} answered HTTP {response.status_code}: {response.text[:200]}")
        data: dict[str, Any] = response.json()
        return data

    def _paged(self, path: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self._get(path, {**params, "limit": self.page_size, "offset": offset})
            items = page.get(key) or []
            out.extend(items)
            offset += len(items)
            if not items or offset >= int(page.get("total_entries") or 0):
                return out

    # -- queries --------------------------------------------------------------------------
    def dags(self) -> list[str]:
        """Every DAG id the API server knows."""
        return sorted(d["dag_id"] for d in self._paged("/dags", "dags", {}))

    def runs_since(self, since: datetime) -> list[RunRecord]:
        """Runs updated since ``since`` (all DAGs), with failed tasks and retries."""
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        runs = self._paged("/dags/~/dagRuns", "dag_runs", {"updated_at_gte": stamp})
        tis = self._paged("/dags/~/dagRuns/~/taskInstances", "task_instances", {"updated_at_gte": stamp})
        failed: dict[tuple[str, str], list[str]] = defaultdict(list)
        retries: dict[tuple[str, str], int] = defaultdict(int)
        for ti in tis:
            key = (ti["dag_id"], ti["dag_run_id"])
            if ti.get("state") == "failed":
                failed[key].append(ti["task_id"])
            retries[key] += max(0, int(ti.get("try_number") or 0) - 1)
        return [
            RunRecord(
                dag_id=r["dag_id"],
                run_id=r["dag_run_id"],
                state=str(r.get("state") or "unknown"),
                start_date=_parse_ts(r.get("start_date")),
                end_date=_parse_ts(r.get("end_date")),
                run_type=r.get("run_type"),
                failed_tasks=sorted(failed.get((r["dag_id"], r["dag_run_id"]), [])),
                retries=retries.get((r["dag_id"], r["dag_run_id"]), 0),
            )
            for r in runs
        ]


def collect_from_database(url: str, since: datetime) -> tuple[list[str], list[RunRecord]]:
    """DAG ids and runs updated since ``since``, read from an Airflow metadata database (SQLAlchemy URL).

    Reads only columns that Airflow 2.11 and 3.x share (``dag``, ``dag_run``, ``task_instance``).
    """
    from sqlalchemy import create_engine, text

    engine = create_engine(url, future=True)
    try:
        with engine.connect() as conn:
            dag_ids = [r[0] for r in conn.execute(text("SELECT dag_id FROM dag"))]
            runs = conn.execute(
                text(
                    "SELECT dag_id, run_id, state, start_date, end_date, run_type FROM dag_run "
                    "WHERE COALESCE(end_date, start_date, :since) >= :since OR end_date IS NULL"
                ),
                {"since": since.astimezone(UTC).replace(tzinfo=None) if "sqlite" in url else since},
            ).all()
            tis = conn.execute(
                text(
                    "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.state, ti.try_number FROM task_instance ti "
                    "JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id "
                    "WHERE COALESCE(dr.end_date, dr.start_date, :since) >= :since OR dr.end_date IS NULL"
                ),
                {"since": since.astimezone(UTC).replace(tzinfo=None) if "sqlite" in url else since},
            ).all()
    finally:
        engine.dispose()
    failed: dict[tuple[str, str], list[str]] = defaultdict(list)
    retries: dict[tuple[str, str], int] = defaultdict(int)
    for ti in tis:
        if ti.state == "failed":
            failed[(ti.dag_id, ti.run_id)].append(ti.task_id)
        retries[(ti.dag_id, ti.run_id)] += max(0, int(ti.try_number or 0) - 1)
    records = [
        RunRecord(
            dag_id=r.dag_id,
            run_id=r.run_id,
            state=str(r.state or "unknown"),
            start_date=_parse_ts(r.start_date),
            end_date=_parse_ts(r.end_date),
            run_type=r.run_type,
            failed_tasks=sorted(failed.get((r.dag_id, r.run_id), [])),
            retries=retries.get((r.dag_id, r.run_id), 0),
        )
        for r in runs
    ]
    return dag_ids, records


def default_since(last: datetime | None, history_days: int) -> datetime:
    """Collect from a little before the last collection (runs may finish late), else the full history."""
    now = datetime.now(UTC)
    if last is None:
        return now - timedelta(days=history_days)
    return min(last, now) - timedelta(hours=2)


def collect_runs(
    settings: Settings, since: datetime, *, metadata_db_url: str | None = None
) -> tuple[list[str], list[RunRecord], str]:
    """The one place that chooses where runs come from: (dag ids, runs, source).

    The REST API when GUARDIAN_MONITORING__AIRFLOW_API_URL is set and no metadata DB URL is
    forced, else the metadata DB when its URL is known, else nothing ("store": summarise what
    is already stored). The CLI and the guardian_health DAG both call this.
    """
    if settings.monitoring.airflow_api_url and not metadata_db_url:
        api = AirflowApi.from_settings(settings)
        return api.dags(), api.runs_since(since), f"api-{api.version}"
    if metadata_db_url:
        dag_ids, runs = collect_from_database(metadata_db_url, since)
        return dag_ids, runs, "metadb"
    return [], [], "store"
