"""Email and Slack delivery.

The low-level senders every service uses. Messages never carry secrets; every delivery has
a timeout and bounded retries (:mod:`guardian.retrying`); every subject and body goes through
:func:`guardian.logging.mask_text` on the way out. Inside Airflow, the SMTP and Slack settings may come from the
``smtp_default`` and ``slack_default`` connections (see guardian.airflow).
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from email.message import EmailMessage

from guardian.errors import IntegrationError
from guardian.logging import mask_text
from guardian.retrying import Retry, with_retries
from guardian.settings import Settings


def email_configured(settings: Settings) -> bool:
    """True when an SMTP host is set."""
    return bool(settings.notify.smtp_host)


def slack_configured(settings: Settings) -> bool:
    """True when a Slack webhook reference is set."""
    return bool(settings.notify.slack_webhook_ref)


def send_email(
    settings: Settings,
    to: Sequence[str],
    subject: str,
    text: str,
    *,
    html: str | None = None,
    attempts: int = 3,
) -> None:
    """Send one email; raise IntegrationError after bounded retries."""
    cfg = settings.notify
    if not cfg.smtp_host:
        raise IntegrationError("email is not configured: set GUARDIAN_NOTIFY__SMTP_HOST")
    msg = EmailMessage()
    msg["From"] = cfg.email_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = mask_text(subject)
    msg.set_content(mask_text(text))
    if html:
        msg.add_alternative(mask_text(html), subtype="html")
    password = None
    if cfg.smtp_user and cfg.smtp_password_ref:
        from guardian.secrets import resolve

        password = resolve(cfg.smtp_password_ref, setting="GUARDIAN_NOTIFY__SMTP_PASSWORD_REF").get_secret_value()

    host = cfg.smtp_host
    # Port 465 is implicit TLS (RFC 8314); elsewhere STARTTLS when asked. A password never goes
    # over a connection that is not encrypted.
    implicit_tls = cfg.smtp_port == 465
    if password is not None and not (implicit_tls or cfg.smtp_starttls):
        raise IntegrationError(
            "refusing to send the SMTP password in clear: set GUARDIAN_NOTIFY__SMTP_STARTTLS=true or use port 465"
        )
    smtp_class = smtplib.SMTP_SSL if implicit_tls else smtplib.SMTP

    def attempt() -> None:
        try:
            with smtp_class(host, cfg.smtp_port, timeout=cfg.timeout) as smtp:
                if cfg.smtp_starttls and not implicit_tls:
                    smtp.starttls()
                if password is not None and cfg.smtp_user:
                    smtp.login(cfg.smtp_user, password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            error = IntegrationError(
                f"email to {', '.join(to)} via {cfg.smtp_host}:{cfg.smtp_port} failed ({exc}); check SMTP settings"
            )
            error.__cause__ = exc
            if isinstance(exc, smtplib.SMTPRecipientsRefused):
                raise error from exc
            raise Retry(error) from exc

    with_retries(attempt, attempts=attempts)


def send_slack(
    settings: Settings, text: str, *, blocks: list[dict[str, object]] | None = None, attempts: int = 3
) -> None:
    """Post one message to the Slack incoming webhook; retry 429/5xx with backoff."""
    import requests

    from guardian.secrets import resolve

    ref = settings.notify.slack_webhook_ref
    if not ref:
        raise IntegrationError("Slack is not configured: set GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF=env:VAR")
    url = resolve(ref, setting="GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF").get_secret_value()
    from guardian.logging import mask_value

    payload: dict[str, object] = {"text": mask_text(text)}
    if blocks:
        payload["blocks"] = mask_value(blocks)

    def attempt() -> None:
        try:
            response = requests.post(url, json=payload, timeout=settings.notify.timeout)
        except requests.RequestException as exc:
            error = IntegrationError(f"Slack webhook unreachable ({type(exc).__name__}); check the network")
            raise Retry(error) from exc
        if response.status_code == 200:
            return
        if response.status_code != 429 and response.status_code < 500:
            raise IntegrationError(
                f"Slack webhook refused the message (HTTP {response.status_code}); the webhook may be revoked"
            )
        retry_after = response.headers.get("Retry-After")
        raise Retry(
            IntegrationError(f"Slack webhook failed after {attempts} tries (HTTP {response.status_code})"),
            after=float(retry_after) if retry_after and retry_after.isdigit() else None,
        )

    with_retries(attempt, attempts=attempts)
