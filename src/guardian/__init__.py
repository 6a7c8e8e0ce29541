"""Airflow Guardian: operations and governance for a Looker / BigQuery / Sheets BI stack."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airflow-guardian")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+local"
