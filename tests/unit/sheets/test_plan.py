"""The pure planning step: sheet values + tags + ledger facts -> intended records, tags, writes (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from guardian.settings import load_settings
from guardian.sheets import ledger
from guardian.sheets import plan as p
from guardian.sheets.a1 import parse
from guardian.sheets.control import parse_table, validate_row

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
HEADER = ["Country", "Brand", "Start date", "End date", "Target", "Requested by", "Status", "Run ID", "Message"]
LIMITS = p.Limits(per_poll=10, per_day=100, per_requester_per_day=10)


def read(values: list[list[str]], tags: dict[int, list[p.Tag]] | None = None) -> list[p.ReadRow]:
    table = parse_table([HEADER, *values], parse("Requests!A1:Z"), "Requests")
    return [p.ReadRow(r, tuple((tags or {}).get(r.number, ()))) for r in table.rows]


def candidates(rows: list[p.ReadRow]) -> dict[int, p.Candidate]:
    settings = load_settings()
    out = {}
    for r in rows:
        if r.row.status in p.ASKING:
            valid = validate_row(r.row, settings, today=NOW.date())
            base = ledger.base_key("s", "Requests", valid.params_key, r.row.get("run_id"))
            out[r.row.number] = p.Candidate(r, valid, None, base)
    return out


def request(rid: str, row: p.ReadRow, **fields: object) -> ledger.Request:
    base = ledger.Request(
        request_id=rid, request_key=rid * 4, base_key="b", generation=0, spreadsheet_id="s", tab="Requests",
        row_number=row.row.number, target_dag="bigquery_sales_query", dag_run_id=f"sheets__{rid}", conf={},
        requested_by=row.row.get("requested_by"), status=ledger.TRIGGERED, message="run created", rows=None,
        output_uri=None, executed_run_id=None, sheet_status="triggered", created_at=NOW - timedelta(hours=1),
        updated_at=NOW, acked_at=NOW, finished_at=None, notified_at=None, tagged=True,
        fingerprint=p.person_digest(row.row),
    )  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


def plan(rows: list[p.ReadRow], facts: p.LedgerFacts, open_requests: list[ledger.Request]) -> p.RowPlan:
    return p.plan_rows(
        rows, candidates(rows), facts, spreadsheet_id="s", tab="Requests", limits=LIMITS, now=NOW,
        stamp="t", ui_base_url="http://ui", open_requests=open_requests,
    )  # fmt: skip


def test_a_new_run_row_is_recorded_tagged_and_written_by_its_tag() -> None:
    rows = read([["TH", "ACME", "2026-01-01", "2026-01-31", "", "a@example.com", "run"]])
    out = plan(rows, p.LedgerFacts({}, {}, {}), [])
    assert len(out.new) == 1 and out.new[0].row_number == 2
    rid = out.new[0].request_id
    assert out.tags == [p.TagOp(2, rid, ())]
    assert [(w.tag, w.cells["status"], w.cells["run_id"]) for w in out.writes] == [(rid, "queued", f"sheets__{rid}")]


def test_statuses_follow_the_tag_not_the_row_number() -> None:
    first = read([["TH", "ACME", "", "", "", "a@example.com", "queued", "sheets__aaaa"]])[0]
    req = request("aaaa", first)
    # Rows were inserted above: the request's row is now row 5 and carries its tag.
    rows = read(
        [[], [], [], ["TH", "ACME", "", "", "", "a@example.com", "queued", "sheets__aaaa"]], {5: [p.Tag(7, "aaaa")]}
    )
    out = plan(rows, p.LedgerFacts({"aaaa": replace(req, run_state="running")}, {}, {}), [req])
    assert [(w.tag, w.row_number, w.cells["status"]) for w in out.writes] == [("aaaa", 5, "running")]


def test_a_tag_of_an_unconfirmed_request_on_another_row_is_not_trusted() -> None:
    asked = read([["TH", "ACME", "", "", "", "a@example.com", "run"]])[0]
    req = request("bbbb", asked, status=ledger.ACCEPTED, tagged=False, acked_at=None)
    rows = read([["VN", "X", "", "", "", "z@example.com", "completed", "sheets__cccc"]], {2: [p.Tag(9, "bbbb")]})
    out = plan(rows, p.LedgerFacts({"bbbb": req}, {}, {}), [req])
    assert out.writes == [] and 9 in out.drop_tags and out.abandoned == ["bbbb"]


def test_a_deleted_row_settles_its_request_and_a_persons_status_is_left_alone() -> None:
    row = read([["TH", "ACME", "", "", "", "a@example.com", "on hold", "sheets__dddd"]], {2: [p.Tag(3, "dddd")]})
    gone = request("eeee", row[0])
    kept = request("dddd", row[0])
    out = plan(row, p.LedgerFacts({"dddd": kept, "eeee": gone}, {}, {}), [kept, gone])
    assert out.gone == ["eeee"] and out.writes == []


@pytest.mark.parametrize(
    ("state", "status", "says"),
    [
        ("success", ledger.COMPLETED, "completed"),
        ("failed", ledger.FAILED, "the run failed"),
        (None, ledger.FAILED, "gone from Airflow"),
        ("running", ledger.FAILED, "timed out"),
    ],
)
def test_reconcile_ends_requests_from_airflow(state: str | None, status: str, says: str) -> None:
    row = read([["TH", "ACME", "", "", "", "", "running", "sheets__ffff"]])[0]
    req = request("ffff", row, created_at=NOW - timedelta(hours=30))
    runs = {} if state is None else {"sheets__ffff": state}
    [change] = p.reconcile([req], runs, None, allowed_targets=["bigquery_sales_query"], max_attempts=3,
                           run_timeout=timedelta(hours=24), now=NOW)  # fmt: skip
    assert change.fields["status"] == status and says in change.fields["message"]


def test_reconcile_counts_attempts_then_fails_and_rechecks_the_allow_list() -> None:
    row = read([["TH", "ACME", "", "", "", "", "queued", "sheets__gggg"]])[0]
    req = request("gggg", row, status=ledger.ACCEPTED, handed_at=NOW, attempts=1)
    kwargs = {"allowed_targets": ["bigquery_sales_query"], "max_attempts": 3, "run_timeout": timedelta(hours=24)}
    [once] = p.reconcile([req], {}, {"other"}, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert once.fields == {"attempts": 2, "last_error": "Airflow has no DAG bigquery_sales_query", "handed_at": None}
    [last] = p.reconcile([replace(req, attempts=2)], {}, {"other"}, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert last.fields["status"] == ledger.FAILED and "after 3 attempts" in last.fields["message"]
    [barred] = p.reconcile(
        [req], {}, None, allowed_targets=["x"], max_attempts=3, run_timeout=timedelta(hours=1), now=NOW
    )
    assert "may no longer be started" in barred.fields["message"]
    [seen] = p.reconcile([req], {"sheets__gggg": "running"}, None, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert seen.fields == {"status": ledger.TRIGGERED, "run_state": "running"}


# -- a request whose status never reached its row (the poll stopped between tagging and writing) ----------
def _unshown(values: list[str], rid: str, **fields: object) -> tuple[list[p.ReadRow], ledger.Request]:
    rows = read([values], {2: [p.Tag(11, rid)]})
    base = candidates(rows)[2].base
    req = request(rid, rows[0], status=ledger.ACCEPTED, acked_at=None, sheet_status=None, base_key=base)
    return rows, replace(req, **fields)  # type: ignore[arg-type]


def test_run_retyped_over_an_older_run_id_finds_its_unshown_request_again() -> None:
    # The row showed an older request's run id when `run` was typed again; the request recorded for that
    # typing was tagged, then the poll died. The next poll writes that request: it never records a second one.
    rows, req = _unshown(["TH", "ACME", "", "", "", "b@example.com", "run", "sheets__old1"], "hhhh")
    out = plan(rows, p.LedgerFacts({"hhhh": req}, {}, {}), [req])
    assert out.new == [] and out.claimed == {2: "hhhh"} and out.withdrawn == []
    assert [(w.tag, w.cells["status"]) for w in out.writes] == [("hhhh", "queued")]


def test_a_row_changed_before_its_request_showed_withdraws_the_request_and_asks_anew() -> None:
    _, req = _unshown(["TH", "ACME", "", "", "", "b@example.com", "run"], "iiii")
    rows = read([["TH", "NOVA", "", "", "", "b@example.com", "run"]], {2: [p.Tag(11, "iiii")]})
    out = plan(rows, p.LedgerFacts({"iiii": req}, {}, {}), [req])
    assert out.withdrawn == ["iiii"] and len(out.new) == 1 and out.gone == []
    assert out.tags == [p.TagOp(2, out.new[0].request_id, (11,))]


def test_a_handed_request_is_never_withdrawn_its_row_shows_it() -> None:
    _, req = _unshown(["TH", "ACME", "", "", "", "b@example.com", "run"], "jjjj", handed_at=NOW)
    rows = read([["TH", "NOVA", "", "", "", "b@example.com", "run"]], {2: [p.Tag(11, "jjjj")]})
    out = plan(rows, p.LedgerFacts({"jjjj": req}, {}, {}), [req])
    assert out.withdrawn == [] and out.new == [] and out.claimed == {2: "jjjj"}


def test_an_unshown_request_whose_row_went_or_was_taken_back_is_withdrawn() -> None:
    _, req = _unshown(["TH", "ACME", "", "", "", "b@example.com", "run"], "kkkk", updated_at=NOW - timedelta(1))
    out = plan(read([]), p.LedgerFacts({}, {}, {}), [req])
    assert out.withdrawn == ["kkkk"] and out.gone == []
    back = read([["TH", "ACME", "", "", "", "b@example.com", "on hold"]], {2: [p.Tag(11, "kkkk")]})
    out = plan(back, p.LedgerFacts({"kkkk": req}, {}, {}), [req])
    assert out.withdrawn == ["kkkk"] and out.writes == []


def test_an_unacknowledged_request_its_row_shows_stands_when_run_is_typed_again() -> None:
    # The write landed, the poll died before noting it; then a person typed `run` again on the row.
    _, req = _unshown(["TH", "ACME", "", "", "", "b@example.com", "run"], "llll")
    rows = read([["TH", "ACME", "", "", "", "c@example.com", "run", "sheets__llll"]], {2: [p.Tag(11, "llll")]})
    out = plan(rows, p.LedgerFacts({"llll": req}, {}, {}), [req])
    assert out.shown == ["llll"] and out.withdrawn == [] and len(out.new) == 1
