"""``guardian serve``: the standalone web UI under uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guardian.errors import ConfigError

if TYPE_CHECKING:
    from guardian.settings import Settings


def run(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Serve the UI until interrupted; refuses to start without users (no anonymous access)."""
    import uvicorn

    from guardian.logging import configure
    from guardian.web.app import create_app

    if not settings.web.users:
        raise ConfigError(
            "GUARDIAN_WEB__USERS is empty: the UI has no anonymous access; "
            "set e.g. GUARDIAN_WEB__USERS=admin:env:GUARDIAN_ADMIN_PASSWORD"
        )
    configure(settings, json_lines=True)
    app = create_app(settings)
    uvicorn.run(app, host=host or settings.web.host, port=port or settings.web.port, log_config=None, access_log=True)
