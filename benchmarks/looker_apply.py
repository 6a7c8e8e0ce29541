"""Applying 1,000 Looker actions: bounded concurrency with a client-side rate limit.

The sandbox (its own process) holds N inactive dashboards and adds a fixed latency to every
request; a plan trashes all of them (circuit breaker opened for the benchmark). Each action
re-reads the dashboard, exports its LookML, writes and verifies a write-once backup, and
trashes it, audited before and after in the store (SQLite). The baseline applies a slice of
the same plan with concurrency 1. Prints actions per second, the ratio and the peak RSS.

    .venv/bin/python benchmarks/looker_apply.py [--actions 1000] [--concurrency 8] [--rate-limit 100]
    .venv/bin/python benchmarks/looker_apply.py --quick     # 200 actions
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate-limit", type=float, default=100.0, help="API calls per second, client side")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--baseline-actions", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="200 actions, baseline 40")
    args = parser.parse_args()
    if args.quick:
        args.actions, args.baseline_actions = 200, 40

    os.environ["GUARDIAN_DATA_DIR"] = tempfile.mkdtemp(prefix="guardian-bench-")
    os.environ["GUARDIAN_LOOKER__MAX_FRACTION"] = "1"
    os.environ["GUARDIAN_LOOKER__MAX_DELETIONS"] = str(args.actions + args.baseline_actions)
    os.environ["GUARDIAN_LOOKER__RATE_LIMIT_PER_SECOND"] = str(args.rate_limit)
    from guardian.looker import service
    from guardian.sandbox.looker import spawn
    from guardian.settings import load_settings

    total = args.actions + args.baseline_actions
    print(f"starting the sandbox with {total} inactive dashboards, {args.latency_ms} ms latency per request")
    sandbox = spawn(dashboards=total, latency_ms=args.latency_ms, inactive_fraction=1.0, trashed_fraction=0.0)
    try:
        os.environ.update(sandbox.env)
        os.environ["GUARDIAN_LOOKER__CONCURRENCY"] = "1"
        os.environ["GUARDIAN_LOOKER__TEST_MODE_LIMIT"] = str(args.baseline_actions)
        settings = load_settings()
        plan = service.plan(settings)
        started = time.perf_counter()
        baseline = service.apply(settings, plan.id, mode="test")
        baseline_s = time.perf_counter() - started

        os.environ["GUARDIAN_LOOKER__CONCURRENCY"] = str(args.concurrency)
        settings = load_settings()
        sandbox.reset_stats()
        started = time.perf_counter()
        report = service.apply(settings, plan.id, mode="apply")
        wall = time.perf_counter() - started
        calls = sandbox.stats().get("total", 0)
    finally:
        sandbox.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base_rate = baseline.done / baseline_s
    rate = report.done / wall
    print(f"plan {plan.id}: {plan.counts.get('soft_delete', 0)} to trash")
    print(
        f"baseline (concurrency 1, same rate limit): {baseline.done} actions in "
        f"{baseline_s:.2f} s = {base_rate:.1f} actions/s"
    )
    print(
        f"guardian (concurrency {args.concurrency}, limit {args.rate_limit} calls/s): {report.done} actions "
        f"({report.already_final} already done) in {wall:.2f} s = {rate:.1f} actions/s; {calls} API calls "
        f"= {calls / wall:.1f} calls/s; {report.failed} failed; {report.backup_bytes} backup bytes"
    )
    print(f"ratio: {rate / base_rate:.1f}x the sequential rate")
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
