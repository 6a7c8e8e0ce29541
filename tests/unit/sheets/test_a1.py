"""A1 notation parsing and formatting."""

from __future__ import annotations

import pytest

from guardian.errors import ValidationFailed
from guardian.sheets.a1 import A1Range, col_to_index, index_to_col, parse, quote_sheet


@pytest.mark.parametrize(("letters", "index"), [("A", 1), ("Z", 26), ("AA", 27), ("AZ", 52), ("ZZ", 702), ("AAA", 703)])
def test_columns_round_trip(letters: str, index: int) -> None:
    assert col_to_index(letters) == index
    assert index_to_col(index) == letters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Requests!A1:Z", A1Range("Requests", 1, 1, 26, None)),
        ("Requests!A:C", A1Range("Requests", 1, None, 3, None)),
        ("'My tab'!B2:D10", A1Range("My tab", 2, 2, 4, 10)),
        ("'It''s'!C3", A1Range("It's", 3, 3, 3, 3)),
        ("Requests", A1Range("Requests")),
        ("A1:B2", A1Range(None, 1, 1, 2, 2)),
        ("Sheet1!2:5", A1Range("Sheet1", None, 2, None, 5)),
    ],
)
def test_parse(text: str, expected: A1Range) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["'unterminated!A1", "Sheet!A1:B2:C3", "Sheet!1A", "'x'A1"])
def test_parse_rejects_with_the_range_named(text: str) -> None:
    with pytest.raises(ValidationFailed, match="A1 range"):
        parse(text)


def test_format_quotes_when_needed() -> None:
    assert quote_sheet("Requests") == "Requests"
    assert quote_sheet("Sales out") == "'Sales out'"
    assert A1Range("It's", 1, 1, 3, 2).format() == "'It''s'!A1:C2"
    assert A1Range("Requests", 7, 4).format() == "Requests!G4"
    assert parse(A1Range("a b", 2, 3, 5, None).format()) == A1Range("a b", 2, 3, 5, None)
