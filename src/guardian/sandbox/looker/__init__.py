"""The Looker API 4.0 sandbox: an in-memory instance behind a FastAPI app.

``start(...)`` serves it on a background thread (tests, benchmarks); ``guardian sandbox
looker`` serves it in the foreground (demo). Clients log in with :data:`CLIENT_ID` /
:data:`CLIENT_SECRET`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardian.sandbox.looker.app import FaultRule, SandboxConfig, create_app
from guardian.sandbox.looker.state import LookerState, seed_bulk, seed_demo, seed_looks

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
    "seed_looks",
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


@dataclass
class SpawnedSandbox:
    """A sandbox in its own process (benchmarks: the client does not share its GIL)."""

    url: str
    process: Any

    @property
    def env(self) -> dict[str, str]:
        """The LOOKERSDK_* variables that point looker-sdk at this sandbox."""
        return {
            "LOOKERSDK_BASE_URL": self.url,
            "LOOKERSDK_CLIENT_ID": CLIENT_ID,
            "LOOKERSDK_CLIENT_SECRET": CLIENT_SECRET,
        }

    def stats(self) -> dict[str, int]:
        """Request counts per route, from the server."""
        import requests

        return dict(requests.get(f"{self.url}/sandbox/stats", timeout=10).json())

    def reset_stats(self) -> None:
        """Zero the request counts."""
        import requests

        requests.post(f"{self.url}/sandbox/stats/reset", timeout=10)

    def set_latency(self, latency_ms: float) -> None:
        """Change the latency added to every API request."""
        import requests

        requests.post(f"{self.url}/sandbox/latency", json={"latency_ms": latency_ms}, timeout=10)

    def stop(self) -> None:
        """Terminate the process."""
        self.process.terminate()
        self.process.wait(timeout=20)


def spawn(
    *,
    dashboards: int,
    latency_ms: float = 0.0,
    inactive_fraction: float = 0.05,
    trashed_fraction: float = 0.05,
    looks: int = 0,
) -> SpawnedSandbox:
    """Start ``guardian sandbox looker`` with a bulk instance in a subprocess and wait for it."""
    import subprocess
    import sys
    from pathlib import Path

    from guardian.sandbox.serve import free_port, wait_for_port

    port = free_port()
    guardian = str(Path(sys.executable).parent / "guardian")
    process = subprocess.Popen(
        [
            guardian,
            "sandbox",
            "looker",
            "--port",
            str(port),
            "--dashboards",
            str(dashboards),
            "--latency-ms",
            str(latency_ms),
            "--inactive-fraction",
            str(inactive_fraction),
            "--trashed-fraction",
            str(trashed_fraction),
            "--looks",
            str(looks),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, timeout=120)
    return SpawnedSandbox(f"http://127.0.0.1:{port}", process)
