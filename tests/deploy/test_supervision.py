"""The local topology's process supervision (deploy/localrun.py's supervisord configuration, the
orphan reaper deploy/reap_orphans.py and `stop`), exercised with cheap stand-in programs that
behave like Airflow's: each keeps a child in its process group (like the scheduler's health-check
server) and one in a session of its own (like a Celery task process).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = ("airflow-scheduler", "airflow-worker-1")
# A program with one child in its group and one in a session of its own, then the program itself.
PROGRAM = ["bash", "-c", "sleep 3600 & setsid sleep 3600 & exec sleep 3600"]


def _localrun() -> ModuleType:
    if "guardian_localrun" in sys.modules:
        return sys.modules["guardian_localrun"]
    spec = importlib.util.spec_from_file_location("guardian_localrun", REPO / "deploy" / "localrun.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["guardian_localrun"] = module
    spec.loader.exec_module(module)
    return module


def _until(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# Invariant: whatever programs die (SIGKILL) or are stopped and started, supervisord has each of
# them running again, nothing a dead or stopped program left behind stays alive, and `stop` leaves
# no process of the topology at all.
class Supervision(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.lr = _localrun()
        self.tmp = Path(tempfile.mkdtemp(prefix="sv-"))
        self.cfg = self.lr.Config(state_dir=self.tmp / "state", logs_dir=self.tmp / "logs")
        self.seen: set[int] = set()  # every pid of the topology ever observed
        self.gone: set[int] = set()  # pids that must be dead: killed programs and what they left

    @initialize()
    def start(self) -> None:
        self.cfg.run_dir.mkdir(parents=True)
        procs = [self.lr.Proc(name, PROGRAM, {}, None) for name in PROGRAMS]
        self.lr.write_supervisor_conf(self.cfg, procs=procs, grace=5, startsecs=1)
        self.supervisor = self.lr.start_supervisor(self.cfg, {"PATH": os.environ["PATH"]})
        assert _until(lambda: all(self._state(n) == "RUNNING" for n in PROGRAMS))

    def _state(self, name: str) -> str | None:
        info = self.lr.process_info(self.cfg).get(name)
        return info["statename"] if info else None

    def _pid(self, name: str) -> int:
        pid = self.lr.read_pid(self.cfg, name)
        assert pid is not None, name
        return int(pid)

    def _family(self, pid: int) -> set[int]:
        return {pid, *(p.pid for p in self.lr.descendants(pid))}

    def _after_loss(self, name: str, old: int, family: set[int]) -> None:
        self.gone |= family
        assert _until(lambda: self._state(name) == "RUNNING" and self.lr.read_pid(self.cfg, name) not in (None, old))

    @rule(name=st.sampled_from(PROGRAMS))
    def sigkill_a_program(self, name: str) -> None:
        pid = self._pid(name)
        family = _until(lambda: len(self._family(pid)) == 3 and self._family(pid))
        os.kill(pid, signal.SIGKILL)
        self._after_loss(name, pid, family)

    @rule()
    def sigkill_every_program(self) -> None:
        pids = {name: self._pid(name) for name in PROGRAMS}
        families = {name: self._family(pid) for name, pid in pids.items()}
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        for name, pid in pids.items():
            self._after_loss(name, pid, families[name])

    @rule(name=st.sampled_from(PROGRAMS))
    def stop_and_start_a_program(self, name: str) -> None:
        pid = self._pid(name)
        family = _until(lambda: len(self._family(pid)) == 3 and self._family(pid))
        assert self.lr.stop_process(self.cfg, name) is True
        self.lr.start_process(self.cfg, name)
        self._after_loss(name, pid, family)

    @invariant()
    def nothing_left_behind(self) -> None:
        if not hasattr(self, "supervisor"):
            return
        self.seen |= self._family(self.supervisor) - {self.supervisor}
        assert _until(lambda: not [pid for pid in self.gone if self.lr.alive(pid)], 10), sorted(
            pid for pid in self.gone if self.lr.alive(pid)
        )

    @precondition(lambda self: hasattr(self, "supervisor"))
    @invariant()
    def every_program_runs(self) -> None:
        assert _until(lambda: all(self._state(n) == "RUNNING" for n in PROGRAMS))

    def teardown(self) -> None:
        if hasattr(self, "supervisor"):
            self.seen |= self._family(self.supervisor)
            stopped = self.lr.stop(self.cfg, grace=5)
            assert sorted(stopped) == sorted(PROGRAMS)
            alive = [pid for pid in self.seen if self.lr.alive(pid) and _in_topology(pid, self.tmp)]
            assert alive == []
            assert not self.lr.alive(self.supervisor)


def _in_topology(pid: int, tmp: Path) -> bool:
    """A live pid may have been reused by an unrelated process: count it only if it is ours."""
    try:
        proc = psutil.Process(pid)
        return proc.cmdline()[:1] in (["sleep"], ["bash"]) or str(tmp) in " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False


Supervision.TestCase.settings = settings(
    max_examples=3,
    stateful_step_count=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSupervision = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper is a Linux prctl")(
    Supervision.TestCase
)
