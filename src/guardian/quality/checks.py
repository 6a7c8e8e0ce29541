"""Data-quality checks that run where the data is: SQL aggregates over one table.

Each check is one aggregate expression in BigQuery Standard SQL that counts violating rows.
All checks of a suite are evaluated in a single scan (``SELECT COUNTIF(..) AS c0, ... FROM t``)
by a :class:`SqlRunner`, so a BigQuery result is checked server-side and a DuckDB result
in-process, and rows never stream through the worker. Values are named query parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlglot
from sqlglot import exp

from guardian.quality.results import CheckResult, Severity

Params = dict[str, tuple[str, Any]]  # name -> (BigQuery type, value)


class SqlRunner(Protocol):
    """Runs one BigQuery-dialect query with named params and returns its single row by column name."""

    def query_one(self, bigquery_sql: str, params: Params) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Check:
    """One check: a BigQuery aggregate counting violations, and how to word the outcome."""

    name: str
    violations_sql: str
    describe: str
    severity: Severity = "error"
    params: Params = field(default_factory=dict)
    # Turns (violations, total rows) into a verdict; default: no violations allowed.
    passes: Callable[[int, int], bool] = field(default=lambda violations, _total: violations == 0, compare=False)
    # A check that is not a sum over rows (uniqueness) gives a per-row analytic expression and a
    # COUNTIF over it ("{w}" stands for its value), so it can also be counted per group.
    window: str = ""
    window_violations: str = ""


def not_null(columns: Sequence[str], *, name: str = "completeness_not_null") -> Check:
    """No nulls in the key columns."""
    condition = " OR ".join(f"{_col(c)} IS NULL" for c in columns)
    return Check(name, f"COUNTIF({condition})", f"rows with a null in {', '.join(columns)}")


def unique(column: str, *, name: str | None = None) -> Check:
    """No duplicate values in ``column`` (nulls are the not-null check's business)."""
    col = _col(column)
    return Check(
        name or f"unique_{column}",
        f"COUNT({col}) - COUNT(DISTINCT {col})",
        f"duplicate {column} values",
        # Every non-null row after the first of its value: COUNT(x) - COUNT(DISTINCT x), row by row.
        window=f"ROW_NUMBER() OVER (PARTITION BY {col})",
        window_violations=f"COUNTIF({col} IS NOT NULL AND {{w}} > 1)",
    )


def between(column: str, low: Any, high: Any, kind: str, *, name: str | None = None) -> Check:
    """Every value of ``column`` lies in [low, high] (typed params ``kind``)."""
    lo, hi = f"{column}_low", f"{column}_high"
    return Check(
        name or f"{column}_in_range",
        f"COUNTIF({_col(column)} < @{lo} OR {_col(column)} > @{hi})",
        f"rows with {column} outside {low}..{high}",
        params={lo: (kind, low), hi: (kind, high)},
    )


def accepted_values(column: str, values: Sequence[str], *, name: str | None = None) -> Check:
    """Every value of ``column`` is one of ``values``."""
    param = f"{column}_accepted"
    return Check(
        name or f"{column}_accepted",
        f"COUNTIF({_col(column)} IS NULL OR {_col(column)} NOT IN UNNEST(@{param}))",
        f"rows with {column} not in {', '.join(values)}",
        params={param: ("ARRAY<STRING>", list(values))},
    )


def rule(name: str, violation: str, describe: str, params: Params | None = None) -> Check:
    """A business rule: ``violation`` is a BigQuery boolean expression true for a bad row."""
    sqlglot.parse_one(violation, read="bigquery")  # a malformed rule fails here, not in the warehouse
    return Check(name, f"COUNTIF({violation})", describe, params=params or {})


def _col(name: str) -> str:
    return exp.column(name, quoted=True).sql(dialect="bigquery")


def suite_sql(table: exp.Table, checks: Sequence[Check]) -> tuple[str, Params]:
    """One query computing every check's violations and the row count in a single scan."""
    names = {check.name for check in checks}
    if len(names) != len(checks):
        raise ValueError("check names must be unique within a suite")
    selects = [f"{check.violations_sql} AS c{i}" for i, check in enumerate(checks)]
    selects.append("COUNT(*) AS total_rows")
    params: Params = {}
    for check in checks:
        params.update(check.params)
    sql = f"SELECT {', '.join(selects)} FROM {table.sql(dialect='bigquery')}"
    return sqlglot.transpile(sql, read="bigquery", write="bigquery")[0], params


def run_checks(
    runner: SqlRunner,
    table: exp.Table,
    checks: Sequence[Check],
    *,
    warn_only: Sequence[str] = (),
) -> tuple[list[CheckResult], int]:
    """Evaluate the checks in one scan; return their results and the row count."""
    if not checks:
        return [], 0
    sql, params = suite_sql(table, checks)
    row = runner.query_one(sql, params)
    total = int(row.get("total_rows") or 0)
    results = []
    for i, check in enumerate(checks):
        violations = int(row.get(f"c{i}") or 0)
        ok = check.passes(violations, total)
        severity: Severity = "warn" if check.name in warn_only else check.severity
        message = f"{violations} {check.describe}" if violations else f"no {check.describe}"
        results.append(CheckResult(check.name, ok, message, severity, {"violations": violations, "rows": total}))
    return results, total


def _columns(sql_texts: Sequence[str]) -> list[str]:
    names: set[str] = set()
    for text in sql_texts:
        names.update(c.name for c in sqlglot.parse_one(text, read="bigquery").find_all(exp.Column))
    return sorted(names)


def grouped_suite_sql(
    table: exp.Table,
    checks: Sequence[Check],
    group: Sequence[tuple[str, str]],
    measures: Sequence[tuple[str, str]] = (),
) -> tuple[str, Params]:
    """One query computing every check's violations, the row count and ``measures`` per group, in one scan.

    ``group`` and ``measures`` are (BigQuery expression, alias) pairs. Summing a check's
    violations over the groups gives exactly its :func:`suite_sql` count, so one pass over the
    table serves both the row checks and per-group figures (coverage, per-slice totals): the
    table's columns are read, and billed, once. A check with a ``window`` (uniqueness) gets its
    analytic value from an inner select naming only the columns the query needs.
    """
    names = {check.name for check in checks}
    if len(names) != len(checks):
        raise ValueError("check names must be unique within a suite")
    selects = [f"{expr} AS {alias}" for expr, alias in group]
    selects += [f"{expr} AS {alias}" for expr, alias in measures]
    windows: list[str] = []
    for i, check in enumerate(checks):
        if check.window:
            alias = f"_w{i}"
            windows.append(f"{check.window} AS {alias}")
            selects.append(f"{check.window_violations.format(w=alias)} AS c{i}")
        else:
            selects.append(f"{check.violations_sql} AS c{i}")
    selects.append("COUNT(*) AS total_rows")
    source = table.sql(dialect="bigquery")
    if windows:
        texts = [e for e, _a in [*group, *measures]] + [c.violations_sql for c in checks if not c.window]
        texts += [c.window for c in checks if c.window]
        texts += [c.window_violations.format(w="_w") for c in checks if c.window]
        cols = ", ".join(_col(c) for c in _columns(texts) if c != "_w")
        source = f"(SELECT {cols}, {', '.join(windows)} FROM {source})"
    params: Params = {}
    for check in checks:
        params.update(check.params)
    sql = f"SELECT {', '.join(selects)} FROM {source} GROUP BY {', '.join(alias for _e, alias in group)}"
    return sqlglot.transpile(sql, read="bigquery", write="bigquery")[0], params


class RowsRunner(Protocol):
    """Runs one BigQuery-dialect query with named params and returns (column names, rows)."""

    def query_rows(self, bigquery_sql: str, params: Params) -> tuple[list[str], list[list[Any]]]: ...


def run_grouped_checks(
    runner: RowsRunner,
    table: exp.Table,
    checks: Sequence[Check],
    group: Sequence[tuple[str, str]],
    measures: Sequence[tuple[str, str]] = (),
    *,
    warn_only: Sequence[str] = (),
) -> tuple[list[CheckResult], list[dict[str, Any]]]:
    """Evaluate the checks in the one grouped scan of :func:`grouped_suite_sql`; return them and the groups."""
    sql, params = grouped_suite_sql(table, checks, group, measures)
    cols, rows = runner.query_rows(sql, params)
    groups = [dict(zip(cols, row, strict=True)) for row in rows]
    total = sum(int(g.get("total_rows") or 0) for g in groups)
    results = []
    for i, check in enumerate(checks):
        violations = sum(int(g.get(f"c{i}") or 0) for g in groups)
        ok = check.passes(violations, total)
        severity: Severity = "warn" if check.name in warn_only else check.severity
        message = f"{violations} {check.describe}" if violations else f"no {check.describe}"
        results.append(CheckResult(check.name, ok, message, severity, {"violations": violations, "rows": total}))
    return results, groups
