"""One poll of the control sheet: read once, decide, record, write back once.

1. One ``values.get`` of the control range (formulas shown as formulas, so a formula is seen
   for what it is). Unchanged since the last poll and nothing in flight: stop (1 call).
2. Each `run` row is validated; accepted rows become ledger requests (exactly once, see
   :mod:`guardian.sheets.ledger`) inside one store transaction holding the sheet's lock.
3. Every status change of the poll goes back in ONE ``values.batchUpdate`` with RAW input.
   If the write-back happens more than ``recheck_after_seconds`` after the read, the rows
   about to be written are re-read first (one ``values.batchGet``) and a row a person changed
   meanwhile is left alone, with the reason recorded.
4. The requests to trigger are returned: the new ones plus any accepted earlier but not yet
   confirmed in Airflow (a crash between recording and triggering loses nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from guardian import audit
from guardian.errors import ConfigError, GuardianError, ValidationFailed
from guardian.sheets import ledger
from guardian.sheets.a1 import A1Range, index_to_col, quote_sheet
from guardian.sheets.a1 import parse as parse_a1
from guardian.sheets.control import (
    COMPLETED,
    FAILED,
    HEADER_TITLES,
    INVALID,
    QUEUED,
    RUN,
    RUNNING,
    ControlTable,
    SheetLayoutError,
    SheetRow,
    check_target_params,
    parse_table,
    validate_row,
    values_hash,
)

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient
    from guardian.store import Store

log = logging.getLogger(__name__)

_RANK = {QUEUED: 0, RUNNING: 1, COMPLETED: 2, FAILED: 2}
DEFERRED = "deferred"  # stored instead of a values hash: the next poll must not short-circuit


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
    deferred: int = 0
    written_rows: int = 0
    skipped_writes: list[tuple[int, str]] = field(default_factory=list)
    planned: dict[int, dict[str, str]] = field(default_factory=dict)
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
            "deferred": self.deferred,
            "written_rows": self.written_rows,
            "skipped_writes": [{"row": n, "reason": why} for n, why in self.skipped_writes],
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


def _queued_message(req: ledger.Request) -> str:
    return f"queued: {req.target_dag} run {req.dag_run_id}"


def _message_for(req: ledger.Request) -> str:
    if req.status == ledger.ACCEPTED:
        return _queued_message(req)
    if req.status == ledger.TRIGGERED:
        return f"running: {req.target_dag} run {req.dag_run_id}"
    return req.message


def poll(
    settings: Settings,
    store: Store,
    client: SheetsClient,
    *,
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

    read_started = clock()
    values = client.get_values(sid, cfg.range, render="FORMULA")
    read_done = time.monotonic()
    digest = values_hash(values)
    source = source_of(settings)

    with store.read() as conn:
        state = ledger.poll_state(conn, source)
        open_requests = ledger.open_for_sheet(conn, sid)
    if not dry_run and state is not None and state.values_hash == digest and not open_requests:
        with store.write() as conn:
            ledger.save_poll(conn, source, outcome="no_change")
        result.outcome = "no_change"
        result.calls = sum(client.calls.values()) - calls_before
        result.elapsed = time.monotonic() - started
        return result

    table = parse_table(values, rng, tab)
    if rng.end_col is not None and table.last_col > rng.end_col:
        missing = ", ".join(HEADER_TITLES[name] for name in table.missing_written)
        raise SheetLayoutError(
            f"GUARDIAN_SHEETS__RANGE={cfg.range!r} has no room for the guardian's columns ({missing}); "
            "add them to the header inside the range or widen the range"
        )
    result.rows = len(table.rows)
    now = clock()
    today = today or now.date()
    writes: dict[int, dict[str, str]] = {}
    planned_req: dict[int, ledger.Request] = {}
    rows_by_number = {row.number: row for row in table.rows}

    with store.read() if dry_run else store.write() as conn:
        if not dry_run:
            ledger.lock_sheet(conn, sid)
        run_ids = [
            r.get("run_id").strip() for r in table.rows if r.get("run_id").strip().startswith(ledger.RUN_ID_PREFIX)
        ]
        tracked = ledger.by_run_ids(conn, run_ids)
        seen: dict[str, int] = {}
        accepted = 0
        for row in table.rows:
            if row.status == RUN:
                try:
                    valid = validate_row(row, settings, today=today)
                    check_target_params(valid.target, {**valid.conf, "request_id": "0" * 16}, settings)
                except ValidationFailed as exc:
                    reason = str(exc)
                    result.invalid.append((row.number, reason))
                    writes[row.number] = {"status": INVALID, "message": reason, "updated_at": stamp(now)}
                    continue
                base = ledger.base_key(sid, tab, valid.params_key, row.get("run_id"))
                gen = ledger.generation(conn, base, read_started)
                key = ledger.request_key(base, gen)
                if key in seen:
                    reason = f"duplicate of row {seen[key]}: the same request; clear one of the two"
                    result.invalid.append((row.number, reason))
                    writes[row.number] = {"status": INVALID, "message": reason, "updated_at": stamp(now)}
                    continue
                seen[key] = row.number
                req = ledger.by_key(conn, key)
                if req is None:
                    if accepted >= cfg.max_requests_per_poll:
                        # Circuit breaker: the row stays `run` and is taken by a later poll.
                        result.deferred += 1
                        continue
                    accepted += 1
                    if dry_run:
                        req = _preview(key, base, gen, sid, tab, row, valid.target, valid.conf, valid.requested_by, now)
                    else:
                        req = ledger.insert(
                            conn,
                            key=key,
                            base=base,
                            gen=gen,
                            spreadsheet_id=sid,
                            tab=tab,
                            row_number=row.number,
                            target=valid.target,
                            conf=valid.conf,
                            requested_by=valid.requested_by,
                            at=now,
                        )
                        audit.append(
                            conn,
                            actor=audit.default_actor(),
                            action="sheets.request.accepted",
                            target=f"gsheets://{sid}/{tab}#row={row.number}",
                            before={"row": list(row.fingerprint())},
                            after={
                                "request_id": req.request_id,
                                "dag_run_id": req.dag_run_id,
                                "target": req.target_dag,
                                "conf": req.conf,
                            },
                            outcome="ok",
                            context=audit.current_context(),
                        )
                    result.new.append(req)
                elif req.status == ledger.SUPERSEDED and not dry_run:
                    # The row is back to exactly what was accepted before a concurrent edit: take it up again.
                    ledger.set_fields(
                        conn, req.request_id, status=ledger.ACCEPTED, message="queued", row_number=row.number
                    )
                    req = ledger.by_key(conn, key)
                    assert req is not None
                    result.new.append(req)
                if req.row_number != row.number and not dry_run:
                    ledger.set_fields(conn, req.request_id, row_number=row.number)
                writes[row.number] = {
                    "status": req.row_status,
                    "run_id": req.dag_run_id,
                    "message": _message_for(req),
                    "updated_at": stamp(now),
                }
                planned_req[row.number] = req
                continue
            req = tracked.get(row.get("run_id").strip())
            if req is None:
                continue
            shown = row.status
            if not dry_run:
                changes: dict[str, Any] = {}
                if req.acked_at is None:
                    changes["acked_at"] = now  # the row shows our status: the request is acknowledged
                if req.row_number != row.number:
                    changes["row_number"] = row.number
                if shown == req.row_status and req.sheet_status != req.status:
                    changes["sheet_status"] = req.status
                if changes:
                    ledger.set_fields(conn, req.request_id, **changes)
            desired = req.row_status
            if shown in (QUEUED, RUNNING) and desired in _RANK and _RANK[desired] > _RANK[shown]:
                writes[row.number] = {"status": desired, "message": _message_for(req), "updated_at": stamp(now)}
                planned_req[row.number] = req

        if not dry_run:
            on_sheet = {r.get("run_id").strip() for r in table.rows}
            for req in open_requests:
                if req.status in (ledger.COMPLETED, ledger.FAILED) and req.dag_run_id not in on_sheet:
                    # Its row was deleted: nothing left to converge, so it must not block no-change polls.
                    ledger.set_fields(conn, req.request_id, sheet_status=req.status)

    result.planned = writes
    if writes and not dry_run:
        writes = _recheck(settings, client, table, rows_by_number, writes, planned_req, read_done, result, store)
    if writes and not dry_run:
        data = _write_data(table, writes)
        client.batch_update_values(sid, data)
        result.written_rows = len(writes)
        with store.write() as conn:
            for number, req in planned_req.items():
                if number in writes:
                    ledger.set_fields(conn, req.request_id, acked_at=req.acked_at or clock(), sheet_status=req.status)
            after = values_hash(_apply(values, rng, table, writes))
            # Rows held back by the circuit breaker must be looked at again: no no-change shortcut.
            ledger.save_poll(conn, source, outcome="changed", values_hash=DEFERRED if result.deferred else after)
    elif not dry_run:
        with store.write() as conn:
            ledger.save_poll(
                conn,
                source,
                outcome="unchanged" if not result.skipped_writes else "changed",
                values_hash=DEFERRED if result.deferred else digest,
            )

    result.to_trigger = result.new if dry_run else ledger.pending_triggers(store, sid)
    result.calls = sum(client.calls.values()) - calls_before
    result.elapsed = time.monotonic() - started
    return result


def _preview(
    key: str,
    base: str,
    gen: int,
    sid: str,
    tab: str,
    row: SheetRow,
    target: str,
    conf: dict[str, Any],
    requested_by: str | None,
    at: datetime,
) -> ledger.Request:
    request_id = ledger.request_id_of(key)
    return ledger.Request(
        request_id=request_id,
        request_key=key,
        base_key=base,
        generation=gen,
        spreadsheet_id=sid,
        tab=tab,
        row_number=row.number,
        target_dag=target,
        dag_run_id=ledger.dag_run_id_of(request_id),
        conf={**conf, "request_id": request_id},
        requested_by=requested_by,
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


def _row_range(table: ControlTable, number: int) -> str:
    return f"{quote_sheet(table.tab)}!{index_to_col(table.first_col)}{number}:{index_to_col(table.last_col)}{number}"


def _recheck(
    settings: Settings,
    client: SheetsClient,
    table: ControlTable,
    rows_by_number: dict[int, SheetRow],
    writes: dict[int, dict[str, str]],
    planned_req: dict[int, ledger.Request],
    read_done: float,
    result: PollResult,
    store: Store,
) -> dict[int, dict[str, str]]:
    """Re-read the rows about to be written when the read is old; drop the rows a person changed."""
    if time.monotonic() - read_done <= settings.sheets.recheck_after_seconds:
        return writes
    numbers = sorted(writes)
    fresh = client.batch_get_values(result.spreadsheet_id, [_row_range(table, n) for n in numbers], render="FORMULA")
    keep: dict[int, dict[str, str]] = {}
    for number, rows in zip(numbers, fresh, strict=True):
        now_cells = rows[0] if rows else []
        before = rows_by_number[number]
        now_row = SheetRow(
            number=number,
            cells={
                name: (now_cells[col - table.first_col] if col - table.first_col < len(now_cells) else "")
                for name, col in table.columns.items()
            },
            raw=tuple(now_cells),
        )
        if now_row.fingerprint() == before.fingerprint():
            keep[number] = writes[number]
            continue
        reason = "row edited between the guardian's read and its write-back; left as is, re-read next poll"
        result.skipped_writes.append((number, reason))
        req = planned_req.get(number)
        with store.write() as conn:
            if req is not None and req in result.new and req.status == ledger.ACCEPTED:
                # Not triggered yet: the person's edit wins, the next poll judges the row as it now is.
                ledger.set_fields(conn, req.request_id, status=ledger.SUPERSEDED, message=reason)
                result.new.remove(req)
            audit.append(
                conn,
                actor=audit.default_actor(),
                action="sheets.writeback.skipped",
                target=f"gsheets://{result.spreadsheet_id}/{table.tab}#row={number}",
                before={"read": list(before.fingerprint())},
                after={"now": list(now_row.fingerprint()), "planned": writes[number]},
                outcome="skipped",
                context=audit.current_context(),
            )
    return keep


def _write_data(table: ControlTable, writes: dict[int, dict[str, str]]) -> list[tuple[str, list[list[str]]]]:
    """Ranges of one values.batchUpdate: missing guardian headers, then each changed cell group."""
    data: list[tuple[str, list[list[str]]]] = []
    tab = quote_sheet(table.tab)
    for name in table.missing_written:
        col = table.column_of(name)
        data.append((f"{tab}!{index_to_col(col)}{table.header_row}", [[HEADER_TITLES[name]]]))
    for number in sorted(writes):
        cells = sorted((table.column_of(name), value) for name, value in writes[number].items())
        # Adjacent cells go in one range: fewer ranges, same single call.
        group: list[tuple[int, str]] = []
        for col, value in [*cells, (-1, "")]:
            if group and (col != group[-1][0] + 1):
                start = group[0][0]
                end = group[-1][0]
                a1 = f"{tab}!{index_to_col(start)}{number}" + (f":{index_to_col(end)}{number}" if end > start else "")
                data.append((a1, [[v for _, v in group]]))
                group = []
            if col != -1:
                group.append((col, value))
    return data


def _apply(
    values: list[list[str]], rng: A1Range, table: ControlTable, writes: dict[int, dict[str, str]]
) -> list[list[str]]:
    """The values the range holds after our write-back (for the next poll's no-change check)."""
    out = [list(r) for r in values]

    def put(row: int, col: int, value: str) -> None:
        i, j = row - rng.first_row, col - rng.first_col
        while len(out) <= i:
            out.append([])
        while len(out[i]) <= j:
            out[i].append("")
        out[i][j] = value

    for name in table.missing_written:
        put(table.header_row, table.column_of(name), HEADER_TITLES[name])
    for number, cells in writes.items():
        for name, value in cells.items():
            put(number, table.column_of(name), value)
    return out


def run_poll(
    settings: Settings,
    store: Store,
    client_factory: Callable[[], SheetsClient],
    *,
    dry_run: bool = False,
) -> PollResult:
    """A poll with alerting: the first failure opens an alert (one message), recovery closes it."""
    source = source_of(settings) if settings.sheets.spreadsheet_id else "unconfigured"
    try:
        result = poll(settings, store, client_factory(), dry_run=dry_run)
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
