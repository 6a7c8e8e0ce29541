"""Seed data of the Sheets sandbox: the demo control sheet, and a large sheet for the benchmark."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

DEMO_SPREADSHEET_ID = "demo-control-sheet"
DEMO_TAB = "Requests"
HEADER = [
    "Country",
    "Brand",
    "Start date",
    "End date",
    "Target",
    "Requested by",
    "Status",
    "Run ID",
    "Message",
    "Updated at",
    "Notes",
]


def demo_rows() -> list[list[Any]]:
    """The demo control sheet: one valid `run` row, one invalid, one formula, and noise a person leaves."""
    return [
        HEADER,
        ["TH", "ACME", "2026-01-01", "2026-01-31", "", "analyst@example.com", "run", "", "", "", "January, Thailand"],
        [],
        [" xx ", "NOVA", "2026-02-01", "2026-02-28", "", "", "Run ", "", "", "", "unknown country"],
        [
            "TH",
            '=IMPORTXML("http://example.com/x","//a")',
            "2026-03-01",
            "2026-03-31",
            "",
            "",
            "run",
            "",
            "",
            "",
            "formula",
        ],
        ["VN", "X", "2025-06-01", "2025-06-30", "", "", "done by hand", "", "", "", "not a request"],
    ]


def demo_tabs() -> dict[str, list[list[Any]]]:
    """Tabs of the demo spreadsheet."""
    return {DEMO_TAB: demo_rows(), "Notes": [["Type run in the Status column of the Requests tab."]]}


def big_rows(
    total: int, run_rows: int, *, countries: tuple[str, ...] = ("TH", "VN", "MY", "SG", "ID", "PH")
) -> list[list[Any]]:
    """A control sheet of ``total`` request rows of which ``run_rows`` say `run` (the benchmark)."""
    brands = ("X", "Y", "Z", "NOVA", "ACME")
    rows: list[list[Any]] = [HEADER]
    step = max(1, total // max(1, run_rows))
    marked = 0
    for i in range(total):
        status = ""
        if i % step == 0 and marked < run_rows:
            status = "run"
            marked += 1
        else:
            status = "completed"
        # Every row asks for different work (its own week), so none is a duplicate of another.
        start = date(2025, 1, 1) + timedelta(days=i % 700)
        rows.append(
            [
                countries[i % len(countries)],
                brands[(i // 700) % len(brands)],
                start.isoformat(),
                (start + timedelta(days=6)).isoformat(),
                "",
                "",
                status,
                "" if status == "run" else f"old-{i}",
                "",
                "",
                f"row {i}",
            ]
        )
    return rows
