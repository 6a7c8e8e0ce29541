"""Params are rejected before any query runs, with one line naming the param and the fix."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from guardian.errors import ValidationFailed
from guardian.sales.params import validate_params
from guardian.settings import load_settings

GOOD: dict[str, Any] = {"start_date": "2026-01-01", "end_date": "2026-03-31", "countries": ["th"], "brands": "X, Y"}


def test_good_params_are_normalised() -> None:
    params = validate_params(GOOD, load_settings())
    assert params.start_date == date(2026, 1, 1) and params.days == 90
    assert params.countries == ("TH",) and params.brands == ("X", "Y")
    assert params.granularity == "entry" and params.format == "parquet" and params.dry_run is False
    assert params.as_json()["countries"] == ["TH"]


@pytest.mark.parametrize(
    ("override", "param", "fix"),
    [
        ({"end_date": "2025-12-31"}, "end_date", "before start_date"),
        ({"start_date": "2025-01-01", "end_date": "2026-03-31"}, "end_date", "MAX_RANGE_DAYS"),
        ({"start_date": "01/02/2026"}, "start_date", "YYYY-MM-DD"),
        ({"countries": ["TH", "FR"]}, "countries", "unknown code 'FR'"),
        ({"brands": []}, "brands", "one or more"),
        ({"brands": ["X`; DROP TABLE t"]}, "brands", "not a code"),
        ({"countries": ["TH;"]}, "countries", "not a code"),
        ({"format": "xlsx"}, "format", "parquet, csv"),
        ({"granularity": "week"}, "granularity", "entry, day, month"),
        ({"destination": "s3://bucket/x"}, "destination", "gs://bucket/prefix"),
        ({"destination": "gs://bucket/../other"}, "destination", "gs://bucket/prefix"),
        ({"sheet_id": "short"}, "sheet_id", "spreadsheet id"),
        ({"requested_by": "not-an-email"}, "requested_by", "email"),
        ({"dry_run": "yes"}, "dry_run", "boolean"),
        ({"colour": "red"}, "colour", "unknown param"),
    ],
)
def test_bad_params_are_one_clear_line(override: dict[str, Any], param: str, fix: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_params({**GOOD, **override}, load_settings())
    message = str(info.value)
    assert message.startswith(f"param {param}:")
    assert fix in message
    assert "\n" not in message


def test_range_limit_and_codes_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_SALES__MAX_RANGE_DAYS", "31")
    monkeypatch.setenv("GUARDIAN_SALES__COUNTRIES", "TH,FR")
    settings = load_settings()
    with pytest.raises(ValidationFailed, match="over the limit of 31"):
        validate_params(GOOD, settings)
    assert validate_params({**GOOD, "end_date": "2026-01-31", "countries": ["FR"]}, settings).countries == ("FR",)


def test_destinations_outside_the_allow_list_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listed: only the configured storage root.
    with pytest.raises(ValidationFailed, match=r"GUARDIAN_SALES__ALLOWED_DESTINATIONS") as info:
        validate_params({**GOOD, "destination": "gs://team-a/sales"}, load_settings())
    assert len(str(info.value).splitlines()) == 1 and "none are listed" in str(info.value)
    monkeypatch.setenv("GUARDIAN_SALES__ALLOWED_DESTINATIONS", "gs://team-a/sales,file:///srv/exports")
    settings = load_settings()
    for ok in ("gs://team-a/sales", "gs://team-a/sales/q1", "file:///srv/exports/x"):
        assert validate_params({**GOOD, "destination": ok}, settings).destination == ok
    for bad in ("gs://team-a/sales-evil", "gs://team-a", "gs://team-b/sales", "file:///srv"):
        with pytest.raises(ValidationFailed, match=r"param destination: .* not under an allowed export prefix"):
            validate_params({**GOOD, "destination": bad}, settings)
