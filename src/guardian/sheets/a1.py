"""A1 notation: parse and format ranges such as ``'My tab'!B2:D``, ``Requests!A:C`` or ``Requests``.

Rows and columns are 1-based here, as in the sheet; an open end is ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from guardian.errors import ValidationFailed

_CELL = re.compile(r"^([A-Za-z]{0,3})(\d*)$")


def col_to_index(letters: str) -> int:
    """``A`` -> 1, ``Z`` -> 26, ``AA`` -> 27."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n


def index_to_col(index: int) -> str:
    """1 -> ``A``, 27 -> ``AA``."""
    if index < 1:
        raise ValueError(f"column index {index} < 1")
    out = ""
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def quote_sheet(title: str) -> str:
    """A tab title as written in A1 notation (quoted when it has anything but letters, digits, _)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title):
        return title
    return "'" + title.replace("'", "''") + "'"


@dataclass(frozen=True)
class A1Range:
    """A rectangle on one tab; ``None`` bounds are open (whole column or row)."""

    sheet: str | None
    start_col: int | None = None
    start_row: int | None = None
    end_col: int | None = None
    end_row: int | None = None

    def format(self) -> str:
        """The range in A1 notation."""
        prefix = quote_sheet(self.sheet) + "!" if self.sheet is not None else ""
        if self.start_col is None and self.start_row is None and self.end_col is None and self.end_row is None:
            return quote_sheet(self.sheet) if self.sheet is not None else ""
        start = (index_to_col(self.start_col) if self.start_col else "") + (
            str(self.start_row) if self.start_row else ""
        )
        end = (index_to_col(self.end_col) if self.end_col else "") + (str(self.end_row) if self.end_row else "")
        if end and end != start:
            return f"{prefix}{start}:{end}"
        return f"{prefix}{start}"

    @property
    def first_row(self) -> int:
        """First row covered (1 when open)."""
        return self.start_row or 1

    @property
    def first_col(self) -> int:
        """First column covered (1 when open)."""
        return self.start_col or 1


def parse(text: str) -> A1Range:
    """Parse an A1 range; raise ValidationFailed naming the range on a bad one."""
    raw = text.strip()
    sheet: str | None = None
    rest = raw
    if raw.startswith("'"):
        i, buf = 1, []
        while i < len(raw):
            if raw[i] == "'":
                if i + 1 < len(raw) and raw[i + 1] == "'":
                    buf.append("'")
                    i += 2
                    continue
                break
            buf.append(raw[i])
            i += 1
        else:
            raise ValidationFailed(f"A1 range {text!r}: unterminated quoted sheet name; close it with '")
        sheet = "".join(buf)
        rest = raw[i + 1 :]
        if rest and not rest.startswith("!"):
            raise ValidationFailed(f"A1 range {text!r}: expected ! after the sheet name")
        rest = rest[1:]
    elif "!" in raw:
        sheet, rest = raw.split("!", 1)
    else:
        # A bare name that is not a cell reference is a whole tab.
        if not all(_is_cells(part) for part in raw.split(":")):
            return A1Range(sheet=raw)
    if sheet is not None and rest == "":
        return A1Range(sheet=sheet)
    parts = rest.split(":")
    if len(parts) > 2 or not all(_is_cells(p) for p in parts):
        raise ValidationFailed(f"A1 range {text!r}: not a range like Sheet!A1:D10, Sheet!A:D or Sheet!A2:D")
    sc, sr = _cell(parts[0])
    ec, er = _cell(parts[1]) if len(parts) == 2 else (sc, sr)
    if len(parts) == 2 and parts[0] and parts[0][0].isdigit() and not sc:
        # Row ranges like 2:5 span every column.
        sc, ec = None, None
    return A1Range(sheet=sheet, start_col=sc, start_row=sr, end_col=ec, end_row=er)


def _is_cells(part: str) -> bool:
    m = _CELL.match(part)
    return bool(m and (m.group(1) or m.group(2)))


def _cell(part: str) -> tuple[int | None, int | None]:
    m = _CELL.match(part)
    assert m is not None
    letters, digits = m.group(1), m.group(2)
    return (col_to_index(letters) if letters else None, int(digits) if digits else None)
