"""supervisord event listener of the local topology: kill what a dead program left behind.

When a program exits on its own (SIGKILL, OOM, a crash), its children live on: the scheduler's
health-check and log servers keep their ports, a Celery worker's task processes keep running
tasks the scheduler will retry elsewhere. supervisord is a child subreaper (deploy/localrun.py), so
these orphans become its children; any child of supervisord that is not one of its programs is
such an orphan. On every PROCESS_STATE_EXITED event (a program died) and PROCESS_STATE_STOPPED
event (a program was stopped: its process group got the signal, a child in a session of its own
did not) this listener kills them, with their descendants, before they get in the way of the
restarted program.

Protocol: supervisord's event listener protocol (`supervisor.childutils.listener`), the RPC
interface through SUPERVISOR_SERVER_URL that supervisord sets for its children.
"""

from __future__ import annotations

import os
import sys

import psutil
from supervisor import childutils


def orphans(supervisor: psutil.Process, programs: set[int]) -> list[psutil.Process]:
    """supervisord's children that are not programs it started, each followed by its descendants."""
    found: list[psutil.Process] = []
    for child in supervisor.children():
        if child.pid in programs:
            continue
        try:
            found += [child, *child.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def main() -> None:
    """Serve events forever (supervisord restarts the listener if it dies)."""
    rpc = childutils.getRPCInterface(os.environ)
    supervisor = psutil.Process(os.getppid())
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event, _ = childutils.eventdata(payload + "\n")
        # This listener is a child of supervisord too: count it as a program.
        programs = {int(info["pid"]) for info in rpc.supervisor.getAllProcessInfo() if info["pid"]} | {os.getpid()}
        left = orphans(supervisor, programs)
        for proc in left:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(left, timeout=10)
        if left:
            print(
                f"{headers['eventname']} {event.get('processname')} (pid {event.get('pid')}): "
                f"killed {len(left)} orphan(s): {sorted(p.pid for p in left)}",
                file=sys.stderr,
                flush=True,
            )
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
