"""The local topology end to end: `start_airflow.sh --local` brought up with CeleryExecutor on the real
PostgreSQL and Redis, every DAG run through the Celery workers, a worker SIGKILLed mid-task, and a
clean stop.

One topology is started for the module (isolated: own state folder, databases, ports and Redis
database) and the tests run in file order against it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from topology import harness, scenarios

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow]


@pytest.fixture(scope="module")
def probe_dsn() -> Iterator[str]:
    with harness.probe_database() as dsn:
        yield dsn


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[scenarios.Sandboxes]:
    with scenarios.sandboxes(tmp_path_factory.mktemp("sandboxes")) as running:
        yield running


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, probe_dsn: str, sandboxes: scenarios.Sandboxes
) -> Iterator[harness.Running]:
    tmp = tmp_path_factory.mktemp("topology")
    env = {"TOPOLOGY_PROBE_DSN": probe_dsn, **sandboxes.env}
    with harness.local_topology(tmp, workers=2, worker_concurrency=2, extra_env=env) as running:
        yield running


def _probe_rows(dsn: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def test_every_service_is_healthy_and_both_workers_answer(topology: harness.Running) -> None:
    module = topology.module
    # Two shared cores: give a busy API server a few probes before calling it unhealthy.
    health = module.wait_healthy(topology.cfg, module.load_topology(), 60)
    assert health == {
        "airflow-apiserver": "healthy",
        "airflow-scheduler": "healthy",
        "airflow-dag-processor": "healthy",
        "airflow-triggerer": "healthy",
        "airflow-worker-1": "running",
        "airflow-worker-2": "running",
    }
    cfg = topology.cfg
    workers = module.worker_ping(module.environment(cfg), instance=cfg.instance)
    assert [w.split("@")[0] for w in workers] == [cfg.worker_name(1), cfg.worker_name(2)]
    assert topology.api.get("monitor/health")["metadatabase"]["status"] == "healthy"


def test_tasks_run_on_both_celery_workers(topology: harness.Running, probe_dsn: str) -> None:
    topology.api.wait_dag("topology_probe")
    run_ids = [topology.api.trigger("topology_probe", {"sleep": 3}) for _ in range(4)]
    for run_id in run_ids:
        assert topology.api.wait_run("topology_probe", run_id, timeout=180) == "success"
    workers = {row[0] for row in _probe_rows(probe_dsn, "SELECT worker FROM probe_effects")}
    # Four 3-second tasks with concurrency 2 per worker: the broker spreads them over both.
    assert workers == {"worker1", "worker2"}


@pytest.mark.parametrize("dag_id", scenarios.REAL_DAGS)
def test_dag_end_to_end_through_celery(topology: harness.Running, sandboxes: scenarios.Sandboxes, dag_id: str) -> None:
    """Each guardian DAG present in dags/ runs to success on the Celery workers against the sandboxes."""
    if not (harness.REPO / "dags" / f"{dag_id}.py").exists():
        pytest.fail(f"dags/{dag_id}.py is missing: the topology test runs every guardian DAG")
    scenarios.run(dag_id, topology, sandboxes)


def test_audit_chain_is_valid_after_every_run(topology: harness.Running) -> None:
    scenarios.verify_audit_chain(topology)


def test_stop_is_clean(topology: harness.Running) -> None:
    module = topology.module
    pids = {p.name: topology.pid(p.name) for p in module.processes(topology.cfg)}
    assert all(pids.values()), pids
    stopped = topology.stop()
    assert sorted(stopped) == sorted(pids)
    for name, pid in pids.items():
        assert pid is not None
        assert not module.alive(pid), f"{name} still runs"
        assert not module.pid_file(topology.cfg, name).exists()
    for port in (topology.cfg.port, topology.cfg.scheduler_health_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert Path(topology.cfg.logs_dir / "local" / "airflow-scheduler.log").stat().st_size > 0
