"""Who is using the UI: the standalone login, or Airflow's authentication when mounted as a plugin.

Standalone users come from ``GUARDIAN_WEB__USERS`` (``name:env:VAR`` or ``name:file:/path``:
the password lives in the secret, never in the settings). Sessions are signed cookies; every
form that changes something carries a per-session CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request

from guardian.errors import ConfigError

if TYPE_CHECKING:
    from guardian.settings import Settings

UserResolver = Callable[[Request], Awaitable[str | None]]
"""Returns the authenticated user name of a request, or None."""


def parse_users(settings: Settings) -> dict[str, str]:
    """user name -> secret reference, from GUARDIAN_WEB__USERS; ConfigError on a bad entry."""
    from guardian.secrets import _check_ref

    users: dict[str, str] = {}
    for entry in settings.web.users:
        name, _, ref = entry.partition(":")
        if not name or not ref:
            raise ConfigError(f"GUARDIAN_WEB__USERS: entry {name or entry!r} is not name:env:VAR or name:file:/path")
        try:
            _check_ref(ref)
        except ValueError:
            raise ConfigError(
                f"GUARDIAN_WEB__USERS: the password of {name!r} must be a reference (env:VAR or file:/path)"
            ) from None
        users[name] = ref
    return users


def check_password(settings: Settings, username: str, password: str) -> bool:
    """True when the user exists and the password matches (constant-time)."""
    from guardian.secrets import resolve

    ref = parse_users(settings).get(username)
    if ref is None or not password:
        # Compare anyway so a wrong user name takes as long as a wrong password.
        hmac.compare_digest(password.encode(), secrets.token_bytes(16))
        return False
    expected = resolve(ref, setting=f"GUARDIAN_WEB__USERS ({username})").get_secret_value()
    return hmac.compare_digest(password.encode(), expected.encode())


def session_secret(settings: Settings) -> str:
    """The cookie-signing key: from its reference, or random per process (logins end on restart)."""
    if settings.web.session_secret_ref:
        from guardian.secrets import resolve

        return resolve(settings.web.session_secret_ref, setting="GUARDIAN_WEB__SESSION_SECRET_REF").get_secret_value()
    return secrets.token_urlsafe(32)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return str(token)


def csrf_ok(request: Request, submitted: str | None) -> bool:
    """True when a submitted form carries this session's CSRF token."""
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(str(expected), submitted))


async def standalone_user(request: Request) -> str | None:
    """The logged-in user of the standalone UI."""
    user = request.session.get("user")
    return str(user) if user else None
