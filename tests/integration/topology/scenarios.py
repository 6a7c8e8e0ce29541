"""What each guardian DAG must do on the local topology, and the sandboxes it runs against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REAL_DAGS = ["looker_dashboard_deletion", "bigquery_sales_query", "google_sheet_trigger_dag", "guardian_health"]


@dataclass
class Sandboxes:
    """Running sandboxes and the environment that points the topology's tasks at them."""

    env: dict[str, str] = field(default_factory=dict)
    handles: list[Any] = field(default_factory=list)


@contextmanager
def sandboxes(tmp: Path) -> Iterator[Sandboxes]:
    """Start fake-gcs-server (and the service sandboxes) for the topology's tasks."""
    from guardian.sandbox import fakegcs

    gcs = fakegcs.start()
    gcs.create_bucket("guardian-it")
    running = Sandboxes(
        env={
            "GUARDIAN_STORAGE__ROOT": "gs://guardian-it/guardian",
            "GUARDIAN_STORAGE__GCS_ENDPOINT": gcs.endpoint,
            "GUARDIAN_STORAGE__GCS_PROJECT": "guardian-local",
        },
        handles=[gcs],
    )
    try:
        yield running
    finally:
        for handle in reversed(running.handles):
            handle.stop()


def run(dag_id: str, topology: Any, boxes: Sandboxes) -> None:
    """Run one guardian DAG end to end and check its outcome."""
    raise AssertionError(f"no end-to-end scenario for {dag_id} yet")


def verify_audit_chain(topology: Any) -> None:
    """The Guardian store's audit chain (on the topology's PostgreSQL) verifies."""
    import os
    import subprocess

    env = {**os.environ, **topology.module.environment(topology.cfg)}
    out = subprocess.run(
        [str(topology.module.VENV_BIN / "guardian"), "audit", "verify"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
