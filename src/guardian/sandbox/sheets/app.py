"""The Sheets API v4 sandbox: an in-memory workbook store behind a FastAPI app."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
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
    """An error answered in Google's JSON error format."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body Google APIs return."""
        return {"error": {"code": self.code, "message": self.message, "status": _STATUS.get(self.code, "UNKNOWN")}}


@dataclass
class Formula:
    """A cell entered as a formula (USER_ENTERED ``=...``); the sandbox never evaluates it."""

    text: str


@dataclass
class Tab:
    """One sheet (tab) of a spreadsheet: a grid of cells."""

    sheet_id: int
    title: str
    index: int
    row_count: int = 1000
    column_count: int = 26
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)  # (row, col), 1-based

    def used_extent(self) -> tuple[int, int]:
        """Last used row and column (0, 0) when empty."""
        if not self.cells:
            return 0, 0
        return max(r for r, _ in self.cells), max(c for _, c in self.cells)


@dataclass
class Spreadsheet:
    """A spreadsheet: a title and its tabs."""

    spreadsheet_id: str
    title: str
    tabs: list[Tab] = field(default_factory=list)
    next_sheet_id: int = 0

    def tab(self, title: str | None) -> Tab:
        """The named tab, or the first one when the range names none."""
        if title is None:
            return self.tabs[0]
        for tab in self.tabs:
            if tab.title == title:
                return tab
        raise ApiError(400, f"Unable to parse range: {quote_sheet(title)}")


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

    def spreadsheet_json(self, spreadsheet_id: str) -> dict[str, Any]:
        """spreadsheets.get (without grid data)."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            return {
                "spreadsheetId": sheet.spreadsheet_id,
                "properties": {
                    "title": sheet.title,
                    "locale": "en_US",
                    "timeZone": "Etc/GMT",
                    "autoRecalc": "ON_CHANGE",
                },
                "sheets": [
                    {
                        "properties": {
                            "sheetId": tab.sheet_id,
                            "title": tab.title,
                            "index": tab.index,
                            "sheetType": "GRID",
                            "gridProperties": {"rowCount": tab.row_count, "columnCount": tab.column_count},
                        }
                    }
                    for tab in sheet.tabs
                ],
                "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sheet.spreadsheet_id}/edit",
            }

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

    def batch_update_spreadsheet(self, spreadsheet_id: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
        """spreadsheets.batchUpdate: addSheet and updateSheetProperties (grid size, title), atomically."""
        with self.lock:
            sheet = self.get_sheet(spreadsheet_id)
            replies: list[dict[str, Any]] = []
            for i, request in enumerate(requests):
                if "addSheet" in request:
                    props = request["addSheet"].get("properties", {})
                    grid = props.get("gridProperties", {})
                    title = props.get("title") or f"Sheet{len(sheet.tabs) + 1}"
                    tab = self._add_tab(sheet, title, int(grid.get("rowCount", 1000)), int(grid.get("columnCount", 26)))
                    replies.append(
                        {
                            "addSheet": {
                                "properties": {
                                    "sheetId": tab.sheet_id,
                                    "title": tab.title,
                                    "index": tab.index,
                                    "sheetType": "GRID",
                                    "gridProperties": {"rowCount": tab.row_count, "columnCount": tab.column_count},
                                }
                            }
                        }
                    )
                elif "updateSheetProperties" in request:
                    body = request["updateSheetProperties"]
                    props = body.get("properties", {})
                    found = next((t for t in sheet.tabs if t.sheet_id == props.get("sheetId")), None)
                    if found is None:
                        raise ApiError(
                            400, f"Invalid requests[{i}].updateSheetProperties: No grid with id: {props.get('sheetId')}"
                        )
                    tab = found
                    fields = {f.strip() for f in str(body.get("fields", "")).split(",")}
                    grid = props.get("gridProperties", {})
                    if "gridProperties.rowCount" in fields or "gridProperties" in fields:
                        tab.row_count = int(grid.get("rowCount", tab.row_count))
                    if "gridProperties.columnCount" in fields or "gridProperties" in fields:
                        tab.column_count = int(grid.get("columnCount", tab.column_count))
                    if "title" in fields:
                        tab.title = props["title"]
                    replies.append({})
                else:
                    kind = next(iter(request), "?")
                    raise ApiError(400, f"Invalid requests[{i}]: the sandbox does not implement {kind}")
            return {"spreadsheetId": spreadsheet_id, "replies": replies}


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
            result = sandbox.spreadsheet_json(sid)
        elif method == "spreadsheets.batchUpdate":
            result = sandbox.batch_update_spreadsheet(sid, body.get("requests", []))
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
            with sandbox.lock:
                sandbox.get_sheet(sid)
                # Validate every range first: a batch is applied whole or not at all.
                for item in body.get("data", []):
                    sandbox._range(sandbox.get_sheet(sid), item["range"])
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
            (":batchUpdate", "spreadsheets.batchUpdate", "POST"),
        ):
            if rest.endswith(suffix) and http_method == verb:
                return name, {"sid": rest.removesuffix(suffix)}
        if "/" not in rest and ":" not in rest and http_method == "GET":
            return "spreadsheets.get", {"sid": rest}
    raise ApiError(404, f"Method not found: {http_method} /v4/spreadsheets/{rest}")
