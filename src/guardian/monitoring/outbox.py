"""The alert outbox: an alert transition is stored with one delivery row per channel, in the same
transaction that opens or clears the alert, and delivered from there.

So a delivery that fails (SMTP down, Slack 5xx) is not lost with the process: every health
check drains the outbox, retrying each row with exponential backoff until it is delivered or
``GUARDIAN_NOTIFY__OUTBOX_EXPIRY_HOURS`` pass (then it is marked expired and shown as such).
A row is claimed before sending (``claimed_until``), so two health checks running at once do
not both send it. Delivery is at least once: a process that dies after the server accepted
the message and before the row is marked delivered sends it again after the claim lapses.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from guardian.logging import mask_text
from guardian.monitoring.messages import Delivery, Message, NotifyTransport, Transport, record_deliveries
from guardian.monitoring.tables import alert_outbox

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store

log = logging.getLogger(__name__)
CLAIM = timedelta(minutes=5)


def channels(settings: Settings, *, slack: bool, transport: Transport | None = None) -> list[str]:
    """The channels an alert goes to: email when configured, Slack when wanted and configured."""
    transport = transport or NotifyTransport()
    out = []
    if transport.email_configured(settings):
        out.append("email")
    if slack and transport.slack_configured(settings):
        out.append("slack")
    return out


def enqueue(
    conn: Connection,
    settings: Settings,
    *,
    alert_key: str,
    started: bool,
    message: Message,
    slack: bool,
    now: datetime,
    transport: Transport | None = None,
) -> int:
    """Store one delivery row per channel inside the caller's transaction; return how many."""
    rows = [
        {
            "alert_key": alert_key[:300],
            "transition": "start" if started else "clear",
            "channel": channel,
            "kind": message.kind,
            "dag_id": message.dag_id,
            "subject": mask_text(message.subject)[:500],
            "message": asdict(message),
            "created_at": now,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for channel in channels(settings, slack=slack, transport=transport)
    ]
    if rows:
        conn.execute(insert(alert_outbox), rows)
    return len(rows)


def backoff(attempts: int, base: float, cap: float) -> timedelta:
    """Delay before the next try after ``attempts`` failures: base * 2^(attempts-1), at most cap."""
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def drain(
    settings: Settings,
    store: Store,
    now: datetime | None = None,
    limit: int = 100,
    *,
    transport: Transport | None = None,
) -> list[Delivery]:
    """Try every due delivery once; mark delivered, reschedule with backoff, or expire. Never raises."""
    transport = transport or NotifyTransport()
    cfg = settings.notify
    now = now or datetime.now(UTC)
    expiry = timedelta(hours=cfg.outbox_expiry_hours)
    with store.read() as conn:
        due = conn.execute(
            select(alert_outbox)
            .where(
                alert_outbox.c.delivered_at.is_(None),
                alert_outbox.c.expired_at.is_(None),
                alert_outbox.c.next_attempt_at <= now,
                or_(alert_outbox.c.claimed_until.is_(None), alert_outbox.c.claimed_until < now),
            )
            .order_by(alert_outbox.c.id)
            .limit(limit)
        ).all()
    results: list[Delivery] = []
    for row in due:
        with store.write() as conn:
            claimed = conn.execute(
                update(alert_outbox)
                .where(
                    alert_outbox.c.id == row.id,
                    alert_outbox.c.delivered_at.is_(None),
                    or_(alert_outbox.c.claimed_until.is_(None), alert_outbox.c.claimed_until < now),
                )
                .values(claimed_until=now + CLAIM)
            ).rowcount
        if not claimed:
            continue  # another health check has it
        message = Message(**row.message)
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        try:
            # One try per drain: the outbox's backoff across health checks is the retry.
            if row.channel == "email":
                transport.send_email(settings, message, attempts=1)
            else:
                transport.send_slack(settings, message, attempts=1)
        except Exception as exc:
            error = mask_text(str(exc))[:500]
            attempts = row.attempts + 1
            expired = now - created >= expiry
            with store.write() as conn:
                conn.execute(
                    update(alert_outbox)
                    .where(alert_outbox.c.id == row.id)
                    .values(
                        attempts=attempts,
                        last_error=error,
                        claimed_until=None,
                        next_attempt_at=now + backoff(attempts, cfg.outbox_backoff_seconds, cfg.outbox_backoff_max),
                        expired_at=now if expired else None,
                    )
                )
            log.error(
                "guardian: %s alert %r not delivered (try %d%s): %s",
                row.channel,
                message.subject,
                attempts,
                ", expired" if expired else ", will retry",
                error,
            )
            results.append(Delivery(row.channel, False, error))
        else:
            with store.write() as conn:
                conn.execute(
                    update(alert_outbox)
                    .where(alert_outbox.c.id == row.id)
                    .values(attempts=row.attempts + 1, delivered_at=now, claimed_until=None, last_error=None)
                )
            results.append(Delivery(row.channel, True))
        record_deliveries(store, message, results[-1:])
    return results


def undelivered(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """Deliveries not yet made (pending or expired), oldest first: what the UI and /metrics show."""
    with store.read() as conn:
        rows = conn.execute(
            select(
                alert_outbox.c.id,
                alert_outbox.c.alert_key,
                alert_outbox.c.transition,
                alert_outbox.c.channel,
                alert_outbox.c.subject,
                alert_outbox.c.created_at,
                alert_outbox.c.attempts,
                alert_outbox.c.next_attempt_at,
                alert_outbox.c.expired_at,
                alert_outbox.c.last_error,
            )
            .where(alert_outbox.c.delivered_at.is_(None))
            .order_by(alert_outbox.c.id)
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]


def counts(store: Store) -> dict[tuple[str, str], int]:
    """(channel, 'pending' | 'expired') -> number of undelivered rows."""
    out: dict[tuple[str, str], int] = {}
    with store.read() as conn:
        for label, cond in (
            ("pending", alert_outbox.c.expired_at.is_(None)),
            ("expired", alert_outbox.c.expired_at.is_not(None)),
        ):
            for channel, n in conn.execute(
                select(alert_outbox.c.channel, func.count())
                .where(and_(alert_outbox.c.delivered_at.is_(None), cond))
                .group_by(alert_outbox.c.channel)
            ):
                out[(str(channel), label)] = int(n)
    return out


def prune(store: Store, history_days: int, now: datetime | None = None) -> int:
    """Drop delivered or expired rows older than history_days; pending rows stay until they end."""
    from sqlalchemy import delete

    cutoff = (now or datetime.now(UTC)) - timedelta(days=history_days)
    with store.write() as conn:
        return int(
            conn.execute(
                delete(alert_outbox).where(
                    alert_outbox.c.created_at < cutoff,
                    or_(alert_outbox.c.delivered_at.is_not(None), alert_outbox.c.expired_at.is_not(None)),
                )
            ).rowcount
            or 0
        )
