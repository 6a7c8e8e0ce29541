"""`guardian doctor`: is each part of the system reachable and working?

Each check returns OK, FAIL (with the reason and the fix) or SKIPPED (not configured). A
check never raises: an unexpected error is a FAIL that names it.
"""

from __future__ import annotations

import os
import smtplib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from guardian.errors import AlreadyExists, GuardianError
from guardian.settings import Settings

Status = Literal["OK", "FAIL", "SKIPPED"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    seconds: float = 0.0


class Skip(Exception):
    """Raised by a check whose integration is not configured."""


class Fail(Exception):
    """Raised by a check that failed, with the fix as second argument."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.fix = fix


def check_store(settings: Settings) -> str:
    from guardian.store import get_store

    store = get_store(settings)
    try:
        applied = store.migrate() if not store.is_current() else set()
        revisions = sorted(store.current_revisions())
    except GuardianError as exc:
        raise Fail(str(exc), "start the database or fix GUARDIAN_STORE__URL, then `guardian db upgrade`") from exc
    note = f", applied {len(applied)} migration(s)" if applied else ""
    return f"{store.display_url} at {', '.join(revisions)}{note}"


def check_storage(settings: Settings) -> str:
    from guardian.storage import default_storage

    storage = default_storage(settings)
    key = f"_doctor/{uuid.uuid4().hex}.txt"
    payload = b"guardian doctor write-once round trip"
    try:
        storage.put_once(key, payload)
        try:
            if storage.get(key) != payload:
                raise Fail(f"{storage.uri(key)} read back different bytes", "check the storage backend")
            try:
                storage.put_once(key, b"overwrite")
            except AlreadyExists:
                pass
            else:
                raise Fail(
                    "a second write-once put overwrote the object",
                    "the backend ignores preconditions; use real Cloud Storage",
                )
        finally:
            storage.delete(key)
    except GuardianError as exc:
        raise Fail(str(exc), "check GUARDIAN_STORAGE__ROOT and the bucket's permissions") from exc
    return f"write-once round trip on {storage.root}"


def check_looker(settings: Settings) -> str:
    if not os.environ.get("LOOKERSDK_BASE_URL"):
        raise Skip("not configured: set LOOKERSDK_BASE_URL, LOOKERSDK_CLIENT_ID and LOOKERSDK_CLIENT_SECRET")
    from guardian.looker.client import connect

    try:
        client = connect(settings)
        me = client.me()
    except GuardianError as exc:
        raise Fail(str(exc), "check LOOKERSDK_BASE_URL and the API3 client id/secret") from exc
    return f"logged in to {os.environ['LOOKERSDK_BASE_URL']} as user {me}"


def check_warehouse(settings: Settings) -> str:
    if settings.sales.backend == "duckdb":
        path = settings.duckdb_path
        if not path.exists():
            raise Skip(f"DuckDB demo warehouse {path} not generated yet: `guardian sales demo-data`")
        import duckdb

        with duckdb.connect(str(path), read_only=True) as con:
            tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if settings.sales.table not in tables:
            raise Fail(f"{path} has no table {settings.sales.table}", "run `guardian sales demo-data`")
        return f"DuckDB {path} has {settings.sales.table}"
    from guardian.sales.warehouse import bigquery_dry_run_check

    try:
        return bigquery_dry_run_check(settings)
    except GuardianError as exc:
        raise Fail(str(exc), "check GUARDIAN_SALES__PROJECT/DATASET/TABLE and the credentials") from exc


def check_sheets(settings: Settings) -> str:
    if not settings.sheets.spreadsheet_id:
        raise Skip("not configured: set GUARDIAN_SHEETS__SPREADSHEET_ID")
    from guardian.sheets.client import SheetsClient

    try:
        title = SheetsClient.from_settings(settings).title(settings.sheets.spreadsheet_id)
    except GuardianError as exc:
        raise Fail(str(exc), "check GUARDIAN_SHEETS__SPREADSHEET_ID, the credentials and sharing") from exc
    return f"read spreadsheet {title!r}"


def check_smtp(settings: Settings) -> str:
    cfg = settings.notify
    if not cfg.smtp_host:
        raise Skip("not configured: set GUARDIAN_NOTIFY__SMTP_HOST (smtp_default inside Airflow)")
    implicit_tls = cfg.smtp_port == 465
    if cfg.smtp_user and cfg.smtp_password_ref and not (implicit_tls or cfg.smtp_starttls):
        raise Fail(
            "the SMTP password would go over a clear connection",
            "set GUARDIAN_NOTIFY__SMTP_STARTTLS=true or use port 465",
        )
    try:
        with (smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP)(
            cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout
        ) as smtp:
            smtp.ehlo()
            if cfg.smtp_starttls and not implicit_tls:
                smtp.starttls()
            if cfg.smtp_user and cfg.smtp_password_ref:
                from guardian.secrets import resolve

                smtp.login(
                    cfg.smtp_user,
                    resolve(cfg.smtp_password_ref, setting="GUARDIAN_NOTIFY__SMTP_PASSWORD_REF").get_secret_value(),
                )
            code, _ = smtp.noop()
    except (OSError, smtplib.SMTPException) as exc:
        raise Fail(
            f"SMTP {cfg.smtp_host}:{cfg.smtp_port}: {exc}",
            "check the host, port, TLS and credentials",
        ) from exc
    return f"SMTP {cfg.smtp_host}:{cfg.smtp_port} answered {code}"


def check_slack(settings: Settings) -> str:
    ref = settings.notify.slack_webhook_ref
    if not ref:
        raise Skip("not configured: set GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF=env:VAR")
    import requests

    from guardian.secrets import resolve

    url = resolve(ref, setting="GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF").get_secret_value()
    try:
        # An empty payload posts nothing: Slack answers 400 no_text for a live webhook and
        # 403/404/410 for a revoked or mistyped one.
        response = requests.post(url, json={}, timeout=settings.notify.timeout)
    except requests.RequestException as exc:
        raise Fail(
            f"Slack webhook unreachable ({type(exc).__name__})",
            "check the network path to the webhook",
        ) from exc
    if response.status_code in (200, 400):
        return f"webhook reachable (HTTP {response.status_code})"
    raise Fail(
        f"webhook answered HTTP {response.status_code}",
        "the webhook was revoked or mistyped; create a new one",
    )


def check_security(settings: Settings) -> str:
    """The audit chain verifies; in prod, the settings that make the platform hold under attack are set."""
    from guardian import audit

    report = audit.verify(settings=settings)
    if not report.ok:
        raise Fail(f"audit chain: {report.reason}", "treat as a security incident: docs/operations.md#security")
    missing = [
        fix
        for wanted, fix in (
            (settings.audit.hmac_key_ref, "GUARDIAN_AUDIT__HMAC_KEY_REF (audit rows keyed outside the database)"),
            (settings.web.metrics_token_ref, "GUARDIAN_WEB__METRICS_TOKEN_REF (/metrics answers 401 without it)"),
            (settings.web.session_secret_ref, "GUARDIAN_WEB__SESSION_SECRET_REF (cookie key survives restarts)"),
            (settings.web.secure_cookies, "GUARDIAN_WEB__SECURE_COOKIES=true (cookies over HTTPS only)"),
            (
                settings.store.owner_user or settings.store_url.startswith("sqlite"),
                "GUARDIAN_STORE__OWNER_USER (the app role may only INSERT and SELECT audit_log)",
            ),
        )
        if not wanted
    ]
    state = (
        f"audit chain OK ({report.rows} rows, {'keyed' if report.keyed else 'not keyed'}, "
        f"{f'anchored at row {report.anchor_seq}' if report.anchor_seq else 'no anchor yet'})"
    )
    if missing and settings.environment == "prod":
        raise Fail(f"{state}; not set: {'; '.join(missing)}", "set them; see docs/operations.md#security")
    return state + (f"; for prod also set: {'; '.join(missing)}" if missing else "")


CHECKS: list[tuple[str, Callable[[Settings], str]]] = [
    ("store", check_store),
    ("storage", check_storage),
    ("looker", check_looker),
    ("warehouse", check_warehouse),
    ("sheets", check_sheets),
    ("smtp", check_smtp),
    ("slack", check_slack),
    ("security", check_security),
]


def run_checks(settings: Settings, only: list[str] | None = None) -> list[CheckResult]:
    """Run every check (or the named ones) and return their results in order."""
    results = []
    for name, check in CHECKS:
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            detail = check(settings)
            result = CheckResult(name, "OK", detail)
        except Skip as exc:
            result = CheckResult(name, "SKIPPED", str(exc))
        except Fail as exc:
            result = CheckResult(name, "FAIL", str(exc), exc.fix)
        except GuardianError as exc:
            result = CheckResult(name, "FAIL", str(exc), "see the message")
        except Exception as exc:
            result = CheckResult(name, "FAIL", f"unexpected {type(exc).__name__}: {exc}", "this is a bug; report it")
        results.append(CheckResult(result.name, result.status, result.detail, result.fix, time.monotonic() - started))
    return results
