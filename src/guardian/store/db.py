"""Engines, transactions and migrations of the Guardian store."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from guardian.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from guardian.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works: it only has to be the same in every guardian process.
_MIGRATE_LOCK_KEY = 0x6775617264  # "guard"


class Store:
    """One database: an engine, transactions, and migrations applied on first use."""

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 5,
        audit_key: Callable[[], bytes | None] | None = None,
        owner: tuple[str, Callable[[], str | None]] | None = None,
    ) -> None:
        parsed = make_url(url)
        if password is not None:
            parsed = parsed.set(password=password)
        # The audit HMAC key is handed to every transaction (conn.info) and resolved on first use.
        self._audit_key_source = audit_key
        self._audit_key: bytes | None = None
        self._audit_key_loaded = False
        # (owner role, its password): migrations connect as the owner and grant the URL's user
        # only INSERT and SELECT on audit_log.
        self.owner = owner
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, connect_args={"connect_timeout": 10})
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self._migrated = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({self.url.render_as_string(hide_password=True)})"

    @property
    def display_url(self) -> str:
        """The URL with any password hidden."""
        return self.url.render_as_string(hide_password=True)

    def audit_key(self) -> bytes | None:
        """The audit HMAC key (None when none is configured)."""
        if not self._audit_key_loaded:
            self._audit_key = self._audit_key_source() if self._audit_key_source else None
            self._audit_key_loaded = True
        return self._audit_key

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a transaction for reading (and ordinary writes)."""
        self.ensure_migrated()
        with _translate_errors(self), self.engine.connect() as conn, conn.begin():
            conn.info["guardian.store"] = self
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that takes the write lock at once (SQLite ``BEGIN IMMEDIATE``).

        Writers that read-then-insert (the audit chain, ledgers) use this so two processes
        never both read the same head. On PostgreSQL callers add their own row or advisory
        locks; this is an ordinary transaction there.
        """
        self.ensure_migrated()
        with _translate_errors(self), self.engine.connect() as conn:
            conn.info["immediate"] = True
            conn.info["guardian.store"] = self
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("immediate", None)

    # -- migrations ---------------------------------------------------------------------
    def _alembic_config(self, conn: Connection) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def head_revisions(self) -> set[str]:
        """Revisions the code expects (one per migration branch)."""
        from alembic.script import ScriptDirectory

        cfg = self._alembic_config(None)  # type: ignore[arg-type]
        return set(ScriptDirectory.from_config(cfg).get_heads())

    def current_revisions(self) -> set[str]:
        """Revisions the database is at."""
        from alembic.runtime.migration import MigrationContext

        with _translate_errors(self), self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())

    def is_current(self) -> bool:
        """True when every migration is applied."""
        return self.current_revisions() == self.head_revisions()

    def migrate(self) -> set[str]:
        """Apply pending migrations; safe when several processes start at once."""
        from alembic import command

        engine = self._owner_engine() if self.owner else self.engine
        try:
            with _translate_errors(self), self._migration_lock(engine) as conn:
                before = set(_current(conn))
                command.upgrade(self._alembic_config(conn), "heads")
                conn.commit()
                if self.owner and self.dialect == "postgresql":
                    grant_app_role(conn, str(self.url.username))
                    conn.commit()
                after = set(_current(conn))
        finally:
            if engine is not self.engine:
                engine.dispose()
        self._migrated = True
        return after - before

    def _owner_engine(self) -> Engine:
        assert self.owner is not None
        user, password = self.owner
        url = self.url.set(username=user, password=password())
        return create_engine(url, future=True, pool_pre_ping=True, poolclass=NullPool)

    def ensure_migrated(self) -> None:
        """Create or upgrade the schema the first time this process uses the store."""
        if self._migrated:
            return
        with self._lock:
            if self._migrated:
                return
            if not self.is_current():
                self.migrate()
            self._migrated = True

    @contextlib.contextmanager
    def _migration_lock(self, engine: Engine) -> Iterator[Connection]:
        with engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
                conn.commit()
                try:
                    yield conn
                finally:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK_KEY})
                    conn.commit()
            else:
                lock_path = Path(str(self.url.database or "guardian.db") + ".migrate.lock")
                with open(lock_path, "w") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    try:
                        yield conn
                    finally:
                        fcntl.flock(handle, fcntl.LOCK_UN)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def grant_app_role(conn: Connection, app_role: str) -> None:
    """The application's role may INSERT and SELECT audit_log, and read and write every other table.

    Run by the owner after each migration, so tables added later are granted too. Without
    UPDATE, DELETE, TRUNCATE or ownership the app role can neither rewrite audit rows nor
    drop the triggers that forbid it.
    """
    from sqlalchemy import inspect as sa_inspect

    role = conn.dialect.identifier_preparer.quote(app_role)
    conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
    for table in sa_inspect(conn).get_table_names():
        name = conn.dialect.identifier_preparer.quote(table)
        conn.execute(text(f"REVOKE ALL ON {name} FROM {role}"))
        if table == "audit_log":
            conn.execute(text(f"GRANT SELECT, INSERT ON {name} TO {role}"))
        elif table == "alembic_version":
            conn.execute(text(f"GRANT SELECT ON {name} TO {role}"))
        else:
            conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {role}"))
    conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))


def _current(conn: Connection) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(conn).get_current_heads())


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, emit BEGIN; WAL so readers never block."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")


@contextlib.contextmanager
def _translate_errors(store: Store) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(
            f"store {store.display_url} is unreachable ({reason}); check GUARDIAN_STORE__URL "
            "and that the database is running"
        ) from exc
    except SQLAlchemyError:
        raise


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def get_store(settings: Settings | None = None) -> Store:
    """The process-wide store for these settings (loaded from the environment when omitted)."""
    if settings is None:
        from guardian.settings import load_settings

        settings = load_settings()
    key = settings.store_url
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = Store(
                key,
                password=settings.store_password(),
                pool_size=settings.store.pool_size,
                audit_key=lambda: _audit_key(settings),
                owner=(settings.store.owner_user, lambda: _owner_password(settings))
                if settings.store.owner_user
                else None,
            )
            _STORES[key] = store
        return store


def _audit_key(settings: Settings) -> bytes | None:
    ref = settings.audit.hmac_key_ref
    if not ref:
        return None
    from guardian.secrets import resolve

    key = resolve(ref, setting="GUARDIAN_AUDIT__HMAC_KEY_REF").get_secret_value().encode()
    if len(key) < 32:
        raise ConfigError(
            "GUARDIAN_AUDIT__HMAC_KEY_REF: the key is shorter than 32 bytes; use e.g. `openssl rand -hex 32`"
        )
    return key


def _owner_password(settings: Settings) -> str | None:
    ref = settings.store.owner_password_ref
    if not ref:
        return None
    from guardian.secrets import resolve

    return resolve(ref, setting="GUARDIAN_STORE__OWNER_PASSWORD_REF").get_secret_value()


def reset_stores() -> None:
    """Forget cached stores (tests, and a forked child which must not share sockets)."""
    with _STORES_LOCK:
        for store in _STORES.values():
            store.engine.dispose(close=False)
        _STORES.clear()


def _after_fork() -> None:
    # A forked Celery worker must not reuse its parent's pooled connections; the lock may
    # have been held by another thread at fork time, so it is replaced, not taken.
    global _STORES_LOCK
    _STORES_LOCK = threading.Lock()
    for store in _STORES.values():
        store.engine.dispose(close=False)
        store._lock = threading.Lock()
    _STORES.clear()


os.register_at_fork(after_in_child=_after_fork)
