"""One BigQuery template per granularity, named params only, transpiled for DuckDB."""

from __future__ import annotations

from datetime import date

import pytest
import sqlglot
from sqlglot import exp

from guardian.errors import ValidationFailed
from guardian.sales.params import validate_params
from guardian.sales.sql import (
    RESULT_SCHEMAS,
    SOURCE_SCHEMA,
    TableRef,
    baseline_sql,
    build_query,
    scan_plan,
    template,
)
from guardian.settings import load_settings

TABLE = TableRef("guardian-demo", "sales", "sales_entries")


def _params(**extra: object):  # type: ignore[no-untyped-def]
    raw = {"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["TH"], "brands": ["X"], **extra}
    return validate_params(raw, load_settings())


@pytest.mark.parametrize("granularity", ["entry", "day", "month"])
def test_query_has_no_values_in_its_text_and_filters_the_partition(granularity: str) -> None:
    query = build_query(_params(granularity=granularity), TABLE)
    tree = sqlglot.parse_one(query.bigquery_sql, read="bigquery")
    assert {p.name for p in tree.find_all(exp.Parameter)} == {"start_date", "end_date", "countries", "brands"}
    for literal in ("2026", "'TH'", "'X'"):
        assert literal not in query.bigquery_sql
    assert "`guardian-demo`.`sales`.`sales_entries`" in query.bigquery_sql
    assert "BETWEEN $start_date AND $end_date" in query.duckdb_sql
    assert '"guardian-demo"."sales"."sales_entries"' in query.duckdb_sql
    selected = [s.alias_or_name for s in tree.selects]
    assert selected == [name for name, _ in RESULT_SCHEMAS[granularity]]


def test_query_reads_only_needed_columns_and_partitions() -> None:
    query = build_query(_params(), TABLE)
    plan = scan_plan(query.bigquery_sql, TABLE, query.values())
    assert plan.start == date(2026, 1, 1) and plan.end == date(2026, 3, 31)
    assert plan.columns == {name for name, _ in RESULT_SCHEMAS["entry"]}
    assert "customer_no" not in plan.columns and "barcode" not in plan.columns
    baseline = scan_plan(baseline_sql(TABLE), TABLE, {})
    assert baseline.columns == {name for name, _ in SOURCE_SCHEMA}
    assert baseline.start is None and baseline.end is None


@pytest.mark.parametrize(
    ("kind", "value"),
    [("table", "sales`; DROP TABLE x"), ("dataset", "sales;"), ("project", "p`q"), ("table", "a.b"), ("dataset", "")],
)
def test_identifiers_with_backticks_or_semicolons_are_rejected(kind: str, value: str) -> None:
    parts = {"project": "guardian-demo", "dataset": "sales", "table": "sales_entries", kind: value}
    with pytest.raises(ValidationFailed, match=kind):
        TableRef(**parts)


def test_settings_refuse_bad_identifiers_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.errors import ConfigError

    monkeypatch.setenv("GUARDIAN_SALES__TABLE", "sales;drop")
    with pytest.raises(ConfigError, match="GUARDIAN_SALES__TABLE"):
        load_settings()


def test_unknown_granularity_template_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        template("week")
