"""Every Looker endpoint the service uses, as the service calls it, validated against the 4.0 spec.

A recording middleware captures each request and response while the real service plans,
applies (trash and purge), restores (un-trash and re-import) and meets 404 / 429 answers;
each exchange is then matched to its path in ../shared/specs/looker-4.0.oas.json and its
request and response bodies validated against the schemas there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator

from guardian.looker import service
from guardian.looker.client import connect
from guardian.sandbox.looker import FaultRule, LookerSandbox, LookerState, create_app, seed_demo
from guardian.sandbox.looker.history import seed_history
from guardian.sandbox.serve import start_in_thread
from guardian.store import get_store

REPO = Path(__file__).resolve().parents[3]
SPEC_PATH = REPO.parent / "shared" / "specs" / "looker-4.0.oas.json"
USED = {
    "POST /login",
    "GET /user",
    "GET /users",
    "GET /folders",
    "GET /dashboards",
    "GET /dashboards/search",
    "GET /dashboards/{dashboard_id}",
    "PATCH /dashboards/{dashboard_id}",
    "DELETE /dashboards/{dashboard_id}",
    "GET /dashboards/lookml/{dashboard_id}",
    "POST /dashboards/lookml",
    "POST /queries/run/{result_format}",
    "GET /scheduled_plans",
    "GET /scheduled_plans/dashboard/{dashboard_id}",
    "POST /scheduled_plans",
    "GET /alerts/search",
    "POST /alerts",
    # Looks
    "GET /looks/search",
    "GET /looks/{look_id}",
    "PATCH /looks/{look_id}",
    "DELETE /looks/{look_id}",
    "POST /looks",
    "POST /queries",
    "GET /scheduled_plans/look/{look_id}",
    "GET /dashboard_elements/search",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return dict(json.loads(SPEC_PATH.read_text(encoding="utf-8")))


def _recording_sandbox() -> tuple[LookerSandbox, list[dict[str, Any]]]:
    from starlette.requests import Request
    from starlette.responses import Response

    exchanges: list[dict[str, Any]] = []
    state = seed_demo(LookerState(), looks=True)
    app = create_app(state)

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        body = await request.body()
        response = await call_next(request)
        chunks = [chunk async for chunk in response.body_iterator]
        content = b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks)
        if request.url.path.startswith("/api/4.0"):
            exchanges.append(
                {
                    "method": request.method,
                    "path": request.url.path.removeprefix("/api/4.0"),
                    "content_type": request.headers.get("content-type", ""),
                    "request": body,
                    "status": response.status_code,
                    "response": content,
                }
            )
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(content, status_code=response.status_code, headers=headers, media_type=response.media_type)

    handle = start_in_thread(app)
    return LookerSandbox(handle.url, state, app, handle), exchanges


def _template(spec: dict[str, Any], method: str, path: str) -> str:
    candidates = []
    for template, ops in spec["paths"].items():
        if method.lower() not in ops:
            continue
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            candidates.append((template.count("{"), template))
    assert candidates, f"{method} {path} is not an endpoint of the Looker 4.0 spec"
    return min(candidates)[1]


def _validate(spec: dict[str, Any], schema: dict[str, Any], instance: Any, where: str) -> None:
    root = {**schema, "components": spec["components"]}
    errors = sorted(OAS30Validator(root).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{where}: {errors[0].message} at {list(errors[0].path)}"


def test_every_endpoint_the_service_uses_matches_the_spec(
    monkeypatch: pytest.MonkeyPatch, spec: dict[str, Any]
) -> None:
    from guardian.settings import load_settings

    server, exchanges = _recording_sandbox()
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "0.5")
        monkeypatch.setenv("GUARDIAN_LOOKER__PROTECTED_FOLDER_PATHS", "Shared/Finance")
        monkeypatch.setenv("GUARDIAN_LOOKER__ALLOW_OWNERS", "nobody@example.com")
        monkeypatch.setenv("GUARDIAN_LOOKER__API_BACKOFF_SECONDS", "0.01")
        settings = load_settings()
        seed_history(settings, get_store(settings), server.state)
        # Dashboard 17 (trashed, to be purged) has a schedule and an alert the restore must re-create;
        # dashboard 4 has disabled ones, which do not protect it.
        server.state.add_schedule("17", "3")
        server.state.add_alert("17-e0", "3")
        server.state.add_schedule("4", "5", enabled=False)
        server.state.add_alert("4-e1", "5", disabled=True)
        # Look 9 (trashed by the guardian, to be purged) has a schedule its re-creation must bring back.
        server.state.add_schedule(None, "3", look_id="9")
        client = connect(settings)
        plan = service.plan(settings, client=client)
        report = service.apply(settings, plan.id, client=client)
        # 5 dashboards trashed and 1 purged; Looks 2 and 3 trashed and Look 9 purged.
        assert report.done == 9
        results = service.restore(settings, ["4", "17", "424242", "look:2", "look:9"], client=client)
        assert [r.method for r in results] == ["untrashed", "reimported", "failed", "untrashed", "reimported"]
        assert "1 schedule(s) and 1 alert(s) re-created" in results[1].detail, results[1].detail
        assert "1 schedule(s) and 0 alert(s) re-created" in results[4].detail, results[4].detail
        client.all_dashboards("id,title")
        server.set_faults(FaultRule(status=429, count=1, path="^/folders"))
        client.folders()
    finally:
        server.stop()

    seen: set[str] = set()
    statuses: set[int] = set()
    for ex in exchanges:
        template = _template(spec, ex["method"], ex["path"])
        seen.add(f"{ex['method']} {template}")
        statuses.add(ex["status"])
        op = spec["paths"][template][ex["method"].lower()]
        where = f"{ex['method']} {ex['path']} -> {ex['status']}"
        if ex["request"] and "json" in ex["content_type"]:
            _validate(
                spec, op["requestBody"]["content"]["application/json"]["schema"], json.loads(ex["request"]), where
            )
        response = op["responses"].get(str(ex["status"]))
        assert response is not None, f"{where}: status not documented for this endpoint"
        if ex["status"] == 204:
            assert ex["response"] == b""
            continue
        schema = response["content"]["application/json"]["schema"]
        body = json.loads(ex["response"])
        if schema.get("type") == "string":
            # run_inline_query declares its JSON result as a string body: a JSON array of rows.
            assert isinstance(body, list) and all(isinstance(row, dict) for row in body), where
            continue
        _validate(spec, schema, body, where)
    assert seen == USED
    assert {200, 204, 404, 429} <= statuses
