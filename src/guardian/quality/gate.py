"""Checks of what users lose: holes in coverage, volume against history, freshness, reconciliation.

Each function is pure: it takes what the warehouse and the store measured and returns one
:class:`CheckResult` whose message names what is missing or off, so a failed gate reads as
"TH/X: no rows on 2026-02-03..2026-02-05" rather than "completeness failed".
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from guardian.quality.results import CheckResult, Severity

Slice = tuple[str, str]


def slice_name(s: Slice) -> str:
    """``TH/X``."""
    return f"{s[0]}/{s[1]}"


def month_start(day: date) -> date:
    """The first day of ``day``'s month."""
    return day.replace(day=1)


def expected_periods(start: date, end: date, grain: str) -> list[date]:
    """Every day (grain ``day``) or month start (grain ``month``) of [start, end]."""
    if grain == "month":
        months, cursor = [], month_start(start)
        while cursor <= end:
            months.append(cursor)
            cursor = (cursor + timedelta(days=32)).replace(day=1)
        return months
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _ranges(days: Sequence[date], grain: str) -> list[str]:
    """Consecutive periods folded into ``a..b`` ranges (months as YYYY-MM)."""
    if grain == "month":
        return [d.strftime("%Y-%m") for d in days]
    out: list[str] = []
    run: list[date] = []
    for day in days:
        if run and (day - run[-1]).days != 1:
            out.append(_span(run))
            run = []
        run.append(day)
    if run:
        out.append(_span(run))
    return out


def _span(run: list[date]) -> str:
    return run[0].isoformat() if len(run) == 1 else f"{run[0].isoformat()}..{run[-1].isoformat()} ({len(run)} days)"


def coverage(
    counts: Mapping[tuple[str, str, date], int],
    slices: Iterable[Slice],
    start: date,
    end: date,
    *,
    grain: str = "day",
    max_missing: int = 0,
    severity: Severity = "error",
    name: str = "coverage",
) -> CheckResult:
    """Every requested slice has rows in every period of the range (up to ``max_missing`` empty periods each).

    A whole month without rows always fails, whatever ``max_missing`` allows for days.
    """
    periods = expected_periods(start, end, grain)
    missing: dict[str, list[date]] = {}
    bad: list[str] = []
    for s in slices:
        empty = [p for p in periods if counts.get((s[0], s[1], p), 0) <= 0]
        if not empty:
            continue
        missing[slice_name(s)] = empty
        whole_months = []
        if grain == "day":
            seen_months = {month_start(p) for p in periods}
            for m in sorted(seen_months):
                in_month = [p for p in periods if month_start(p) == m]
                if all(p in empty for p in in_month):
                    whole_months.append(m.strftime("%Y-%m"))
        if len(empty) > max_missing or whole_months:
            text = ", ".join(_ranges(empty, grain))
            if whole_months:
                text += f"; whole month {', '.join(whole_months)} empty"
            bad.append(f"{slice_name(s)}: no rows on {text}")
    details: dict[str, Any] = {
        "grain": grain,
        "periods": len(periods),
        "missing": {k: [d.isoformat() for d in v] for k, v in missing.items()},
    }
    if bad:
        return CheckResult(name, False, "; ".join(bad)[:1800], severity, details)
    holes = sum(len(v) for v in missing.values())
    tolerated = f" ({holes} empty periods tolerated)" if holes else ""
    return CheckResult(name, True, f"every slice has rows in all {len(periods)} {grain}s{tolerated}", severity, details)


def volume(
    current: Mapping[str, float],
    history: Mapping[str, Sequence[float]],
    *,
    min_ratio: float,
    max_ratio: float,
    min_history: int,
    severity: Severity = "error",
    name: str = "volume",
) -> CheckResult:
    """Rows per day of each slice against the median of earlier runs of that slice, within [min_ratio, max_ratio]."""
    off: list[str] = []
    ratios: dict[str, float | None] = {}
    for key, value in sorted(current.items()):
        past = [v for v in history.get(key, []) if v > 0]
        if len(past) < min_history:
            ratios[key] = None
            continue
        median = statistics.median(past)
        ratio = value / median
        ratios[key] = round(ratio, 4)
        if not min_ratio <= ratio <= max_ratio:
            off.append(
                f"{key}: {value:.1f} rows/day is {ratio:.2f}x the median {median:.1f} of {len(past)} earlier runs"
            )
    details: dict[str, Any] = {"ratios": ratios, "min_ratio": min_ratio, "max_ratio": max_ratio}
    if off:
        return CheckResult(
            name, False, "; ".join(off)[:1800] + f" (allowed {min_ratio}x..{max_ratio}x)", severity, details
        )
    judged = sum(1 for r in ratios.values() if r is not None)
    if not judged:
        return CheckResult(
            name, True, f"no slice has {min_history} earlier runs yet: volume not judged", severity, details
        )
    return CheckResult(
        name, True, f"{judged} slices within {min_ratio}x..{max_ratio}x of their history", severity, details
    )


def freshness(
    newest_sale: date | None,
    newest_load: datetime | None,
    end: date,
    *,
    max_lag_days: int,
    severity: Severity = "error",
    name: str = "freshness",
) -> CheckResult:
    """The newest sale and the newest load reach the range end (within ``max_lag_days``)."""
    floor = end - timedelta(days=max_lag_days)
    details = {
        "newest_sale_date": newest_sale.isoformat() if newest_sale else None,
        "newest_load_time": newest_load.isoformat() if newest_load else None,
        "range_end": end.isoformat(),
        "max_lag_days": max_lag_days,
    }
    problems = []
    if newest_sale is None or newest_sale < floor:
        problems.append(f"newest sale_date {newest_sale or 'none'} is before {floor}")
    if newest_load is None or newest_load.date() < floor:
        problems.append(f"newest load time {newest_load or 'none'} is before {floor}")
    if problems:
        return CheckResult(
            name, False, "; ".join(problems) + " (the source may not be loaded yet; rerun later)", severity, details
        )
    return CheckResult(
        name, True, f"newest sale {newest_sale}, loaded {newest_load}, range end {end}", severity, details
    )


def reconcile(
    expected: Mapping[str, tuple[int, float | None]],
    actual: Mapping[str, tuple[int | None, float | None]],
    *,
    severity: Severity = "error",
    name: str = "export_reconciled",
) -> CheckResult:
    """Rows (and amounts where both sides have them) of each slice agree between the result and the export."""
    off = []
    for key in sorted(set(expected) | set(actual)):
        rows, amount = expected.get(key, (0, None))
        got_rows, got_amount = actual.get(key, (0, None))
        if got_rows is None:
            off.append(f"{key}: the export did not report its rows")
        elif got_rows != rows:
            off.append(f"{key}: result has {rows} rows, export {got_rows}")
        elif amount is not None and got_amount is not None and abs(amount - got_amount) > 0.005 * max(1, rows):
            off.append(f"{key}: result net_amount {amount:.2f}, export {got_amount:.2f}")
    total = sum(r for r, _a in expected.values())
    details = {"slices": len(expected), "rows": total}
    if off:
        return CheckResult(name, False, "; ".join(off)[:1800], severity, details)
    return CheckResult(name, True, f"{total} rows in {len(expected)} slices match the export", severity, details)
