"""Run a `guardian sandbox ...` command listening on all interfaces (containers only).

The sandbox commands bind 127.0.0.1, which another container cannot reach; this wrapper keeps
their seeding and options and only changes the bind address.
Usage: python /opt/guardian/deploy/sandbox-entry.py looker --port 8910
"""

from __future__ import annotations

import os
import sys

import uvicorn

_run = uvicorn.run


def _run_on_all_interfaces(app: object, **kwargs: object) -> None:
    kwargs["host"] = os.environ.get("SANDBOX_HOST", "0.0.0.0")
    _run(app, **kwargs)  # type: ignore[arg-type]


uvicorn.run = _run_on_all_interfaces  # type: ignore[assignment]

if __name__ == "__main__":
    from guardian.cli import main

    sys.argv = ["guardian", "sandbox", *sys.argv[1:]]
    main()
