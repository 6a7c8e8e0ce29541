"""Run a sandbox ASGI app with uvicorn, in a thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class ServerHandle:
    """A running uvicorn server."""

    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """Ask the server to exit and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int | None = None) -> ServerHandle:
    """Serve an ASGI app on a background thread; return once it accepts connections."""
    import uvicorn

    port = port or free_port()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()
    wait_for_port(host, port)
    return ServerHandle(f"http://{host}:{port}", server, thread)
