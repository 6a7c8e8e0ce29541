"""Stored results of data-quality checks, with their history.

A check result belongs to a *suite* (e.g. ``sales_extract``) and a *subject* (e.g. a run id);
``severity`` is ``error`` (a failure fails the run) or ``warn`` (reported only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, Boolean, Column, DateTime, Index, String, Table, insert, select

from guardian.store import Store
from guardian.store.schema import Id, metadata

Severity = Literal["error", "warn"]

quality_results = Table(
    "quality_results",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("suite", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("check_name", String(200), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("message", String(2000), nullable=False),
    Column("details", JSON, nullable=True),
    Index("ix_quality_results_suite_ts", "suite", "ts"),
    Index("ix_quality_results_subject", "subject"),
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one subject."""

    check: str
    passed: bool
    message: str
    severity: Severity = "error"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def blocking(self) -> bool:
        """A failed error-severity check fails the run."""
        return not self.passed and self.severity == "error"


def save_results(store: Store, suite: str, subject: str, results: Sequence[CheckResult]) -> None:
    """Store one batch of results (one transaction)."""
    if not results:
        return
    now = datetime.now(UTC)
    rows = [
        {
            "ts": now,
            "suite": suite,
            "subject": subject,
            "check_name": r.check,
            "severity": r.severity,
            "passed": r.passed,
            "message": r.message[:2000],
            "details": r.details or None,
        }
        for r in results
    ]
    with store.read() as conn:
        conn.execute(insert(quality_results), rows)


def latest_results(
    store: Store, *, suite: str | None = None, subject: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Newest results first, optionally for one suite or subject."""
    query = select(quality_results).order_by(quality_results.c.id.desc()).limit(limit)
    if suite:
        query = query.where(quality_results.c.suite == suite)
    if subject:
        query = query.where(quality_results.c.subject == subject)
    with store.read() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
