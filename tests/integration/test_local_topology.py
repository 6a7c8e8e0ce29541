"""The local topology end to end: `start_airflow.sh --local` brought up under supervisord with
CeleryExecutor on the real PostgreSQL and Redis, every DAG run through the Celery workers, a worker
SIGKILLed mid-task, the scheduler and a worker SIGKILLed and restarted by supervisord, and a clean stop.

One topology is started for the module (isolated: own state folder, databases, ports and Redis
database) and the tests run in file order against it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from topology import harness, scenarios

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.airflow]
# The queue of the extra worker "host" (tests/integration/topology/dags/topology_queue_probe.py).
EXTRA_QUEUE = f"topology-extra-{uuid.uuid4().hex[:8]}"


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
    env = {"TOPOLOGY_PROBE_DSN": probe_dsn, "TOPOLOGY_EXTRA_QUEUE": EXTRA_QUEUE, **sandboxes.env}
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


def test_a_worker_from_a_separate_environment_folder_runs_its_own_queue(
    topology: harness.Running, probe_dsn: str, tmp_path: Path
) -> None:
    """One more Celery worker, as on a second host: its own folder (AIRFLOW_HOME, logs, an env file
    with only the shared settings: metadata database, broker, keys, execution API), its own queue;
    a task on that queue runs on it and on nothing else."""
    import redis

    module, cfg = topology.module, topology.cfg
    main = module.environment(cfg)
    host = tmp_path / "worker-host"
    (host / "airflow").mkdir(parents=True)
    shared = {k: v for k, v in main.items() if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "GUARDIAN_", "TOPOLOGY_"))}
    shared.pop("AIRFLOW__LOGGING__BASE_LOG_FOLDER")
    lines = [f"{k}={v}" for k, v in sorted(shared.items())]
    lines += [f"AIRFLOW_HOME={host / 'airflow'}", f"AIRFLOW__LOGGING__BASE_LOG_FOLDER={host / 'logs'}"]
    lines += ["LOCAL_WORKER_NAME=extra-host"]
    (host / "worker.env").write_text("\n".join(lines) + "\n")
    env = dict(line.split("=", 1) for line in (host / "worker.env").read_text().splitlines())
    env["PATH"] = main["PATH"]
    argv = [str(module.VENV_BIN / "airflow"), "celery", "worker", "--queues", EXTRA_QUEUE]
    argv += ["--celery-hostname", f"extra-{cfg.instance}@%h", "--concurrency", "1"]
    argv += ["--skip-serve-logs", "--without-mingle", "--without-gossip"]
    with (host / "worker.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, cwd=host, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        topology.api.wait_dag("topology_queue_probe")
        run_id = topology.api.trigger("topology_queue_probe")
        state = topology.api.wait_run("topology_queue_probe", run_id, timeout=180)
        assert state == "success", (host / "worker.log").read_text()[-3000:]
        (ti,) = topology.api.task_instances("topology_queue_probe", run_id)
        assert ti["queue"] == EXTRA_QUEUE
        rows = _probe_rows(probe_dsn, "SELECT worker FROM probe_effects WHERE run_id = %s", run_id)
        assert rows == [("extra-host",)]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        client = redis.Redis.from_url(cfg.redis_url)
        client.delete(EXTRA_QUEUE, f"_kombu.binding.{EXTRA_QUEUE}")


# Invariant: a scheduler or worker killed with SIGKILL is running and healthy again without anyone
# acting, what the dead process left behind is gone, and DAG runs finish afterwards.
def test_sigkilled_scheduler_and_worker_come_back_and_runs_finish(topology: harness.Running) -> None:
    import psutil

    module, cfg = topology.module, topology.cfg
    victims = {name: topology.pid(name) for name in ("airflow-scheduler", "airflow-worker-1")}
    assert all(victims.values()), victims
    left_behind = [c.pid for pid in victims.values() if pid for c in module.descendants(pid)]
    assert left_behind, "the scheduler runs its health-check server as a child process"
    killed_at = time.monotonic()
    for pid in victims.values():
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    new = {name: scenarios.wait_restarted(topology, name, pid) for name, pid in victims.items()}
    running = time.monotonic() - killed_at
    # The reaper (supervisord event listener) killed the dead processes' children.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(module.alive(pid) for pid in left_behind):
        time.sleep(0.2)
    assert [pid for pid in left_behind if module.alive(pid)] == []
    health = module.wait_healthy(cfg, module.load_topology(), 120)
    assert health["airflow-scheduler"] == "healthy", health
    while time.monotonic() < deadline + 90:
        names = module.worker_ping(module.environment(cfg), instance=cfg.instance)
        if any(n.startswith(cfg.worker_name(1) + "@") for n in names):
            break
    else:
        raise AssertionError(f"restarted worker 1 does not answer: {names}")
    back = time.monotonic() - killed_at
    # The health endpoint is served by the new scheduler, not by a survivor of the old one.
    scheduler = psutil.Process(new["airflow-scheduler"])
    listening = {
        c.laddr.port
        for p in (scheduler, *scheduler.children(recursive=True))
        for c in p.net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert cfg.scheduler_health_port in listening
    run_id = topology.api.trigger("topology_probe", {"sleep": 1})
    assert topology.api.wait_run("topology_probe", run_id, timeout=180) == "success"
    print(
        f"SIGKILL of scheduler and worker-1: both running again after {running:.1f} s, healthy (scheduler /health,"
        f" worker ping) after {back:.1f} s; a DAG run finished after"
    )


def test_stop_is_clean(topology: harness.Running) -> None:
    """`stop` ends every process of the topology, whatever happened before: programs, their children,
    and the orphans of killed ones."""
    module = topology.module
    supervisor = module.supervisor_pid(topology.cfg)
    assert supervisor is not None
    pids = {p.name: topology.pid(p.name) for p in module.processes(topology.cfg)}
    assert all(pids.values()), pids
    family = [p.pid for p in module.descendants(supervisor)]
    assert set(pids.values()) <= set(family)
    stopped = topology.stop()
    assert sorted(stopped) == sorted(pids)
    assert not module.alive(supervisor)
    assert [pid for pid in family if module.alive(pid)] == []
    assert module.process_info(topology.cfg) == {}
    for port in (topology.cfg.port, topology.cfg.scheduler_health_port):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    assert Path(topology.cfg.logs_dir / "local" / "airflow-scheduler.log").stat().st_size > 0
