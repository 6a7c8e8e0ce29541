"""One poll of the control sheet: Airflow first, then read once, plan, record, tag, write once.

1. Open requests are reconciled with the state of their Airflow runs (:func:`plan.reconcile`):
   done before the sheet is read, so the time between the read and the write stays short.
2. ONE ``spreadsheets.get`` of the control range with grid data: cell values (formulas as
   formulas) and each row's developer metadata (its request tag).
3. The pure plan (:func:`plan.plan_rows`) decides every row; new requests are recorded in the
   ledger (exactly once, see :mod:`guardian.sheets.ledger`) in one transaction holding the
   sheet's lock, with deleted rows and abandoned requests settled and audited.
4. Rows that need a tag get it in ONE ``spreadsheets.batchUpdate`` (createDeveloperMetadata on the
   row as read) whose response carries the sheet as it is right after: every row about to be
   written is compared with the read, and a row a person changed meanwhile is left alone (re-read
   next poll; a request it had just produced is superseded, never triggered). Without tags to
   create, the same check is ONE ``values.batchGetByDataFilter`` of exactly the rows to write, and
   only when a write changes Status or Run ID (:func:`plan.needs_recheck`): the guardian's own
   cells (Message, Updated at) are never a person's, so writing them needs no check.
5. Every write goes in ONE ``values.batchUpdateByDataFilter`` addressed by the rows' tags, never
   by a row number: a row inserted, deleted, sorted or moved meanwhile cannot misdirect it. Only
   cells that differ from the read are sent.

A request is handed to Airflow only once its status reached its row (``acked_at``); a request
whose row changed or went before that is withdrawn, never triggered.

A settled sheet costs one call; a poll that changes only the guardian's own cells two; a poll that
changes a Status three (see docs/services/sheets.md for the figures and why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from guardian import audit
from guardian.errors import ConfigError, GuardianError, ValidationFailed
from guardian.sheets import ledger
from guardian.sheets import plan as planning
from guardian.sheets.a1 import A1Range, index_to_col, quote_sheet
from guardian.sheets.a1 import parse as parse_a1
from guardian.sheets.client import cell_text, mask
from guardian.sheets.control import (
    ASKING_STATUSES,
    HEADER_TITLES,
    ControlTable,
    SheetLayoutError,
    SheetRow,
    check_target_params,
    parse_table,
    validate_row,
)

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient
    from guardian.store import Store

log = logging.getLogger(__name__)


class RunSource(Protocol):
    """Where the state of Airflow runs comes from (the REST API or the metadata database)."""

    def states(self, run_ids: dict[str, list[str]], since: datetime) -> dict[str, str]:
        """Run id -> state of the given runs (dag id -> run ids) that exist; created since ``since``."""

    def dag_ids(self) -> set[str] | None:
        """DAG ids Airflow knows (None: cannot tell)."""


@dataclass
class PollResult:
    """What one poll saw and did."""

    outcome: str  # no_change | polled | dry_run
    spreadsheet_id: str
    range: str
    calls: int = 0
    rows: int = 0
    new: list[ledger.Request] = field(default_factory=list)
    to_trigger: list[ledger.Request] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)
    waiting: list[tuple[int, str]] = field(default_factory=list)
    deferred: int = 0
    written_rows: int = 0
    skipped_writes: list[tuple[int, str]] = field(default_factory=list)
    reconciled: int = 0
    gone: list[str] = field(default_factory=list)
    planned: list[planning.RowWrite] = field(default_factory=list)
    elapsed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's --json and the task's log)."""
        return {
            "outcome": self.outcome,
            "spreadsheet_id": self.spreadsheet_id,
            "range": self.range,
            "calls": self.calls,
            "rows": self.rows,
            "new_requests": [r.request_id for r in self.new],
            "to_trigger": [r.trigger_kwargs() for r in self.to_trigger],
            "invalid": [{"row": n, "reason": why} for n, why in self.invalid],
            "waiting": [{"row": n, "reason": why} for n, why in self.waiting],
            "deferred": self.deferred,
            "written_rows": self.written_rows,
            "skipped_writes": [{"row": n, "reason": why} for n, why in self.skipped_writes],
            "reconciled": self.reconciled,
            "rows_gone": self.gone,
            "elapsed_s": round(self.elapsed, 3),
        }


def stamp(at: datetime) -> str:
    """The Updated at text written to the sheet."""
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _control_range(settings: Settings) -> tuple[str, A1Range, str]:
    cfg = settings.sheets
    if not cfg.spreadsheet_id:
        raise ConfigError("GUARDIAN_SHEETS__SPREADSHEET_ID is not set; set it to the control spreadsheet's id")
    try:
        rng = parse_a1(cfg.range)
    except ValidationFailed as exc:
        raise ConfigError(f"GUARDIAN_SHEETS__RANGE={cfg.range!r}: {exc}") from None
    if rng.sheet is None:
        raise ConfigError(f"GUARDIAN_SHEETS__RANGE={cfg.range!r} names no tab; write it like Requests!A1:Z")
    return cfg.spreadsheet_id, rng, rng.sheet


def source_of(settings: Settings) -> str:
    """The poll-state key of the configured control range."""
    return f"{settings.sheets.spreadsheet_id}!{settings.sheets.range}"


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SheetView:
    """The control range as read: the parsed table and each data row with its guardian tags."""

    sheet_id: int
    table: ControlTable
    rows: list[planning.ReadRow]

    def by_tag(self) -> dict[str, list[planning.ReadRow]]:
        """Rows by the value of each guardian tag they carry."""
        out: dict[str, list[planning.ReadRow]] = {}
        for read in self.rows:
            for t in read.tags:
                out.setdefault(t.value, []).append(read)
        return out


def _cell(value: dict[str, Any]) -> str:
    uev = value.get("userEnteredValue") or {}
    if "formulaValue" in uev:
        return str(uev["formulaValue"])
    for kind in ("stringValue", "numberValue", "boolValue"):
        if kind in uev:
            return cell_text(uev[kind])
    return ""


def view_of(spreadsheet: dict[str, Any], rng: A1Range, tab: str) -> SheetView:
    """Parse a spreadsheets.get (or batchUpdate's updatedSpreadsheet) answer holding the control range."""
    sheet = next((s for s in spreadsheet.get("sheets", []) if s.get("properties", {}).get("title") == tab), None)
    if sheet is None:
        raise SheetLayoutError(f"control sheet has no tab {tab!r}; fix GUARDIAN_SHEETS__RANGE")
    data = (sheet.get("data") or [{}])[0]
    first_row = int(data.get("startRow", 0)) + 1
    values = [[_cell(v) for v in (rd.get("values") or [])] for rd in data.get("rowData", [])]
    for row in values:
        while row and row[-1] == "":
            row.pop()
    tags: dict[int, list[planning.Tag]] = {}
    for i, props in enumerate(data.get("rowMetadata", [])):
        for md in props.get("developerMetadata") or []:
            if md.get("metadataKey") == planning.TAG_KEY and md.get("metadataValue"):
                tags.setdefault(first_row + i, []).append(planning.Tag(int(md["metadataId"]), md["metadataValue"]))
    table = parse_table(values, rng, tab)
    rows = [planning.ReadRow(r, tuple(tags.get(r.number, ()))) for r in table.rows]
    return SheetView(int(sheet["properties"]["sheetId"]), table, rows)


def _row_from(values: list[str], table: ControlTable, number: int) -> SheetRow:
    """A row read by a data filter (its values start at column A) in the table's columns."""
    cells = {name: (values[col - 1] if col - 1 < len(values) else "") for name, col in table.columns.items()}
    return SheetRow(number=number, cells=cells, raw=tuple(values))


# -- the poll ------------------------------------------------------------------------------
def poll(
    settings: Settings,
    store: Store,
    client: SheetsClient,
    *,
    runs: RunSource | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime] = ledger.now_utc,
    today: date | None = None,
) -> PollResult:
    """Run one poll of the configured control sheet (see the module docstring)."""
    sid, rng, tab = _control_range(settings)
    cfg = settings.sheets
    started = time.monotonic()
    calls_before = sum(client.calls.values())
    result = PollResult(outcome="dry_run" if dry_run else "polled", spreadsheet_id=sid, range=cfg.range)

    if not dry_run:
        result.reconciled = reconcile(settings, store, sid, runs, clock())

    read_at = clock()
    view = view_of(client.get_grid(sid, cfg.range), rng, tab)
    table = view.table
    if rng.end_col is not None and table.last_col > rng.end_col:
        missing = ", ".join(HEADER_TITLES[name] for name in table.missing_written)
        raise SheetLayoutError(
            f"GUARDIAN_SHEETS__RANGE={cfg.range!r} has no room for the guardian's columns ({missing}); "
            "add them to the header inside the range or widen the range"
        )
    result.rows = len(table.rows)
    today = today or read_at.date()
    candidates = _candidates(view, settings, sid, tab, today)
    limits = planning.Limits(
        cfg.max_requests_per_poll, cfg.max_requests_per_day, cfg.max_requests_per_requester_per_day
    )
    ui = settings.notify.ui_base_url

    with store.read() if dry_run else store.write() as conn:
        if not dry_run:
            ledger.lock_sheet(conn, sid)
        facts, open_requests = _facts(conn, sid, view, candidates, read_at)
        plan = planning.plan_rows(
            view.rows,
            candidates,
            facts,
            spreadsheet_id=sid,
            tab=tab,
            limits=limits,
            now=read_at,
            stamp=stamp(read_at),
            ui_base_url=ui,
            open_requests=open_requests,
        )
        result.invalid, result.waiting, result.deferred = plan.invalid, plan.waiting, plan.deferred
        result.planned = plan.writes
        if dry_run:
            result.new = [_preview(n, sid, tab, read_at) for n in plan.new]
            result.to_trigger = list(result.new)
            return _done(result, client, calls_before, started)
        result.new = _record(conn, plan, sid, tab, read_at)
        _settle(conn, plan, facts, open_requests, sid)
    result.gone = list(plan.gone)

    writes = plan.writes
    as_read = {r.row.number: r.row for r in view.rows}
    if (
        plan.tags
        or plan.drop_tags
        or table.missing_written
        or any(planning.needs_recheck(w, as_read.get(w.row_number)) for w in writes)
    ):
        writes = _tag_and_check(settings, client, store, view, plan, result)
    if writes or table.missing_written:
        client.batch_update_by_filter(sid, _write_data(table, writes, as_read))
        result.written_rows = len(writes)
    with store.write() as conn:
        for w in writes:
            if w.request_id:
                ledger.set_fields(conn, w.request_id, sheet_status=w.ledger_status, acked_at=read_at, tagged=True)
        for rid in plan.shown:
            req = facts.requests.get(rid)
            if req is not None and req.acked_at is None:
                ledger.set_fields(conn, rid, acked_at=read_at)
        for rid in plan.seen:
            req = facts.requests.get(rid)
            if req is not None and (req.sheet_status != req.status or not req.tagged or req.acked_at is None):
                ledger.set_fields(conn, rid, sheet_status=req.status, acked_at=req.acked_at or read_at, tagged=True)
        outcome = "changed" if (writes or plan.tags or result.new) else "no_change"
        ledger.save_poll(conn, source_of(settings), outcome=outcome)
    result.outcome = outcome if outcome == "no_change" else "polled"
    result.to_trigger = ledger.to_trigger(store, sid)
    return _done(result, client, calls_before, started)


def _done(result: PollResult, client: SheetsClient, calls_before: int, started: float) -> PollResult:
    result.calls = sum(client.calls.values()) - calls_before
    result.elapsed = time.monotonic() - started
    return result


def _candidates(view: SheetView, settings: Settings, sid: str, tab: str, today: date) -> dict[int, planning.Candidate]:
    out: dict[int, planning.Candidate] = {}
    for read in view.rows:
        row = read.row
        if row.status not in ASKING_STATUSES:
            continue
        try:
            valid = validate_row(row, settings, today=today)
            check_target_params(valid.target, {**valid.conf, "request_id": "0" * 16}, settings)
        except ValidationFailed as exc:
            out[row.number] = planning.Candidate(read, None, str(exc), None)
            continue
        base = ledger.base_key(sid, tab, valid.params_key, row.get("run_id"))
        out[row.number] = planning.Candidate(read, valid, None, base)
    return out


def _facts(
    conn: Any, sid: str, view: SheetView, candidates: dict[int, planning.Candidate], read_at: datetime
) -> tuple[planning.LedgerFacts, list[ledger.Request]]:
    bases = sorted({c.base for c in candidates.values() if c.base})
    tag_values = sorted({t.value for r in view.rows for t in r.tags if not t.value.startswith(planning.ROW_TAG_PREFIX)})
    claim = ledger.claimable(conn, sid, bases, read_at)
    requests = ledger.by_ids(conn, tag_values)
    requests.update({r.request_id: r for r in claim.values()})
    untagged_ids = [
        r.row.get("run_id").strip()
        for r in view.rows
        if not r.tags and r.row.get("run_id").strip().startswith(ledger.RUN_ID_PREFIX)
    ]
    legacy = {k: v for k, v in ledger.by_run_ids(conn, untagged_ids).items() if not v.tagged}
    open_requests = ledger.open_for_sheet(conn, sid)
    requests.update({r.request_id: r for r in open_requests if r.request_id in requests})
    day = read_at.replace(hour=0, minute=0, second=0, microsecond=0)
    total, per = ledger.counts_since(conn, sid, day)
    facts = planning.LedgerFacts(
        requests=requests,
        claimable=claim,
        generations=ledger.generations(conn, bases),
        today_total=total,
        today_by_requester=per,
        by_run_id=legacy,
    )
    return facts, open_requests


def _record(conn: Any, plan: planning.RowPlan, sid: str, tab: str, at: datetime) -> list[ledger.Request]:
    out = []
    for new in plan.new:
        req = ledger.insert(
            conn,
            key=new.key,
            base=new.base,
            gen=new.generation,
            spreadsheet_id=sid,
            tab=tab,
            row_number=new.row_number,
            target=new.valid.target,
            conf=new.valid.conf,
            requested_by=new.valid.requested_by,
            at=at,
            fingerprint=new.person,
        )
        after = {"request_id": req.request_id, "dag_run_id": req.dag_run_id, "target": req.target_dag, "conf": req.conf}
        _audit_request(conn, sid, req, "sheets.request.accepted", after, "ok", before={"row": new.row_number})
        out.append(req)
    return out


def _settle(
    conn: Any,
    plan: planning.RowPlan,
    facts: planning.LedgerFacts,
    open_requests: list[ledger.Request],
    sid: str,
) -> None:
    by_id = {r.request_id: r for r in open_requests}
    for rid in plan.gone:
        ledger.set_fields(conn, rid, sheet_status=ledger.GONE)
        _audit_request(
            conn,
            sid,
            by_id[rid],
            "sheets.request.row_deleted",
            {"sheet_status": ledger.GONE, "note": "its row was deleted; the run (if any) goes on"},
            "ok",
        )
    c = ledger.sheets_requests.c
    for rids, only_if, why, reason in (
        (
            plan.abandoned,
            c.tagged.is_(False),
            "no row asks for it any more",
            "its row changed or went before it was tagged",
        ),
        (
            plan.withdrawn,
            c.acked_at.is_(None) & c.handed_at.is_(None),
            "withdrawn: its row changed or went before its status reached it; never started",
            "its row changed or went before its status reached it",
        ),
    ):
        for rid in rids:
            done = conn.execute(
                ledger.sheets_requests.update()
                .where(c.request_id == rid, c.status == ledger.ACCEPTED, only_if)
                .values(status=ledger.SUPERSEDED, message=why, updated_at=ledger.now_utc())
            )
            if done.rowcount:
                _audit_request(
                    conn,
                    sid,
                    by_id[rid],
                    "sheets.request.superseded",
                    {"status": ledger.SUPERSEDED, "reason": reason},
                    "skipped",
                )


def _audit_request(
    conn: Any,
    sid: str,
    req: ledger.Request,
    action: str,
    after: dict[str, Any],
    outcome: str,
    before: dict[str, Any] | None = None,
) -> None:
    """One audit entry about a request, addressed by its request id (``before``: its status unless given)."""
    audit.append(
        conn,
        actor=audit.default_actor(),
        action=action,
        target=f"gsheets://{sid}/{req.tab}#request={req.request_id}",
        before={"status": req.status} if before is None else before,
        after=after,
        outcome=outcome,
        context=audit.current_context(),
    )


def _tag_and_check(
    settings: Settings,
    client: SheetsClient,
    store: Store,
    view: SheetView,
    plan: planning.RowPlan,
    result: PollResult,
) -> list[planning.RowWrite]:
    """Create the plan's tags and re-read what is about to be written; keep the writes whose row is as read."""
    sid, table = result.spreadsheet_id, view.table
    rng = parse_a1(settings.sheets.range)
    fresh: dict[str, SheetRow | None] = {}
    if plan.tags or plan.drop_tags:
        requests: list[dict[str, Any]] = []
        drops = sorted({*plan.drop_tags, *(d for op in plan.tags for d in op.drop)})
        requests += [
            {"deleteDeveloperMetadata": {"dataFilter": {"developerMetadataLookup": {"metadataId": mid}}}}
            for mid in drops
        ]
        requests += [
            {
                "createDeveloperMetadata": {
                    "developerMetadata": {
                        "metadataKey": planning.TAG_KEY,
                        "metadataValue": op.value,
                        "location": {
                            "dimensionRange": {
                                "sheetId": view.sheet_id,
                                "dimension": "ROWS",
                                "startIndex": op.row_number - 1,
                                "endIndex": op.row_number,
                            }
                        },
                        "visibility": "DOCUMENT",
                    }
                }
            }
            for op in plan.tags
        ]
        answer = client.batch_update_spreadsheet(sid, requests, response_ranges=[settings.sheets.range])
        after = view_of(answer.get("updatedSpreadsheet", {}), rng, table.tab)
        created = {
            int(r["createDeveloperMetadata"]["developerMetadata"]["metadataId"]): r["createDeveloperMetadata"][
                "developerMetadata"
            ]["metadataValue"]
            for r in answer.get("replies", [])
            if r and "createDeveloperMetadata" in r
        }
        by_tag = after.by_tag()
        for w in plan.writes:
            rows = by_tag.get(w.tag, [])
            # A tag created now counts only on the row it was created on (found by its metadata id).
            mine = [r for r in rows if any(t.metadata_id in created and t.value == w.tag for t in r.tags)]
            pick = mine or rows
            fresh[w.tag] = pick[0].row if pick else None
    elif plan.writes:
        filters = [
            {"developerMetadataLookup": {"metadataKey": planning.TAG_KEY, "metadataValue": w.tag}} for w in plan.writes
        ]
        for matched in client.batch_get_by_filter(sid, filters):
            value = matched["dataFilters"][0]["developerMetadataLookup"]["metadataValue"]
            vr = matched.get("valueRange", {})
            start = parse_a1(vr.get("range", "A1")).first_row
            cells = [cell_text(v) for v in (vr.get("values") or [[]])[0]]
            fresh[value] = _row_from(cells, table, start)
    keep: list[planning.RowWrite] = []
    dropped: list[tuple[planning.RowWrite, SheetRow | None]] = []
    for w in plan.writes:
        now_row = fresh.get(w.tag)
        if now_row is not None and planning.row_digest(now_row) == w.expect:
            keep.append(w)
        else:
            dropped.append((w, now_row))
    new_ids = {r.request_id for r in result.new}
    with store.write() as conn:
        for w, now_row in dropped:
            reason = (
                "row deleted before the write-back"
                if now_row is None
                else "row edited between the guardian's read and its write-back; left as is, re-read next poll"
            )
            result.skipped_writes.append((w.row_number, reason))
            if w.request_id in new_ids:
                # Recorded by this poll, never triggered: the person's edit wins, the next poll judges the row anew.
                ledger.set_fields(conn, w.request_id, status=ledger.SUPERSEDED, message=reason)
                result.new = [r for r in result.new if r.request_id != w.request_id]
            audit.append(
                conn,
                actor=audit.default_actor(),
                action="sheets.writeback.skipped",
                target=f"gsheets://{sid}/{table.tab}#row={w.row_number}",
                before={"expected": w.expect},
                after={"now": list(now_row.fingerprint()) if now_row else None, "planned": w.cells},
                outcome="skipped",
                context=audit.current_context(),
            )
        for w in keep:
            if w.request_id:
                # The tag is on the row the request came from: from now on it may be triggered.
                conn.execute(
                    ledger.sheets_requests.update()
                    .where(
                        ledger.sheets_requests.c.request_id == w.request_id,
                        ledger.sheets_requests.c.status != ledger.SUPERSEDED,
                    )
                    .values(tagged=True, updated_at=ledger.now_utc())
                )
    return keep


def _write_data(
    table: ControlTable, writes: list[planning.RowWrite], as_read: dict[int, SheetRow]
) -> list[dict[str, Any]]:
    """DataFilterValueRanges of one values.batchUpdateByDataFilter: missing guardian headers, then each row by tag.

    Only the cells that differ from the row as read are sent: a cell sent as null is skipped by the API.
    """
    data: list[dict[str, Any]] = []
    tab = quote_sheet(table.tab)
    for name in table.missing_written:
        col = table.column_of(name)
        data.append(
            {
                "dataFilter": {"a1Range": f"{tab}!{index_to_col(col)}{table.header_row}"},
                "majorDimension": "ROWS",
                "values": [[HEADER_TITLES[name]]],
            }
        )
    for w in writes:
        before = as_read.get(w.row_number)
        changed = {name: v for name, v in w.cells.items() if before is None or before.get(name) != v}
        if not changed:
            continue
        cols = {table.column_of(name): value for name, value in changed.items()}
        # The filter selects the whole row from column A; null cells are skipped, so only ours change.
        line: list[str | None] = [None] * max(cols)
        for col, value in cols.items():
            line[col - 1] = value
        data.append(
            {
                "dataFilter": {"developerMetadataLookup": {"metadataKey": planning.TAG_KEY, "metadataValue": w.tag}},
                "majorDimension": "ROWS",
                "values": [line],
            }
        )
    return data


def _preview(new: planning.NewRequest, sid: str, tab: str, at: datetime) -> ledger.Request:
    request_id = new.request_id
    return ledger.Request(
        request_id=request_id,
        request_key=new.key,
        base_key=new.base,
        generation=new.generation,
        spreadsheet_id=sid,
        tab=tab,
        row_number=new.row_number,
        target_dag=new.valid.target,
        dag_run_id=ledger.dag_run_id_of(request_id),
        conf={**new.valid.conf, "request_id": request_id},
        requested_by=new.valid.requested_by,
        status=ledger.ACCEPTED,
        message="queued (dry run)",
        rows=None,
        output_uri=None,
        executed_run_id=None,
        sheet_status=None,
        created_at=at,
        updated_at=at,
        acked_at=None,
        finished_at=None,
        notified_at=None,
    )


# -- Airflow ---------------------------------------------------------------------------------
def reconcile(settings: Settings, store: Store, sid: str, runs: RunSource | None, now: datetime) -> int:
    """Bring open requests up to date with their Airflow runs; returns how many changed."""
    cfg = settings.sheets
    with store.read() as conn:
        open_requests = [r for r in ledger.open_for_sheet(conn, sid) if r.status in ledger.OPEN]
    if not open_requests:
        return 0
    states: dict[str, str] | None = None
    dag_ids: set[str] | None = None
    if runs is not None:
        wanted: dict[str, list[str]] = {}
        for r in open_requests:
            wanted.setdefault(r.target_dag, []).append(r.dag_run_id)
        since = min(r.created_at for r in open_requests) - timedelta(minutes=5)
        try:
            states = runs.states(wanted, since)
            if any(r.handed_at is not None and r.dag_run_id not in states for r in open_requests):
                dag_ids = runs.dag_ids()
        except Exception as exc:  # the run source is another system: any failure of it must not stop the poll
            # Airflow (API or metadata DB) unreachable this poll: statuses wait, the sheet is still served.
            log.warning(
                "sheets: Airflow run states unavailable (%s: %s); statuses not refreshed this poll",
                type(exc).__name__,
                mask(str(exc)),
            )
            states = None
    changes = planning.reconcile(
        open_requests,
        states,
        dag_ids,
        allowed_targets=list(cfg.allowed_targets),
        max_attempts=cfg.max_trigger_attempts,
        run_timeout=timedelta(hours=cfg.run_timeout_hours),
        now=now,
    )
    if not changes:
        return 0
    by_id = {r.request_id: r for r in open_requests}
    with store.write() as conn:
        ledger.lock_sheet(conn, sid)
        for ch in changes:
            before = by_id[ch.request_id]
            fields = dict(ch.fields)
            if "message" in fields:
                fields["message"] = mask(fields["message"], 1900)
            conn.execute(
                ledger.sheets_requests.update()
                .where(
                    ledger.sheets_requests.c.request_id == ch.request_id,
                    ledger.sheets_requests.c.status == before.status,
                )
                .values(**fields, updated_at=ledger.now_utc())
            )
            if ch.audit:
                _audit_request(
                    conn,
                    sid,
                    before,
                    ch.audit,
                    {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in fields.items()},
                    "ok" if fields.get("status") == ledger.COMPLETED else "failed",
                    before={"status": before.status, "run_state": before.run_state},
                )
    return len(changes)


# -- with alerting -------------------------------------------------------------------------------
def run_poll(
    settings: Settings,
    store: Store,
    client_factory: Callable[[], SheetsClient],
    *,
    runs: RunSource | None = None,
    dry_run: bool = False,
) -> PollResult:
    """A poll with alerting: the first failure opens an alert (one message), recovery closes it."""
    source = source_of(settings) if settings.sheets.spreadsheet_id else "unconfigured"
    try:
        result = poll(settings, store, client_factory(), runs=runs, dry_run=dry_run)
    except GuardianError as exc:
        if not dry_run and settings.sheets.spreadsheet_id:
            _alert(settings, store, source, str(exc))
        raise
    if not dry_run:
        _alert(settings, store, source, None)
    return result


def _alert(settings: Settings, store: Store, source: str, reason: str | None) -> None:
    try:
        with store.write() as conn:
            changed = ledger.set_alert(conn, source, reason)
            if changed:
                audit.append(
                    conn,
                    actor=audit.default_actor(),
                    action="sheets.poll.alert" if reason else "sheets.poll.recovered",
                    target=f"gsheets://{source}",
                    before=None,
                    after={"reason": reason},
                    outcome="failed" if reason else "ok",
                    context=audit.current_context(),
                )
    except GuardianError:
        log.exception("sheets: could not record the poll alert state")
        return
    if not changed:
        return  # deduplicated: one message when the failure starts, one when it clears
    from guardian import notify

    subject = f"[guardian] Sheets poll {'failing' if reason else 'recovered'}: {source}"
    body = (
        f"The control-sheet poll of {source} fails: {reason}\n"
        "It is retried every poll; you get one more message when it recovers."
        if reason
        else f"The control-sheet poll of {source} works again."
    )
    try:
        if settings.sheets.alert_email and notify.email_configured(settings):
            notify.send_email(settings, settings.notify.email_to, subject, body)
        if notify.slack_configured(settings):
            notify.send_slack(settings, f"{subject}\n{body}")
    except GuardianError:
        log.exception("sheets: could not deliver the poll alert")
