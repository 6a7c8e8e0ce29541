"""A Looker API 4.0 stand-in (FastAPI) for the endpoints the guardian uses.

Speaks: ``POST /login`` (form body, expiring tokens), ``GET /user``, ``GET /users``,
``GET /folders``, ``GET /dashboards`` (DashboardBase), ``GET /dashboards/search`` (paging,
``fields``, ``deleted`` and other filters), ``GET/PATCH/DELETE /dashboards/{id}``,
``GET /dashboards/lookml/{id}``, ``POST /dashboards/lookml``, ``GET /scheduled_plans``,
``GET /scheduled_plans/dashboard/{id}``, ``POST /scheduled_plans``, ``GET /alerts/search``,
``POST /alerts`` and ``POST /queries/run/json`` for the ``system__activity`` model's
``content_usage`` view (dashboards and Looks); for Looks ``GET /looks/search``,
``GET/PATCH/DELETE /looks/{id}``, ``POST /looks``, ``POST /queries``,
``GET /scheduled_plans/look/{id}`` and ``GET /dashboard_elements/search`` (which tiles show a
Look). Time comes from the state's clock, so a simulation can move it.
Responses follow the shapes of the published 4.0 spec (a test validates them).

Fault injection for reliability tests and demos: a fixed latency per request, and rules that
answer 429 / 5xx or respond slowly for matching requests (a count or a probability), set at
start (:class:`SandboxConfig`) or at run time with ``POST /sandbox/faults``. ``GET
/sandbox/stats`` counts API requests per route.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import Response

from guardian.sandbox.looker.state import LookerState, iso

PREFIX = "/api/4.0"
DOC_URL = "https://cloud.google.com/looker/docs/r/api/4.0"


@dataclass
class FaultRule:
    """Answer ``status`` (or sleep ``delay_ms``) for requests matching method and path regex."""

    status: int | None = None
    path: str = ".*"
    method: str | None = None
    count: int | None = None
    probability: float = 1.0
    delay_ms: int = 0
    delay_after_ms: int = 0
    """Handle the request, then wait this long before answering (the change is already made)."""


@dataclass
class SandboxConfig:
    """Start-time behaviour of the sandbox."""

    latency_ms: float = 0.0
    token_ttl: int = 3600
    faults: list[FaultRule] = field(default_factory=list)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"message": message, "documentation_url": DOC_URL}, status)


def parse_fields(spec: str | None) -> dict[str, Any] | None:
    """Parse Looker's ``fields`` syntax (``id,title,folder(id,name)``) into a tree."""
    if not spec:
        return None
    tree: dict[str, Any] = {}
    stack = [tree]
    token = ""
    for char in spec + ",":
        if char == "(":
            child: dict[str, Any] = {}
            stack[-1][token.strip()] = child
            stack.append(child)
            token = ""
        elif char == ")":
            if token.strip():
                stack[-1][token.strip()] = None
            stack.pop()
            token = ""
        elif char == ",":
            if token.strip():
                stack[-1][token.strip()] = None
            token = ""
        else:
            token += char
    return tree


def select(obj: Any, tree: dict[str, Any] | None) -> Any:
    """Keep only the requested fields (recursively)."""
    if tree is None or obj is None:
        return obj
    if isinstance(obj, list):
        return [select(item, tree) for item in obj]
    return {key: select(obj.get(key), sub) for key, sub in tree.items() if key in obj}


_BASE_FIELDS: tuple[str, ...] = (
    "id",
    "title",
    "description",
    "hidden",
    "query_timezone",
    "readonly",
    "refresh_interval",
    "folder",
    "content_favorite_id",
    "content_metadata_id",
    "user_id",
    "slug",
    "preferred_viewer",
)


def create_app(state: LookerState, config: SandboxConfig | None = None) -> FastAPI:
    """The sandbox ASGI app over ``state``."""
    cfg = config or SandboxConfig()
    app = FastAPI(title="Looker API 4.0 sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    tokens: dict[str, tuple[str, float]] = {}
    stats: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    faults: list[FaultRule] = list(cfg.faults)
    rng = random.Random(1)
    app.state.looker = state
    app.state.stats = stats
    app.state.writes = writes
    app.state.faults = faults
    app.state.config = cfg

    def route_key(method: str, path: str) -> str:
        path = re.sub(r"/scheduled_plans/dashboard/[^/]+$", "/scheduled_plans/dashboard/{id}", path)
        path = re.sub(r"/scheduled_plans/look/[^/]+$", "/scheduled_plans/look/{id}", path)
        path = re.sub(r"/looks/(?!search$)[^/]+$", "/looks/{id}", path)
        path = re.sub(r"/dashboards/(?!search$|lookml$)[^/]+$", "/dashboards/{id}", path)
        path = re.sub(r"/dashboards/lookml/[^/]+$", "/dashboards/lookml/{id}", path)
        return f"{method} {path}"

    @app.middleware("http")
    async def _gate(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if not path.startswith(PREFIX):
            return await call_next(request)
        api_path = path.removeprefix(PREFIX)
        stats[route_key(request.method, api_path)] += 1
        stats["total"] += 1
        delay = cfg.latency_ms / 1000.0
        after = 0.0
        for rule in list(faults):
            if rule.method and rule.method.upper() != request.method:
                continue
            if not re.search(rule.path, api_path):
                continue
            if rule.probability < 1.0 and rng.random() >= rule.probability:
                continue
            if rule.count is not None:
                if rule.count <= 0:
                    continue
                rule.count -= 1
            delay += rule.delay_ms / 1000.0
            after += rule.delay_after_ms / 1000.0
            if rule.status:
                if delay:
                    await asyncio.sleep(delay)
                stats["faults"] += 1
                response = _error(rule.status, f"sandbox fault injection: HTTP {rule.status}")
                if rule.status == 429:
                    response.headers["Retry-After"] = "0"
                return response
        if delay:
            await asyncio.sleep(delay)
        if api_path != "/login":
            header = request.headers.get("authorization", "")
            token = header.split(" ", 1)[1] if " " in header else ""
            entry = tokens.get(token)
            if entry is None or entry[1] < time.time():
                return _error(401, "Requires authentication.")
            request.state.user_id = entry[0]
        response = await call_next(request)
        if after:
            await asyncio.sleep(after)
        return response

    # -- sandbox control (not part of the Looker API) -----------------------------------
    @app.get("/sandbox/stats")
    async def sandbox_stats() -> Response:
        return _json(dict(stats))

    @app.post("/sandbox/stats/reset")
    async def sandbox_stats_reset() -> Response:
        stats.clear()
        return _json({"ok": True})

    @app.post("/sandbox/faults")
    async def sandbox_faults(request: Request) -> Response:
        body = await request.json()
        rules = body if isinstance(body, list) else [body]
        faults.clear()
        faults.extend(FaultRule(**rule) for rule in rules)
        return _json({"faults": len(faults)})

    @app.post("/sandbox/latency")
    async def sandbox_latency(request: Request) -> Response:
        cfg.latency_ms = float((await request.json())["latency_ms"])
        return _json({"latency_ms": cfg.latency_ms})

    @app.post("/sandbox/dashboards/{dashboard_id}/view")
    async def sandbox_view(dashboard_id: str) -> Response:
        if dashboard_id not in state.dashboards:
            return _error(404, "Not found")
        state.view(dashboard_id)
        return _json(state.dashboards[dashboard_id])

    @app.get("/sandbox/dashboards/{dashboard_id}")
    async def sandbox_peek(dashboard_id: str) -> Response:
        dash = state.dashboards.get(dashboard_id)
        return _json(dash) if dash else _error(404, "Not found")

    # -- auth ------------------------------------------------------------------------
    @app.post(PREFIX + "/login")
    async def login(request: Request) -> Response:
        raw = (await request.body()).decode("utf-8")
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        form.update({k: v for k, v in request.query_params.items() if k in ("client_id", "client_secret")})
        client = state.clients.get(form.get("client_id", ""))
        if client is None or client[0] != form.get("client_secret"):
            return _error(404, "Not found")
        token = secrets.token_urlsafe(24)
        tokens[token] = (client[1], time.time() + cfg.token_ttl)
        return _json(
            {"access_token": token, "token_type": "Bearer", "expires_in": cfg.token_ttl, "refresh_token": None}
        )

    @app.delete(PREFIX + "/logout")
    async def logout(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        tokens.pop(header.split(" ", 1)[-1], None)
        return Response(status_code=204)

    # -- users and folders -----------------------------------------------------------
    @app.get(PREFIX + "/user")
    async def me(request: Request) -> Response:
        user = state.users.get(request.state.user_id, {"id": request.state.user_id})
        return _json(select(user, parse_fields(request.query_params.get("fields"))))

    @app.get(PREFIX + "/users")
    async def all_users(request: Request) -> Response:
        ids = request.query_params.get("ids")
        users = list(state.users.values())
        if ids:
            wanted = set(ids.split(","))
            users = [u for u in users if u["id"] in wanted]
        return _json(select(users, parse_fields(request.query_params.get("fields"))))

    @app.get(PREFIX + "/folders")
    async def all_folders(request: Request) -> Response:
        return _json(select(list(state.folders.values()), parse_fields(request.query_params.get("fields"))))

    # -- dashboards ------------------------------------------------------------------
    @app.get(PREFIX + "/dashboards")
    async def all_dashboards(request: Request) -> Response:
        rows = [{k: d.get(k) for k in _BASE_FIELDS} for d in state.dashboards.values() if not d["deleted"]]
        return _json(select(rows, parse_fields(request.query_params.get("fields"))))

    @app.get(PREFIX + "/dashboards/search")
    async def search_dashboards(request: Request) -> Response:
        q = request.query_params
        deleted = q.get("deleted")
        want_deleted = deleted is not None and deleted.lower() == "true"
        # Spec, search_dashboards: "does not return LookML dashboard objects" -- they
        # come from the LookML project (lookml_dashboard_id), never from the dashboard search.
        rows = [d for d in state.dashboards.values() if bool(d["deleted"]) == want_deleted and "::" not in str(d["id"])]
        for name in ("id", "folder_id", "user_id", "slug", "content_metadata_id"):
            if q.get(name):
                wanted = set(q[name].split(","))
                rows = [d for d in rows if str(d.get(name)) in wanted]
        if q.get("title"):
            pattern = re.escape(q["title"].lower()).replace("%", ".*")
            rows = [d for d in rows if re.fullmatch(pattern, str(d["title"]).lower())]
        rows.sort(key=_id_key)
        offset = int(q.get("offset") or 0)
        limit = q.get("limit")
        if q.get("page") and q.get("per_page"):
            per_page = int(q["per_page"])
            offset, limit = (int(q["page"]) - 1) * per_page, str(per_page)
        page = rows[offset : offset + int(limit)] if limit else rows[offset:]
        return _json(select(page, parse_fields(q.get("fields"))))

    @app.get(PREFIX + "/dashboards/lookml/{dashboard_id}")
    async def dashboard_lookml(dashboard_id: str) -> Response:
        dash = state.dashboards.get(dashboard_id)
        if dash is None:
            return _error(404, "Not found")
        if "::" in dashboard_id:
            return _error(400, "LookML dashboards are defined in LookML already; export UDDs only")
        lookml = state.lookml_export.get(dashboard_id, state.lookml_of(dash))
        return _json({"dashboard_id": dashboard_id, "folder_id": dash.get("folder_id"), "lookml": lookml})

    @app.post(PREFIX + "/dashboards/lookml")
    async def import_dashboard_from_lookml(request: Request) -> Response:
        # Spec, import_dashboard_from_lookml: a live dashboard whose slug is the YAML's
        # preferred_slug is overwritten (its alerts are not maintained; with a folder_id it is
        # moved there); otherwise a new dashboard is made, in folder_id or, without one, in the
        # caller's personal folder.
        body = await request.json()
        lookml = body.get("lookml") or ""
        folder_id = body.get("folder_id")
        match = re.search(r"^\s*title:\s*(.+)$", lookml, re.MULTILINE)
        if not match or (folder_id is not None and folder_id not in state.folders):
            return _json(
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "field": "lookml",
                            "code": "invalid",
                            "message": "lookml needs a title and folder_id an existing folder",
                            "documentation_url": DOC_URL,
                        }
                    ],
                    "documentation_url": DOC_URL,
                },
                422,
            )
        title = _yaml_scalar(match.group(1))
        titles = [_yaml_scalar(t) for t in re.findall(r"^\s*- title:\s*(.+)$", lookml, re.MULTILINE)]
        slug_match = re.search(r"^\s*preferred_slug:\s*(\S+)\s*$", lookml, re.MULTILINE)
        slug = slug_match.group(1) if slug_match else None
        with state.lock:
            live = next(
                (d for d in state.dashboards.values() if slug and d.get("slug") == slug and not d["deleted"]), None
            )
            if live is not None:
                dash_id = str(live["id"])
                old_elements = {str(e["id"]) for e in live.get("dashboard_elements") or []}
                for alert_id in [
                    a for a, al in state.alerts.items() if str(al["dashboard_element_id"]) in old_elements
                ]:
                    del state.alerts[alert_id]
                live["title"] = title
                live["dashboard_elements"] = [
                    {"id": f"{dash_id}-e{i}", "dashboard_id": dash_id, "title": t, "type": "vis"}
                    for i, t in enumerate(titles)
                ]
                if folder_id is not None:
                    live["folder_id"] = folder_id
                    live["folder"] = state.folder_base(folder_id)
                live["updated_at"] = iso(state.now())
                dash = live
            else:
                dash = state.add_dashboard(
                    title=title,
                    user_id=request.state.user_id,
                    folder_id=folder_id if folder_id is not None else state.personal_folder(request.state.user_id),
                    created_at=state.now(),
                    elements=len(titles),
                )
                for element, t in zip(dash["dashboard_elements"], titles, strict=False):
                    element["title"] = t
                if slug and not any(d.get("slug") == slug for d in state.dashboards.values()):
                    dash["slug"] = slug
            writes["POST /dashboards/lookml"] += 1
            return _json(dash)

    @app.get(PREFIX + "/dashboards/{dashboard_id}")
    async def dashboard(dashboard_id: str, request: Request) -> Response:
        dash = state.dashboards.get(dashboard_id)
        if dash is None:
            return _error(404, "Not found")
        return _json(select(dash, parse_fields(request.query_params.get("fields"))))

    def _patch(content: dict[str, Any], body: dict[str, Any], writable: tuple[str, ...], user_id: str) -> None:
        """update_dashboard / update_look: writable keys copied; deleted=true moves to the trash
        (deleted_at and deleter_id set, as Looker reports them), deleted=false takes it out."""
        for key in writable:
            if key in body:
                content[key] = body[key]
        if "folder_id" in body:
            content["folder"] = state.folder_base(body["folder_id"])
        if "deleted" in body and bool(body["deleted"]) != bool(content["deleted"]):
            content["deleted"] = bool(body["deleted"])
            content["deleted_at"] = iso(state.now()) if content["deleted"] else None
            content["deleter_id"] = user_id if content["deleted"] else None
        content["updated_at"] = iso(state.now())
        content["last_updater_id"] = user_id

    @app.patch(PREFIX + "/dashboards/{dashboard_id}")
    async def update_dashboard(dashboard_id: str, request: Request) -> Response:
        body = await request.json()
        with state.lock:
            dash = state.dashboards.get(dashboard_id)
            if dash is None:
                return _error(404, "Not found")
            if "::" in dashboard_id:
                return _error(405, "LookML dashboards cannot be changed through the API")
            if "folder_id" in body and body["folder_id"] not in state.folders:
                return _error(404, "Folder not found")
            _patch(dash, body, ("title", "description", "hidden", "folder_id"), request.state.user_id)
            writes[f"PATCH /dashboards/{dashboard_id}"] += 1
            return _json(dash)

    @app.delete(PREFIX + "/dashboards/{dashboard_id}")
    async def delete_dashboard(dashboard_id: str) -> Response:
        with state.lock:
            if dashboard_id not in state.dashboards:
                return _error(404, "Not found")
            if "::" in dashboard_id:
                return _error(405, "LookML dashboards cannot be deleted through the API")
            dash = state.dashboards.pop(dashboard_id)
            state.usage.pop(dashboard_id, None)
            # A permanently deleted dashboard takes its schedules and its tiles' alerts with it.
            elements = {str(e["id"]) for e in dash.get("dashboard_elements") or []}
            for plan_id in [p for p, plan in state.scheduled_plans.items() if plan.get("dashboard_id") == dashboard_id]:
                del state.scheduled_plans[plan_id]
            for alert_id in [a for a, al in state.alerts.items() if str(al["dashboard_element_id"]) in elements]:
                del state.alerts[alert_id]
            writes[f"DELETE /dashboards/{dashboard_id}"] += 1
        return Response(status_code=204)

    # -- schedules and alerts ----------------------------------------------------------
    def _plans_for(request: Request, plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Spec, all_scheduled_plans / scheduled_plans_for_dashboard: the caller's plans unless
        # user_id is given, every user's with all_users=true.
        q = request.query_params
        if (q.get("all_users") or "").lower() == "true":
            return plans
        owner = q.get("user_id") or request.state.user_id
        return [p for p in plans if str(p["user_id"]) == str(owner)]

    @app.get(PREFIX + "/scheduled_plans")
    async def all_scheduled_plans(request: Request) -> Response:
        plans = _plans_for(request, list(state.scheduled_plans.values()))
        return _json(select(plans, parse_fields(request.query_params.get("fields"))))

    @app.get(PREFIX + "/scheduled_plans/dashboard/{dashboard_id}")
    async def scheduled_plans_for_dashboard(dashboard_id: str, request: Request) -> Response:
        plans = [p for p in state.scheduled_plans.values() if p.get("dashboard_id") == dashboard_id]
        return _json(select(_plans_for(request, plans), parse_fields(request.query_params.get("fields"))))

    @app.post(PREFIX + "/scheduled_plans")
    async def create_scheduled_plan(request: Request) -> Response:
        # Spec, create_scheduled_plan: name, a target (dashboard_id / look_id ...), crontab or
        # datagroup, and at least one destination are required; else 422.
        body = await request.json()
        target = body.get("dashboard_id") or body.get("look_id") or body.get("lookml_dashboard_id")
        missing = [
            name
            for name, ok in (
                ("name", body.get("name")),
                ("dashboard_id", target),
                ("crontab", body.get("crontab") or body.get("datagroup")),
                ("scheduled_plan_destination", body.get("scheduled_plan_destination")),
            )
            if not ok
        ]
        if missing or (body.get("dashboard_id") and body["dashboard_id"] not in state.dashboards):
            return _validation_error(missing or ["dashboard_id"])
        if body.get("look_id") and str(body["look_id"]) not in state.looks:
            return _validation_error(["look_id"])
        plan = state.add_schedule(
            body.get("dashboard_id"),
            str(body.get("user_id") or request.state.user_id),
            enabled=bool(body.get("enabled", True)),
            look_id=None if body.get("look_id") is None else str(body["look_id"]),
        )
        for key in ("name", "crontab", "timezone", "scheduled_plan_destination", "filters_string"):
            if body.get(key) is not None:
                plan[key] = body[key]
        writes["POST /scheduled_plans"] += 1
        return _json(plan)

    @app.get(PREFIX + "/alerts/search")
    async def search_alerts(request: Request) -> Response:
        # Spec, search_alerts: the caller's alerts; all_owners=true (admin) returns every owner's.
        q = request.query_params
        alerts = sorted(state.alerts.values(), key=lambda a: int(a["id"]))
        if (q.get("all_owners") or "").lower() != "true":
            alerts = [a for a in alerts if str(a["owner_id"]) == str(request.state.user_id)]
        if q.get("disabled") is not None:
            alerts = [a for a in alerts if bool(a["is_disabled"]) == (q["disabled"].lower() == "true")]
        offset = int(q.get("offset") or 0)
        limit = int(q["limit"]) if q.get("limit") else None
        page = alerts[offset : offset + limit] if limit is not None else alerts[offset:]
        return _json(select(page, parse_fields(q.get("fields"))))

    @app.post(PREFIX + "/alerts")
    async def create_alert(request: Request) -> Response:
        # Spec, create_alert: field, destinations, comparison_type, threshold and cron are required.
        body = await request.json()
        missing = [k for k in ("field", "destinations", "comparison_type", "threshold", "cron") if body.get(k) is None]
        element = str(body.get("dashboard_element_id") or "")
        if missing or not element or state.element_dashboard(element) is None:
            return _validation_error(missing or ["dashboard_element_id"])
        alert = state.add_alert(element, str(body.get("owner_id") or request.state.user_id))
        for key in ("comparison_type", "cron", "destinations", "field", "threshold", "custom_title", "is_disabled"):
            if body.get(key) is not None:
                alert[key] = body[key]
        writes["POST /alerts"] += 1
        return _json(alert)

    # -- Looks -----------------------------------------------------------------------
    @app.get(PREFIX + "/looks/search")
    async def search_looks(request: Request) -> Response:
        # Spec, search_looks / update_look: soft-deleted Looks are excluded from search_looks
        # unless deleted=true is passed, which lists the soft-deleted ones.
        q = request.query_params
        want_deleted = (q.get("deleted") or "").lower() == "true"
        rows = [lk for lk in state.looks.values() if bool(lk["deleted"]) == want_deleted]
        for name in ("id", "folder_id", "user_id", "query_id"):
            if q.get(name):
                wanted = set(q[name].split(","))
                rows = [lk for lk in rows if str(lk.get(name)) in wanted]
        rows.sort(key=_id_key)
        offset = int(q.get("offset") or 0)
        limit = q.get("limit")
        page = rows[offset : offset + int(limit)] if limit else rows[offset:]
        return _json(select(page, parse_fields(q.get("fields"))))

    @app.get(PREFIX + "/looks/{look_id}")
    async def look(look_id: str, request: Request) -> Response:
        # Spec, look: "detailed information about a Look and its associated Query" (LookWithQuery).
        found = state.looks.get(look_id)
        if found is None:
            return _error(404, "Not found")
        return _json(select(found, parse_fields(request.query_params.get("fields"))))

    @app.patch(PREFIX + "/looks/{look_id}")
    async def update_look(look_id: str, request: Request) -> Response:
        # Spec, update_look: deleted=true soft-deletes (moves to the trash), deleted=false undeletes;
        # read-only properties are ignored.
        body = await request.json()
        with state.lock:
            found = state.looks.get(look_id)
            if found is None:
                return _error(404, "Not found")
            if "folder_id" in body and body["folder_id"] not in state.folders:
                return _error(404, "Folder not found")
            _patch(
                found, body, ("title", "description", "folder_id", "public", "is_run_on_load"), request.state.user_id
            )
            writes[f"PATCH /looks/{look_id}"] += 1
            return _json(found)

    @app.delete(PREFIX + "/looks/{look_id}")
    async def delete_look(look_id: str) -> Response:
        # Spec, delete_look: permanent, no undo; 204. Its schedules go with it (Looker deletes a
        # content's scheduled plans with the content); its query stays (queries are never deleted).
        with state.lock:
            if look_id not in state.looks:
                return _error(404, "Not found")
            del state.looks[look_id]
            state.look_usage.pop(look_id, None)
            for plan_id in [p for p, plan in state.scheduled_plans.items() if plan.get("look_id") == look_id]:
                del state.scheduled_plans[plan_id]
            writes[f"DELETE /looks/{look_id}"] += 1
        return Response(status_code=204)

    @app.post(PREFIX + "/queries")
    async def create_query(request: Request) -> Response:
        # Spec, create_query: model and view are required; an identical existing query is returned.
        body = await request.json()
        missing = [k for k in ("model", "view") if not body.get(k)]
        if missing:
            return _validation_error(missing)
        query = state.add_query(str(body["model"]), str(body["view"]), tuple(body.get("fields") or ()))
        return _json(query)

    @app.post(PREFIX + "/looks")
    async def create_look(request: Request) -> Response:
        # Spec, create_look: first create the query, then pass its id as query_id; a folder to
        # place it in (folder_id). A missing title, query or folder is refused (422).
        body = await request.json()
        query_id = str(body.get("query_id") or "")
        folder_id = body.get("folder_id")
        missing = [
            name
            for name, ok in (
                ("title", body.get("title")),
                ("query_id", query_id in state.queries),
                ("folder_id", folder_id is None or folder_id in state.folders),
            )
            if not ok
        ]
        if missing:
            return _validation_error(missing)
        created = state.add_look(
            title=str(body["title"]),
            user_id=request.state.user_id,
            folder_id=folder_id if folder_id is not None else state.personal_folder(request.state.user_id),
            created_at=state.now(),
            query_id=query_id,
            public=bool(body.get("public") or False),
        )
        if body.get("description") is not None:
            created["description"] = body["description"]
        writes["POST /looks"] += 1
        return _json(created)

    @app.get(PREFIX + "/scheduled_plans/look/{look_id}")
    async def scheduled_plans_for_look(look_id: str, request: Request) -> Response:
        plans = [p for p in state.scheduled_plans.values() if p.get("look_id") == look_id]
        return _json(select(_plans_for(request, plans), parse_fields(request.query_params.get("fields"))))

    @app.get(PREFIX + "/dashboard_elements/search")
    async def search_dashboard_elements(request: Request) -> Response:
        # Spec, search_dashboard_elements: tiles matching look_id / dashboard_id; deleted=true
        # selects the tiles of soft-deleted dashboards (unset: both).
        q = request.query_params
        rows = []
        for dash in sorted(state.dashboards.values(), key=_id_key):
            if q.get("deleted") is not None and bool(dash["deleted"]) != (q["deleted"].lower() == "true"):
                continue
            for element in dash.get("dashboard_elements") or []:
                if q.get("look_id") and str(element.get("look_id")) not in set(q["look_id"].split(",")):
                    continue
                if q.get("dashboard_id") and str(element.get("dashboard_id")) not in set(q["dashboard_id"].split(",")):
                    continue
                rows.append(element)
        return _json(select(rows, parse_fields(q.get("fields"))))

    # -- System Activity -------------------------------------------------------------
    @app.post(PREFIX + "/queries/run/{result_format}")
    async def run_inline_query(result_format: str, request: Request) -> Response:
        body = await request.json()
        if result_format != "json":
            return _error(400, f"result_format {result_format} is not supported by the sandbox; use json")
        if body.get("model") != "system__activity":
            return _error(404, f"model {body.get('model')!r} not found")
        if body.get("view") != "content_usage":
            return _error(404, f"explore {body.get('view')!r} is not served by the sandbox; use content_usage")
        fields = list(body.get("fields") or [])
        filters = body.get("filters") or {}
        # Looker filter expressions: "dashboard,look" is dashboard OR look.
        kinds = {k.strip() for k in str(filters.get("content_usage.content_type", "dashboard")).split(",")}
        rows = []
        now = state.now()
        sources = [("dashboard", state.usage, state.dashboards), ("look", state.look_usage, state.looks)]
        for kind, usages, objects in sources:
            if kind not in kinds:
                continue
            rows.extend(_usage_rows(kind, usages, objects, fields, now))
        limit = request.query_params.get("limit") or body.get("limit")
        if limit and int(limit) >= 0:
            rows = rows[: int(limit)]
        return Response(json.dumps(rows), media_type="application/json")

    return app


def _usage_rows(
    kind: str, usages: dict[str, Any], objects: dict[str, dict[str, Any]], fields: list[str], now: Any
) -> list[dict[str, Any]]:
    rows = []
    for content_id, usage in usages.items():
        last = usage.last_accessed
        full = {
            "content_usage.content_id": content_id,
            "content_usage.content_type": kind,
            "content_usage.content_title": objects.get(content_id, {}).get("title"),
            "content_usage.last_accessed_date": last.date().isoformat() if last else None,
            "content_usage.days_since_last_accessed": (now - last).days if last else None,
            "content_usage.schedule_total": usage.schedule_total,
            "content_usage.public_total": usage.public_total,
            "content_usage.api_total": usage.api_total,
        }
        rows.append({f: full.get(f) for f in fields})
    return rows


def _validation_error(fields: list[str]) -> Response:
    return _json(
        {
            "message": "Validation Failed",
            "errors": [
                {"field": f, "code": "missing", "message": f"{f} is required", "documentation_url": DOC_URL}
                for f in fields
            ],
            "documentation_url": DOC_URL,
        },
        422,
    )


def _yaml_scalar(text: str) -> str:
    text = text.strip()
    if text.startswith('"'):
        try:
            return str(json.loads(text))
        except ValueError:
            return text.strip('"')
    return text


def _id_key(dash: dict[str, Any]) -> tuple[int, str]:
    ident = str(dash["id"])
    return (0, ident.zfill(12)) if ident.isdigit() else (1, ident)
