"""The guardian Airflow plugin: the task listener, and on Airflow 3 the web UI inside the API server.

The UI is mounted at ``/guardian`` behind Airflow's own authentication (the JWT of the Airflow UI
session cookie, or a bearer token) and gets a "Guardian" entry in Airflow's navigation menu.
Registered through the ``airflow.plugins`` entry point of the guardian package.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.compat.sdk import AirflowPlugin

from guardian.airflow import listener
from guardian.web.auth import Permission, Principal

log = logging.getLogger(__name__)
URL_PREFIX = "/guardian"


# Custom-view resources an Airflow auth manager is asked about, and the method that stands for
# each Guardian permission (FAB maps GET to can_read, POST to can_create on the resource).
RESOURCES: dict[Permission, tuple[str, str]] = {
    Permission.READ: ("GET", "Guardian"),
    Permission.RESTORE: ("POST", "Guardian Restores"),
    Permission.APPROVE: ("POST", "Guardian Approvals"),
    Permission.ADMIN: ("POST", "Guardian Admin"),
}
# The simple auth manager answers every custom view for any role (its is_authorized_custom_view
# grants viewers everything), so its fixed roles are mapped onto Guardian roles instead.
SIMPLE_ROLES = {"viewer": "viewer", "user": "viewer", "op": "operator", "admin": "admin"}


def permissions_of(auth_manager: Any, user: Any) -> frozenset[Permission]:
    """The Guardian permissions Airflow's auth manager grants this user."""
    from guardian.web.auth import ROLES

    role = getattr(user, "role", None)
    if type(auth_manager).__name__ == "SimpleAuthManager":
        if _simple_all_admins():
            return ROLES["admin"]
        return ROLES.get(SIMPLE_ROLES.get(str(role or "").lower(), ""), frozenset())
    return frozenset(
        perm
        for perm, (method, resource) in RESOURCES.items()
        if auth_manager.is_authorized_custom_view(method=method, resource_name=resource, user=user)
    )


def _simple_all_admins() -> bool:
    from airflow.configuration import conf

    return conf.getboolean("core", "simple_auth_manager_all_admins", fallback=False)


async def airflow_user(request: Any) -> Principal | None:
    """The Airflow user of a request to the API server and its Guardian permissions (None: not logged in)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization") or ""
    via_token = header.lower().startswith("bearer ")
    token = header[7:] if via_token else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return None
    try:
        user = await resolve_user_from_token(token)
    except HTTPException:
        return None
    return Principal(str(user.get_name()), permissions_of(get_auth_manager(), user), via_token=via_token)


def _airflow3() -> bool:
    import airflow

    return int(airflow.__version__.split(".")[0]) >= 3


def _fastapi_apps() -> list[dict[str, Any]]:
    if not _airflow3():
        return []
    try:
        from guardian.settings import load_settings
        from guardian.web.app import create_app

        app = create_app(load_settings(), user_resolver=airflow_user, login_url=f"/auth/login?next={URL_PREFIX}/")
    except Exception:  # a broken guardian setting must not stop the Airflow API server
        log.exception("guardian: the web UI could not be created; the plugin serves the listener only")
        return []
    return [{"app": app, "url_prefix": URL_PREFIX, "name": "Guardian"}]


class GuardianPlugin(AirflowPlugin):
    """Listener everywhere; UI and menu entry in Airflow 3's API server."""

    name = "guardian"
    listeners = [listener]  # noqa: RUF012  (Airflow reads these class attributes)
    fastapi_apps = _fastapi_apps()
    external_views = (
        [
            {
                "name": "Guardian",
                "href": f"{URL_PREFIX}/",
                "destination": "nav",
                "url_route": "guardian",
                "category": "browse",
            }
        ]
        if _airflow3()
        else []
    )
