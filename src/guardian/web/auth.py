"""Who is using the UI and what they may do.

Standalone (``guardian serve``) users come from ``GUARDIAN_WEB__USERS`` as
``name:role:env:VAR`` (or ``name:role:file:/path``); the secret the reference points to is an
argon2 hash made by ``guardian web hash-password``, never the password itself. A login creates
a server-side session (table ``web_sessions``): the cookie carries only a random id, logout
revokes the row, and a session expires after ``GUARDIAN_WEB__SESSION_MAX_AGE`` seconds.
Inside Airflow 3 the plugin resolves the user from Airflow's token and asks Airflow's auth
manager for the permissions (see :mod:`guardian.airflow.plugin`).

Every route declares what it needs with ``Depends(require(Permission.X))``; state-changing
requests authenticated by a cookie must also carry the session's CSRF token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from guardian.errors import ConfigError

if TYPE_CHECKING:
    from starlette.requests import Request

    from guardian.settings import Settings
    from guardian.store import Store


class Permission(StrEnum):
    """What a route may need. Roles are sets of these."""

    READ = "read"  # every page and read-only API call
    RESTORE = "restore"  # restore a trashed Looker dashboard
    APPROVE = "approve"  # approve and keep Looker plans
    ADMIN = "admin"  # everything, including settings-level actions


ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "operator": frozenset({Permission.READ, Permission.RESTORE}),
    "approver": frozenset({Permission.READ, Permission.RESTORE, Permission.APPROVE}),
    "admin": frozenset(Permission),
}
"""Guardian roles (standalone users carry one; Airflow roles are mapped onto them)."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: name, permissions, and whether a bearer token (not a cookie) proved it."""

    name: str
    permissions: frozenset[Permission]
    via_token: bool = False

    def can(self, permission: Permission) -> bool:
        """True when the caller holds the permission (admin holds all)."""
        return permission in self.permissions or Permission.ADMIN in self.permissions


UserResolver = Callable[["Request"], Awaitable["Principal | None"]]
"""Returns the authenticated caller of a request, or None."""


@dataclass(frozen=True)
class WebUser:
    """One standalone user: role and the reference of its argon2 password hash."""

    name: str
    role: str
    hash_ref: str


def parse_users(settings: Settings) -> dict[str, WebUser]:
    """user name -> WebUser, from GUARDIAN_WEB__USERS; ConfigError naming a bad entry."""
    from guardian.secrets import _check_ref

    users: dict[str, WebUser] = {}
    for entry in settings.web.users:
        name, _, rest = entry.partition(":")
        role, _, ref = rest.partition(":")
        if role in {"env", "file", "gsm"}:  # the old name:env:VAR shape has no role: least privilege
            role, ref = "viewer", rest
        if not name or not ref:
            raise ConfigError(
                f"GUARDIAN_WEB__USERS: entry {name or entry!r} is not name:role:env:VAR (roles: {', '.join(ROLES)})"
            )
        if role not in ROLES:
            raise ConfigError(f"GUARDIAN_WEB__USERS: user {name!r} has unknown role {role!r}; use one of {list(ROLES)}")
        try:
            _check_ref(ref)
        except ValueError:
            raise ConfigError(
                f"GUARDIAN_WEB__USERS: the password hash of {name!r} must be a reference (env:VAR or file:/path)"
            ) from None
        users[name] = WebUser(name, role, ref)
    return users


def hash_password(password: str) -> str:
    """An argon2id hash of a password (what GUARDIAN_WEB__USERS references point to)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


_DUMMY_HASH: str | None = None


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def check_password(settings: Settings, username: str, password: str) -> WebUser | None:
    """The user when it exists and the password matches its argon2 hash, else None."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    from guardian.secrets import resolve

    user = parse_users(settings).get(username)
    hasher = PasswordHasher()
    if user is None or not password:
        # Verify anyway so a wrong user name takes as long as a wrong password.
        with contextlib.suppress(VerificationError):
            hasher.verify(_dummy_hash(), password or "x")
        return None
    stored = resolve(user.hash_ref, setting=f"GUARDIAN_WEB__USERS ({username})").get_secret_value()
    if not stored.startswith("$argon2"):
        raise ConfigError(
            f"GUARDIAN_WEB__USERS ({username}): the referenced secret is not an argon2 hash; "
            "store the output of `guardian web hash-password` instead of the password"
        )
    try:
        hasher.verify(stored, password)
    except VerificationError:
        return None
    except InvalidHashError:
        raise ConfigError(
            f"GUARDIAN_WEB__USERS ({username}): the argon2 hash is malformed; make a new one with "
            "`guardian web hash-password`"
        ) from None
    return user


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


# -- server-side sessions ------------------------------------------------------------------


def _sid_hash(sid: str) -> str:
    # Only a hash of the id is stored: a read of the table does not hand out live sessions.
    return hashlib.sha256(sid.encode()).hexdigest()


def open_session(store: Store, user: WebUser, max_age: int, client: str | None) -> str:
    """Create a session row for a logged-in user; return the random id the cookie carries."""
    from sqlalchemy import delete, insert

    from guardian.store.schema import web_sessions

    sid = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with store.write() as conn:
        # Sessions that ended a day ago are of no use to anyone: the table stays small.
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now - timedelta(days=1)))
        conn.execute(
            insert(web_sessions).values(
                id_hash=_sid_hash(sid),
                user_name=user.name,
                role=user.role,
                created_at=now,
                expires_at=now + timedelta(seconds=max_age),
                client=(client or "")[:100],
            )
        )
    return sid


def session_user(store: Store, sid: str) -> tuple[str, str] | None:
    """(user, role) of a live session: not revoked, not expired; else None."""
    from sqlalchemy import select

    from guardian.store.schema import web_sessions

    with store.read() as conn:
        row = conn.execute(
            select(web_sessions.c.user_name, web_sessions.c.role, web_sessions.c.expires_at).where(
                web_sessions.c.id_hash == _sid_hash(sid), web_sessions.c.revoked_at.is_(None)
            )
        ).first()
    if row is None:
        return None
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    if expires <= datetime.now(UTC):
        return None
    return str(row.user_name), str(row.role)


def revoke_session(store: Store, sid: str) -> None:
    """End a session server-side: its cookie no longer logs anyone in."""
    from sqlalchemy import update

    from guardian.store.schema import web_sessions

    with store.write() as conn:
        conn.execute(
            update(web_sessions)
            .where(web_sessions.c.id_hash == _sid_hash(sid), web_sessions.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )


def standalone_resolver(settings: Settings, store: Callable[[], Store]) -> UserResolver:
    """The resolver of the standalone UI: the server-side session named by the cookie."""

    async def resolve(request: Request) -> Principal | None:
        sid = request.session.get("sid")
        if not sid:
            return None
        found = session_user(store(), str(sid))
        if found is None:
            return None
        name, role = found
        return Principal(name, ROLES.get(role, frozenset()))

    return resolve


# -- login throttling ----------------------------------------------------------------------


@dataclass(frozen=True)
class LoginAttempt:
    """One login try reserved by :meth:`LoginThrottle.begin`: refused when ``retry_after`` > 0."""

    retry_after: int
    user_key: str
    address_row: int | None


def _throttle_key(kind: str, value: str) -> str:
    # Only a hash is stored: whatever was typed as a user name (a password, sometimes) stays out of the table.
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"


class LoginThrottle:
    """Failed logins per user name and per client address in a sliding window, kept in the store.

    The rows live in ``web_login_failures`` so every ``guardian serve`` process (and the next one
    after a restart) shares the count. A try is counted *before* the password is checked:
    :meth:`begin` commits one row per user name and per address, then counts the rows in the
    window (its own included). A try that finds more than the limit is refused (its rows are
    removed again); parallel tries each see every row committed before their count, so no burst
    gets more than the limit of guesses checked. A good login forgives the user name (not the
    address) with :meth:`succeeded`; rows older than the window are pruned at every try.
    """

    def __init__(
        self,
        store: Callable[[], Store],
        per_user: int,
        per_address: int,
        window: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store, self.per_user, self.per_address, self.window, self.clock = (
            store,
            per_user,
            per_address,
            window,
            clock,
        )

    def begin(self, user: str, address: str) -> LoginAttempt:
        """Reserve one try for this user name and address; ``retry_after`` > 0 means refused."""
        from sqlalchemy import delete, insert, select

        from guardian.store.schema import web_login_failures as t

        now = self.clock()
        since = now - timedelta(seconds=self.window)
        keys = ((_throttle_key("u", user), self.per_user), (_throttle_key("a", address), self.per_address))
        rows: dict[str, int] = {}
        with self.store().write() as conn:
            conn.execute(delete(t).where(t.c.failed_at <= since))
            for key, _ in keys:
                rows[key] = int(conn.execute(insert(t).values(key=key, failed_at=now).returning(t.c.id)).scalar_one())
        wait = 0.0
        with self.store().read() as conn:
            for key, limit in keys:
                others = [
                    r.failed_at
                    for r in conn.execute(
                        select(t.c.id, t.c.failed_at)
                        .where(t.c.key == key, t.c.failed_at > since)
                        .order_by(t.c.failed_at.desc(), t.c.id.desc())
                    )
                    if r.id != rows[key]
                ]
                if len(others) >= limit:
                    # The limit-th newest other failure leaves the window first among those that block.
                    oldest_blocking = others[limit - 1]
                    oldest_blocking = oldest_blocking if oldest_blocking.tzinfo else oldest_blocking.replace(tzinfo=UTC)
                    wait = max(wait, (oldest_blocking - now).total_seconds() + self.window)
        if wait > 0:
            with self.store().write() as conn:
                conn.execute(delete(t).where(t.c.id.in_(list(rows.values()))))
            return LoginAttempt(max(1, int(wait) + 1), keys[0][0], None)
        return LoginAttempt(0, keys[0][0], rows[keys[1][0]])

    def succeeded(self, attempt: LoginAttempt) -> None:
        """A good login: the user name's failures are forgiven, and this try does not count for the address."""
        from sqlalchemy import delete, or_

        from guardian.store.schema import web_login_failures as t

        with self.store().write() as conn:
            conn.execute(delete(t).where(or_(t.c.key == attempt.user_key, t.c.id == attempt.address_row)))
