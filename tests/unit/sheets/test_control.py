"""Control-sheet parsing and row validation (pure functions)."""

from __future__ import annotations

from datetime import date

import pytest

from guardian.errors import ValidationFailed
from guardian.settings import load_settings
from guardian.sheets.a1 import parse
from guardian.sheets.control import SheetLayoutError, SheetRow, parse_table, previous_month, validate_row
from guardian.sheets.ledger import base_key, dag_run_id_of, request_id_of, request_key

TODAY = date(2026, 3, 15)


def row(**cells: str) -> SheetRow:
    base = {"country": "TH", "brand": "ACME", "status": "run"}
    base.update(cells)
    return SheetRow(number=2, cells=base, raw=tuple(base.values()))


def test_header_found_by_name_in_any_order_and_case_below_a_title_row() -> None:
    values = [
        ["Sales requests (type run in Status)"],
        [],
        ["notes", " STATUS ", "brand", "Country", "Requested_By", "run id"],
        ["x", "run", "acme", "th", "a@b.co", ""],
        [],
        ["", "", "", "", "", ""],
        ["y", "queued", "nova", "vn", "", "sheets__abc"],
    ]
    table = parse_table(values, parse("Requests!B3:Z"), "Requests")
    assert table.header_row == 5
    assert table.columns == {"status": 3, "brand": 4, "country": 5, "requested_by": 6, "run_id": 7}
    assert [r.number for r in table.rows] == [6, 9]
    assert table.rows[0].status == "run" and table.rows[0].get("country") == "th"
    assert table.missing_written == ("message", "updated_at")
    assert table.column_of("message") == 8 and table.column_of("updated_at") == 9


def test_no_header_is_a_layout_error_naming_the_fix() -> None:
    with pytest.raises(SheetLayoutError, match="no header row with Country, Brand and Status"):
        parse_table([["a", "b"], ["1", "2"]], parse("Requests!A1:Z"), "Requests")


def test_valid_row_builds_conf_from_validated_fields_only() -> None:
    req = validate_row(
        row(
            country=" th, vn ", brand="acme;Nova", start_date="2026-01-01", end_date="2026-01-31", requested_by="a@b.co"
        ),
        load_settings(),
        today=TODAY,
    )
    assert req.target == "bigquery_sales_query"
    assert req.conf == {
        "start_date": "2026-01-01",
        "end_date": "2026-01-31",
        "countries": ["TH", "VN"],
        "brands": ["ACME", "NOVA"],
        "requested_by": "a@b.co",
    }


def test_no_dates_means_the_previous_month() -> None:
    assert previous_month(TODAY) == (date(2026, 2, 1), date(2026, 2, 28))
    req = validate_row(row(), load_settings(), today=TODAY)
    assert (req.conf["start_date"], req.conf["end_date"]) == ("2026-02-01", "2026-02-28")


@pytest.mark.parametrize(
    ("cells", "match"),
    [
        ({"country": "US"}, "Country: 'US' is not an allowed country"),
        ({"country": ""}, "Country: empty"),
        ({"brand": '=IMPORTXML("http://x","//a")'}, "Brand: looks like a formula"),
        ({"brand": "+cmd|' /C calc'!A0"}, "Brand: looks like a formula"),
        ({"brand": "@SUM(A1)"}, "Brand: looks like a formula"),
        ({"brand": "ACME<script>"}, "Brand: 'ACME<script>' is not a brand code"),
        ({"brand": "UNKNOWN"}, "not an allowed brand"),
        ({"brand": "A" * 201}, "longer than 200"),
        ({"brand": "AC\x07ME"}, "control characters"),
        ({"start_date": "2026-01-01"}, "End date: missing"),
        ({"start_date": "01/02/2026", "end_date": "2026-02-01"}, "is not a date"),
        ({"start_date": "2026-02-30", "end_date": "2026-03-01"}, "is not a date"),
        ({"start_date": "2026-03-01", "end_date": "2026-02-01"}, "before the start date"),
        ({"start_date": "2020-01-01", "end_date": "2026-02-01"}, "over 366 days"),
        ({"target": "airflow_db_cleanup"}, "may not be started from a sheet"),
        ({"target": "../../etc"}, "may not be started from a sheet"),
        ({"requested_by": "bob"}, "not an email address"),
        ({"requested_by": '=HYPERLINK("x")'}, "formula"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(cells: dict[str, str], match: str) -> None:
    with pytest.raises(ValidationFailed, match=match):
        validate_row(row(**cells), load_settings(), today=TODAY)


def test_keys_are_deterministic_and_distinguish_reruns() -> None:
    req = validate_row(row(), load_settings(), today=TODAY)
    base = base_key("sheet", "Requests", req.params_key, "")
    assert base == base_key("sheet", "Requests", req.params_key, " ")
    assert base != base_key("sheet", "Requests", req.params_key, "sheets__0123")
    assert request_key(base, 0) != request_key(base, 1)
    rid = request_id_of(request_key(base, 0))
    assert len(rid) == 16 and dag_run_id_of(rid) == f"sheets__{rid}"
