"""The gate's checks of what users lose, on measured inputs (pure functions)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from guardian.quality import gate

JAN = [date(2026, 1, 1) + timedelta(days=i) for i in range(31)]


def _counts(slices: list[tuple[str, str]], days: list[date], n: int = 5) -> dict[tuple[str, str, date], int]:
    return {(c, b, d): n for c, b in slices for d in days}


def test_coverage_names_missing_days_per_slice() -> None:
    counts = _counts([("TH", "X"), ("VN", "X")], JAN)
    for d in (date(2026, 1, 10), date(2026, 1, 11), date(2026, 1, 20)):
        del counts[("VN", "X", d)]
    result = gate.coverage(counts, [("TH", "X"), ("VN", "X")], JAN[0], JAN[-1])
    assert not result.passed and result.blocking
    assert result.message == "VN/X: no rows on 2026-01-10..2026-01-11 (2 days), 2026-01-20"
    tolerated = gate.coverage(counts, [("TH", "X"), ("VN", "X")], JAN[0], JAN[-1], max_missing=3)
    assert tolerated.passed and "3 empty periods tolerated" in tolerated.message


def test_coverage_fails_a_whole_empty_month_and_a_slice_with_no_rows() -> None:
    feb = [date(2026, 2, 1) + timedelta(days=i) for i in range(28)]
    counts = _counts([("TH", "X")], JAN)  # nothing in February, nothing at all for TH/Y
    result = gate.coverage(counts, [("TH", "X"), ("TH", "Y")], JAN[0], feb[-1], max_missing=100)
    assert not result.passed
    assert "TH/X: no rows on 2026-02-01..2026-02-28 (28 days); whole month 2026-02 empty" in result.message
    assert "TH/Y: no rows on 2026-01-01..2026-02-28 (59 days)" in result.message
    months = gate.coverage({("TH", "X", date(2026, 1, 1)): 3}, [("TH", "X")], JAN[0], feb[-1], grain="month")
    assert not months.passed and months.message == "TH/X: no rows on 2026-02"


def test_volume_against_the_median_of_history() -> None:
    history = {"TH/X": [100.0, 110.0, 90.0, 1000.0], "VN/X": [50.0]}
    ok = gate.volume({"TH/X": 95.0, "VN/X": 1.0}, history, min_ratio=0.5, max_ratio=2.0, min_history=3)
    assert ok.passed and ok.details["ratios"] == {"TH/X": round(95 / 105, 4), "VN/X": None}
    low = gate.volume({"TH/X": 40.0}, history, min_ratio=0.5, max_ratio=2.0, min_history=3, severity="warn")
    assert not low.passed and not low.blocking
    assert low.message.startswith("TH/X: 40.0 rows/day is 0.38x the median 105.0 of 4 earlier runs")
    fresh = gate.volume({"TH/X": 40.0}, {}, min_ratio=0.5, max_ratio=2.0, min_history=3)
    assert fresh.passed and "not judged" in fresh.message


def test_freshness_and_reconciliation() -> None:
    end = date(2026, 1, 31)
    assert gate.freshness(end, datetime(2026, 1, 31, 22), end, max_lag_days=0).passed
    stale = gate.freshness(date(2026, 1, 29), datetime(2026, 1, 29, 9), end, max_lag_days=1)
    assert not stale.passed and "newest sale_date 2026-01-29 is before 2026-01-30" in stale.message
    assert gate.freshness(date(2026, 1, 29), datetime(2026, 1, 29, 9), end, max_lag_days=2).passed
    good = gate.reconcile({"TH/X": (10, 5.0)}, {"TH/X": (10, 5.0)})
    assert good.passed
    bad = gate.reconcile({"TH/X": (10, 5.0), "VN/X": (3, None)}, {"TH/X": (9, 5.0)})
    assert not bad.passed and bad.message == "TH/X: result has 10 rows, export 9; VN/X: result has 3 rows, export 0"


SLICES = [("TH", "X"), ("TH", "Y"), ("VN", "X")]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(holes=st.sets(st.tuples(st.sampled_from(SLICES), st.integers(0, 30)), max_size=12))
def test_every_hole_is_named(holes: set[tuple[tuple[str, str], int]]) -> None:
    # Invariant: a day without rows for a requested slice always fails coverage and is named in the message.
    counts = _counts(SLICES, JAN)
    for (c, b), i in holes:
        del counts[(c, b, JAN[i])]
    result = gate.coverage(counts, SLICES, JAN[0], JAN[-1])
    assert result.passed == (not holes)
    for (c, b), i in holes:
        assert JAN[i].isoformat() in result.details["missing"][f"{c}/{b}"]
        day = JAN[i].isoformat()
        named = [part for part in result.message.split("; ") if part.startswith(f"{c}/{b}:")]
        assert named and (
            day in named[0]
            or any(
                r.split(" ")[0].split("..")[0] <= day <= r.split(" ")[0].split("..")[-1]
                for r in named[0].removeprefix(f"{c}/{b}: no rows on ").split(", ")
            )
        )
