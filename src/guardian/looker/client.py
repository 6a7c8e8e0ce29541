"""Client adapter over the real looker-sdk (API 4.0).

looker-sdk does not retry and its ``SDKError`` hides the HTTP status, so the adapter plugs
its own transport into the SDK: a requests session with a urllib3 ``Retry`` mounted (429 and
5xx, exponential backoff with jitter, ``Retry-After`` honoured, bounded in count and time), a
client-side rate limit, a call counter, and errors that carry the status
(:class:`LookerAPIError`). Reads return the API's JSON as plain dicts (what backups store);
the SDK still does login, token renewal and request building.

Credentials: ``LOOKERSDK_BASE_URL`` / ``LOOKERSDK_CLIENT_ID`` / ``LOOKERSDK_CLIENT_SECRET``
(the secret may instead come from ``GUARDIAN_LOOKER__CLIENT_SECRET_REF``), or explicit values
through :class:`GuardianApiSettings` (the Airflow glue builds one from ``looker_default``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Optional, cast

import requests
from looker_sdk.rtl import api_settings, auth_session, requests_transport, serialize, transport
from looker_sdk.sdk.api40 import methods as methods40
from looker_sdk.sdk.api40 import models as models40
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from guardian.errors import ConfigError, IntegrationError

if TYPE_CHECKING:
    from guardian.settings import Settings

RETRY_STATUSES = (429, 500, 502, 503, 504)
# Creating calls: retrying one after a 5xx could create two.
_NON_IDEMPOTENT = ("/dashboards/lookml", "/scheduled_plans", "/alerts", "/looks")


class LookerAPIError(IntegrationError):
    """A Looker API call failed after retries; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None, method: str, path: str) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


class GuardianApiSettings(api_settings.ApiSettings):
    """looker-sdk settings from explicit values: no looker.ini, no environment reads."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        timeout: int = 120,
        verify_ssl: bool = True,
    ) -> None:
        self._explicit: api_settings.SettingsConfig = {
            "client_id": client_id,
            "client_secret": client_secret,
            "base_url": base_url.rstrip("/"),
        }
        super().__init__(filename="", sdk_version="guardian", env_prefix=None)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.verify_ssl = verify_ssl

    def read_config(self) -> api_settings.SettingsConfig:
        """The explicit values (looker-sdk calls this at login)."""
        return dict(self._explicit)  # type: ignore[return-value]


class RateLimiter:
    """A token bucket shared by the threads of one client."""

    def __init__(self, per_second: float | None) -> None:
        self.per_second = per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def acquire(self) -> None:
        """Block until the next call may start."""
        if not self.per_second:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / self.per_second
        if start > now:
            time.sleep(start - now)


class GuardianTransport(requests_transport.RequestsTransport):
    """looker-sdk transport with retries, a rate limit, a call counter and statusful errors."""

    def __init__(
        self,
        settings: transport.PTransportSettings,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 20.0,
        rate_limit: float | None = None,
    ) -> None:
        retry = Retry(
            total=retries,
            connect=retries,
            read=2,
            status=retries,
            backoff_factor=backoff,
            backoff_max=backoff_max,
            backoff_jitter=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "PUT", "PATCH", "DELETE", "POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        session = _session(retry, pool=32)
        super().__init__(settings, session)
        # A session for the one non-idempotent call: connection errors only, no status retries.
        self.once = _session(Retry(total=2, status=0, read=0, allowed_methods=None, raise_on_status=False), pool=4)
        self.once.headers.update(session.headers)
        self.once.verify = session.verify
        self.limiter = RateLimiter(rate_limit)
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def request(
        self,
        method: transport.HttpMethod,
        path: str,
        query_params: Optional[MutableMapping[str, str]] = None,  # noqa: UP045 - matches the SDK signature
        body: Optional[bytes] = None,  # noqa: UP045
        authenticator: transport.TAuthenticator = None,
        transport_options: Optional[transport.TransportOptions] = None,  # noqa: UP045
    ) -> transport.Response:
        """One HTTP call: rate-limited, retried, counted; non-2xx raises LookerAPIError."""
        headers: dict[str, str] = {}
        if authenticator:
            headers.update(authenticator(transport_options or {}))
        if transport_options and transport_options.get("headers"):
            headers.update(transport_options["headers"])
        timeout = (transport_options or {}).get("timeout") or self.settings.timeout
        short = path.split("/api/4.0", 1)[-1]
        session = self.once if method.name == "POST" and short.endswith(_NON_IDEMPOTENT) else self.session
        self.limiter.acquire()
        with self._calls_lock:
            self.calls[f"{method.name} {short}"] += 1
            self.calls["total"] += 1
        try:
            resp = session.request(
                method.name,
                path,
                auth=requests_transport.NullAuth(),
                params=query_params,
                data=body,
                headers=headers,
                timeout=timeout,
            )
        except requests.RequestException as exc:
            raise LookerAPIError(
                f"Looker {method.name} {short}: no answer after retries ({type(exc).__name__}); "
                "check LOOKERSDK_BASE_URL and the network",
                status=None,
                method=method.name,
                path=short,
            ) from exc
        if not resp.ok:
            raise _api_error(method.name, short, resp)
        ret = transport.Response(True, resp.content, transport.response_mode(resp.headers.get("content-type")))
        encoding = requests.utils.get_encoding_from_headers(resp.headers)
        if encoding:
            ret.encoding = encoding
        return ret


def _session(retry: Retry, *, pool: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool, pool_maxsize=pool)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _api_error(method: str, path: str, resp: requests.Response) -> LookerAPIError:
    try:
        detail = str(resp.json().get("message") or "")
    except ValueError:
        detail = resp.text[:200]
    hint = {
        401: "the token was refused; check the API client id/secret",
        403: "the API user lacks permission; grant it the needed role",
        404: "not found (or the login was refused: check LOOKERSDK_CLIENT_ID/SECRET)",
        429: "rate limited after retries; lower GUARDIAN_LOOKER__RATE_LIMIT_PER_SECOND",
    }.get(resp.status_code, "retry later or check the Looker instance status" if resp.status_code >= 500 else "")
    return LookerAPIError(
        f"Looker {method} {path}: HTTP {resp.status_code} {detail}".rstrip() + (f"; {hint}" if hint else ""),
        status=resp.status_code,
        method=method,
        path=path,
    )


def env_api_settings(settings: Settings) -> GuardianApiSettings:
    """looker-sdk settings from LOOKERSDK_* env vars (secret optionally from a reference)."""
    base_url = os.environ.get("LOOKERSDK_BASE_URL", "")
    client_id = os.environ.get("LOOKERSDK_CLIENT_ID", "")
    secret = os.environ.get("LOOKERSDK_CLIENT_SECRET", "")
    if settings.looker.client_secret_ref:
        from guardian.secrets import resolve

        secret = resolve(
            settings.looker.client_secret_ref, setting="GUARDIAN_LOOKER__CLIENT_SECRET_REF"
        ).get_secret_value()
    missing = [
        name for name, value in (("LOOKERSDK_BASE_URL", base_url), ("LOOKERSDK_CLIENT_ID", client_id)) if not value
    ]
    if not secret:
        missing.append("LOOKERSDK_CLIENT_SECRET")
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set; export the Looker API credentials (or define the looker_default "
            "connection inside Airflow)"
        )
    verify = os.environ.get("LOOKERSDK_VERIFY_SSL", "true").lower() not in ("0", "false", "no", "n", "f")
    return GuardianApiSettings(
        base_url=base_url,
        client_id=client_id,
        client_secret=secret,
        timeout=settings.looker.api_timeout,
        verify_ssl=verify,
    )


def connect(
    settings: Settings,
    *,
    api: api_settings.ApiSettings | None = None,
    rate_limit: float | None = None,
) -> LookerClient:
    """A client for the configured Looker instance (env vars unless ``api`` is given)."""
    api = api or env_api_settings(settings)
    return LookerClient(
        api,
        rate_limit=rate_limit,
        retries=settings.looker.api_retries,
        backoff=settings.looker.api_backoff_seconds,
    )


class LookerClient:
    """The Looker calls the lifecycle service makes, as plain JSON dicts."""

    def __init__(
        self,
        api: api_settings.ApiSettings,
        *,
        rate_limit: float | None = None,
        retries: int = 5,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = api.base_url
        self.transport = GuardianTransport(api, rate_limit=rate_limit, retries=retries, backoff=backoff)
        self.sdk = methods40.Looker40SDK(
            auth_session.AuthSession(api, self.transport, serialize.deserialize40, "4.0"),
            serialize.deserialize40,
            serialize.serialize40,
            self.transport,
            "4.0",
        )
        self._me: dict[str, Any] | None = None

    @property
    def calls(self) -> Counter[str]:
        """HTTP calls made so far, per route and in ``total`` (logins included)."""
        return self.transport.calls

    def set_rate_limit(self, per_second: float | None) -> None:
        """Change the client-side rate limit (None: unlimited)."""
        self.transport.limiter = RateLimiter(per_second)

    # -- raw helpers --------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        text = self.sdk.get(path=path, structure=str, query_params=params)
        return json.loads(cast(str, text)) if text else None

    def _enc(self, value: str) -> str:
        return self.sdk.encode_path_param(value)

    # -- calls --------------------------------------------------------------------------
    def me_user(self) -> dict[str, Any]:
        """The API user (id, display_name, email), cached for the client's life."""
        if self._me is None:
            self._me = cast(dict[str, Any], self._get("/user", {"fields": "id,display_name,email"}))
        return self._me

    def me(self) -> str:
        """A display string of the logged-in user (``guardian doctor`` shows it)."""
        user = self.me_user()
        return f"{user.get('display_name') or user.get('email') or '?'} (id {user.get('id')})"

    def search_dashboards(self, *, deleted: bool, fields: str, page_size: int) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``GET /dashboards/search``, sorted by id (see :meth:`search_content`)."""
        return self.search_content("dashboard", deleted=deleted, fields=fields, page_size=page_size)

    def search_content(
        self, content_type: str, *, deleted: bool, fields: str, page_size: int
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``search_dashboards`` or ``search_looks`` (``deleted`` lists the trash), sorted by id.

        Each call asks for one row more than it keeps: a short page proves the end, so the
        walk takes ceil(rows / page_size) calls (one for an empty result), never an extra
        empty call. The next page is fetched while the caller works on the current one.
        Dashboards come as raw JSON (20,000 typed models cost more than the calls); Looks
        through looker-sdk's typed ``search_looks``.
        """

        def fetch(offset: int) -> list[dict[str, Any]]:
            if content_type == "look":
                found = self.sdk.search_looks(
                    deleted=deleted, fields=fields, limit=page_size + 1, offset=offset, sorts="id"
                )
                return [_plain(look) for look in found]
            params = {
                "deleted": "true" if deleted else "false",
                "fields": fields,
                "limit": page_size + 1,
                "offset": offset,
                "sorts": "id",
            }
            return list(self._get("/dashboards/search", params) or [])

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="looker-page") as pool:
            offset = 0
            rows = fetch(offset)
            while True:
                more = len(rows) > page_size
                upcoming = pool.submit(fetch, offset + page_size) if more else None
                yield rows[:page_size]
                if upcoming is None:
                    return
                offset += page_size
                rows = upcoming.result()

    def dashboards_with_slug(self, slug: str) -> list[dict[str, Any]]:
        """Live dashboards whose slug is ``slug`` (``search_dashboards?slug=``)."""
        return [_plain(d) for d in self.sdk.search_dashboards(slug=slug, fields="id,slug,title", deleted="false")]

    def all_dashboards(self, fields: str | None = None) -> list[dict[str, Any]]:
        """``GET /dashboards`` (DashboardBase: the original system's starting point)."""
        return cast(list[dict[str, Any]], self._get("/dashboards", {"fields": fields} if fields else None))

    def content_usage(self) -> list[dict[str, Any]]:
        """System Activity ``content_usage`` rows for dashboards and Looks (one inline query)."""
        body = {
            "model": "system__activity",
            "view": "content_usage",
            "fields": [
                "content_usage.content_id",
                "content_usage.content_type",
                "content_usage.last_accessed_date",
                "content_usage.days_since_last_accessed",
                "content_usage.schedule_total",
                "content_usage.public_total",
            ],
            # Looker filter expression: a comma means OR.
            "filters": {"content_usage.content_type": "dashboard,look"},
            "limit": "-1",
        }
        text = self.sdk.post(path="/queries/run/json", structure=str, body=body, query_params={"limit": -1})
        return cast(list[dict[str, Any]], json.loads(cast(str, text)) if text else [])

    def folders(self) -> list[dict[str, Any]]:
        """Every folder (id, name, parent_id) in one call."""
        return cast(list[dict[str, Any]], self._get("/folders", {"fields": "id,name,parent_id"}))

    def users(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Users by id (id, display_name, email)."""
        if not ids:
            return []
        return cast(
            list[dict[str, Any]],
            self._get("/users", {"ids": ",".join(sorted(set(ids))), "fields": "id,display_name,email,is_disabled"}),
        )

    def dashboard(self, dashboard_id: str) -> dict[str, Any] | None:
        """The full dashboard JSON, or None when it does not exist (purged)."""
        try:
            return cast(dict[str, Any], self._get(f"/dashboards/{self._enc(dashboard_id)}"))
        except LookerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def dashboard_lookml(self, dashboard_id: str) -> str:
        """The dashboard's LookML export."""
        data = self._get(f"/dashboards/lookml/{self._enc(dashboard_id)}")
        return str((data or {}).get("lookml") or "")

    def set_deleted(self, dashboard_id: str, deleted: bool) -> dict[str, Any]:
        """Move a dashboard to the trash (``deleted: true``) or back out of it."""
        text = self.sdk.patch(
            path=f"/dashboards/{self._enc(dashboard_id)}",
            structure=str,
            body={"deleted": deleted},
        )
        return cast(dict[str, Any], json.loads(cast(str, text)))

    def delete_dashboard(self, dashboard_id: str) -> bool:
        """Permanently delete; False when it was already gone."""
        try:
            self.sdk.delete(path=f"/dashboards/{self._enc(dashboard_id)}", structure=str)
        except LookerAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def import_lookml(self, folder_id: str, lookml: str) -> dict[str, Any]:
        """Create a dashboard from LookML in a folder (``import_dashboard_from_lookml``).

        Looker overwrites the live dashboard whose slug is the LookML's ``preferred_slug``
        instead of creating one; callers pass LookML without it to always get a new dashboard.
        """
        body = models40.WriteDashboardLookml(folder_id=folder_id, lookml=lookml)
        return _plain(self.sdk.import_dashboard_from_lookml(body=body))

    # -- one interface over dashboards and Looks (the applier and restore use these) --------
    def content(self, content_type: str, content_id: str) -> dict[str, Any] | None:
        """The full dashboard or Look (``look``: LookWithQuery) JSON, or None when it does not exist."""
        if content_type == "dashboard":
            return self.dashboard(content_id)
        try:
            return _plain(self.sdk.look(content_id))
        except LookerAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def set_content_deleted(self, content_type: str, content_id: str, deleted: bool) -> dict[str, Any]:
        """Trash (``deleted: true``) or un-trash a dashboard or a Look (``update_look``)."""
        if content_type == "dashboard":
            return self.set_deleted(content_id, deleted)
        return _plain(self.sdk.update_look(content_id, body=models40.WriteLookWithQuery(deleted=deleted)))

    def delete_content(self, content_type: str, content_id: str) -> bool:
        """Permanently delete a dashboard or a Look (``delete_look``); False when already gone."""
        if content_type == "dashboard":
            return self.delete_dashboard(content_id)
        try:
            self.sdk.delete_look(content_id)
        except LookerAPIError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def scheduled_plans_for(self, content_type: str, content_id: str) -> list[dict[str, Any]]:
        """Every user's scheduled plans of one dashboard or Look, complete (what a backup keeps)."""
        if content_type == "dashboard":
            return self.scheduled_plans_for_dashboard(content_id)
        return [_plain(p) for p in self.sdk.scheduled_plans_for_look(content_id, all_users=True)]

    def tiles_showing_look(self, look_id: str) -> list[dict[str, Any]]:
        """Dashboard tiles that show a Look (``search_dashboard_elements?look_id=``)."""
        return [
            _plain(e) for e in self.sdk.search_dashboard_elements(look_id=look_id, fields="id,dashboard_id,look_id")
        ]

    def create_look(self, look: dict[str, Any]) -> dict[str, Any]:
        """Re-create a Look from a backup's copy: its query (``create_query``), then ``create_look``.

        Spec, create_query: queries are immutable, never deleted, and an identical query is
        returned instead of a new one, so this finds the Look's own query again.
        """
        query = dict(look.get("query") or {})
        if not query.get("model") or not query.get("view"):
            raise LookerAPIError(
                f"Look {look.get('id')}: the backup holds no query (model and view) to re-create it from",
                status=None,
                method="POST",
                path="/queries",
            )
        writable = {k: v for k, v in _writable(query, _QUERY_READ_ONLY).items() if k in _QUERY_WRITABLE}
        query_body = serialize.converter40.structure(writable, models40.WriteQuery)
        made = _plain(self.sdk.create_query(body=query_body))
        body = models40.WriteLookWithQuery(
            title=look.get("title"),
            description=look.get("description"),
            folder_id=None if look.get("folder_id") is None else str(look["folder_id"]),
            query_id=str(made["id"]),
            is_run_on_load=look.get("is_run_on_load"),
        )
        return _plain(self.sdk.create_look(body=body))

    # -- exemptions and what a backup keeps: schedules and alerts ---------------------------
    def all_scheduled_plans(self) -> list[dict[str, Any]]:
        """Every user's scheduled plans in one call (``all_scheduled_plans?all_users=true``)."""
        fields = "id,name,user_id,enabled,dashboard_id,look_id,lookml_dashboard_id"
        return [_plain(p) for p in self.sdk.all_scheduled_plans(all_users=True, fields=fields)]

    def scheduled_plans_for_dashboard(self, dashboard_id: str) -> list[dict[str, Any]]:
        """Every user's scheduled plans of one dashboard, complete (what a backup keeps)."""
        return [_plain(p) for p in self.sdk.scheduled_plans_for_dashboard(dashboard_id, all_users=True)]

    def all_alerts(self, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every owner's alerts (``search_alerts?all_owners=true``), paged by offset."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = [_plain(a) for a in self.sdk.search_alerts(limit=page_size + 1, offset=offset, all_owners=True)]
            out.extend(page[:page_size])
            if len(page) <= page_size:
                return out
            offset += page_size

    def create_scheduled_plan(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Create a scheduled plan from a backup's copy (server-set fields dropped)."""
        body = serialize.converter40.structure(_writable(plan, _PLAN_READ_ONLY), models40.WriteScheduledPlan)
        return _plain(self.sdk.create_scheduled_plan(body=body))

    def create_alert(self, alert: dict[str, Any]) -> dict[str, Any]:
        """Create an alert from a backup's copy (server-set fields dropped)."""
        body = serialize.converter40.structure(_writable(alert, _ALERT_READ_ONLY), models40.WriteAlert)
        return _plain(self.sdk.create_alert(body=body))


_QUERY_WRITABLE = frozenset(models40.WriteQuery.__annotations__)
_QUERY_READ_ONLY = (
    "id",
    "slug",
    "share_url",
    "expanded_share_url",
    "url",
    "has_table_calculations",
    "can",
    "client_id",
)
_PLAN_READ_ONLY = ("id", "created_at", "updated_at", "title", "user", "next_run_at", "last_run_at", "can")
_ALERT_READ_ONLY = (
    "id",
    "followed",
    "followable",
    "investigative_content_title",
    "owner_display_name",
    "disabled_reason",
    "is_public",
    "can",
)


def _plain(obj: Any) -> dict[str, Any]:
    """A looker-sdk model as the JSON dict the API sent (None fields dropped)."""
    data = serialize.converter40.unstructure(obj)
    return {k: v for k, v in dict(data).items() if v is not None}


def _writable(data: dict[str, Any], read_only: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in read_only and v is not None}
