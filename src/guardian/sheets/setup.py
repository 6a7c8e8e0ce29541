"""`guardian sheets setup`: make the control sheet hard to misuse, without touching a value in it.

One ``spreadsheets.get`` (tabs, protected ranges), one ``values.get`` of the header rows, then ONE
``spreadsheets.batchUpdate`` (all or nothing):

* a Status dropdown (``setDataValidation``, ONE_OF_LIST of the statuses, not strict: a person may
  still write a status of their own, which the guardian then leaves alone; the dropdown flags it);
* the guardian's columns (Run ID, Message, Updated at) protected with a warning
  (``addProtectedRange`` with ``warningOnly``): editors are asked to confirm before typing there;
* a note on each header cell saying who writes the column.

Idempotent: the dropdown and the notes are set to the same values again, and a protected range is
added only when none with the guardian's description covers that column. Safe on a sheet in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardian.sheets.a1 import A1Range
from guardian.sheets.control import HEADER_SEARCH_ROWS, STATUS_CHOICES, parse_table
from guardian.sheets.poll import _control_range

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient

PROTECTED = ("run_id", "message", "updated_at")
DESCRIPTION = "guardian: {} is written by the Airflow Guardian"
NOTES = {
    "country": "You type: country code(s), e.g. TH or TH, VN.",
    "brand": "You type: brand code(s).",
    "start_date": "You type: YYYY-MM-DD, or leave both dates empty for last month.",
    "end_date": "You type: YYYY-MM-DD.",
    "target": "You type (optional): which job to start; empty means the sales export.",
    "requested_by": "You type (optional): your email, to hear when the run ends.",
    "status": "You choose `run` to ask for a run. The guardian then writes queued, running, completed, failed, "
    "invalid or waiting. Anything else you write here is yours and left alone.",
    "run_id": "Written by the guardian: the Airflow run of this row's request.",
    "message": "Written by the guardian: what happened, with a link to the run.",
    "updated_at": "Written by the guardian: when it last wrote this row (UTC).",
}


@dataclass
class SetupResult:
    """What setup did."""

    spreadsheet_id: str
    tab: str
    requests: list[str]
    protected_added: list[str]


def setup(settings: Settings, client: SheetsClient) -> SetupResult:
    """Apply the dropdown, protections and notes to the configured control sheet (see the module docstring)."""
    sid, rng, tab = _control_range(settings)
    meta = client.spreadsheet(sid)
    sheet = next((s for s in meta.get("sheets", []) if s["properties"]["title"] == tab), None)
    if sheet is None:
        from guardian.errors import ConfigError

        raise ConfigError(f"GUARDIAN_SHEETS__RANGE={settings.sheets.range!r}: the spreadsheet has no tab {tab!r}")
    props = sheet["properties"]
    sheet_id, rows = int(props["sheetId"]), int(props.get("gridProperties", {}).get("rowCount", 1000))
    header_rng = A1Range(tab, rng.start_col, rng.first_row, rng.end_col, rng.first_row + HEADER_SEARCH_ROWS - 1)
    table = parse_table(client.get_values(sid, header_rng.format(), render="FORMULA"), rng, tab)
    h = table.header_row  # 1-based; data rows follow it

    def column(name: str) -> dict[str, int]:
        col = table.column_of(name) - 1
        return {"sheetId": sheet_id, "startColumnIndex": col, "endColumnIndex": col + 1}

    requests: list[dict[str, Any]] = [
        {
            "setDataValidation": {
                "range": {**column("status"), "startRowIndex": h, "endRowIndex": rows},
                "rule": {
                    "condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": s} for s in STATUS_CHOICES]},
                    "inputMessage": "Choose run to ask for a run; the guardian writes the rest.",
                    "strict": False,
                    "showCustomUi": True,
                },
            }
        }
    ]
    existing = {p.get("description") for p in sheet.get("protectedRanges", [])}
    added = []
    for name in PROTECTED:
        description = DESCRIPTION.format(name.replace("_", " "))
        if description in existing:
            continue
        added.append(name)
        requests.append(
            {
                "addProtectedRange": {
                    "protectedRange": {
                        "range": {**column(name), "startRowIndex": h - 1, "endRowIndex": rows},
                        "description": description,
                        "warningOnly": True,
                    }
                }
            }
        )
    for name, note in NOTES.items():
        if name not in table.columns and name not in table.missing_written:
            continue
        col = table.column_of(name) - 1
        requests.append(
            {
                "updateCells": {
                    "start": {"sheetId": sheet_id, "rowIndex": h - 1, "columnIndex": col},
                    "rows": [{"values": [{"note": note}]}],
                    "fields": "note",
                }
            }
        )
    client.batch_update_spreadsheet(sid, requests)
    return SetupResult(sid, tab, [next(iter(r)) for r in requests], added)
