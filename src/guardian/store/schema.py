"""Shared SQLAlchemy metadata and the foundation's tables."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

# A naming convention keeps constraint names identical on SQLite and PostgreSQL, so
# migrations can refer to them by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger is INTEGER on SQLite so that the column is the rowid alias there.
Id = BigInteger().with_variant(Integer(), "sqlite")

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(200), nullable=False),
    Column("target", String(500), nullable=False),
    Column("before", JSON, nullable=True),
    Column("after", JSON, nullable=True),
    Column("outcome", String(50), nullable=False),
    Column("context", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    # HMAC-SHA256 of ``hash`` under a key that lives outside the database (migration 0011);
    # NULL only on rows written before a key was configured.
    Column("mac", String(64), nullable=True),
    Index("ix_audit_log_ts", "ts"),
    Index("ix_audit_log_target", "target"),
)
"""Append-only, hash-chained record of everything the guardian did (see guardian.audit)."""

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(200), nullable=False),
    Column("role", String(50), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("client", String(100), nullable=True),
    Index("ix_web_sessions_expires_at", "expires_at"),
)
"""Server-side sessions of the standalone UI (the cookie holds a random id; its SHA-256 is the key)."""

web_login_failures = Table(
    "web_login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(66), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),
    Index("ix_web_login_failures_key", "key", "failed_at"),
    Index("ix_web_login_failures_failed_at", "failed_at"),
)
"""Failed standalone-UI logins, one row per user name and per client address (``u:``/``a:`` plus the
SHA-256 of the value), shared by every ``guardian serve`` process; rows older than the window are pruned."""

__all__ = ["Id", "audit_log", "metadata", "web_login_failures", "web_sessions"]
