"""Schema drift: added, removed and retyped columns, types compared by family across dialects."""

from __future__ import annotations

import pytest

from guardian.quality.drift import diff_schema, schema_check, type_family

EXPECTED = [("entry_no", "INT64"), ("sale_date", "DATE"), ("net_amount", "NUMERIC"), ("currency_code", "STRING")]


@pytest.mark.parametrize(
    ("names", "family"),
    [
        (["INT64", "BIGINT", "int64", "INTEGER", "HUGEINT"], "integer"),
        (["NUMERIC", "DECIMAL(18,3)", "decimal128(38, 9)", "BIGNUMERIC"], "decimal"),
        (["STRING", "VARCHAR", "string", "large_string"], "string"),
        (["DATE", "date32[day]"], "date"),
        (["TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "timestamp[us]"], "timestamp"),
        (["FLOAT64", "DOUBLE", "double"], "float"),
    ],
)
def test_type_families_across_bigquery_duckdb_and_arrow(names: list[str], family: str) -> None:
    assert {type_family(n) for n in names} == {family}


def test_same_schema_in_another_dialect_is_no_drift() -> None:
    actual = [
        ("entry_no", "BIGINT"),
        ("sale_date", "DATE"),
        ("net_amount", "DECIMAL(18,3)"),
        ("currency_code", "VARCHAR"),
    ]
    diff = diff_schema(EXPECTED, actual)
    assert not diff.drifted and diff.summary() == "no drift"
    assert schema_check(EXPECTED, actual).passed


def test_drift_lists_added_removed_and_retyped() -> None:
    actual = [("entry_no", "STRING"), ("sale_date", "DATE"), ("currency_code", "STRING"), ("channel", "STRING")]
    diff = diff_schema(EXPECTED, actual)
    assert diff.added == ["channel"]
    assert diff.removed == ["net_amount"]
    assert diff.retyped == [("entry_no", "integer", "string")]
    result = schema_check(EXPECTED, actual)
    assert not result.passed and result.blocking
    assert result.message == "schema drift: added channel; removed net_amount; retyped entry_no integer->string"
    assert result.details["retyped"] == [{"column": "entry_no", "expected": "integer", "actual": "string"}]


def test_reordering_alone_is_not_drift_but_is_noted() -> None:
    diff = diff_schema(EXPECTED, list(reversed(EXPECTED)))
    assert not diff.drifted and diff.reordered


def test_warn_severity_does_not_block() -> None:
    result = schema_check(EXPECTED, EXPECTED[:2], severity="warn")
    assert not result.passed and not result.blocking
