"""The Guardian store: SQLAlchemy Core tables, Alembic migrations, one engine per URL.

SQLite (a file under ``data_dir``) is the embedded default, PostgreSQL the production store.
Tables are SQLAlchemy Core so the same code runs on SQLAlchemy 2 (Airflow 3) and 1.4
(Airflow 2.11). Each service declares its tables on :data:`metadata` in its own module and
ships its own migration; the store is migrated on first use.
"""

from __future__ import annotations

from guardian.store.db import Store, get_store, reset_stores
from guardian.store.schema import metadata

__all__ = ["Store", "get_store", "metadata", "reset_stores"]
