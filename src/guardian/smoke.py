"""`guardian smoke`: the post-deploy checks of a running system, one command with an exit status.

Each check answers OK, FAIL (with the reason and the fix) or SKIPPED, in the shape of
`guardian doctor` (whose checks it runs for every configured integration). The Airflow side is
read from the stable REST API (v2 on Airflow 3, v1 on 2.x) through the monitoring client, the
Guardian side through the same functions the CLI uses (audit verify, the sales estimate).

``--watch`` is the post-deployment monitor: it repeats the checks for a set time and also fails
when the failure rate of the runs finished since the watch began exceeds the threshold; the
pipeline rolls back on a non-zero exit. The decision is the pure function :func:`regression`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from guardian.doctor import CHECKS as DOCTOR_CHECKS
from guardian.doctor import CheckResult, Fail, Skip, Status
from guardian.errors import ConfigError, GuardianError
from guardian.monitoring.airflow_api import AirflowApi, _parse_ts
from guardian.settings import Settings

# The guardian's DAGs (dags/, one file each); each is scheduled or triggered (by the sheet DAG or
# the UI's restore), and a paused DAG's triggered runs never start: all registered and unpaused.
EXPECTED_DAGS: tuple[str, ...] = (
    "looker_dashboard_deletion",
    "looker_dashboard_restore",
    "bigquery_sales_query",
    "google_sheet_trigger_dag",
    "guardian_health",
)
UI_PREFIX = "/guardian"  # where the Airflow plugin mounts the Guardian UI (guardian.airflow.plugin)


@dataclass(frozen=True)
class SmokeOptions:
    """What the deployment is expected to look like."""

    dags: tuple[str, ...] = EXPECTED_DAGS
    allow_paused: tuple[str, ...] = ()
    doctor: bool = True
    ui_prefix: str = UI_PREFIX
    only: tuple[str, ...] = ()  # run only these checks (names as printed, e.g. scheduler, doctor:looker)


class SmokeApi(AirflowApi):
    """The monitoring client plus the three reads a smoke test needs (health, import errors, DAGs)."""

    _health: dict[str, Any] | None = None

    def health(self) -> dict[str, Any]:
        """Airflow's health document (``/api/v2/monitor/health``; ``/api/v1/health`` on 2.x), read once per client."""
        if self._health is not None:
            return self._health
        path = "/api/v2/monitor/health" if self.version == "v2" else "/api/v1/health"
        response = self._request("GET", path)
        if response.status_code != 200:
            raise Fail(
                f"{self.base}{path} answered HTTP {response.status_code}",
                "the API server is up but unhealthy: read its log",
            )
        self._health = response.json()
        return self._health

    def import_errors(self) -> list[dict[str, Any]]:
        """Every DAG file import error the DAG processor recorded."""
        return self._paged("/importErrors", "import_errors", {})

    def dag_states(self) -> dict[str, bool]:
        """dag_id -> is_paused, for every DAG the API server knows."""
        return {d["dag_id"]: bool(d.get("is_paused")) for d in self._paged("/dags", "dags", {})}

    def bearer(self) -> dict[str, str]:
        """The Authorization header of the logged-in session (Airflow 3), empty on 2.x."""
        _ = self.version  # logs in
        header = self.session.headers.get("Authorization")
        return {"Authorization": str(header)} if header else {}


def _component(api: SmokeApi, name: str, *, optional: bool = False) -> str:
    health = api.health()
    part = health.get(name)
    if part is None:
        if optional:
            raise Skip(f"Airflow {api.version} reports no {name} in its health document")
        raise Fail(f"the health document has no {name}", "check the Airflow version")
    status = part.get("status")
    beat_key = next((k for k in part if k.startswith("latest_") and k.endswith("heartbeat")), None)
    beat = _parse_ts(part.get(beat_key)) if beat_key else None
    age = f"{(datetime.now(UTC) - beat).total_seconds():.0f} s ago" if beat else "never"
    if status != "healthy":
        raise Fail(
            f"{name} is {status}; last heartbeat {age}",
            f"start the {name.replace('_', ' ')} (or read its log): `./start_airflow.sh status`",
        )
    return f"healthy; last heartbeat {age}" if beat_key else "healthy"


def check_api(api: SmokeApi) -> str:
    """The API server answers its health endpoint and reaches the metadata database."""
    health = api.health()
    db = (health.get("metadatabase") or {}).get("status")
    if db != "healthy":
        raise Fail(f"metadatabase is {db}", "check AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and that PostgreSQL runs")
    return f"{api.base} ({api.version}) answers; metadatabase healthy"


def check_import_errors(api: SmokeApi) -> str:
    """No DAG file fails to import."""
    errors = api.import_errors()
    if errors:
        first = errors[0]
        lines = str(first.get("stack_trace") or "").strip().splitlines()
        raise Fail(
            f"{len(errors)} DAG import error(s): {first.get('filename')}: {lines[-1] if lines else '?'}",
            "fix the file (`airflow dags list-import-errors` shows every trace) and redeploy",
        )
    return "none"


def check_dags(api: SmokeApi, options: SmokeOptions) -> str:
    """Every expected DAG is registered, and unpaused unless allowed to be paused."""
    states = api.dag_states()
    missing = [d for d in options.dags if d not in states]
    paused = [d for d in options.dags if states.get(d) and d not in options.allow_paused]
    if missing:
        raise Fail(
            f"not registered: {', '.join(missing)}",
            "check that the DAG files are in the image's dags folder and import (see dag_import_errors)",
        )
    if paused:
        raise Fail(f"paused: {', '.join(paused)}", f"unpause: `airflow dags unpause {paused[0]}`")
    return f"{len(options.dags)} registered and unpaused ({len(states)} DAGs in all)"


def check_ui(api: SmokeApi, options: SmokeOptions) -> str:
    """The Guardian UI refuses an anonymous call and answers a logged-in one."""
    if api.version == "v1":
        raise Skip("Airflow 2.x mounts no Guardian UI in its webserver; smoke `guardian serve` on its own URL")
    url = f"{api.base}{options.ui_prefix}/api/overview"
    anonymous = api.session.get(url, timeout=api.timeout, headers={"Authorization": None})
    if anonymous.status_code == 404:
        raise Fail(f"{url} answered 404", "the guardian plugin is not loaded: `airflow plugins` in the API server")
    if anonymous.status_code != 401:
        raise Fail(f"{url} answered HTTP {anonymous.status_code} without a login", "the UI must sit behind the login")
    logged_in = api.session.get(url, timeout=api.timeout, headers=api.bearer())
    if logged_in.status_code != 200:
        raise Fail(
            f"{url} answered HTTP {logged_in.status_code} to a logged-in user",
            "read the API server's log for the guardian plugin's error",
        )
    return f"{options.ui_prefix}/ answers behind the login (anonymous 401, logged in 200)"


def check_sales_estimate(settings: Settings) -> str:
    """A dry-run estimate of last week's sales query over every allowed country and brand."""
    from guardian.sales.params import validate_params
    from guardian.sales.service import deps
    from guardian.sales.service import estimate as do_estimate

    yesterday = date.today() - timedelta(days=1)
    params = validate_params(
        {
            "start_date": (yesterday - timedelta(days=6)).isoformat(),
            "end_date": yesterday.isoformat(),
            "countries": list(settings.sales.countries),
            "brands": list(settings.sales.brands),
        },
        settings,
    )
    check = do_estimate(deps(settings, params), params)
    if not check.ok:
        raise Fail(check.line(), "raise GUARDIAN_SALES__MAX_BYTES_BILLED or check the table's partitioning")
    return check.line()


def check_audit(settings: Settings) -> str:
    """The audit chain verifies."""
    from guardian import audit
    from guardian.store import get_store

    report = audit.verify(get_store(settings))
    if not report.ok:
        raise Fail(
            f"audit chain broken at row {report.first_bad_seq}: {report.reason}",
            "follow docs/runbooks for a broken audit chain; do not deploy over it",
        )
    return f"{report.rows} row(s), head {report.head_hash[:12]}"


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    started = time.monotonic()
    status: Status
    try:
        status, detail, fix = "OK", check(), ""
    except Skip as exc:
        status, detail, fix = "SKIPPED", str(exc), ""
    except Fail as exc:
        status, detail, fix = "FAIL", str(exc), exc.fix
    except GuardianError as exc:
        status, detail, fix = "FAIL", str(exc), "see the message"
    except Exception as exc:
        status, detail, fix = "FAIL", f"unexpected {type(exc).__name__}: {exc}", "this is a bug; report it"
    return CheckResult(name, status, detail, fix, time.monotonic() - started)


def api_from_settings(settings: Settings) -> SmokeApi:
    """The smoke client for GUARDIAN_MONITORING__AIRFLOW_API_URL (one attempt per call: a smoke test reports)."""
    base = AirflowApi.from_settings(settings)
    return SmokeApi(base.base, username=base.username, password=base._password, timeout=base.timeout, attempts=2)


def run_smoke(settings: Settings, options: SmokeOptions | None = None) -> list[CheckResult]:
    """Run every smoke check; a failing check never stops the others."""
    options = options or SmokeOptions()
    if not settings.monitoring.airflow_api_url:
        raise ConfigError("GUARDIAN_MONITORING__AIRFLOW_API_URL is not set; set it to the deployment's API server URL")
    api = api_from_settings(settings)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("api_server", lambda: check_api(api)),
        ("scheduler", lambda: _component(api, "scheduler")),
        ("triggerer", lambda: _component(api, "triggerer")),
        ("dag_processor", lambda: _component(api, "dag_processor", optional=True)),
        ("dag_import_errors", lambda: check_import_errors(api)),
        ("dags", lambda: check_dags(api, options)),
        ("guardian_ui", lambda: check_ui(api, options)),
        ("sales_estimate", lambda: check_sales_estimate(settings)),
        ("audit_chain", lambda: check_audit(settings)),
    ]
    known = [name for name, _ in checks] + [f"doctor:{name}" for name, _ in DOCTOR_CHECKS]
    unknown = sorted(set(options.only) - set(known))
    if unknown:
        raise ConfigError(f"--only {', '.join(unknown)}: no such check; use one of {', '.join(known)}")
    results = [_run(name, check) for name, check in checks if not options.only or name in options.only]
    if options.doctor:
        from guardian.doctor import run_checks

        wanted = [n for n, _ in DOCTOR_CHECKS if not options.only or f"doctor:{n}" in options.only]
        if wanted:
            results += [
                CheckResult(f"doctor:{r.name}", r.status, r.detail, r.fix, r.seconds)
                for r in run_checks(settings, wanted)
            ]
    return results


def failed(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The failing results."""
    return [r for r in results if r.status == "FAIL"]


# -- post-deployment monitoring -------------------------------------------------------------
@dataclass(frozen=True)
class WatchLimits:
    """When a freshly promoted deployment counts as a regression."""

    failure_rate: float = 0.2  # GUARDIAN_MONITORING__FAILURE_RATE_THRESHOLD
    min_runs: int = 3  # GUARDIAN_MONITORING__FAILURE_RATE_MIN_RUNS


@dataclass
class WatchState:
    """What the watch has seen since promotion."""

    finished: dict[tuple[str, str], str] = field(default_factory=dict)  # (dag_id, run_id) -> state
    failing_checks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        runs = list(self.finished.values())
        return {"runs": len(runs), "failed": runs.count("failed"), "failing_checks": self.failing_checks}


def regression(state: WatchState, limits: WatchLimits) -> str | None:
    """Why the deployment must be rolled back, or None.

    A failing smoke check (an import error, a dead scheduler...) is a regression at once; run
    failures count once at least ``min_runs`` runs finished since promotion, so one early
    failure of a rarely run DAG does not roll back a good release.
    """
    if state.failing_checks:
        return f"smoke check(s) failing: {', '.join(sorted(state.failing_checks))}"
    runs = list(state.finished.values())
    if len(runs) >= limits.min_runs:
        rate = runs.count("failed") / len(runs)
        if rate > limits.failure_rate:
            return f"failure rate {rate:.0%} over {len(runs)} run(s) since promotion exceeds {limits.failure_rate:.0%}"
    return None


def watch(
    settings: Settings,
    options: SmokeOptions,
    *,
    seconds: float,
    interval: float,
    on_round: Callable[[list[CheckResult], WatchState], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[WatchState, str | None]:
    """Repeat the smoke checks for ``seconds``; return the state and the first regression (None: keep)."""
    cfg = settings.monitoring
    limits = WatchLimits(cfg.failure_rate_threshold, cfg.failure_rate_min_runs)
    since = datetime.now(UTC)
    api = api_from_settings(settings)
    state = WatchState()
    deadline = clock() + seconds
    while True:
        results = run_smoke(settings, options)
        state.failing_checks = [r.name for r in failed(results)]
        for run in api.runs_since(since):
            if run.state in ("success", "failed") and run.end_date and run.end_date >= since:
                state.finished[(run.dag_id, run.run_id)] = run.state
        if on_round is not None:
            on_round(results, state)
        reason = regression(state, limits)
        if reason or clock() >= deadline:
            return state, reason
        sleep(min(interval, max(0.0, deadline - clock())))


def as_json(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The JSON document of ``guardian smoke --json``."""
    return {
        "ok": not failed(results),
        "checks": [{**asdict(r), "seconds": round(r.seconds, 3)} for r in results],
    }
