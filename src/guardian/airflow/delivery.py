"""Alert delivery inside Airflow tasks: the smtp and slack providers' hooks on their connections.

``smtp_default`` is read by the SMTP provider's ``SmtpHook`` with Airflow's own semantics
(SSL unless ``disable_ssl``, STARTTLS unless ``disable_tls``, ``timeout`` and ``retry_limit``
from the connection extras), and ``slack_default`` by ``SlackWebhookHook``; no password or
webhook is copied anywhere, least of all ``os.environ``. Every subject, body and Slack block
passes guardian's masker and then Airflow's (``redact``) on the way out.

When a connection is absent, the GUARDIAN_NOTIFY__* settings are used through
:class:`guardian.monitoring.messages.NotifyTransport` (the same as the CLI).
"""

from __future__ import annotations

import html as html_lib
from typing import TYPE_CHECKING, Any

from guardian.monitoring.messages import NotifyTransport

if TYPE_CHECKING:
    from guardian.monitoring.messages import Message
    from guardian.settings import Settings

SMTP_CONN_ID = "smtp_default"
SLACK_CONN_ID = "slack_default"


def _exists(conn_id: str) -> bool:
    from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def masked(value: Any) -> Any:
    """Guardian's masker, then Airflow's secrets masker (registered secrets and sensitive keys)."""
    from airflow.providers.common.compat.sdk import redact

    from guardian.logging import mask_text, mask_value

    ours = mask_text(value) if isinstance(value, str) else mask_value(value)
    return redact(ours)


class AirflowTransport:
    """Email through SmtpHook(smtp_default), Slack through SlackWebhookHook(slack_default); settings as fallback."""

    def __init__(self, smtp_conn_id: str = SMTP_CONN_ID, slack_conn_id: str = SLACK_CONN_ID) -> None:
        self.smtp_conn_id, self.slack_conn_id = smtp_conn_id, slack_conn_id
        self._has_smtp = _exists(smtp_conn_id)
        self._has_slack = _exists(slack_conn_id)
        self._fallback = NotifyTransport()

    def email_configured(self, settings: Settings) -> bool:
        """True with the smtp connection, or GUARDIAN_NOTIFY__SMTP_HOST."""
        return self._has_smtp or self._fallback.email_configured(settings)

    def slack_configured(self, settings: Settings) -> bool:
        """True with the slack connection, or GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF."""
        return self._has_slack or self._fallback.slack_configured(settings)

    def send_email(self, settings: Settings, message: Message, *, attempts: int = 3) -> None:
        """Send through SmtpHook; the connection's retry_limit and timeout apply."""
        if not self._has_smtp:
            self._fallback.send_email(settings, message, attempts=attempts)
            return
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        from guardian.errors import IntegrationError

        body = message.html or f"<pre>{html_lib.escape(message.text)}</pre>"
        try:
            with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
                hook.send_email_smtp(
                    to=list(settings.notify.email_to),
                    subject=masked(message.subject),
                    html_content=masked(body),
                    from_email=settings.notify.email_from,
                )
        except Exception as exc:
            raise IntegrationError(
                f"email via connection {self.smtp_conn_id} failed ({masked(str(exc))}); check the connection"
            ) from exc

    def send_slack(self, settings: Settings, message: Message, *, attempts: int = 3) -> None:
        """Post through SlackWebhookHook (its own retry handler covers 429 and 5xx)."""
        if not self._has_slack:
            self._fallback.send_slack(settings, message, attempts=attempts)
            return
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        from guardian.errors import IntegrationError

        try:
            SlackWebhookHook(slack_webhook_conn_id=self.slack_conn_id, timeout=settings.notify.timeout).send(
                text=masked(message.slack_text), blocks=masked(message.slack_blocks) or None
            )
        except Exception as exc:
            raise IntegrationError(
                f"Slack via connection {self.slack_conn_id} failed ({type(exc).__name__}); check the connection"
            ) from exc
