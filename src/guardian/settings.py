"""One typed settings object for the whole guardian.

Values come from ``GUARDIAN_*`` environment variables, then an optional ``.env`` file in the
working directory (or the file named by ``GUARDIAN_ENV_FILE``), then the defaults below,
which carry the original system's policy. Nested sections use ``__``:
``GUARDIAN_LOOKER__SOFT_DELETE_DAYS=90``. Lists are written ``a,b,c``.

Bad settings fail at start with one line naming the variable and the fix (:class:`ConfigError`).
Secrets are never values here, only references (see :mod:`guardian.secrets`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from guardian.config_types import Section
from guardian.errors import ConfigError
from guardian.looker.config import LookerSettings
from guardian.monitoring.config import MonitoringSettings, NotifySettings, WebSettings
from guardian.sales.config import SalesSettings
from guardian.secrets import SecretRef
from guardian.sheets.config import SheetsSettings

ENV_PREFIX = "GUARDIAN_"
NESTED = "__"
# Variables with the prefix that are not settings but steer how settings are read.
_META_VARS = {"GUARDIAN_ENV_FILE"}


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class StoreSettings(Section):
    """Where the Guardian store (audit log, plans, ledgers, run records) lives."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store, the one setting tasks, CLI and UI read: sqlite:///path or "
        "postgresql+psycopg2://user@host/db?sslmode=verify-full (user name URL-encoded; default: SQLite file "
        "<data_dir>/guardian.db). Put no password here: use password_ref.",
    )
    password_ref: SecretRef | None = Field(None, description="Secret reference of the store password (PostgreSQL).")
    pool_size: int = Field(5, ge=1, le=100, description="Connection pool size (PostgreSQL).")
    owner_user: str | None = Field(
        None,
        description="PostgreSQL role that owns the tables and runs migrations (`guardian db upgrade`); the URL's "
        "user then gets INSERT and SELECT only on audit_log. Unset: the URL's user owns everything (dev).",
    )
    owner_password_ref: SecretRef | None = Field(
        None, description="Secret reference of the owner role's password (give it to the migration job only)."
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; use sqlite:///path/guardian.db or postgresql+psycopg2://user@host:5432/db"
            ) from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(f"backend {url.get_backend_name()!r} is not supported; use sqlite or postgresql")
        if url.password:
            raise ValueError("the URL holds a password; remove it and set GUARDIAN_STORE__PASSWORD_REF=env:VAR")
        sslmode = url.query.get("sslmode")
        if sslmode is not None and sslmode not in _SSLMODES:
            raise ValueError(f"sslmode={sslmode!r} is not one of {', '.join(_SSLMODES)} (libpq)")
        return value


class AuditSettings(Section):
    """Keys and anchors that make the audit log tamper-evident to the database's owner."""

    hmac_key_ref: SecretRef | None = Field(
        None,
        description="Secret reference of the audit HMAC key (32+ random bytes, kept outside the database); "
        "unset: rows are hash-chained only.",
    )
    anchor_root: str | None = Field(
        None,
        description="Write-once storage folder for chain-head anchors, gs://bucket/prefix or file:///path "
        "(default: <storage root>/audit-anchors).",
    )


class StorageSettings(Section):
    """Object storage root for backups, exports and audit exports."""

    root: str | None = Field(
        None,
        description="Storage root URI: gs://bucket/prefix or file:///abs/path (default: file://<data_dir>/storage).",
    )
    gcs_endpoint: str | None = Field(
        None,
        description="Cloud Storage endpoint override (fake-gcs-server), e.g. http://127.0.0.1:4443.",
    )
    gcs_project: str | None = Field(
        None, description="Project for the Cloud Storage client (default: from credentials)."
    )
    timeout: int = Field(60, ge=1, description="Timeout in seconds of one storage call.")

    @field_validator("root")
    @classmethod
    def _root_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("gs://"):
            if len(value) <= 5 or value[5] == "/":
                raise ValueError("gs:// URI has no bucket; use gs://BUCKET/optional/prefix")
            return value.rstrip("/")
        if value.startswith("file://"):
            if not value.startswith("file:///"):
                raise ValueError("file:// URI must be absolute; use file:///absolute/path")
            return value.rstrip("/")
        raise ValueError("storage root must start with gs:// or file:///")


class Settings(BaseSettings):
    """The effective configuration of one guardian process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    environment: Literal["dev", "staging", "prod"] = Field(
        "dev", description="Deployment environment name, shown in messages."
    )
    data_dir: Path = Field(
        Path("var"),
        description="Folder for embedded defaults (SQLite store, local storage, DuckDB); relative to the cwd.",
    )
    store: StoreSettings = Field(default_factory=StoreSettings)  # type: ignore[arg-type]
    storage: StorageSettings = Field(default_factory=StorageSettings)  # type: ignore[arg-type]
    audit: AuditSettings = Field(default_factory=AuditSettings)  # type: ignore[arg-type]
    looker: LookerSettings = Field(default_factory=LookerSettings)  # type: ignore[arg-type]
    sales: SalesSettings = Field(default_factory=SalesSettings)  # type: ignore[arg-type]
    sheets: SheetsSettings = Field(default_factory=SheetsSettings)  # type: ignore[arg-type]
    notify: NotifySettings = Field(default_factory=NotifySettings)  # type: ignore[arg-type]
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)  # type: ignore[arg-type]
    web: WebSettings = Field(default_factory=WebSettings)  # type: ignore[arg-type]

    # Set by code only (the Airflow glue, from the guardian_db connection), never from env.
    _store_password: SecretStr | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _absolute_data_dir(self) -> Settings:
        if not self.data_dir.is_absolute():
            object.__setattr__(self, "data_dir", self.data_dir.resolve())
        return self

    # Derived values: the embedded defaults live under data_dir.
    @property
    def store_url(self) -> str:
        """The store URL, the SQLite file under data_dir when none is set."""
        return self.store.url or f"sqlite:///{self.data_dir / 'guardian.db'}"

    def store_password(self) -> str | None:
        """The store password: given by code (an Airflow connection), else GUARDIAN_STORE__PASSWORD_REF."""
        if self._store_password is not None:
            return self._store_password.get_secret_value()
        if self.store.password_ref:
            from guardian.secrets import resolve

            return resolve(self.store.password_ref, setting="GUARDIAN_STORE__PASSWORD_REF").get_secret_value()
        return None

    @property
    def storage_root(self) -> str:
        """The storage root URI, a folder under data_dir when none is set."""
        return self.storage.root or f"file://{self.data_dir / 'storage'}"

    @property
    def duckdb_path(self) -> Path:
        """The DuckDB warehouse file."""
        return Path(self.sales.duckdb_path) if self.sales.duckdb_path else self.data_dir / "warehouse.duckdb"


@dataclass(frozen=True)
class SettingInfo:
    """One leaf setting: its env var, value and where the value came from."""

    env_var: str
    value: Any
    source: Literal["default", "env", ".env"]
    secret: bool
    description: str


def env_file_path() -> Path:
    """The .env file that is read: GUARDIAN_ENV_FILE, else ./.env."""
    return Path(os.environ.get("GUARDIAN_ENV_FILE", ".env"))


def _dotenv_values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k.upper(): v for k, v in dotenv_values(path).items() if v is not None}


def iter_fields(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> Iterator[tuple[str, str, Any]]:
    """Yield (env var, attribute path, FieldInfo) for every leaf setting."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from (
                (env, f"{name}.{path}", sub)
                for env, path, sub in iter_fields(annotation, f"{prefix}{name.upper()}{NESTED}")
            )
        else:
            yield f"{prefix}{name.upper()}", name, info


def known_env_vars() -> set[str]:
    """Every valid GUARDIAN_* variable name."""
    return {env for env, _, _ in iter_fields()} | _META_VARS


def _check_unknown(names: dict[str, str]) -> None:
    known = known_env_vars()
    for name, origin in sorted(names.items()):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), sorted(known), n=1)
            hint = f"did you mean {close[0]}?" if close else "see docs/configuration.md for the list"
            raise ConfigError(f"{name} ({origin}): unknown setting; {hint}")


def _format_validation_error(exc: ValidationError, sources: dict[str, str]) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    loc = [str(part) for part in first["loc"] if not str(part).isdigit()]
    env_var = ENV_PREFIX + NESTED.join(part.upper() for part in loc) if loc else ENV_PREFIX
    origin = sources.get(env_var, "default")
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ConfigError(f"{env_var} ({origin}): {msg}{more}")


def load_settings(*, store_password: str | None = None, **overrides: Any) -> Settings:
    """Read and validate the settings; raise ConfigError with one line on any problem.

    ``overrides`` are keyword values (e.g. ``store={"url": ...}``) set by code, such as the
    Airflow glue filling the store URL from the ``guardian_db`` connection, whose password
    comes in ``store_password`` (kept out of the URL and of every printed value).
    """
    dotenv_path = env_file_path()
    dotenv = _dotenv_values(dotenv_path)
    sources = {k: ".env" for k in dotenv}
    sources.update({k.upper(): "env" for k in os.environ if k.upper().startswith(ENV_PREFIX)})
    _check_unknown(sources)
    try:
        settings = Settings(_env_file=dotenv_path if dotenv_path.is_file() else None, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise _format_validation_error(exc, sources) from None
    if store_password is not None:
        settings._store_password = SecretStr(store_password)
    return settings


def describe(settings: Settings) -> list[SettingInfo]:
    """Every leaf setting with its effective value and its source, secrets marked."""
    dotenv = _dotenv_values(env_file_path())
    env = {k.upper() for k in os.environ}
    rows = []
    for env_var, path, info in iter_fields():
        value: Any = settings
        for part in path.split("."):
            value = getattr(value, part)
        source: Literal["default", "env", ".env"] = (
            "env" if env_var in env else ".env" if env_var in dotenv else "default"
        )
        secret = env_var.endswith("_REF")
        rows.append(SettingInfo(env_var, value, source, secret, info.description or ""))
    return rows


def mask(info: SettingInfo) -> str:
    """Printable value: references are shown by kind only, lists joined."""
    value = info.value
    if value is None:
        return "(unset)"
    if info.secret:
        # A reference names where the secret lives; the secret itself is never loaded here.
        return f"{value} (reference)"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)
