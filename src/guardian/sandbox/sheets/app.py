"""The Sheets API v4 sandbox: an in-memory workbook store behind a FastAPI app."""

from __future__ import annotations

import asyncio
import copy
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from guardian.errors import ValidationFailed
from guardian.sheets.a1 import A1Range, index_to_col, quote_sheet
from guardian.sheets.a1 import parse as parse_a1

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


class ApiError(Exception):
    """An error answered in Google's JSON error format (google.rpc.Status: code, message, status, details)."""

    def __init__(self, code: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error body Google APIs return."""
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": _STATUS.get(self.code, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def quota_error(method: str) -> ApiError:
    """A 429 as the Sheets API sends it when a per-minute quota is spent: RESOURCE_EXHAUSTED with an
    ``ErrorInfo`` detail (reason RATE_LIMIT_EXCEEDED, the quota metric and limit) and a Help link."""
    kind = (
        "read" if method.endswith(("get", "batchGet", "search", "ByDataFilter")) and "Update" not in method else "write"
    )
    metric = f"sheets.googleapis.com/{kind}_requests"
    limit = f"{kind.capitalize()}RequestsPerMinutePerUser"
    return ApiError(
        429,
        f"Quota exceeded for quota metric '{kind.capitalize()} requests' and limit '{kind.capitalize()} requests "
        "per minute per user' of service 'sheets.googleapis.com' for consumer 'project_number:0'.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {"quota_metric": metric, "quota_limit": limit, "service": "sheets.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {"description": "Request a higher quota limit.", "url": "https://cloud.google.com/docs/quota"}
                ],
            },
        ],
    )


@dataclass
class Formula:
    """A cell entered as a formula (USER_ENTERED ``=...``); the sandbox never evaluates it."""

    text: str


@dataclass
class Tab:
    """One sheet (tab) of a spreadsheet: a grid of cells, cell notes and validation rules, protected ranges."""

    sheet_id: int
    title: str
    index: int
    row_count: int = 1000
    column_count: int = 26
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col), 1-based
    notes: dict[tuple[int, int], str] = field(default_factory=dict)
    validation: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    protected: list[dict[str, Any]] = field(default_factory=list)

    def used_extent(self) -> tuple[int, int]:
        """Last used row and column (0, 0) when empty."""
        if not self.cells:
            return 0, 0
        return max(r for r, _ in self.cells), max(c for _, c in self.cells)


@dataclass
class Metadata:
    """One developer metadata entry. ``dimension``/``index`` (0-based) locate it on a row or column of
    ``sheet_id``; both None with a sheet id: the whole sheet; sheet id None: the spreadsheet."""

    metadata_id: int
    key: str
    value: str | None
    visibility: str
    sheet_id: int | None = None
    dimension: str | None = None  # ROWS | COLUMNS
    index: int | None = None

    def location(self) -> dict[str, Any]:
        """DeveloperMetadataLocation."""
        if self.sheet_id is None:
            return {"locationType": "SPREADSHEET", "spreadsheet": True}
        if self.dimension is None or self.index is None:
            return {"locationType": "SHEET", "sheetId": self.sheet_id}
        return {
            "locationType": "ROW" if self.dimension == "ROWS" else "COLUMN",
            "dimensionRange": {
                "sheetId": self.sheet_id,
                "dimension": self.dimension,
                "startIndex": self.index,
                "endIndex": self.index + 1,
            },
        }

    def json(self) -> dict[str, Any]:
        """DeveloperMetadata."""
        out: dict[str, Any] = {
            "metadataId": self.metadata_id,
            "metadataKey": self.key,
            "location": self.location(),
            "visibility": self.visibility,
        }
        if self.value is not None:
            out["metadataValue"] = self.value
        return out


@dataclass
class Spreadsheet:
    """A spreadsheet: a title, its tabs and its developer metadata."""

    spreadsheet_id: str
    title: str
    tabs: list[Tab] = field(default_factory=list)
    next_sheet_id: int = 0
    metadata: dict[int, Metadata] = field(default_factory=dict)
    next_metadata_id: int = 1001
    next_protected_id: int = 5001

    def tab(self, title: str | None) -> Tab:
        """The named tab, or the first one when the range names none."""
        if title is None:
            return self.tabs[0]
        for tab in self.tabs:
            if tab.title == title:
                return tab
        raise ApiError(400, f"Unable to parse range: {quote_sheet(title)}")

    def tab_by_id(self, sheet_id: Any, where: str) -> Tab:
        """The tab with this sheetId, or Google's 400."""
        for tab in self.tabs:
            if tab.sheet_id == sheet_id:
                return tab
        raise ApiError(400, f"Invalid {where}: No grid with id: {sheet_id}")


@dataclass
class Fault:
    """One injected fault: an HTTP error status and/or a delay, for matching calls."""

    status: int | None = None
    delay: float = 0.0
    method: str | None = None  # e.g. "values.get"; None matches every API call
    count: int = 1


@dataclass
class PendingEdit:
    """A 'person' edit applied right after the next matching API call (a concurrent edit)."""

    after: str
    spreadsheet_id: str
    range: str
    values: list[list[Any]]


class SheetsSandbox:
    """The state of the sandbox: spreadsheets, injected faults and a call counter."""

    def __init__(self) -> None:
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.faults: list[Fault] = []
        self.pending_edits: list[PendingEdit] = []
        self.calls: Counter[str] = Counter()
        self.lock = threading.RLock()
        # In-process observers called after each API call (tests: a person acting between two calls).
        self.hooks: list[Callable[[str], None]] = []

    # -- seeding ------------------------------------------------------------------------
    def create(self, spreadsheet_id: str, title: str, tabs: dict[str, list[list[Any]]]) -> Spreadsheet:
        """Create (or replace) a spreadsheet whose tabs hold the given rows (entered as USER_ENTERED)."""
        with self.lock:
            sheet = Spreadsheet(spreadsheet_id, title)
            for name, rows in tabs.items():
                tab = self._add_tab(
                    sheet, name, max(1000, len(rows) + 100), max(26, max((len(r) for r in rows), default=0))
                )
                self._write(tab, 1, 1, rows, "USER_ENTERED")
            if not sheet.tabs:
                self._add_tab(sheet, "Sheet1", 1000, 26)
            self.spreadsheets[spreadsheet_id] = sheet
            return sheet

    def _add_tab(self, sheet: Spreadsheet, title: str, rows: int, cols: int) -> Tab:
        if any(t.title == title for t in sheet.tabs):
            raise ApiError(400, f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists.')
        tab = Tab(sheet.next_sheet_id, title, len(sheet.tabs), rows, cols)
        sheet.next_sheet_id += 1 if sheet.next_sheet_id else 1_000_001
        sheet.tabs.append(tab)
        return tab

    # -- call accounting and faults -------------------------------------------------------
    def before_call(self, method: str) -> Fault | None:
        """Count the call and take the first matching injected fault (the caller applies it)."""
        with self.lock:
            self.calls[method] += 1
            fault = next((f for f in self.faults if f.method in (None, method)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
            return fault

    def after_call(self, method: str) -> None:
        """Apply pending concurrent edits queued for after this kind of call."""
        with self.lock:
            due = [e for e in self.pending_edits if e.after == method]
            for edit in due:
                self.pending_edits.remove(edit)
                self.update(edit.spreadsheet_id, edit.range, edit.values, "USER_ENTERED")
            for hook in list(self.hooks):
                hook(method)

    # -- the API ---------------------------------------------------------------------------
    def get_sheet(self, spreadsheet_id: str) -> Spreadsheet:
        """The spreadsheet, or a 404 like Google's."""
        sheet = self.spreadsheets.get(spreadsheet_id)
        if sheet is None:
            raise ApiError(404, "Requested entity was not found.")
        return sheet

    def _range(self, sheet: Spreadsheet, text: str) -> tuple[Tab, A1Range]:
        try:
            rng = parse_a1(text)
        except ValidationFailed:
            raise ApiError(400, f"Unable to parse range: {text}") from None
        tab = sheet.tab(rng.sheet)
        return tab, rng

    def spreadsheet_json(
        self, spreadsheet_id: str, ranges: list[str] | None = None, *, include_grid: bool = False
    ) -> dict[str, Any]:
        """spreadsheets.get: properties, tabs, protected ranges and developer metadata; with
        ``includeGridData`` the GridData of ``ranges`` (every tab when none): rowData of CellData and
        rowMetadata whose DimensionProperties carry the row's developer metadata."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            wanted: dict[int, list[A1Range]] = {}
            for text in ranges or []:
                tab, rng = self._range(sheet, text)
                wanted.setdefault(tab.sheet_id, []).append(rng)
            out_sheets = []
            for tab in sheet.tabs:
                if ranges and tab.sheet_id not in wanted:
                    continue
                entry: dict[str, Any] = {"properties": _tab_properties(tab)}
                if tab.protected:
                    entry["protectedRanges"] = copy.deepcopy(tab.protected)
                own = [m.json() for m in sheet.metadata.values() if m.sheet_id == tab.sheet_id and m.dimension is None]
                if own:
                    entry["developerMetadata"] = own
                if include_grid:
                    entry["data"] = [
                        self._grid_data(sheet, tab, rng) for rng in wanted.get(tab.sheet_id, [A1Range(tab.title)])
                    ]
                out_sheets.append(entry)
            out: dict[str, Any] = {
                "spreadsheetId": sheet.spreadsheet_id,
                "properties": {
                    "title": sheet.title,
                    "locale": "en_US",
                    "timeZone": "Etc/GMT",
                    "autoRecalc": "ON_CHANGE",
                },
                "sheets": out_sheets,
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sheet.spreadsheet_id}/edit",
            }
            top = [m.json() for m in sheet.metadata.values() if m.sheet_id is None]
            if top:
                out["developerMetadata"] = top
            return out

    def _grid_data(self, sheet: Spreadsheet, tab: Tab, rng: A1Range) -> dict[str, Any]:
        r1, c1 = rng.first_row, rng.first_col
        r2 = min(rng.end_row or tab.row_count, tab.row_count)
        c2 = min(rng.end_col or tab.column_count, tab.column_count)
        by_row: dict[int, list[dict[str, Any]]] = {}
        for m in sheet.metadata.values():
            if m.sheet_id == tab.sheet_id and m.dimension == "ROWS" and m.index is not None:
                by_row.setdefault(m.index + 1, []).append(m.json())
        row_data: list[dict[str, Any]] = []
        used = {r for r, c in [*tab.cells, *tab.notes, *tab.validation] if r1 <= r <= r2 and c1 <= c <= c2}
        last = max(used, default=r1 - 1)
        for r in range(r1, last + 1):
            cells = [_cell_data(tab, (r, c)) for c in range(c1, c2 + 1)]
            while cells and not cells[-1]:
                cells.pop()
            row_data.append({"values": cells} if cells else {})
        row_meta = []
        for r in range(r1, r2 + 1):
            props: dict[str, Any] = {"pixelSize": 21}
            if r in by_row:
                props["developerMetadata"] = by_row[r]
            row_meta.append(props)
        out: dict[str, Any] = {
            "rowMetadata": row_meta,
            "columnMetadata": [{"pixelSize": 100} for _ in range(c1, c2 + 1)],
        }
        if r1 > 1:
            out["startRow"] = r1 - 1
        if c1 > 1:
            out["startColumn"] = c1 - 1
        if row_data:
            out["rowData"] = row_data
        return out

    def get(
        self, spreadsheet_id: str, range_text: str, render: str = "FORMATTED_VALUE", major: str = "ROWS"
    ) -> dict[str, Any]:
        """values.get: the range clipped to the grid, trailing empty rows and cells omitted."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            tab, rng = self._range(sheet, range_text)
            r1, c1 = rng.first_row, rng.first_col
            r2 = min(rng.end_row or tab.row_count, tab.row_count)
            c2 = min(rng.end_col or tab.column_count, tab.column_count)
            if r1 > tab.row_count or c1 > tab.column_count:
                raise ApiError(
                    400,
                    f"Range ({range_text}) exceeds grid limits. "
                    f"Max rows: {tab.row_count}, max columns: {tab.column_count}",
                )
            rows: list[list[Any]] = []
            for r in range(r1, r2 + 1):
                row = [_render(tab.cells.get((r, c), ""), render) for c in range(c1, c2 + 1)]
                while row and row[-1] == "":
                    row.pop()
                rows.append(row)
            while rows and not rows[-1]:
                rows.pop()
            if major == "COLUMNS":
                width = max((len(r) for r in rows), default=0)
                rows = [[r[i] if i < len(r) else "" for r in rows] for i in range(width)]
                for col in rows:
                    while col and col[-1] == "":
                        col.pop()
            out: dict[str, Any] = {
                "range": A1Range(tab.title, c1, r1, c2, r2).format(),
                "majorDimension": major,
            }
            if rows:
                out["values"] = rows
            return out

    def update(
        self, spreadsheet_id: str, range_text: str, values: list[list[Any]], input_option: str, major: str = "ROWS"
    ) -> dict[str, Any]:
        """values.update: write a block at the range's top-left corner."""
        if input_option not in {"RAW", "USER_ENTERED"}:
            raise ApiError(400, "Invalid valueInputOption: must be RAW or USER_ENTERED")
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            tab, rng = self._range(sheet, range_text)
            if major == "COLUMNS":
                width = max((len(c) for c in values), default=0)
                values = [[c[i] if i < len(c) else None for c in values] for i in range(width)]
            r1, c1 = rng.first_row, rng.first_col
            height = len(values)
            width = max((len(r) for r in values), default=0)
            single_cell = rng.start_col == rng.end_col and rng.start_row == rng.end_row
            # A single cell is an anchor (the block grows from it); a wider range bounds the write.
            if not single_cell and (
                (rng.end_row is not None and height > rng.end_row - r1 + 1)
                or (rng.end_col is not None and width > rng.end_col - c1 + 1)
            ):
                raise ApiError(
                    400,
                    f"Requested writing within range [{range_text}], but tried writing to row [{r1 + height - 1}]"
                    if height > (rng.end_row or r1) - r1 + 1
                    else f"Requested writing within range [{range_text}], but tried writing to column "
                    f"[{index_to_col(c1 + width - 1)}]",
                )
            if r1 + height - 1 > tab.row_count or c1 + width - 1 > tab.column_count:
                raise ApiError(
                    400,
                    f"Range ({range_text}) exceeds grid limits. "
                    f"Max rows: {tab.row_count}, max columns: {tab.column_count}",
                )
            cells = self._write(tab, r1, c1, values, input_option)
            out: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
            if height and width:
                out.update(
                    updatedRange=A1Range(tab.title, c1, r1, c1 + width - 1, r1 + height - 1).format(),
                    updatedRows=height,
                    updatedColumns=width,
                    updatedCells=cells,
                )
            return out

    def _write(self, tab: Tab, r1: int, c1: int, values: list[list[Any]], input_option: str) -> int:
        cells = 0
        for dr, row in enumerate(values):
            for dc, value in enumerate(row):
                if value is None:
                    continue  # null leaves the cell as it is (API semantics)
                cells += 1
                key = (r1 + dr, c1 + dc)
                stored = _enter(value, input_option)
                if stored == "":
                    tab.cells.pop(key, None)
                else:
                    tab.cells[key] = stored
        return cells

    def append(
        self, spreadsheet_id: str, range_text: str, values: list[list[Any]], input_option: str, insert: str
    ) -> dict[str, Any]:
        """values.append: write after the last row of the table found at the range."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            tab, rng = self._range(sheet, range_text)
            last_row, _ = tab.used_extent()
            start = max(last_row + 1, rng.first_row)
            needed = start + len(values) - 1
            if needed > tab.row_count or insert == "INSERT_ROWS":
                tab.row_count = max(tab.row_count, needed) + (len(values) if insert == "INSERT_ROWS" else 0)
            width = max((len(r) for r in values), default=0)
            tab.column_count = max(tab.column_count, rng.first_col + width - 1)
            target = A1Range(tab.title, rng.first_col, start).format()
            updates = self.update(spreadsheet_id, target, values, input_option)
            end_col = rng.end_col or tab.column_count
            table = A1Range(tab.title, rng.first_col, 1, end_col, last_row).format() if last_row else None
            out: dict[str, Any] = {"spreadsheetId": spreadsheet_id, "updates": updates}
            if table:
                out["tableRange"] = table
            return out

    def clear(self, spreadsheet_id: str, range_text: str) -> dict[str, Any]:
        """values.clear: empty every cell of the range."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            tab, rng = self._range(sheet, range_text)
            r2, c2 = rng.end_row or tab.row_count, rng.end_col or tab.column_count
            for key in [k for k in tab.cells if rng.first_row <= k[0] <= r2 and rng.first_col <= k[1] <= c2]:
                del tab.cells[key]
            return {
                "spreadsheetId": spreadsheet_id,
                "clearedRange": A1Range(
                    tab.title, rng.first_col, rng.first_row, min(c2, tab.column_count), min(r2, tab.row_count)
                ).format(),
            }

    # -- all-or-nothing --------------------------------------------------------------------
    @contextmanager
    def atomic(self, spreadsheet_id: str) -> Iterator[Spreadsheet]:
        """Work on a copy of the spreadsheet that replaces it only if the whole batch succeeds.

        sheets.v4.json, spreadsheets.batchUpdate: "The requests are validated before being applied.
        If any request is not valid then the entire request will fail and nothing will be applied."
        values.batchUpdate and values.batchUpdateByDataFilter are applied the same way (a failed
        request returns an error and leaves the sheet as it was).
        """
        with self.lock:
            original = self.get_sheet(spreadsheet_id)
            work = copy.deepcopy(original)
            self.spreadsheets[spreadsheet_id] = work
            try:
                yield work
            except BaseException:
                self.spreadsheets[spreadsheet_id] = original
                raise

    # -- spreadsheets.batchUpdate ----------------------------------------------------------
    def batch_update_spreadsheet(
        self,
        spreadsheet_id: str,
        requests: list[dict[str, Any]],
        *,
        include_spreadsheet: bool = False,
        response_ranges: list[str] | None = None,
        response_grid: bool = False,
    ) -> dict[str, Any]:
        """spreadsheets.batchUpdate, atomically; the updated spreadsheet in the response when asked
        (BatchUpdateSpreadsheetRequest.includeSpreadsheetInResponse / responseRanges / responseIncludeGridData)."""
        if not requests:
            raise ApiError(400, "Invalid value at 'requests': must have at least one request")
        with self.atomic(spreadsheet_id) as sheet:
            replies = [self._apply_request(sheet, i, request) for i, request in enumerate(requests)]
            out: dict[str, Any] = {"spreadsheetId": spreadsheet_id, "replies": replies}
            if include_spreadsheet:
                out["updatedSpreadsheet"] = self.spreadsheet_json(
                    spreadsheet_id, response_ranges or [], include_grid=response_grid
                )
            return out

    def _apply_request(self, sheet: Spreadsheet, i: int, request: dict[str, Any]) -> dict[str, Any]:
        kind = next(iter(request), "?")
        body = request.get(kind) or {}
        where = f"requests[{i}].{kind}"
        if kind == "addSheet":
            props = body.get("properties", {})
            grid = props.get("gridProperties", {})
            title = props.get("title") or f"Sheet{len(sheet.tabs) + 1}"
            tab = self._add_tab(sheet, title, int(grid.get("rowCount", 1000)), int(grid.get("columnCount", 26)))
            return {"addSheet": {"properties": _tab_properties(tab)}}
        if kind == "updateSheetProperties":
            props = body.get("properties", {})
            tab = sheet.tab_by_id(props.get("sheetId"), where)
            fields = {f.strip() for f in str(body.get("fields", "")).split(",")}
            grid = props.get("gridProperties", {})
            if "gridProperties.rowCount" in fields or "gridProperties" in fields:
                tab.row_count = int(grid.get("rowCount", tab.row_count))
            if "gridProperties.columnCount" in fields or "gridProperties" in fields:
                tab.column_count = int(grid.get("columnCount", tab.column_count))
            if "title" in fields:
                tab.title = props["title"]
            return {}
        if kind == "insertDimension":
            # InsertDimensionRequest: rows/columns [startIndex, endIndex) are inserted; what was at and
            # after startIndex moves down/right, developer metadata with it.
            tab, dim, start, stop = self._dimension_range(sheet, body.get("range", {}), where)
            n = stop - start
            self._remap(sheet, tab, dim, lambda k: k if k < start else k + n)
            if dim == "ROWS":
                tab.row_count += n
            else:
                tab.column_count += n
            return {}
        if kind == "deleteDimension":
            # DeleteDimensionRequest: the cells go, and metadata located on a deleted row/column goes too.
            tab, dim, start, stop = self._dimension_range(sheet, body.get("range", {}), where)
            limit = tab.row_count if dim == "ROWS" else tab.column_count
            if stop > limit:
                raise ApiError(400, f"Invalid {where}: Range ({stop}) exceeds grid limits ({limit})")
            n = stop - start
            if n >= limit:
                raise ApiError(400, f"Invalid {where}: You can't delete all the rows on the sheet.")
            self._remap(sheet, tab, dim, lambda k: k if k < start else (None if k < stop else k - n))
            if dim == "ROWS":
                tab.row_count -= n
            else:
                tab.column_count -= n
            return {}
        if kind == "moveDimension":
            # MoveDimensionRequest: destinationIndex is "based on the coordinates *before* the source
            # data is removed from the grid"; metadata moves with its row.
            tab, dim, start, stop = self._dimension_range(sheet, body.get("source", {}), where)
            dest = int(body.get("destinationIndex", 0))
            limit = tab.row_count if dim == "ROWS" else tab.column_count
            if not 0 <= dest <= limit or start <= dest <= stop:
                if start <= dest <= stop:
                    return {}  # moving a block onto itself changes nothing
                raise ApiError(400, f"Invalid {where}: destinationIndex {dest} is outside the grid")
            n = stop - start
            order = [k for k in range(limit) if not start <= k < stop]
            at = dest if dest < start else dest - n
            order[at:at] = list(range(start, stop))
            new_of = {old: new for new, old in enumerate(order)}
            self._remap(sheet, tab, dim, lambda k: new_of.get(k, k))
            return {}
        if kind == "sortRange":
            return self._sort(sheet, body, where)
        if kind == "createDeveloperMetadata":
            md = body.get("developerMetadata") or {}
            return {"createDeveloperMetadata": {"developerMetadata": self._create_metadata(sheet, md, where).json()}}
        if kind == "deleteDeveloperMetadata":
            matched = self._match_metadata(sheet, body.get("dataFilter") or {})
            for m in matched:
                del sheet.metadata[m.metadata_id]
            return {"deleteDeveloperMetadata": {"deletedDeveloperMetadata": [m.json() for m in matched]}}
        if kind == "setDataValidation":
            # SetDataValidationRequest: the rule applies to every cell of the range; no rule clears it.
            tab, r1, c1, r2, c2 = self._grid_range(sheet, body.get("range", {}), where)
            rule = body.get("rule")
            for r in range(r1, r2 + 1):
                for c in range(c1, c2 + 1):
                    if rule:
                        tab.validation[(r, c)] = rule
                    else:
                        tab.validation.pop((r, c), None)
            return {}
        if kind == "addProtectedRange":
            pr = dict(body.get("protectedRange") or {})
            tab, *_ = self._grid_range(sheet, pr.get("range", {}), where)
            if pr.get("warningOnly") and pr.get("editors"):
                raise ApiError(400, f"Invalid {where}: warningOnly protected ranges cannot have editors")
            pr["protectedRangeId"] = sheet.next_protected_id
            pr.setdefault("requestingUserCanEdit", True)
            sheet.next_protected_id += 1
            tab.protected.append(pr)
            return {"addProtectedRange": {"protectedRange": pr}}
        if kind == "deleteProtectedRange":
            pid = body.get("protectedRangeId")
            for tab in sheet.tabs:
                for pr in tab.protected:
                    if pr["protectedRangeId"] == pid:
                        tab.protected.remove(pr)
                        return {}
            raise ApiError(400, f"Invalid {where}: No protected range with id: {pid}")
        if kind == "updateCells":
            return self._update_cells(sheet, body, where)
        raise ApiError(400, f"Invalid requests[{i}]: the sandbox does not implement {kind}")

    def _dimension_range(self, sheet: Spreadsheet, dr: dict[str, Any], where: str) -> tuple[Tab, str, int, int]:
        tab = sheet.tab_by_id(dr.get("sheetId", 0), where)
        dim = dr.get("dimension")
        if dim not in ("ROWS", "COLUMNS"):
            raise ApiError(400, f"Invalid {where}: dimension must be ROWS or COLUMNS")
        start, stop = int(dr.get("startIndex", 0)), dr.get("endIndex")
        if stop is None or int(stop) <= start or start < 0:
            raise ApiError(400, f"Invalid {where}: the range must have startIndex < endIndex")
        return tab, dim, start, int(stop)

    def _grid_range(self, sheet: Spreadsheet, gr: dict[str, Any], where: str) -> tuple[Tab, int, int, int, int]:
        """GridRange (0-based, end exclusive, open ends = the whole grid) -> tab and 1-based inclusive bounds."""
        tab = sheet.tab_by_id(gr.get("sheetId", 0), where)
        r1 = int(gr.get("startRowIndex", 0)) + 1
        c1 = int(gr.get("startColumnIndex", 0)) + 1
        r2 = int(gr.get("endRowIndex", tab.row_count))
        c2 = int(gr.get("endColumnIndex", tab.column_count))
        if r2 > tab.row_count or c2 > tab.column_count:
            raise ApiError(400, f"Invalid {where}: Range exceeds grid limits")
        return tab, r1, c1, r2, c2

    def _remap(self, sheet: Spreadsheet, tab: Tab, dim: str, new_index: Callable[[int], int | None]) -> None:
        """Move every cell, note, rule and row/column metadata of ``tab`` along ``dim`` (0-based indexes)."""
        axis = 0 if dim == "ROWS" else 1

        def move(store: dict[tuple[int, int], Any]) -> dict[tuple[int, int], Any]:
            out: dict[tuple[int, int], Any] = {}
            for key, value in store.items():
                k = new_index(key[axis] - 1)
                if k is None:
                    continue
                out[(k + 1, key[1]) if axis == 0 else (key[0], k + 1)] = value
            return out

        tab.cells, tab.notes, tab.validation = move(tab.cells), move(tab.notes), move(tab.validation)
        for m in list(sheet.metadata.values()):
            if m.sheet_id == tab.sheet_id and m.dimension == dim and m.index is not None:
                k = new_index(m.index)
                if k is None:
                    del sheet.metadata[m.metadata_id]
                else:
                    m.index = k

    def _sort(self, sheet: Spreadsheet, body: dict[str, Any], where: str) -> dict[str, Any]:
        # SortRangeRequest: rows of the range are ordered by the sort specs; blanks sort last either way.
        # Row metadata travels with its row (a sort is a permutation of whole rows of the table).
        tab, r1, c1, r2, c2 = self._grid_range(sheet, body.get("range", {}), where)
        specs = body.get("sortSpecs") or [{"dimensionIndex": c1 - 1, "sortOrder": "ASCENDING"}]
        rows = list(range(r1, r2 + 1))

        def value(r: int, c: int) -> Any:
            v = tab.cells.get((r, c), "")
            return v.text if isinstance(v, Formula) else v

        ordered = list(rows)
        for spec in reversed(specs):
            col = int(spec.get("dimensionIndex", 0)) + 1
            desc = spec.get("sortOrder") == "DESCENDING"
            filled = [r for r in ordered if value(r, col) != ""]
            blank = [r for r in ordered if value(r, col) == ""]
            filled.sort(key=lambda r: (isinstance(value(r, col), str), str(value(r, col)).lower()), reverse=desc)
            ordered = filled + blank
        new_of = {old - 1: new - 1 for old, new in zip(ordered, rows, strict=True)}
        if c1 == 1 and c2 == tab.column_count:
            self._remap(sheet, tab, "ROWS", lambda k: new_of.get(k, k))
            return {}
        # Only the range's columns move; metadata of whole rows stays (the rows themselves did not move).
        for store in (tab.cells, tab.notes, tab.validation):
            moved = {}
            for (r, c), v in list(store.items()):
                if r1 <= r <= r2 and c1 <= c <= c2:
                    moved[(new_of[r - 1] + 1, c)] = v
                    del store[(r, c)]
            store.update(moved)
        return {}

    def _update_cells(self, sheet: Spreadsheet, body: dict[str, Any], where: str) -> dict[str, Any]:
        # UpdateCellsRequest: only the fields named in ``fields`` change (note, userEnteredValue here).
        fields = {f.strip() for f in str(body.get("fields", "")).split(",") if f.strip()}
        if not fields:
            raise ApiError(400, f"Invalid {where}: At least one field must be specified in 'fields'.")
        if "start" in body:
            start = body["start"]
            tab = sheet.tab_by_id(start.get("sheetId", 0), where)
            r1, c1 = int(start.get("rowIndex", 0)) + 1, int(start.get("columnIndex", 0)) + 1
        else:
            tab, r1, c1, _r2, _c2 = self._grid_range(sheet, body.get("range", {}), where)
        for dr, row in enumerate(body.get("rows") or []):
            for dc, cell in enumerate(row.get("values") or []):
                key = (r1 + dr, c1 + dc)
                if key[0] > tab.row_count or key[1] > tab.column_count:
                    raise ApiError(400, f"Invalid {where}: Range exceeds grid limits")
                if "note" in fields:
                    if cell.get("note"):
                        tab.notes[key] = cell["note"]
                    else:
                        tab.notes.pop(key, None)
                if "userEnteredValue" in fields:
                    uev = cell.get("userEnteredValue") or {}
                    if "formulaValue" in uev:
                        tab.cells[key] = Formula(uev["formulaValue"])
                    elif uev:
                        tab.cells[key] = next(iter(uev.values()))
                    else:
                        tab.cells.pop(key, None)
        return {}

    # -- developer metadata ---------------------------------------------------------------------
    def _create_metadata(self, sheet: Spreadsheet, md: dict[str, Any], where: str) -> Metadata:
        # DeveloperMetadata: metadataKey required; visibility DOCUMENT or PROJECT required; a row/column
        # location "must represent a single row or column".
        key = md.get("metadataKey")
        if not key:
            raise ApiError(400, f"Invalid {where}: metadataKey is required")
        visibility = md.get("visibility")
        if visibility not in ("DOCUMENT", "PROJECT"):
            raise ApiError(400, f"Invalid {where}: visibility must be DOCUMENT or PROJECT")
        mid = md.get("metadataId") or sheet.next_metadata_id
        if mid in sheet.metadata:
            raise ApiError(400, f"Invalid {where}: Developer metadata with ID {mid} already exists")
        sheet.next_metadata_id = max(sheet.next_metadata_id, int(mid)) + 1
        loc = md.get("location") or {}
        meta = Metadata(int(mid), str(key), md.get("metadataValue"), visibility)
        if "dimensionRange" in loc:
            tab, dim, start, stop = self._dimension_range(sheet, loc["dimensionRange"], where)
            if stop - start != 1:
                raise ApiError(400, f"Invalid {where}: the location must be a single row or column")
            limit = tab.row_count if dim == "ROWS" else tab.column_count
            if start >= limit:
                raise ApiError(400, f"Invalid {where}: Range exceeds grid limits")
            meta.sheet_id, meta.dimension, meta.index = tab.sheet_id, dim, start
        elif "sheetId" in loc:
            meta.sheet_id = sheet.tab_by_id(loc["sheetId"], where).sheet_id
        elif not loc.get("spreadsheet"):
            raise ApiError(400, f"Invalid {where}: a location is required")
        sheet.metadata[meta.metadata_id] = meta
        return meta

    def _match_metadata(self, sheet: Spreadsheet, data_filter: dict[str, Any]) -> list[Metadata]:
        """DataFilter.developerMetadataLookup: every given field must match (unset fields match all)."""
        lookup = data_filter.get("developerMetadataLookup")
        if lookup is None:
            raise ApiError(400, "Invalid dataFilter: the sandbox matches metadata by developerMetadataLookup only")
        kinds = {"ROW": "ROWS", "COLUMN": "COLUMNS"}
        out = []
        for m in sheet.metadata.values():
            if "metadataId" in lookup and m.metadata_id != int(lookup["metadataId"]):
                continue
            if "metadataKey" in lookup and m.key != lookup["metadataKey"]:
                continue
            if "metadataValue" in lookup and m.value != lookup["metadataValue"]:
                continue
            if "visibility" in lookup and m.visibility != lookup["visibility"]:
                continue
            wanted = lookup.get("locationType")
            if wanted and m.location()["locationType"] != wanted and m.dimension != kinds.get(wanted, "-"):
                continue
            out.append(m)
        return sorted(out, key=lambda m: m.metadata_id)

    def _filter_ranges(self, sheet: Spreadsheet, data_filter: dict[str, Any]) -> list[A1Range]:
        """The ranges a DataFilter selects: an a1Range, or the rows/columns/sheets of matched metadata."""
        if "a1Range" in data_filter:
            _tab, rng = self._range(sheet, data_filter["a1Range"])
            return [rng]
        ranges = []
        for m in self._match_metadata(sheet, data_filter):
            if m.sheet_id is None:
                continue  # spreadsheet-level metadata selects no cells
            tab = sheet.tab_by_id(m.sheet_id, "dataFilter")
            if m.dimension == "ROWS" and m.index is not None:
                ranges.append(A1Range(tab.title, 1, m.index + 1, tab.column_count, m.index + 1))
            elif m.dimension == "COLUMNS" and m.index is not None:
                ranges.append(A1Range(tab.title, m.index + 1, 1, m.index + 1, tab.row_count))
            else:
                ranges.append(A1Range(tab.title, 1, 1, tab.column_count, tab.row_count))
        return ranges

    def search_metadata(self, spreadsheet_id: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
        """developerMetadata.search: each entry once, with the filters that matched it."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            found: dict[int, tuple[Metadata, list[dict[str, Any]]]] = {}
            for f in filters:
                for m in self._match_metadata(sheet, f):
                    found.setdefault(m.metadata_id, (m, []))[1].append(f)
            if not found:
                return {}
            return {
                "matchedDeveloperMetadata": [
                    {"developerMetadata": m.json(), "dataFilters": fs}
                    for m, fs in sorted(found.values(), key=lambda x: x[0].metadata_id)
                ]
            }

    def batch_get_by_data_filter(
        self, spreadsheet_id: str, filters: list[dict[str, Any]], render: str = "FORMATTED_VALUE"
    ) -> dict[str, Any]:
        """values.batchGetByDataFilter: one MatchedValueRange per range a filter selects."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            matched = []
            for f in filters:
                for rng in self._filter_ranges(sheet, f):
                    matched.append({"valueRange": self.get(spreadsheet_id, rng.format(), render), "dataFilters": [f]})
            out: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
            if matched:
                out["valueRanges"] = matched
            return out

    def batch_update_by_data_filter(
        self, spreadsheet_id: str, data: list[dict[str, Any]], input_option: str
    ) -> dict[str, Any]:
        """values.batchUpdateByDataFilter, atomically. DataFilterValueRange.values: "If the provided values
        exceed any of the ranges matched by the data filter then the request fails"; a filter that matches
        several ranges writes to all of them; ValueRange.values: "Null values will be skipped"."""
        if input_option not in {"RAW", "USER_ENTERED"}:
            raise ApiError(400, "Invalid valueInputOption: must be RAW or USER_ENTERED")
        with self.atomic(spreadsheet_id) as sheet:
            responses = []
            for item in data:
                for rng in self._filter_ranges(sheet, item.get("dataFilter") or {}):
                    done = self.update(
                        spreadsheet_id,
                        rng.format(),
                        item.get("values", []),
                        input_option,
                        item.get("majorDimension", "ROWS"),
                    )
                    done.pop("spreadsheetId", None)
                    done["dataFilter"] = item.get("dataFilter")
                    responses.append(done)
            out: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
            if responses:
                out.update(
                    responses=responses,
                    totalUpdatedRows=sum(r.get("updatedRows", 0) for r in responses),
                    totalUpdatedColumns=sum(r.get("updatedColumns", 0) for r in responses),
                    totalUpdatedCells=sum(r.get("updatedCells", 0) for r in responses),
                    totalUpdatedSheets=len({r["updatedRange"].split("!")[0] for r in responses if "updatedRange" in r}),
                )
            return out


def _tab_properties(tab: Tab) -> dict[str, Any]:
    return {
        "sheetId": tab.sheet_id,
        "title": tab.title,
        "index": tab.index,
        "sheetType": "GRID",
        "gridProperties": {"rowCount": tab.row_count, "columnCount": tab.column_count},
    }


def _cell_data(tab: Tab, key: tuple[int, int]) -> dict[str, Any]:
    """CellData of one cell: userEnteredValue (ExtendedValue), formattedValue, note, dataValidation."""
    out: dict[str, Any] = {}
    value = tab.cells.get(key)
    if value is not None and value != "":
        if isinstance(value, Formula):
            out["userEnteredValue"] = {"formulaValue": value.text}
        elif isinstance(value, bool):
            out["userEnteredValue"] = {"boolValue": value}
        elif isinstance(value, int | float):
            out["userEnteredValue"] = {"numberValue": value}
        else:
            out["userEnteredValue"] = {"stringValue": str(value)}
        out["formattedValue"] = _render(value, "FORMATTED_VALUE")
    if key in tab.notes:
        out["note"] = tab.notes[key]
    if key in tab.validation:
        out["dataValidation"] = tab.validation[key]
    return out


def _enter(value: Any, input_option: str) -> Any:
    """What a cell holds after a write: RAW keeps strings as strings; USER_ENTERED parses them."""
    if isinstance(value, (bool, int | float)):
        return value
    text = str(value)
    if input_option == "RAW":
        return text
    if text.startswith("="):
        return Formula(text)
    if text.startswith("'"):
        return text[1:]  # a leading apostrophe forces text, as in the Sheets UI
    if _NUMBER.match(text.strip()):
        number = float(text)
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if text.upper() in {"TRUE", "FALSE"}:
        return text.upper() == "TRUE"
    return text


def _render(value: Any, render: str) -> Any:
    if isinstance(value, Formula):
        # The sandbox does not evaluate formulas: FORMATTED/UNFORMATTED show an error value.
        return value.text if render == "FORMULA" else "#NAME?"
    if render == "FORMATTED_VALUE":
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value) if value != "" else ""
    return value


def create_app(state: SheetsSandbox | None = None) -> Any:
    """The FastAPI app serving the Sheets API v4 routes over ``state``."""
    sandbox = state or SheetsSandbox()
    app = FastAPI(title="Sheets API v4 sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = sandbox

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.code)

    # -- admin routes (not part of the Google API) -------------------------------------
    @app.get("/_sandbox/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "spreadsheets": sorted(sandbox.spreadsheets)}

    @app.get("/_sandbox/calls")
    def calls() -> dict[str, Any]:
        with sandbox.lock:
            return {"total": sum(sandbox.calls.values()), "by_method": dict(sandbox.calls)}

    @app.post("/_sandbox/calls/reset")
    def reset_calls() -> dict[str, Any]:
        with sandbox.lock:
            sandbox.calls.clear()
        return {"total": 0}

    @app.post("/_sandbox/faults")
    async def add_fault(request: Request) -> dict[str, Any]:
        body = await request.json()
        with sandbox.lock:
            sandbox.faults.append(
                Fault(
                    status=body.get("status"),
                    delay=float(body.get("delay", 0)),
                    method=body.get("method"),
                    count=int(body.get("count", 1)),
                )
            )
            return {"faults": len(sandbox.faults)}

    @app.delete("/_sandbox/faults")
    def clear_faults() -> dict[str, Any]:
        with sandbox.lock:
            sandbox.faults.clear()
            sandbox.pending_edits.clear()
        return {"faults": 0}

    @app.post("/_sandbox/edits")
    async def add_edit(request: Request) -> dict[str, Any]:
        body = await request.json()
        with sandbox.lock:
            sandbox.pending_edits.append(
                PendingEdit(body.get("after", "values.get"), body["spreadsheetId"], body["range"], body["values"])
            )
        return {"pending": len(sandbox.pending_edits)}

    @app.post("/_sandbox/spreadsheets")
    async def seed(request: Request) -> dict[str, Any]:
        body = await request.json()
        sheet = sandbox.create(body["spreadsheetId"], body.get("title", body["spreadsheetId"]), body.get("tabs", {}))
        return {"spreadsheetId": sheet.spreadsheet_id, "tabs": [t.title for t in sheet.tabs]}

    # -- the Sheets API v4 -------------------------------------------------------------
    @app.api_route("/v4/spreadsheets/{rest:path}", methods=["GET", "PUT", "POST"])
    async def api(rest: str, request: Request) -> JSONResponse:
        http_method = request.method
        q: Any = request.query_params
        override = request.headers.get("x-http-method-override", "").upper()
        if http_method == "POST" and override == "GET":
            # google-api-python-client turns a GET whose URL is too long into a POST carrying
            # the query in a form body (e.g. values.batchGet of many ranges).
            from starlette.datastructures import QueryParams

            http_method = "GET"
            q = QueryParams((await request.body()).decode())
        method, args = _route(http_method, unquote(rest))
        fault = sandbox.before_call(method)
        if fault is not None:
            if fault.delay:
                # Sleep without blocking the event loop: other calls (a client's retry) are served meanwhile.
                await asyncio.sleep(fault.delay)
            if fault.status == 429:
                raise quota_error(method)
            if fault.status:
                raise ApiError(fault.status, f"Injected fault {fault.status} on {method}")
        body: dict[str, Any] = {}
        if http_method in {"PUT", "POST"}:
            raw = await request.body()
            if raw:
                import json

                body = json.loads(raw)
        sid = args["sid"]
        if method == "spreadsheets.get":
            grid = q.get("includeGridData", "false").lower() == "true"
            result = sandbox.spreadsheet_json(sid, q.getlist("ranges"), include_grid=grid)
        elif method == "spreadsheets.batchUpdate":
            result = sandbox.batch_update_spreadsheet(
                sid,
                body.get("requests", []),
                include_spreadsheet=bool(body.get("includeSpreadsheetInResponse")),
                response_ranges=body.get("responseRanges"),
                response_grid=bool(body.get("responseIncludeGridData")),
            )
        elif method == "developerMetadata.search":
            result = sandbox.search_metadata(sid, body.get("dataFilters", []))
        elif method == "values.batchGetByDataFilter":
            result = sandbox.batch_get_by_data_filter(
                sid, body.get("dataFilters", []), body.get("valueRenderOption", "FORMATTED_VALUE")
            )
        elif method == "values.batchUpdateByDataFilter":
            result = sandbox.batch_update_by_data_filter(sid, body.get("data", []), body.get("valueInputOption", ""))
        elif method == "values.get":
            result = sandbox.get(
                sid, args["range"], q.get("valueRenderOption", "FORMATTED_VALUE"), q.get("majorDimension", "ROWS")
            )
        elif method == "values.batchGet":
            render = q.get("valueRenderOption", "FORMATTED_VALUE")
            result = {
                "spreadsheetId": sid,
                "valueRanges": [
                    sandbox.get(sid, r, render, q.get("majorDimension", "ROWS")) for r in q.getlist("ranges")
                ],
            }
        elif method == "values.update":
            result = sandbox.update(
                sid,
                args["range"],
                body.get("values", []),
                q.get("valueInputOption", ""),
                body.get("majorDimension", "ROWS"),
            )
        elif method == "values.append":
            result = sandbox.append(
                sid,
                args["range"],
                body.get("values", []),
                q.get("valueInputOption", ""),
                q.get("insertDataOption", "OVERWRITE"),
            )
        elif method == "values.clear":
            result = sandbox.clear(sid, args["range"])
        elif method == "values.batchUpdate":
            option = body.get("valueInputOption", "")
            if option not in {"RAW", "USER_ENTERED"}:
                raise ApiError(400, "Invalid valueInputOption: must be RAW or USER_ENTERED")
            with sandbox.atomic(sid):
                # Applied whole or not at all: a failing range leaves every range as it was.
                responses = [
                    sandbox.update(
                        sid, item["range"], item.get("values", []), option, item.get("majorDimension", "ROWS")
                    )
                    for item in body.get("data", [])
                ]
            result = {"spreadsheetId": sid, "responses": responses}
            if responses:
                sheets = {r["updatedRange"].split("!")[0] for r in responses if "updatedRange" in r}
                result.update(
                    totalUpdatedRows=sum(r.get("updatedRows", 0) for r in responses),
                    totalUpdatedColumns=sum(r.get("updatedColumns", 0) for r in responses),
                    totalUpdatedCells=sum(r.get("updatedCells", 0) for r in responses),
                    totalUpdatedSheets=len(sheets),
                )
        elif method == "values.batchClear":
            result = {
                "spreadsheetId": sid,
                "clearedRanges": [sandbox.clear(sid, r)["clearedRange"] for r in body.get("ranges", [])],
            }
        else:  # pragma: no cover - _route only returns the methods above
            raise ApiError(404, "Method not found.")
        sandbox.after_call(method)
        return JSONResponse(result)

    return app


def _route(http_method: str, rest: str) -> tuple[str, dict[str, str]]:
    """Map a path below /v4/spreadsheets/ to an API method name and its path arguments."""
    if "/values/" in rest:
        sid, rng = rest.split("/values/", 1)
        if http_method == "POST" and rng.endswith(":append"):
            return "values.append", {"sid": sid, "range": rng.removesuffix(":append")}
        if http_method == "POST" and rng.endswith(":clear"):
            return "values.clear", {"sid": sid, "range": rng.removesuffix(":clear")}
        if http_method == "GET":
            return "values.get", {"sid": sid, "range": rng}
        if http_method == "PUT":
            return "values.update", {"sid": sid, "range": rng}
    else:
        for suffix, name, verb in (
            ("/values:batchGet", "values.batchGet", "GET"),
            ("/values:batchUpdate", "values.batchUpdate", "POST"),
            ("/values:batchClear", "values.batchClear", "POST"),
            ("/values:batchGetByDataFilter", "values.batchGetByDataFilter", "POST"),
            ("/values:batchUpdateByDataFilter", "values.batchUpdateByDataFilter", "POST"),
            ("/developerMetadata:search", "developerMetadata.search", "POST"),
            (":batchUpdate", "spreadsheets.batchUpdate", "POST"),
        ):
            if rest.endswith(suffix) and http_method == verb:
                return name, {"sid": rest.removesuffix(suffix)}
        if "/" not in rest and ":" not in rest and http_method == "GET":
            return "spreadsheets.get", {"sid": rest}
    raise ApiError(404, f"Method not found: {http_method} /v4/spreadsheets/{rest}")
