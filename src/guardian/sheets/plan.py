"""Pure planning of one poll: sheet as read + ledger facts -> what to record, tag, write and trigger.

No I/O here (tested without a sheet, a database or Airflow); :mod:`guardian.sheets.poll` gathers
the inputs and carries the plan out. Two steps:

* :func:`reconcile`: open requests + the state of their Airflow runs -> ledger changes
  (triggered, completed, failed, timed out, vanished, a trigger that keeps failing).
* :func:`plan_rows`: the rows as read (values and each row's developer-metadata tags) + ledger
  facts -> new requests, tags to create, rows to write (addressed by tag, never by row number).

Row identity: a row that holds a request carries a row-located developer metadata entry
``guardian.request = <request id>``; rows the guardian writes for another reason (invalid,
waiting) carry ``guardian.request = row-<digest>``. When a row carries several, the newest
(highest metadata id) speaks for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from guardian.sheets import ledger
from guardian.sheets.control import (
    ASKING_STATUSES,
    GUARDIAN_STATUSES,
    INVALID,
    WAITING,
    SheetRow,
    ValidRequest,
)

TAG_KEY = "guardian.request"
ROW_TAG_PREFIX = "row-"
PERSON_FIELDS = ("country", "brand", "start_date", "end_date", "target", "requested_by")
ASKING = ASKING_STATUSES  # a row in one of these statuses asks for a run


def person_digest(row: SheetRow) -> str:
    """Digest of the cells a person types to describe the work (not Status, not the guardian's columns)."""
    payload = json.dumps([row.get(name).strip() for name in PERSON_FIELDS], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def row_digest(row: SheetRow) -> str:
    """Digest of everything the guardian's decision about a row depends on, Status and Run ID included."""
    payload = json.dumps(list(row.fingerprint()), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def run_link(ui_base_url: str, dag_id: str, run_id: str) -> str:
    """The Airflow UI page of one run."""
    return f"{ui_base_url.rstrip('/')}/dags/{dag_id}/runs/{run_id}"


@dataclass(frozen=True)
class Tag:
    """One guardian developer-metadata entry on a row."""

    metadata_id: int
    value: str


@dataclass(frozen=True)
class ReadRow:
    """A data row as read, with its guardian tags."""

    row: SheetRow
    tags: tuple[Tag, ...] = ()

    @property
    def tag(self) -> Tag | None:
        """The tag that speaks for the row (the newest)."""
        return max(self.tags, key=lambda t: t.metadata_id) if self.tags else None


@dataclass(frozen=True)
class Candidate:
    """A row asking for a run, validated: the request it describes, or why it cannot be one."""

    row: ReadRow
    valid: ValidRequest | None
    reason: str | None
    base: str | None


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger knows that the plan needs (read under the sheet's lock)."""

    requests: dict[str, ledger.Request]  # by request id: every request a tag names, and the claimable ones
    claimable: dict[str, ledger.Request]  # by base key (see ledger.claimable)
    generations: dict[str, int]  # by base key
    today_total: int = 0
    today_by_requester: dict[str, int] = field(default_factory=dict)
    by_run_id: dict[str, ledger.Request] = field(default_factory=dict)  # untagged requests of older versions


@dataclass(frozen=True)
class Limits:
    """Caps on new requests."""

    per_poll: int
    per_day: int
    per_requester_per_day: int


@dataclass(frozen=True)
class NewRequest:
    """A request to record: its key parts and the row it came from."""

    row_number: int
    key: str
    base: str
    generation: int
    valid: ValidRequest
    person: str

    @property
    def request_id(self) -> str:
        """The request id its key gives."""
        return ledger.request_id_of(self.key)


@dataclass(frozen=True)
class TagOp:
    """Tag a row (by its row number as read) and drop the guardian tags it had."""

    row_number: int
    value: str
    drop: tuple[int, ...] = ()


@dataclass(frozen=True)
class RowWrite:
    """Cells to write on the row tagged ``tag`` (which must still look as read: ``expect``)."""

    tag: str
    row_number: int
    cells: dict[str, str]
    expect: str  # row_digest as read
    request_id: str | None = None
    ledger_status: str | None = None  # the request's status the row will show


@dataclass
class RowPlan:
    """What one poll intends to do on the sheet."""

    new: list[NewRequest] = field(default_factory=list)
    claimed: dict[int, str] = field(default_factory=dict)  # row number -> existing request id it asks for
    tags: list[TagOp] = field(default_factory=list)
    drop_tags: list[int] = field(default_factory=list)  # metadata ids of stray guardian tags
    writes: list[RowWrite] = field(default_factory=list)
    invalid: list[tuple[int, str]] = field(default_factory=list)
    waiting: list[tuple[int, str]] = field(default_factory=list)
    deferred: int = 0
    gone: list[str] = field(default_factory=list)  # requests whose row no longer exists
    abandoned: list[str] = field(default_factory=list)  # untagged requests no row asks for any more
    withdrawn: list[str] = field(default_factory=list)  # tagged, never shown on their row, row changed or gone
    seen: list[str] = field(default_factory=list)  # requests whose row shows their current status
    shown: list[str] = field(default_factory=list)  # not yet acknowledged, but their row shows their run id

    @property
    def touches_sheet(self) -> bool:
        """True when the plan writes or tags anything."""
        return bool(self.writes or self.tags or self.drop_tags)


def needs_recheck(write: RowWrite, as_read: SheetRow | None) -> bool:
    """True when a write must wait for a re-read of its row: it changes Status or Run ID.

    Status is the one cell both a person and the guardian write, and Run ID says which request a row
    holds; the guardian's other cells (Message, Updated at) are its own, found by the row's tag, so
    writing them over a row a person has just edited overwrites nothing of theirs.
    """
    if as_read is None or write.request_id is None:
        return True
    return as_read.get("status") != write.cells["status"] or as_read.get("run_id") != write.cells["run_id"]


def message_for(req: ledger.Request, ui_base_url: str) -> str:
    """The Message cell of a request's row."""
    link = run_link(ui_base_url, req.target_dag, req.dag_run_id)
    if req.status == ledger.ACCEPTED:
        why = f" (attempt {req.attempts + 1}: {req.last_error})" if req.attempts and req.last_error else ""
        return f"queued: waiting for Airflow to start {req.target_dag}{why}"
    if req.status == ledger.TRIGGERED:
        return f"{req.row_status}: {req.target_dag} - {link}"
    if req.status == ledger.FAILED and link not in req.message:
        return f"{req.message} - {link}"
    return req.message


def cells_for(req: ledger.Request, ui_base_url: str, stamp: str) -> dict[str, str]:
    """The guardian's cells of a request's row."""
    return {
        "status": req.row_status,
        "run_id": req.dag_run_id,
        "message": message_for(req, ui_base_url),
        "updated_at": stamp,
    }


def _shows(row: SheetRow, cells: dict[str, str]) -> bool:
    return all(row.get(name) == cells[name] for name in ("status", "run_id", "message"))


def row_tag_value(spreadsheet_id: str, tab: str, row: SheetRow, at: datetime) -> str:
    """A tag for a row the guardian writes without a request (invalid, waiting)."""
    payload = json.dumps([spreadsheet_id, tab, row.number, row_digest(row), at.isoformat()])
    return ROW_TAG_PREFIX + hashlib.sha256(payload.encode()).hexdigest()[:20]


def plan_rows(
    rows: list[ReadRow],
    candidates: dict[int, Candidate],
    facts: LedgerFacts,
    *,
    spreadsheet_id: str,
    tab: str,
    limits: Limits,
    now: datetime,
    stamp: str,
    ui_base_url: str,
    open_requests: list[ledger.Request],
) -> RowPlan:
    """Decide every row (see the module docstring). ``candidates`` holds each asking row, validated."""
    plan = RowPlan()
    owner: dict[str, int] = {}  # request id -> the row number that speaks for it
    per_requester = dict(facts.today_by_requester)
    total = facts.today_total
    bases_taken: dict[str, int] = {}

    # Which row speaks for each request: a tag seen on several rows (a tag that landed on the wrong row)
    # stays with the row whose person cells match the request; the others lose it.
    trusted: dict[int, list[Tag]] = {}
    for read in rows:
        for t in read.tags:
            req = facts.requests.get(t.value)
            if req is None:
                continue
            if not req.tagged and req.fingerprint != person_digest(read.row):
                # Never confirmed on its row and the row is not the one it came from: a tag that landed
                # on the wrong row (rows moved between read and tag). It speaks for nothing.
                plan.drop_tags.append(t.metadata_id)
                continue
            trusted.setdefault(read.row.number, []).append(t)
            if t.value in owner:
                keep = owner[t.value]
                if person_digest(read.row) == req.fingerprint and keep != read.row.number:
                    plan.drop_tags.extend(
                        x.metadata_id for r in rows if r.row.number == keep for x in r.tags if x.value == t.value
                    )
                    owner[t.value] = read.row.number
                else:
                    plan.drop_tags.append(t.metadata_id)
            else:
                owner[t.value] = read.row.number

    for read in rows:
        row = read.row
        mine = trusted.get(row.number, [])
        tag = max(mine, key=lambda t: t.metadata_id) if mine else None
        req = facts.requests.get(tag.value) if tag is not None else None
        if req is not None and owner.get(req.request_id) != row.number:
            req = None  # this row lost the request's tag (see above)
        if req is not None and req.status == ledger.SUPERSEDED:
            req = None
        if row.status in ASKING:
            cand = candidates.get(row.number)
            if req is not None and req.acked_at is None and req.status in ledger.OPEN:
                if row.get("run_id").strip() == req.dag_run_id:
                    # Its status did reach the row (the poll stopped before recording that), and a person has
                    # typed `run` again since: the request stands, the row asks for a new one (below).
                    plan.shown.append(req.request_id)
                elif _unchanged(req, row, cand) or not _withdrawable(req):
                    # Tagged, but its status never reached the row (the poll stopped between tag and write):
                    # this typing's request, found again; its status is written now.
                    cells = cells_for(req, ui_base_url, stamp)
                    plan.claimed[row.number] = req.request_id
                    plan.writes.append(
                        RowWrite(req.request_id, row.number, cells, row_digest(row), req.request_id, req.status)
                    )
                    continue
                else:
                    # The row changed before the request's status ever reached it, and the request was never
                    # handed to Airflow: the person's edit wins. The request is withdrawn (never triggered)
                    # and the row, as it is now, is judged anew below: one typing, one request.
                    plan.withdrawn.append(req.request_id)
                    owner.pop(req.request_id, None)
            if cand is None:
                continue
            drop = tuple(t.metadata_id for t in read.tags)
            if cand.valid is None or cand.base is None:
                reason = cand.reason or "not a valid request"
                plan.invalid.append((row.number, reason))
                value = row_tag_value(spreadsheet_id, tab, row, now)
                plan.tags.append(TagOp(row.number, value, drop))
                cells = {"status": INVALID, "run_id": "", "message": reason, "updated_at": stamp}
                plan.writes.append(RowWrite(value, row.number, cells, row_digest(row)))
                continue
            if cand.base in bases_taken:
                reason = f"duplicate of row {bases_taken[cand.base]}: the same request; clear one of the two"
                plan.invalid.append((row.number, reason))
                value = row_tag_value(spreadsheet_id, tab, row, now)
                plan.tags.append(TagOp(row.number, value, drop))
                cells = {"status": INVALID, "run_id": "", "message": reason, "updated_at": stamp}
                plan.writes.append(RowWrite(value, row.number, cells, row_digest(row)))
                continue
            bases_taken[cand.base] = row.number
            claim = facts.claimable.get(cand.base)
            if claim is not None and claim.request_id != (req.request_id if req else None):
                # Recorded by an earlier (crashed) or overlapping poll: the same request, not a new one.
                plan.claimed[row.number] = claim.request_id
                plan.tags.append(TagOp(row.number, claim.request_id, drop))
                plan.writes.append(
                    RowWrite(
                        claim.request_id,
                        row.number,
                        cells_for(claim, ui_base_url, stamp),
                        row_digest(row),
                        claim.request_id,
                        claim.status,
                    )
                )
                continue
            who = (cand.valid.requested_by or "").lower()
            wait = None
            if total >= limits.per_day:
                wait = f"waiting: the sheet's limit of {limits.per_day} new requests a day is reached; starts tomorrow"
            elif who and per_requester.get(who, 0) >= limits.per_requester_per_day:
                wait = (
                    f"waiting: {limits.per_requester_per_day} requests today from this requester is the limit; "
                    "starts tomorrow"
                )
            if wait is not None:
                plan.waiting.append((row.number, wait))
                if row.status == WAITING and row.get("message") == wait:
                    continue  # already says so
                value = row_tag_value(spreadsheet_id, tab, row, now)
                plan.tags.append(TagOp(row.number, value, drop))
                cells = {"status": WAITING, "run_id": "", "message": wait, "updated_at": stamp}
                plan.writes.append(RowWrite(value, row.number, cells, row_digest(row)))
                continue
            if len(plan.new) >= limits.per_poll:
                plan.deferred += 1  # circuit breaker: the row stays as it is and is taken by a later poll
                continue
            gen = facts.generations.get(cand.base, 0)
            key = ledger.request_key(cand.base, gen)
            new = NewRequest(row.number, key, cand.base, gen, cand.valid, person_digest(row))
            plan.new.append(new)
            total += 1
            if who:
                per_requester[who] = per_requester.get(who, 0) + 1
            plan.tags.append(TagOp(row.number, new.request_id, drop))
            cells = {
                "status": "queued",
                "run_id": ledger.dag_run_id_of(new.request_id),
                "message": f"queued: waiting for Airflow to start {cand.valid.target}",
                "updated_at": stamp,
            }
            plan.writes.append(
                RowWrite(new.request_id, row.number, cells, row_digest(row), new.request_id, ledger.ACCEPTED)
            )
            continue

        if req is None and not read.tags:
            legacy = facts.by_run_id.get(row.get("run_id").strip())
            if legacy is not None and row.status in GUARDIAN_STATUSES:
                # Recorded before rows had identity: adopt the row that shows its run id.
                owner[legacy.request_id] = row.number
                plan.tags.append(TagOp(row.number, legacy.request_id))
                cells = cells_for(legacy, ui_base_url, stamp)
                if not _shows(row, cells):
                    plan.writes.append(
                        RowWrite(
                            legacy.request_id, row.number, cells, row_digest(row), legacy.request_id, legacy.status
                        )
                    )
            continue
        if req is None:
            continue
        if req.acked_at is None and req.status in ledger.OPEN and row.get("run_id").strip() == req.dag_run_id:
            plan.shown.append(req.request_id)  # its status reached the row; the poll stopped before noting it
            req = replace(req, acked_at=now)
        if row.status not in GUARDIAN_STATUSES:
            # A person wrote something of their own in Status: theirs, never overwritten. A request whose
            # status never reached this row is dropped: the person took the row back first.
            if req.status == ledger.ACCEPTED and not req.tagged:
                owner.pop(req.request_id, None)
            elif req.acked_at is None and _withdrawable(req):
                plan.withdrawn.append(req.request_id)
                owner.pop(req.request_id, None)
            continue
        cells = cells_for(req, ui_base_url, stamp)
        if _shows(row, cells):
            plan.seen.append(req.request_id)
            continue
        plan.writes.append(RowWrite(req.request_id, row.number, cells, row_digest(row), req.request_id, req.status))

    on_sheet = set(owner) | set(plan.claimed.values())
    for req in open_requests:
        if req.request_id in on_sheet or req.request_id in plan.withdrawn:
            continue
        if not req.tagged:
            if req.status == ledger.ACCEPTED and req.created_at < now:
                plan.abandoned.append(req.request_id)
            continue
        if req.acked_at is None and _withdrawable(req) and req.updated_at < now:
            # Its row went before its status reached it (and it was tagged before this poll's read began,
            # so the read would have seen the tag): never handed to Airflow, so it is withdrawn.
            plan.withdrawn.append(req.request_id)
            continue
        if req.sheet_status != "gone":
            plan.gone.append(req.request_id)
    return plan


def _withdrawable(req: ledger.Request) -> bool:
    """A request no run can exist for yet: accepted, never handed to the trigger step."""
    return req.status == ledger.ACCEPTED and req.handed_at is None


def _unchanged(req: ledger.Request, row: SheetRow, cand: Candidate | None) -> bool:
    """The row still asks for exactly what the request was recorded from (person cells and Run ID as read)."""
    return (
        cand is not None
        and cand.base is not None
        and cand.base == req.base_key
        and req.fingerprint == person_digest(row)
    )


# -- Airflow ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One ledger change decided from Airflow's side."""

    request_id: str
    fields: dict[str, Any]
    audit: str | None = None  # audit action when the request reaches a final status


def reconcile(
    open_requests: list[ledger.Request],
    runs: dict[str, str] | None,
    dag_ids: set[str] | None,
    *,
    allowed_targets: list[str],
    max_attempts: int,
    run_timeout: timedelta,
    now: datetime,
) -> list[Change]:
    """Open requests + the state of their runs (run id -> Airflow state; None: unknown) -> changes.

    ``runs`` None means Airflow could not be asked this poll: only the allow-list is re-checked.
    """
    changes: list[Change] = []
    for req in open_requests:
        if req.status not in ledger.OPEN:
            continue
        if req.status == ledger.ACCEPTED and req.target_dag not in allowed_targets:
            msg = f"failed: {req.target_dag} may no longer be started from the sheet (GUARDIAN_SHEETS__ALLOWED_TARGETS)"
            changes.append(Change(req.request_id, _final(ledger.FAILED, msg, now), "sheets.request.failed"))
            continue
        if runs is None:
            continue
        state = runs.get(req.dag_run_id)
        seen: dict[str, Any] = {}
        if req.status == ledger.ACCEPTED:
            if state is not None:
                # Its run exists: confirmed (whatever happened to the other requests' triggers).
                seen = {"status": ledger.TRIGGERED, "run_state": state}
                req = _with(req, status=ledger.TRIGGERED, run_state=state if state == "queued" else None)
            elif req.handed_at is not None:
                if dag_ids is not None and req.target_dag not in dag_ids:
                    why = f"Airflow has no DAG {req.target_dag}"
                else:
                    why = f"Airflow did not start {req.target_dag} (see the trigger task's log)"
                attempts = req.attempts + 1
                if attempts >= max_attempts:
                    msg = f"failed: could not start {req.target_dag} after {attempts} attempts: {why}"
                    fields = _final(ledger.FAILED, msg, now) | {"attempts": attempts, "last_error": why}
                    changes.append(Change(req.request_id, fields, "sheets.request.failed"))
                else:
                    changes.append(Change(req.request_id, {"attempts": attempts, "last_error": why, "handed_at": None}))
                continue
            else:
                continue
        # triggered
        final: Change | None = None
        if state is None:
            msg = "failed: the run is gone from Airflow (deleted?); type run again to ask anew"
            final = Change(req.request_id, _final(ledger.FAILED, msg, now), "sheets.request.failed")
        elif state == "success":
            final = Change(
                req.request_id,
                _final(ledger.COMPLETED, "completed", now) | {"run_state": state},
                "sheets.request.completed",
            )
        elif state == "failed":
            msg = "failed: the run failed in Airflow"
            final = Change(
                req.request_id, _final(ledger.FAILED, msg, now) | {"run_state": state}, "sheets.request.failed"
            )
        elif now - req.created_at > run_timeout:
            hours = run_timeout.total_seconds() / 3600
            msg = f"failed: timed out after {hours:g} h still {state} (GUARDIAN_SHEETS__RUN_TIMEOUT_HOURS)"
            final = Change(
                req.request_id, _final(ledger.FAILED, msg, now) | {"run_state": state}, "sheets.request.failed"
            )
        elif state != req.run_state:
            final = Change(req.request_id, {**seen, "run_state": state})
        if final is not None:
            changes.append(Change(final.request_id, {**seen, **final.fields}, final.audit))
        elif seen:
            changes.append(Change(req.request_id, seen))
    return changes


def _final(status: str, message: str, now: datetime) -> dict[str, Any]:
    return {"status": status, "message": message, "finished_at": now}


def _with(req: ledger.Request, **fields: Any) -> ledger.Request:
    return replace(req, **fields)
