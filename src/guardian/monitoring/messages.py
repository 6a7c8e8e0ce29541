"""Alert messages: what a person needs to act, and never a secret.

A failure alert names the DAG, task, run, try, the last lines of the error and a link to
the log. A threshold alert names the condition, the DAG and the measured value, and whether
the condition started or cleared. :func:`deliver` sends a message by email and, where asked,
to Slack, and records every delivery attempt; it never raises (an alert that fails must not
hide the failure it reports).
"""

from __future__ import annotations

import html as html_lib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from sqlalchemy import insert

from guardian.logging import mask_text
from guardian.monitoring.tables import notifications

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store

log = logging.getLogger(__name__)
ERROR_LINES = 12


@dataclass(frozen=True)
class Message:
    """One alert, rendered for email and Slack."""

    kind: str
    subject: str
    text: str
    html: str
    slack_text: str
    dag_id: str | None = None
    slack_blocks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one message on one channel."""

    channel: str
    delivered: bool
    error: str | None = None


def last_lines(text: str | None, n: int = ERROR_LINES) -> str:
    """The last n non-empty lines of an error or traceback, masked."""
    # Caret lines under traceback source lines carry no information in an alert.
    lines = [line.rstrip() for line in (text or "").strip().splitlines() if line.strip(" ^~\t")]
    return mask_text("\n".join(lines[-n:]))


def task_log_url(
    base_url: str, dag_id: str, run_id: str, task_id: str, try_number: int | None, *, airflow3: bool = True
) -> str:
    """Link to a task try's log in the Airflow UI (Airflow 3 or 2.x URL shape)."""
    base = base_url.rstrip("/")
    if airflow3:
        url = f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
        return url + (f"?try_number={try_number}" if try_number else "")
    return (
        f"{base}/dags/{quote(dag_id, safe='')}/grid?dag_run_id={quote(run_id, safe='')}"
        f"&task_id={quote(task_id, safe='')}&tab=logs"
    )


def failure_message(
    *,
    kind: str,
    dag_id: str,
    task_id: str | None,
    run_id: str | None,
    try_number: int | None,
    max_tries: int | None,
    error: str | None,
    error_type: str | None,
    log_url: str | None,
    when: datetime | None = None,
) -> Message:
    """A task failure (kind 'failure') or retry (kind 'retry') alert."""
    when = when or datetime.now(UTC)
    verb = "FAILED" if kind == "failure" else "retrying"
    what = f"{dag_id}.{task_id}" if task_id else dag_id
    subject = f"[guardian] {what} {verb} (try {try_number or '?'})"
    error_text = last_lines(error) or "(no error text)"
    tries = f"{try_number or '?'}" + (f" of {max_tries}" if max_tries else "")
    facts = [
        ("DAG", dag_id),
        ("Task", task_id or "(whole run)"),
        ("Run", run_id or "?"),
        ("Try", tries),
        ("Error", error_type or "?"),
        ("When", when.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Log", log_url or "(no link)"),
    ]
    text = (
        "\n".join(f"{k}: {v}" for k, v in facts)
        + f"\n\nLast lines of the error:\n{error_text}\n\n"
        + "Triage: see the DAG's doc (Docs tab in Airflow) and docs/operations.md."
    )
    rows = "".join(
        f"<tr><th align='left'>{html_lib.escape(k)}</th><td>"
        + (
            f"<a href='{html_lib.escape(v)}'>{html_lib.escape(v)}</a>"
            if k == "Log" and v.startswith("http")
            else html_lib.escape(v)
        )
        + "</td></tr>"
        for k, v in facts
    )
    html = (
        f"<h3>{html_lib.escape(subject)}</h3><table>{rows}</table>"
        f"<p>Last lines of the error:</p><pre>{html_lib.escape(error_text)}</pre>"
    )
    icon = ":red_circle:" if kind == "failure" else ":warning:"
    link = f"<{log_url}|log>" if log_url else "no log link"
    slack_text = (
        f"{icon} *{what}* {verb} - run `{run_id}` try {tries} - {error_type or 'error'} - {link}\n```{error_text}```"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{subject}*"}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts[:6]],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{error_text[-2800:]}```"}},
    ]
    if log_url:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{log_url}|Open the log>"}})
    return Message(kind, subject, text, html, slack_text, dag_id, blocks)


def threshold_message(
    *, kind: str, key: str, dag_id: str | None, message: str, started: bool, link: str | None = None
) -> Message:
    """A threshold alert that started (or cleared)."""
    state = "ALERT" if started else "RESOLVED"
    subject = f"[guardian] {state}: {kind}" + (f" on {dag_id}" if dag_id else "")
    text = f"{state}: {message}\nCondition: {key}\n" + (f"Details: {link}\n" if link else "")
    html = f"<p><b>{html_lib.escape(state)}</b>: {html_lib.escape(message)}</p><p>Condition: {html_lib.escape(key)}</p>"
    icon = ":rotating_light:" if started else ":white_check_mark:"
    slack_text = f"{icon} *{state}* {message}"
    return Message(f"threshold.{kind}", subject, text, html, slack_text, dag_id)


class Transport(Protocol):
    """How messages leave: guardian's own senders (CLI) or Airflow's SMTP and Slack hooks (tasks)."""

    def email_configured(self, settings: Settings) -> bool: ...
    def slack_configured(self, settings: Settings) -> bool: ...
    def send_email(self, settings: Settings, message: Message, *, attempts: int = 3) -> None: ...
    def send_slack(self, settings: Settings, message: Message, *, attempts: int = 3) -> None: ...


class NotifyTransport:
    """The CLI's transport: :mod:`guardian.notify` with the GUARDIAN_NOTIFY__* settings."""

    def email_configured(self, settings: Settings) -> bool:
        from guardian import notify

        return notify.email_configured(settings)

    def slack_configured(self, settings: Settings) -> bool:
        from guardian import notify

        return notify.slack_configured(settings)

    def send_email(self, settings: Settings, message: Message, *, attempts: int = 3) -> None:
        from guardian import notify

        notify.send_email(
            settings, settings.notify.email_to, message.subject, message.text, html=message.html, attempts=attempts
        )

    def send_slack(self, settings: Settings, message: Message, *, attempts: int = 3) -> None:
        from guardian import notify

        notify.send_slack(settings, message.slack_text, blocks=message.slack_blocks or None, attempts=attempts)


def deliver(
    settings: Settings,
    message: Message,
    *,
    slack: bool,
    store: Store | None = None,
    email: bool = True,
    transport: Transport | None = None,
) -> list[Delivery]:
    """Send by email (when configured) and Slack (when asked and configured); record each attempt."""
    transport = transport or NotifyTransport()
    results: list[Delivery] = []
    if email and transport.email_configured(settings):
        try:
            transport.send_email(settings, message)
            results.append(Delivery("email", True))
        except Exception as exc:
            results.append(Delivery("email", False, mask_text(str(exc))[:500]))
    if slack and transport.slack_configured(settings):
        try:
            transport.send_slack(settings, message)
            results.append(Delivery("slack", True))
        except Exception as exc:
            results.append(Delivery("slack", False, mask_text(str(exc))[:500]))
    for r in results:
        if not r.delivered:
            log.error("guardian: %s alert %r not delivered: %s", r.channel, message.subject, r.error)
    if store is not None:
        record_deliveries(store, message, results)
    return results


def record_deliveries(store: Store, message: Message, results: list[Delivery]) -> None:
    """Keep every delivery attempt (the Overview page's "deliveries" and /metrics count them); never raises."""
    if results:
        try:
            now = datetime.now(UTC)
            with store.write() as conn:
                conn.execute(
                    insert(notifications),
                    [
                        {
                            "ts": now,
                            "channel": r.channel,
                            "kind": message.kind,
                            "dag_id": message.dag_id,
                            "subject": mask_text(message.subject)[:500],
                            "delivered": int(r.delivered),
                            "error": r.error,
                        }
                        for r in results
                    ],
                )
        except Exception:
            log.exception("guardian: could not record alert deliveries")


def slack_wanted(settings: Settings, dag_id: str | None) -> bool:
    """Critical DAGs (GUARDIAN_NOTIFY__SLACK_DAGS, '*' for all) also alert on Slack."""
    dags = settings.notify.slack_dags
    return "*" in dags or (dag_id is not None and dag_id in dags)
