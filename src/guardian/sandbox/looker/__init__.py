"""The Looker API 4.0 sandbox: an in-memory instance behind a FastAPI app.

``start(...)`` serves it on a background thread (tests, benchmarks); ``guardian sandbox
looker`` serves it in the foreground (demo). Clients log in with :data:`CLIENT_ID` /
:data:`CLIENT_SECRET`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardian.sandbox.looker.app import FaultRule, SandboxConfig, create_app
from guardian.sandbox.looker.state import LookerState, seed_bulk, seed_demo

CLIENT_ID = "sandbox-id"
CLIENT_SECRET = "sandbox-secret"

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "FaultRule",
    "LookerSandbox",
    "LookerState",
    "SandboxConfig",
    "create_app",
    "seed_bulk",
    "seed_demo",
    "start",
]


@dataclass
class LookerSandbox:
    """A running sandbox: its base URL (for LOOKERSDK_BASE_URL), state and app."""

    url: str
    state: LookerState
    app: Any
    handle: Any

    @property
    def env(self) -> dict[str, str]:
        """The LOOKERSDK_* variables that point looker-sdk at this sandbox."""
        return {
            "LOOKERSDK_BASE_URL": self.url,
            "LOOKERSDK_CLIENT_ID": CLIENT_ID,
            "LOOKERSDK_CLIENT_SECRET": CLIENT_SECRET,
            "LOOKERSDK_VERIFY_SSL": "false",
        }

    @property
    def stats(self) -> Any:
        """Request counts per route (a Counter)."""
        return self.app.state.stats

    @property
    def writes(self) -> Any:
        """Changes applied to dashboards, per exact path (``PATCH /dashboards/7``)."""
        return self.app.state.writes

    def set_faults(self, *rules: FaultRule) -> None:
        """Replace the fault-injection rules."""
        self.app.state.faults[:] = list(rules)

    def stop(self) -> None:
        """Stop the server."""
        self.handle.stop()


def start(
    state: LookerState | None = None, config: SandboxConfig | None = None, port: int | None = None
) -> LookerSandbox:
    """Serve a sandbox (demo-seeded unless ``state`` is given) on a background thread."""
    from guardian.sandbox.serve import start_in_thread

    state = state if state is not None else seed_demo(LookerState())
    app = create_app(state, config)
    handle = start_in_thread(app, port=port)
    return LookerSandbox(handle.url, state, app, handle)
