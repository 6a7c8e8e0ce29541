"""Completion: the target run's final step writes `completed` or `failed` back to the request's row.

The ledger is updated first (the source of truth), then the row: found by the request's
developer-metadata tag (rows may have been inserted, sorted or deleted since the poll), read and
written by data filter, only if it still shows one of the guardian's statuses for this run. If the
sheet cannot be written now, the next poll converges the row from the ledger. The requester gets
one email when the address is in GUARDIAN_SHEETS__REQUESTER_EMAIL_DOMAINS and email is configured.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from guardian import audit
from guardian.errors import GuardianError, ValidationFailed
from guardian.sheets import ledger
from guardian.sheets.a1 import parse as parse_a1
from guardian.sheets.client import cell_text, mask
from guardian.sheets.control import COMPLETED, FAILED, GUARDIAN_STATUSES, parse_table
from guardian.sheets.plan import TAG_KEY
from guardian.sheets.poll import stamp

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.sheets.client import SheetsClient
    from guardian.store import Store

log = logging.getLogger(__name__)


def output_link(uri: str | None) -> str | None:
    """A link a person can open: gs:// objects become Cloud console links; other URIs stay as they are."""
    if not uri:
        return None
    if uri.startswith("gs://"):
        return "https://console.cloud.google.com/storage/browser/" + uri[5:]
    return uri


def completion_message(ok: bool, rows: int | None, output_uri: str | None, error: str | None) -> str:
    """The Message cell of a finished request."""
    if ok:
        parts = [f"{rows:,} rows" if rows is not None else "done"]
        link = output_link(output_uri)
        if link:
            parts.append(link)
        return " - ".join(parts)
    reason = (error or "").strip().splitlines()[0] if (error or "").strip() else "the run failed"
    # The sheet is shared with business users: no tokens, addresses or internal URLs from a traceback.
    return f"failed: {mask(reason, 400)}"


def report_run(
    settings: Settings,
    *,
    request_id: str,
    dag_run_id: str,
    ok: bool,
    rows: int | None,
    output_uri: str | None,
    error: str | None,
    client: SheetsClient | None = None,
) -> None:
    """Record the outcome of a request's run, write it to its row, and tell the requester.

    Called by the last task (trigger_rule ALL_DONE) of the target DAG when its conf has a
    request_id. Idempotent: a retried call writes the same values and sends no second email.
    """
    from guardian.store import get_store

    store = get_store(settings)
    req = ledger.get(store, request_id)
    if req is None:
        raise ValidationFailed(
            f"request_id {request_id!r}: not in the sheets ledger; run `guardian sheets requests` to list them"
        )
    status = COMPLETED if ok else FAILED
    message = completion_message(ok, rows, output_uri, error)
    now = ledger.now_utc()
    with store.write() as conn:
        ledger.set_fields(
            conn,
            request_id,
            status=status,
            message=message,
            rows=rows,
            output_uri=output_uri,
            executed_run_id=dag_run_id,
            finished_at=req.finished_at or now,
        )
        if req.status != status:
            audit.append(
                conn,
                actor=audit.default_actor(),
                action=f"sheets.request.{status}",
                target=f"gsheets://{req.spreadsheet_id}/{req.tab}#row={req.row_number}",
                before={"status": req.status},
                after={"status": status, "rows": rows, "output_uri": output_uri, "dag_run_id": dag_run_id},
                outcome="ok" if ok else "failed",
                context=audit.current_context(),
            )
    try:
        if client is None:
            from guardian.sheets.client import SheetsClient

            client = SheetsClient.from_settings(settings)
        outcome = write_status(settings, client, req, status=status, message=message, at=stamp(now))
    except GuardianError as exc:
        # The ledger holds the outcome; the next poll writes it to the row.
        log.warning("sheets: could not write request %s to its row now (%s); the next poll will", request_id, exc)
        outcome = None
    if outcome is not None:
        # Written, or nothing left to write to (row gone, or `run` typed again): settled either way.
        with store.write() as conn:
            ledger.set_fields(conn, request_id, sheet_status=status, acked_at=req.acked_at or now)
            if outcome != WRITTEN:
                audit.append(
                    conn,
                    actor=audit.default_actor(),
                    action="sheets.writeback.skipped",
                    target=f"gsheets://{req.spreadsheet_id}/{req.tab}#run={req.dag_run_id}",
                    before=None,
                    after={"status": status, "reason": outcome},
                    outcome="skipped",
                    context=audit.current_context(),
                )
    _notify(settings, store, req, status, message)


WRITTEN, ROW_GONE, RETYPED = "written", "row gone", "row taken over"


def write_status(
    settings: Settings, client: SheetsClient, req: ledger.Request, *, status: str, message: str, at: str
) -> str:
    """Write status/message/updated-at to the request's row, found by its tag (one read, one write).

    Returns WRITTEN; ROW_GONE when no row carries the tag any more; RETYPED when the row no longer
    shows a guardian status for this run (a person typed `run` again or wrote their own status):
    the person's cell wins, the outcome stays in the ledger.
    """
    rng = parse_a1(settings.sheets.range)
    if rng.sheet != req.tab or settings.sheets.spreadsheet_id != req.spreadsheet_id:
        rng = parse_a1(f"{req.tab}!A1:Z")
    header = client.get_values(req.spreadsheet_id, _header_range(rng), render="FORMULA")
    table = parse_table(header, rng, req.tab)
    lookup = {"developerMetadataLookup": {"metadataKey": TAG_KEY, "metadataValue": req.request_id}}
    matched = client.batch_get_by_filter(req.spreadsheet_id, [lookup])
    if not matched:
        log.warning("sheets: no row carries request %s any more; status not written", req.request_id)
        return ROW_GONE
    cells = [cell_text(v) for v in (matched[0].get("valueRange", {}).get("values") or [[]])[0]]

    def cell(name: str) -> str:
        col = table.columns.get(name)
        return cells[col - 1].strip() if col and col - 1 < len(cells) else ""

    if cell("status").lower() not in GUARDIAN_STATUSES or cell("run_id") not in ("", req.dag_run_id):
        log.info("sheets: the row of %s no longer shows its status; %s not written over it", req.request_id, status)
        return RETYPED
    cols = {table.column_of(n): v for n, v in (("status", status), ("message", message), ("updated_at", at))}
    line: list[str | None] = [None] * max(cols)
    for col, value in cols.items():
        line[col - 1] = value
    client.batch_update_by_filter(
        req.spreadsheet_id, [{"dataFilter": lookup, "majorDimension": "ROWS", "values": [line]}]
    )
    return WRITTEN


def _header_range(rng: object) -> str:
    from guardian.sheets.a1 import A1Range
    from guardian.sheets.control import HEADER_SEARCH_ROWS

    assert isinstance(rng, A1Range)
    return A1Range(
        rng.sheet, rng.start_col, rng.first_row, rng.end_col, rng.first_row + HEADER_SEARCH_ROWS - 1
    ).format()


def _notify(settings: Settings, store: Store, req: ledger.Request, status: str, message: str) -> None:
    from guardian import notify

    if not req.requested_by or req.notified_at is not None or not notify.email_configured(settings):
        return
    domain = req.requested_by.rsplit("@", 1)[-1].lower()
    if domain not in {d.lower().lstrip("@") for d in settings.sheets.requester_email_domains}:
        # Anyone can type any address into a shared sheet: mail goes only to the organisation's domains.
        log.info("sheets: %s is not in GUARDIAN_SHEETS__REQUESTER_EMAIL_DOMAINS; not emailed", domain)
        return
    subject = f"[guardian] Your sheet request {req.request_id}: {status}"
    body = (
        f"Your request from row {req.row_number} of the control sheet ({req.target_dag}, "
        f"{req.conf.get('start_date')} to {req.conf.get('end_date')}, {', '.join(req.conf.get('countries', []))}) "
        f"is {status}.\n\n{message}\n\nRun: {req.dag_run_id}"
    )
    try:
        notify.send_email(settings, [req.requested_by], subject, body)
    except GuardianError:
        log.exception("sheets: could not email %s", req.requested_by)
        return
    with store.write() as conn:
        ledger.set_fields(conn, req.request_id, notified_at=ledger.now_utc())
