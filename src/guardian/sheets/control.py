"""The control sheet: find the header, read the rows, validate each `run` row.

A person types; the guardian reads. Nothing here trusts a cell: every value that reaches a
DAG run's conf has passed a check written for that field, and a row that fails becomes
``invalid`` with one line saying why. Pure functions: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from guardian.errors import GuardianError, ValidationFailed
from guardian.sheets.a1 import A1Range

if TYPE_CHECKING:
    from guardian.settings import Settings

# field -> accepted header spellings (compared lower-cased, spaces/underscores/dashes collapsed)
COLUMNS: dict[str, tuple[str, ...]] = {
    "country": ("country", "countries", "country code"),
    "brand": ("brand", "brands", "brand code"),
    "status": ("status",),
    "start_date": ("start date", "start", "from", "date from"),
    "end_date": ("end date", "end", "to", "date to"),
    "target": ("target", "target dag", "dag"),
    "requested_by": ("requested by", "requester", "email"),
    "run_id": ("run id", "dag run id"),
    "message": ("message", "guardian message"),
    "updated_at": ("updated at", "updated", "last updated"),
}
REQUIRED = ("country", "brand", "status")
WRITTEN = ("status", "run_id", "message", "updated_at")
HEADER_TITLES = {"status": "Status", "run_id": "Run ID", "message": "Message", "updated_at": "Updated at"}
READ_FIELDS = ("country", "brand", "start_date", "end_date", "target", "requested_by", "status", "run_id")
HEADER_SEARCH_ROWS = 10

# Status lifecycle (what the row shows). `run` is typed by a person; the rest are written by the guardian.
RUN = "run"
QUEUED, RUNNING, COMPLETED, FAILED, INVALID = "queued", "running", "completed", "failed", "invalid"
WAITING = "waiting"  # over a daily cap: still asking, taken up when the cap allows
GUARDIAN_STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, INVALID, WAITING)
ASKING_STATUSES = (RUN, WAITING)
STATUS_CHOICES = (RUN, QUEUED, RUNNING, COMPLETED, FAILED, INVALID, WAITING)  # the Status dropdown

_FORMULA_START = ("=", "+", "-", "@")
_COUNTRY = re.compile(r"^[A-Z]{2,3}$")
_BRAND = re.compile(r"^[A-Z0-9][A-Z0-9_&. -]{0,39}$")
_TARGET = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_EMAIL = re.compile(r"^[^@\s=+<>\"',;]+@[^@\s<>\"',;]+\.[A-Za-z]{2,}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SheetLayoutError(GuardianError):
    """The control sheet cannot be read as a control table (no header, unreadable range)."""


def _norm_header(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


_LOOKUP = {_norm_header(alias): name for name, aliases in COLUMNS.items() for alias in aliases}


@dataclass(frozen=True)
class SheetRow:
    """One data row: its sheet row number and the text of each known field."""

    number: int
    cells: dict[str, str]
    raw: tuple[str, ...]

    def get(self, name: str) -> str:
        """The field's text, '' when the column is absent or the cell empty."""
        return self.cells.get(name, "")

    @property
    def status(self) -> str:
        """The Status cell normalised: trimmed, lower-case."""
        return self.get("status").strip().lower()

    def fingerprint(self) -> tuple[str, ...]:
        """What the guardian's decision about this row depends on (compared before a write-back)."""
        return tuple(self.get(name) for name in READ_FIELDS)


@dataclass(frozen=True)
class ControlTable:
    """The parsed control range."""

    tab: str
    header_row: int
    first_col: int
    columns: dict[str, int]  # field -> 1-based sheet column
    missing_written: tuple[str, ...]  # guardian columns the header lacks (added on write-back)
    header_width: int
    rows: tuple[SheetRow, ...]

    def column_of(self, name: str) -> int:
        """Sheet column of a field; guardian columns missing from the header go after the last header cell."""
        if name in self.columns:
            return self.columns[name]
        return self.first_col + self.header_width + self.missing_written.index(name)

    @property
    def last_col(self) -> int:
        """Right-most column the table uses, including guardian columns to be added."""
        return self.first_col + self.header_width - 1 + len(self.missing_written)


def parse_table(values: list[list[str]], rng: A1Range, tab: str) -> ControlTable:
    """Find the header (by name, any order, any case) in the first rows and read the data rows below it."""
    header_index = None
    columns: dict[str, int] = {}
    for i, row in enumerate(values[:HEADER_SEARCH_ROWS]):
        found: dict[str, int] = {}
        for j, cell in enumerate(row):
            name = _LOOKUP.get(_norm_header(cell))
            if name and name not in found:
                found[name] = rng.first_col + j
        if all(r in found for r in REQUIRED):
            header_index, columns = i, found
            break
    if header_index is None:
        raise SheetLayoutError(
            f"control sheet range {rng.format() or tab}: no header row with Country, Brand and Status in its first "
            f"{HEADER_SEARCH_ROWS} rows; add that header row (docs/services/sheets.md) or fix GUARDIAN_SHEETS__RANGE"
        )
    header = values[header_index]
    width = len(header)
    while width and not header[width - 1].strip():
        width -= 1
    rows = []
    for i in range(header_index + 1, len(values)):
        raw = tuple(values[i])
        if not any(cell.strip() for cell in raw):
            continue
        cells = {}
        for name, col in columns.items():
            j = col - rng.first_col
            cells[name] = raw[j] if j < len(raw) else ""
        rows.append(SheetRow(number=rng.first_row + i, cells=cells, raw=raw))
    missing = tuple(name for name in WRITTEN if name not in columns)
    return ControlTable(
        tab=tab,
        header_row=rng.first_row + header_index,
        first_col=rng.first_col,
        columns=columns,
        missing_written=missing,
        header_width=width,
        rows=tuple(rows),
    )


@dataclass(frozen=True)
class ValidRequest:
    """A `run` row that passed every check: the target and the conf built from validated fields only."""

    target: str
    conf: dict[str, Any]
    requested_by: str | None
    params_key: str = field(default="")


def _bad(column: str, problem: str, fix: str) -> ValidationFailed:
    return ValidationFailed(f"{column}: {problem}; {fix}")


def _clean(row: SheetRow, name: str, title: str, max_chars: int) -> str:
    value = row.get(name)
    if len(value) > max_chars:
        raise _bad(title, f"longer than {max_chars} characters", "shorten it")
    text = value.strip()
    if text.startswith(_FORMULA_START):
        raise _bad(title, "looks like a formula", "type plain text (a formula's result is never used)")
    if _CONTROL.search(text):
        raise _bad(title, "contains control characters", "retype it as plain text")
    return text


def _split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;/\n]+", text) if part.strip()]


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?$")


def _parse_date(text: str, title: str) -> date:
    fix = "write it as YYYY-MM-DD (format the column as plain text)"
    if not _DATE.match(text):
        raise _bad(title, f"{text!r} is not a date", fix)
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _bad(title, f"{text!r} is not a date", fix) from None


def previous_month(today: date) -> tuple[date, date]:
    """The calendar month before ``today``: the range of a row that gives no dates."""
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def validate_row(row: SheetRow, settings: Settings, *, today: date) -> ValidRequest:
    """Check a `run` row; return the request or raise ValidationFailed with the row's reason."""
    cfg = settings.sheets
    limit = cfg.max_cell_chars
    country_text = _clean(row, "country", "Country", limit)
    brand_text = _clean(row, "brand", "Brand", limit)
    start_text = _clean(row, "start_date", "Start date", limit)
    end_text = _clean(row, "end_date", "End date", limit)
    target_text = _clean(row, "target", "Target", limit)
    requester = _clean(row, "requested_by", "Requested by", limit)
    _clean(row, "run_id", "Run ID", limit)

    allowed_countries = [c.upper() for c in (cfg.countries or settings.sales.countries)]
    countries: list[str] = []
    for part in _split(country_text):
        code = part.upper()
        if not _COUNTRY.match(code) or code not in allowed_countries:
            raise _bad("Country", f"{part!r} is not an allowed country", f"use one of {', '.join(allowed_countries)}")
        if code not in countries:
            countries.append(code)
    if not countries:
        raise _bad("Country", "empty", f"give one or more of {', '.join(allowed_countries)}")

    allowed_brands = [b.upper() for b in getattr(settings.sales, "brands", [])]
    brands: list[str] = []
    for part in _split(brand_text):
        code = part.upper()
        if not _BRAND.match(code):
            raise _bad("Brand", f"{part!r} is not a brand code", "use letters, digits, space, & . _ - (up to 40)")
        if allowed_brands and code not in allowed_brands:
            raise _bad("Brand", f"{part!r} is not an allowed brand", f"use one of {', '.join(allowed_brands)}")
        if code not in brands:
            brands.append(code)
    if not brands:
        raise _bad("Brand", "empty", "give a brand code")

    if start_text or end_text:
        if not (start_text and end_text):
            raise _bad("Start date" if not start_text else "End date", "missing", "give both dates or neither")
        start, end = _parse_date(start_text, "Start date"), _parse_date(end_text, "End date")
    else:
        start, end = previous_month(today)
    if end < start:
        raise _bad("End date", f"{end} is before the start date {start}", "swap the dates")
    max_days = settings.sales.max_range_days
    if (end - start).days + 1 > max_days:
        raise _bad("End date", f"the range is over {max_days} days", "split the request into shorter ranges")

    target = target_text or cfg.default_target
    if not _TARGET.match(target) or target not in cfg.allowed_targets:
        raise _bad(
            "Target", f"{target!r} may not be started from a sheet", f"use one of {', '.join(cfg.allowed_targets)}"
        )

    if requester and not _EMAIL.match(requester):
        raise _bad("Requested by", f"{requester!r} is not an email address", "give name@example.com or leave it empty")

    conf: dict[str, Any] = {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "countries": countries,
        "brands": brands,
    }
    if requester:
        conf["requested_by"] = requester
    params_key = json.dumps({"target": target, "conf": conf}, sort_keys=True)
    return ValidRequest(target=target, conf=conf, requested_by=requester or None, params_key=params_key)


def check_target_params(target: str, conf: dict[str, Any], settings: Settings) -> None:
    """Run the target's own parameter validation when the guardian knows it (the sales DAG)."""
    if target != "bigquery_sales_query":
        return
    try:
        from guardian.sales.params import validate_params
    except ImportError:  # the sales service is optional in a deployment
        return
    validate_params(conf, settings)
