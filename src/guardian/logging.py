"""One log format for every guardian process, with secrets masked everywhere.

:func:`configure` installs a JSON-lines (or plain) formatter on the root logger. Every record,
and every alert text (see :mod:`guardian.notify`), goes through :func:`mask_text`, which
replaces the values of known secrets (everything the settings' ``*_REF`` references resolve
to, plus values registered with :func:`register_secret`) and anything shaped like a credential
(Slack webhook URLs and tokens, bearer tokens, ``password=`` pairs, passwords in URLs).
Inside Airflow the same values are also handed to Airflow's own secrets masker by the glue in
``guardian.airflow`` (this module never imports airflow).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardian.settings import Settings

MASK = "***"
# Short values would mask ordinary words; Airflow's masker uses the same floor.
_MIN_SECRET_LEN = 5

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"), "https://hooks.slack.com/services/" + MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "xox?-" + MASK),
    (re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + MASK),
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api_key|apikey|client_secret)(\s*[=:]\s*)([^\s,;&'\"]+)"),
        r"\1\2" + MASK,
    ),
    # user:password@ in a URL (database URLs, webhooks with basic auth)
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+):([^@\s/]+)@"), r"\1:" + MASK + "@"),
]

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_AIRFLOW_CTX = {
    "dag_id": "AIRFLOW_CTX_DAG_ID",
    "run_id": "AIRFLOW_CTX_DAG_RUN_ID",
    "task_id": "AIRFLOW_CTX_TASK_ID",
    "try_number": "AIRFLOW_CTX_TRY_NUMBER",
}


def register_secret(value: str | None) -> None:
    """Mask this value in every log line and alert from now on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets.add(value)


def registered_secrets() -> frozenset[str]:
    """The values masked by value (for handing to another masker)."""
    with _secrets_lock:
        return frozenset(_secrets)


def register_settings_secrets(settings: Settings) -> list[str]:
    """Resolve every ``env:``/``file:`` secret reference of the settings and register its value.

    Returns the setting names whose secret was registered. ``gsm:`` references are skipped:
    resolving them is a network call, and their values reach a process only through resolve(),
    whose callers register them.
    """
    from guardian.secrets import resolve
    from guardian.settings import describe

    names = []
    for info in describe(settings):
        if not info.secret or not info.value:
            continue
        refs = info.value if isinstance(info.value, list) else [info.value]
        for ref in refs:
            if not isinstance(ref, str) or ref.startswith("gsm:"):
                continue
            try:
                register_secret(resolve(ref, setting=info.env_var).get_secret_value())
            except Exception:  # an unresolvable reference holds nothing to mask
                continue
            names.append(info.env_var)
    with contextlib.suppress(Exception):  # no store password, or its reference is unresolvable
        register_secret(settings.store_password())
    for entry in settings.web.users:
        ref = entry[entry.find("env:") if "env:" in entry else entry.find("file:") :] if ":" in entry else ""
        if ref.startswith(("env:", "file:")):
            try:
                register_secret(resolve(ref, setting="GUARDIAN_WEB__USERS").get_secret_value())
            except Exception:
                continue
    return names


def mask_text(text: str) -> str:
    """Replace known secrets and credential-shaped substrings with ``***``."""
    if not text:
        return text
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def mask_value(value: Any) -> Any:
    """mask_text applied through dicts, lists and strings."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value


def airflow_context() -> dict[str, str]:
    """dag_id, run_id, task_id and try of the running Airflow task (empty outside a task)."""
    return {key: os.environ[var] for key, var in _AIRFLOW_CTX.items() if os.environ.get(var)}


class MaskingFilter(logging.Filter):
    """Masks secrets in a record's message and arguments before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = mask_text(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, Airflow context, extras."""

    _RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        body.update(airflow_context())
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                body[key] = mask_value(value) if isinstance(value, str | dict | list) else value
        if record.exc_info:
            body["exc"] = mask_text(self.formatException(record.exc_info))
        elif record.exc_text:
            body["exc"] = mask_text(record.exc_text)
        return json.dumps(body, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Human-readable: time level logger [dag.task run try] message."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = airflow_context()
        where = (
            f" [{ctx.get('dag_id')}.{ctx.get('task_id')} {ctx.get('run_id')} try {ctx.get('try_number')}]"
            if ctx
            else ""
        )
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = f"{ts} {record.levelname.lower():7} {record.name}{where} {mask_text(record.getMessage())}"
        if record.exc_info:
            text += "\n" + mask_text(self.formatException(record.exc_info))
        return text


def configure(
    settings: Settings | None = None,
    *,
    json_lines: bool = True,
    level: int | str = logging.INFO,
    stream: Any = None,
    loggers: Iterable[str] = ("",),
) -> logging.Handler:
    """Install the guardian format and the masking filter (idempotent per logger)."""
    if settings is not None:
        register_settings_secrets(settings)
    handler = logging.StreamHandler(stream)
    handler.set_name("guardian")
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    handler.addFilter(MaskingFilter())
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == "guardian"]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level)
    return handler


def install_masking_filter(names: Iterable[str] = ("", "airflow.task")) -> None:
    """Add the masking filter to the handlers of these loggers (Airflow's own included)."""
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
