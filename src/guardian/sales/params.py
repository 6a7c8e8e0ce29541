"""The parameters of one sales extract, validated before any query runs.

The DAG's ``Param`` JSON schema checks shapes when a run is triggered; this module checks
them again (the CLI and the Sheets trigger come in here too) together with what only the
settings know: the longest range, the allowed countries and brands. Every rejection is one
line naming the param and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Literal

from guardian.errors import ValidationFailed
from guardian.settings import Settings

Granularity = Literal["entry", "day", "month"]
ExportFormat = Literal["parquet", "csv"]
GRANULARITIES: tuple[str, ...] = ("entry", "day", "month")
FORMATS: tuple[str, ...] = ("parquet", "csv")
PARAM_NAMES = (
    "start_date",
    "end_date",
    "countries",
    "brands",
    "granularity",
    "format",
    "destination",
    "sheet_id",
    "sheet_tab",
    "dry_run",
    "request_id",
    "requested_by",
)

_CODE = re.compile(r"^[A-Z0-9_]{1,20}$")
_SHEET_ID = re.compile(r"^[A-Za-z0-9_-]{10,200}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DESTINATION = re.compile(r"^(gs://[a-z0-9][a-z0-9._-]{1,220}(/[A-Za-z0-9._=/-]*)?|file:///[A-Za-z0-9._=/ -]+)$")


@dataclass(frozen=True)
class ExtractParams:
    """One validated extract request."""

    start_date: date
    end_date: date
    countries: tuple[str, ...]
    brands: tuple[str, ...]
    granularity: Granularity = "entry"
    format: ExportFormat = "parquet"
    destination: str | None = None
    sheet_id: str | None = None
    sheet_tab: str | None = None
    dry_run: bool = False
    request_id: str | None = None
    requested_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def days(self) -> int:
        """Days in the range, both ends included."""
        return (self.end_date - self.start_date).days + 1

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (dates as ISO strings), as stored in run records and manifests."""
        data = asdict(self)
        data.pop("extra")
        data["start_date"] = self.start_date.isoformat()
        data["end_date"] = self.end_date.isoformat()
        data["countries"] = list(self.countries)
        data["brands"] = list(self.brands)
        return data


def _fail(param: str, problem: str, fix: str) -> ValidationFailed:
    return ValidationFailed(f"param {param}: {problem}; {fix}")


def _date(raw: Mapping[str, Any], name: str) -> date:
    value = raw.get(name)
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "missing", "give a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise _fail(name, f"{value!r} is not a date", "give a date as YYYY-MM-DD") from None


def _codes(raw: Mapping[str, Any], name: str, allowed: list[str]) -> tuple[str, ...]:
    value = raw.get(name)
    if isinstance(value, str):
        value = [part for part in re.split(r"[,\s]+", value) if part]
    if not isinstance(value, list | tuple) or not value:
        raise _fail(name, "empty", f"give one or more of {', '.join(allowed)}")
    codes: list[str] = []
    for item in value:
        code = str(item).strip().upper()
        if not _CODE.match(code):
            raise _fail(name, f"{item!r} is not a code (A-Z, 0-9, _)", f"use one of {', '.join(allowed)}")
        if code not in allowed:
            raise _fail(
                name,
                f"unknown code {code!r}",
                f"use one of {', '.join(allowed)} (or add it to GUARDIAN_SALES__{name.upper()})",
            )
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def _optional_str(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(name, f"{value!r} is not a string", "give text or leave it empty")
    return value.strip() or None


def validate_params(raw: Mapping[str, Any], settings: Settings) -> ExtractParams:
    """Check a raw params dict (DAG conf, CLI flags, a sheet row); raise ValidationFailed on the first problem."""
    cfg = settings.sales
    start = _date(raw, "start_date")
    end = _date(raw, "end_date")
    if end < start:
        raise _fail("end_date", f"{end} is before start_date {start}", "swap the dates or fix the range")
    days = (end - start).days + 1
    if days > cfg.max_range_days:
        raise _fail(
            "end_date",
            f"range of {days} days is over the limit of {cfg.max_range_days}",
            "split the request or raise GUARDIAN_SALES__MAX_RANGE_DAYS",
        )
    countries = _codes(raw, "countries", cfg.countries)
    brands = _codes(raw, "brands", cfg.brands)

    granularity = raw.get("granularity") or "entry"
    if granularity not in GRANULARITIES:
        raise _fail("granularity", f"{granularity!r} is not supported", f"use one of {', '.join(GRANULARITIES)}")
    fmt = raw.get("format") or cfg.default_format
    if isinstance(fmt, str):
        fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise _fail("format", f"{fmt!r} is not a supported output format", f"use one of {', '.join(FORMATS)}")

    destination = _optional_str(raw, "destination")
    if destination is not None:
        destination = destination.rstrip("/")
        if not _DESTINATION.match(destination) or ".." in destination.split("/"):
            raise _fail(
                "destination",
                f"{destination!r} is not a storage prefix",
                "use gs://bucket/prefix or file:///absolute/path (letters, digits, . _ = - /)",
            )
        allowed = [prefix.rstrip("/") for prefix in cfg.allowed_destinations if prefix.strip()]
        if not any(destination == prefix or destination.startswith(prefix + "/") for prefix in allowed):
            raise _fail(
                "destination",
                f"{destination!r} is not under an allowed export prefix "
                f"({', '.join(allowed) if allowed else 'none are listed'})",
                "leave it empty for the configured storage root, or add the prefix to "
                "GUARDIAN_SALES__ALLOWED_DESTINATIONS",
            )
    sheet_id = _optional_str(raw, "sheet_id")
    if sheet_id is not None and not _SHEET_ID.match(sheet_id):
        raise _fail("sheet_id", f"{sheet_id!r} is not a spreadsheet id", "copy the id from the sheet's URL")
    sheet_tab = _optional_str(raw, "sheet_tab")
    if sheet_tab is not None and (len(sheet_tab) > 100 or any(ch in sheet_tab for ch in "[]*?:/\\'")):
        raise _fail("sheet_tab", f"{sheet_tab!r} is not a valid tab name", "use up to 100 characters without []*?:/\\'")
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise _fail("dry_run", f"{dry_run!r} is not true or false", "give a boolean")
    request_id = _optional_str(raw, "request_id")
    requested_by = _optional_str(raw, "requested_by")
    if requested_by is not None and not _EMAIL.match(requested_by):
        raise _fail("requested_by", f"{requested_by!r} is not an email address", "give name@example.com or null")
    unknown = sorted(set(raw) - set(PARAM_NAMES))
    if unknown:
        raise _fail(unknown[0], "unknown param", f"use only {', '.join(PARAM_NAMES)}")
    return ExtractParams(
        start_date=start,
        end_date=end,
        countries=countries,
        brands=brands,
        granularity=granularity,  # type: ignore[arg-type]
        format=fmt,  # type: ignore[arg-type]
        destination=destination,
        sheet_id=sheet_id,
        sheet_tab=sheet_tab,
        dry_run=dry_run,
        request_id=request_id,
        requested_by=requested_by,
    )
