"""The Guardian web UI and its JSON API (FastAPI, Jinja2 templates rendered on the server).

``create_app()`` builds the standalone app (``guardian serve``: its own login) or, given a
``user_resolver``, the app mounted in Airflow 3's API server behind Airflow's authentication
(see ``guardian.airflow.plugin``). No page or API answers an anonymous request; every write
action needs a logged-in user and a CSRF token, and is audited with that user.
"""

from __future__ import annotations

import hmac
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from guardian import __version__
from guardian.web import auth, data

if TYPE_CHECKING:
    from guardian.settings import Settings
    from guardian.store import Store

TEMPLATES = Path(__file__).parent / "templates"
NAV = [
    ("overview", "Overview", "/"),
    ("alerts", "Alerts", "/alerts"),
    ("looker", "Looker", "/looker"),
    ("sheets", "Sheets requests", "/sheets"),
    ("sales", "Sales runs", "/sales"),
    ("quality", "Data quality", "/quality"),
    ("audit", "Audit log", "/audit"),
]


class LoginRequired(Exception):
    """Raised by the page dependency; answered with a redirect to the login page."""


async def current_user(request: Request) -> auth.Principal | None:
    """The authenticated caller of a request (standalone session or Airflow's token), or None."""
    cached = request.scope.get("guardian.principal", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]
    result = request.app.state.user_resolver(request)
    principal = await result if inspect.isawaitable(result) else result
    request.scope["guardian.principal"] = principal
    return principal  # type: ignore[no-any-return]


_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def require(permission: auth.Permission) -> Callable[[Request], Awaitable[auth.Principal]]:
    """Route dependency: the caller must be logged in and hold ``permission``.

    Pages answer an anonymous caller with a redirect to the login, the API with 401; a caller
    without the permission gets 403. A state-changing request authenticated by a cookie must
    carry the session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``); only a
    request authenticated by a bearer token is exempt (a browser never adds one by itself).
    """

    async def dependency(request: Request) -> auth.Principal:
        principal = await current_user(request)
        if principal is None:
            if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
                raise HTTPException(status_code=401, detail="log in first")
            raise LoginRequired()
        if not principal.can(permission):
            raise HTTPException(status_code=403, detail=f"your role does not grant {permission.value!r}")
        if request.method not in _SAFE_METHODS and not principal.via_token:
            submitted = request.headers.get("x-csrf-token")
            if not submitted and "form" in (request.headers.get("content-type") or ""):
                submitted = str((await request.form()).get("csrf") or "")
            if not auth.csrf_ok(request, submitted):
                raise HTTPException(status_code=403, detail="missing or stale CSRF token: reload the page")
        return principal

    dependency.guardian_permission = permission  # type: ignore[attr-defined]
    return dependency


def route_permission(route: APIRoute) -> auth.Permission | None:
    """The permission a route declares through ``require`` (None: a public route)."""
    for dep in route.dependant.dependencies:
        found = getattr(dep.call, "guardian_permission", None)
        if found is not None:
            return found  # type: ignore[no-any-return]
    return None


Reader = Annotated[auth.Principal, Depends(require(auth.Permission.READ))]
Restorer = Annotated[auth.Principal, Depends(require(auth.Permission.RESTORE))]
Approver = Annotated[auth.Principal, Depends(require(auth.Permission.APPROVE))]
PUBLIC_ROUTES = {"/login", "/logout", "/healthz", "/metrics", "/api/openapi.json", "/api/docs"}
"""Routes that answer without a login (/metrics has its own bearer token)."""


def create_app(
    settings: Settings | None = None,
    *,
    user_resolver: auth.UserResolver | None = None,
    login_url: str | None = None,
) -> FastAPI:
    """The UI app: standalone login unless a user_resolver (Airflow's auth) is given."""
    from guardian.settings import load_settings
    from guardian.store import get_store

    settings = settings or load_settings()
    standalone = user_resolver is None
    if standalone:
        auth.parse_users(settings)  # a bad GUARDIAN_WEB__USERS fails at start, not at login

    def store() -> Store:
        return get_store(settings)

    resolver: auth.UserResolver = user_resolver or auth.standalone_resolver(settings, store)
    throttle = auth.LoginThrottle(
        store, settings.web.login_max_failures, settings.web.login_max_failures_per_address, settings.web.login_window
    )
    app = FastAPI(
        title="Airflow Guardian",
        version=__version__,
        description="Health, alerts, Looker plans and restores, Sheets requests, Sales runs, "
        "data quality and the audit log of the Guardian.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=auth.session_secret(settings),
        session_cookie="guardian_session",
        max_age=settings.web.session_max_age,
        same_site="lax",
        https_only=settings.web.secure_cookies,
    )
    # Inside Airflow the UI is shown in Airflow's own frame (same origin); standalone, never framed.
    frame_ancestors = "'none'" if standalone else "'self'"
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors {frame_ancestors}"
    )

    @app.middleware("http")
    async def _security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if not request.url.path.endswith("/api/docs"):  # Swagger UI loads its scripts from a CDN
            response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("X-Frame-Options", "DENY" if standalone else "SAMEORIGIN")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    app.state.user_resolver = resolver
    templates = Jinja2Templates(directory=str(TEMPLATES))
    airflow_ui = (settings.web.airflow_ui_url or settings.notify.ui_base_url).rstrip("/")

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired) -> Response:
        if not standalone:
            return RedirectResponse(login_url or "/", status_code=303)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login?next={quote(target)}", status_code=303)

    def render(request: Request, name: str, user: auth.Principal, active: str, **ctx: Any) -> HTMLResponse:
        started = time.perf_counter()
        response = templates.TemplateResponse(
            request,
            name,
            {
                "user": user.name,
                "can": {p.value: user.can(p) for p in auth.Permission},
                "nav": NAV,
                "active": active,
                "standalone": standalone,
                "csrf": auth.csrf_token(request),
                "airflow_ui": airflow_ui,
                "root": request.scope.get("root_path", ""),
                "flash": request.session.pop("flash", None),
                **ctx,
            },
        )
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def audit_web(user: str, action: str, target: str, **kw: Any) -> None:
        from guardian import audit

        audit.record(action, target, actor=f"web:{user}", context={"ui": "guardian-web"}, store=store(), **kw)

    def client_address(request: Request) -> str:
        # The socket peer: a proxy's X-Forwarded-For is not trusted (anyone can send one).
        return request.client.host if request.client else "?"

    # -- login (standalone only) ----------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request, next: str = "/") -> Response:
        if not standalone:
            return RedirectResponse(login_url or "/", status_code=303)
        return templates.TemplateResponse(
            request, "login.html", {"next": next, "error": None, "root": request.scope.get("root_path", "")}
        )

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form(max_length=200)],
        password: Annotated[str, Form(max_length=1000)],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        if not standalone:
            raise HTTPException(status_code=404)
        address = client_address(request)
        shown = username[:64]  # a bounded name in the audit log, whatever was typed
        attempt = throttle.begin(username, address)  # counted as a failure until the password proves right
        wait = attempt.retry_after
        if wait:
            audit_web(shown or "?", "web.login", f"user:{shown}", outcome="throttled", after={"client": address})
            return templates.TemplateResponse(
                request,
                "login.html",
                {
                    "next": next,
                    "error": f"Too many failed logins: try again in {wait} s.",
                    "root": request.scope.get("root_path", ""),
                },
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        user = auth.check_password(settings, username, password)
        if user is None:
            audit_web(shown or "?", "web.login", f"user:{shown}", outcome="failed", after={"client": address})
            return templates.TemplateResponse(
                request,
                "login.html",
                {"next": next, "error": "Unknown user or wrong password.", "root": request.scope.get("root_path", "")},
                status_code=401,
            )
        throttle.succeeded(attempt)
        old = request.session.get("sid")
        if old:
            auth.revoke_session(store(), str(old))
        request.session.clear()  # a fresh session id and CSRF token at every login (no fixation)
        request.session["sid"] = auth.open_session(store(), user, settings.web.session_max_age, address)
        auth.csrf_token(request)
        audit_web(user.name, "web.login", f"user:{user.name}", after={"client": address, "role": user.role})
        safe_next = next if next.startswith("/") and not next.startswith("//") else "/"
        return RedirectResponse(request.scope.get("root_path", "") + safe_next, status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        sid = request.session.get("sid")
        if sid:
            auth.revoke_session(store(), str(sid))
        request.session.clear()
        return RedirectResponse(request.scope.get("root_path", "") + "/login", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- pages ------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request, user: Reader) -> Response:
        return render(request, "overview.html", user, "overview", **data.overview(store()))

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, include_in_schema=False)
    def dag_page(request: Request, dag_id: str, user: Reader) -> Response:
        return render(request, "dag.html", user, "overview", **data.dag_detail(store(), dag_id))

    @app.get("/alerts", response_class=HTMLResponse, include_in_schema=False)
    def alerts_page(request: Request, user: Reader) -> Response:
        return render(request, "alerts.html", user, "alerts", **data.alerts_page(store()))

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(
        request: Request, user: Reader, q: str | None = None, actor: str | None = None, action: str | None = None
    ) -> Response:
        events = data.audit_search(store(), q=q, actor=actor, action=action)
        return render(
            request,
            "audit.html",
            user,
            "audit",
            events=events,
            q=q or "",
            actor=actor or "",
            action=action or "",
            verify=None,
        )

    @app.post("/audit/verify", response_class=HTMLResponse, include_in_schema=False)
    def audit_verify_page(request: Request, user: Reader) -> Response:
        from guardian import audit

        report = audit.verify(store(), settings=settings)
        return render(
            request,
            "audit.html",
            user,
            "audit",
            events=data.audit_search(store()),
            q="",
            actor="",
            action="",
            verify=report,
        )

    @app.get("/looker", response_class=HTMLResponse, include_in_schema=False)
    def looker_page(request: Request, user: Reader) -> Response:
        return render(request, "looker.html", user, "looker", **looker_data())

    @app.get("/looker/restore", response_class=HTMLResponse, include_in_schema=False)
    def looker_restore_confirm(request: Request, user: Reader, dashboard_id: str) -> Response:
        looker = looker_data()
        candidates = [a for a in looker.get("restorable", []) if str(a.get("label")) == dashboard_id]
        return render(
            request,
            "restore_confirm.html",
            user,
            "looker",
            dashboard_id=dashboard_id,
            action=candidates[0] if candidates else None,
            available=looker["restore_available"],
        )

    @app.post("/looker/restore", response_class=HTMLResponse, include_in_schema=False)
    def looker_restore(
        request: Request,
        user: Restorer,
        dashboard_id: Annotated[str, Form()],
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        if confirm != dashboard_id:
            request.session["flash"] = f"Not restored: type the dashboard id {dashboard_id} to confirm."
            return RedirectResponse(
                f"{request.scope.get('root_path', '')}/looker/restore?dashboard_id={quote(dashboard_id)}",
                status_code=303,
            )
        message = do_restore(user.name, dashboard_id)
        request.session["flash"] = message
        return RedirectResponse(f"{request.scope.get('root_path', '')}/looker", status_code=303)

    @app.post("/looker/keep", response_class=HTMLResponse, include_in_schema=False)
    def looker_keep(
        request: Request,
        user: Approver,
        dashboard_id: Annotated[str, Form()],
        until: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        from guardian.web import looker_view

        request.session["flash"] = looker_view.keep(
            settings, store(), user.name, dashboard_id, until, reason, audit_web
        )
        return RedirectResponse(f"{request.scope.get('root_path', '')}/looker", status_code=303)

    @app.get("/sheets", response_class=HTMLResponse, include_in_schema=False)
    def sheets_page(request: Request, user: Reader) -> Response:
        from guardian.sheets.ledger import list_requests

        rows = [data.plain(r) for r in list_requests(store(), limit=200)]
        return render(
            request,
            "table.html",
            user,
            "sheets",
            title="Sheets requests",
            rows=rows,
            empty="No requests yet: rows marked run in the control sheet appear here.",
            missing="The Sheets request ledger is not installed in this deployment.",
        )

    @app.get("/sales", response_class=HTMLResponse, include_in_schema=False)
    def sales_page(request: Request, user: Reader) -> Response:
        from guardian.sales.runs import list_runs

        rows = [data.plain(r) for r in list_runs(store(), limit=100)]
        return render(
            request,
            "sales.html",
            user,
            "sales",
            title="Sales runs",
            rows=rows,
            empty="No sales runs yet: trigger bigquery_sales_query or run `guardian sales run`.",
            missing="The Sales service is not installed in this deployment.",
        )

    @app.get("/quality", response_class=HTMLResponse, include_in_schema=False)
    def quality_page(request: Request, user: Reader, suite: str | None = None) -> Response:
        from guardian.quality.results import latest_results

        rows = [data.plain(r) for r in latest_results(store(), suite=suite, limit=300)]
        return render(request, "quality.html", user, "quality", rows=rows, suite=suite or "")

    # -- JSON API ---------------------------------------------------------------------------
    @app.get("/api/overview", tags=["health"], summary="DAG health, open alerts, recent failures and runs")
    def api_overview(user: Reader) -> dict[str, Any]:
        return data.overview(store())

    @app.get("/api/dags/{dag_id}", tags=["health"], summary="One DAG's newest snapshot and runs")
    def api_dag(dag_id: str, user: Reader) -> dict[str, Any]:
        return data.dag_detail(store(), dag_id)

    @app.get("/api/alerts", tags=["health"], summary="Open alerts and alert history")
    def api_alerts(user: Reader) -> dict[str, Any]:
        return data.alerts_page(store())

    @app.get("/api/audit", tags=["audit"], summary="Search the audit log (newest first)")
    def api_audit(
        user: Reader,
        q: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return data.audit_search(store(), q=q, actor=actor, action=action, limit=limit)

    @app.get("/api/audit/verify", tags=["audit"], summary="Walk the hash chain")
    def api_audit_verify(user: Reader) -> dict[str, Any]:
        from guardian import audit

        report = audit.verify(store(), settings=settings)
        return {"ok": report.ok, "rows": report.rows, "first_bad_seq": report.first_bad_seq, "reason": report.reason}

    @app.get("/api/looker", tags=["looker"], summary="Latest plan, trashed and purged dashboards, backups")
    def api_looker(user: Reader) -> dict[str, Any]:
        return looker_data()

    @app.post("/api/looker/restore", tags=["looker"], summary="Restore a trashed dashboard (audited)")
    def api_looker_restore(user: Restorer, dashboard_id: Annotated[str, Form()]) -> dict[str, str]:
        return {"result": do_restore(user.name, dashboard_id)}

    @app.get("/api/sheets/requests", tags=["sheets"], summary="The Sheets request ledger")
    def api_sheets(user: Reader) -> list[dict[str, Any]]:
        from guardian.sheets.ledger import list_requests

        return [data.plain(r) for r in list_requests(store(), limit=200)]

    @app.get("/api/sales/runs", tags=["sales"], summary="Sales runs")
    def api_sales(user: Reader) -> list[dict[str, Any]]:
        from guardian.sales.runs import list_runs

        return [data.plain(r) for r in list_runs(store(), limit=100)]

    @app.get("/api/quality", tags=["quality"], summary="Newest data-quality results")
    def api_quality(user: Reader, suite: str | None = None) -> list[dict[str, Any]]:
        from guardian.quality.results import latest_results

        return [data.plain(r) for r in latest_results(store(), suite=suite, limit=300)]

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics(request: Request) -> Response:
        from guardian.monitoring.metrics import CONTENT_TYPE
        from guardian.monitoring.metrics import render as render_metrics

        if not metrics_allowed(request):
            return JSONResponse(
                {"detail": "bearer token required (GUARDIAN_WEB__METRICS_TOKEN_REF)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(render_metrics(store()), media_type=CONTENT_TYPE)

    def metrics_allowed(request: Request) -> bool:
        # Metrics name DAGs, alerts and volumes: never anonymous, in any mode.
        if not settings.web.metrics_token_ref:
            return False
        from guardian.secrets import resolve

        expected = resolve(settings.web.metrics_token_ref, setting="GUARDIAN_WEB__METRICS_TOKEN_REF")
        given = request.headers.get("authorization") or ""
        return hmac.compare_digest(given.encode(), f"Bearer {expected.get_secret_value()}".encode())

    # -- Looker glue --------------------------------------------------------------------------
    def looker_data() -> dict[str, Any]:
        from guardian.web import looker_view

        return looker_view.page_data(settings, store())

    def do_restore(user: str, dashboard_id: str) -> str:
        from guardian.web import looker_view

        return looker_view.restore(settings, store(), user, dashboard_id, audit_web)

    return app
