"""SQL checks in one scan, run by real DuckDB over the BigQuery text transpiled; results stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import duckdb
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from guardian.quality import checks as qc
from guardian.quality.results import latest_results, save_results
from guardian.settings import load_settings
from guardian.store import get_store


class DuckRunner:
    """A SqlRunner on an in-memory DuckDB (BigQuery SQL transpiled by sqlglot)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.queries: list[str] = []

    def query_one(self, bigquery_sql: str, params: qc.Params) -> dict[str, Any]:
        sql = sqlglot.transpile(bigquery_sql, read="bigquery", write="duckdb")[0]
        self.queries.append(sql)
        cursor = self.con.execute(sql, {k: v for k, (_t, v) in params.items()})
        row = cursor.fetchone()
        return dict(zip([d[0] for d in cursor.description], row, strict=True))


@pytest.fixture
def runner() -> Iterator[DuckRunner]:
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE t AS SELECT * FROM (VALUES
          (1, DATE '2026-01-05', 'SALE', 2.0, 10.0, 'THB'),
          (2, DATE '2026-01-06', 'RETURN', -1.0, -5.0, 'THB'),
          (2, DATE '2026-02-01', 'SALE', -3.0, 8.0, 'EUR'),
          (4, NULL, 'SALE', 1.0, 1.0, NULL)
        ) v(entry_no, sale_date, entry_type, quantity, net_amount, currency_code)
        """
    )
    yield DuckRunner(con)
    con.close()


TABLE = exp.Table(this=exp.to_identifier("t"))


def _checks() -> list[qc.Check]:
    return [
        qc.not_null(["entry_no", "sale_date"]),
        qc.unique("entry_no"),
        qc.between("sale_date", date(2026, 1, 1), date(2026, 1, 31), "DATE", name="dates_in_range"),
        qc.accepted_values("currency_code", ["THB", "USD"], name="currency_known"),
        qc.rule(
            "sign_consistent",
            "(entry_type = 'SALE' AND quantity <= 0) OR (entry_type = 'RETURN' AND quantity >= 0)",
            "entries with a sign against their type",
        ),
    ]


def test_all_checks_in_one_scan_with_failing_inputs(runner: DuckRunner) -> None:
    results, total = qc.run_checks(runner, TABLE, _checks())
    assert total == 4 and len(runner.queries) == 1
    by_name = {r.check: r for r in results}
    assert not by_name["completeness_not_null"].passed and by_name["completeness_not_null"].details["violations"] == 1
    assert by_name["unique_entry_no"].message == "1 duplicate entry_no values"
    assert by_name["dates_in_range"].details["violations"] == 1  # the NULL date is the not-null check's
    assert by_name["currency_known"].details["violations"] == 2  # EUR and NULL
    assert by_name["sign_consistent"].details["violations"] == 1
    assert all(r.blocking for r in results if not r.passed)


def test_values_are_parameters_not_text(runner: DuckRunner) -> None:
    sql, params = qc.suite_sql(TABLE, _checks())
    assert "2026-01-31" not in sql and "'USD'" not in sql
    assert params["sale_date_high"] == ("DATE", date(2026, 1, 31))
    assert params["currency_code_accepted"] == ("ARRAY<STRING>", ["THB", "USD"])


def test_warn_only_turns_a_failure_into_a_warning(runner: DuckRunner) -> None:
    results, total = qc.run_checks(runner, TABLE, _checks(), warn_only=["currency_known"])
    assert total == 4
    currency = next(r for r in results if r.check == "currency_known")
    assert not currency.passed and currency.severity == "warn" and not currency.blocking
    assert next(r for r in results if r.check == "unique_entry_no").blocking


def test_malformed_rule_fails_at_definition() -> None:
    with pytest.raises(sqlglot.errors.ParseError):
        qc.rule("broken", "quantity >>> (", "broken")


def test_results_are_stored_and_read_back(runner: DuckRunner) -> None:
    results, _ = qc.run_checks(runner, TABLE, _checks())
    store = get_store(load_settings())
    save_results(store, "test_suite", "subject-1", results)
    stored = latest_results(store, suite="test_suite", subject="subject-1")
    assert {r["check_name"] for r in stored} == {r.check for r in results}
    assert {r["check_name"] for r in stored if not r["passed"]} == {
        "completeness_not_null",
        "unique_entry_no",
        "dates_in_range",
        "currency_known",
        "sign_consistent",
    }


# Invariant: the gate's one grouped pass finds exactly the violations (and rows) the single-table
# scan finds, for every check, whatever the data: duplicates across groups, nulls, bad values.
_rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(1, 12)),  # entry_no: small range, so duplicates across days happen
        st.sampled_from([date(2026, 1, 1), date(2026, 1, 2), date(2026, 2, 1)]),
        st.sampled_from(["TH", "VN"]),
        st.one_of(st.none(), st.sampled_from(["THB", "VND", "ZZZ"])),
        st.integers(-3, 3),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rows=_rows)
def test_grouped_pass_counts_exactly_what_the_single_scan_counts(rows: list[tuple[Any, ...]]) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (entry_no BIGINT, sale_date DATE, country_code VARCHAR, currency_code VARCHAR, q INT)")
    if rows:
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    one = DuckRunner(con)
    checks = [
        qc.not_null(["entry_no", "currency_code"], name="nn"),
        qc.unique("entry_no", name="uniq"),
        qc.accepted_values("currency_code", ["THB", "VND"], name="cur"),
        qc.rule("positive", "q <= 0", "rows with q <= 0"),
    ]
    table = exp.Table(this=exp.to_identifier("t"))
    single, total = qc.run_checks(one, table, checks)

    class Rows:
        def query_rows(self, bigquery_sql: str, params: qc.Params) -> tuple[list[str], list[list[Any]]]:
            cursor = con.execute(
                sqlglot.transpile(bigquery_sql, read="bigquery", write="duckdb")[0],
                {k: v for k, (_t, v) in params.items()},
            )
            return [d[0] for d in cursor.description], [list(r) for r in cursor.fetchall()]

    group = [("sale_date", "period"), ("country_code", "country_code")]
    grouped, groups = qc.run_grouped_checks(Rows(), table, checks, group, [("COUNT(*)", "n")])
    assert [(r.check, r.details["violations"], r.passed) for r in grouped] == [
        (r.check, r.details["violations"], r.passed) for r in single
    ]
    assert sum(g["n"] for g in groups) == total == len(rows)
    expected_dups = sum(1 for e, *_ in rows if e is not None) - len({e for e, *_ in rows if e is not None})
    assert grouped[1].details["violations"] == expected_dups
