"""Looker inventory + plan against the original system's way of doing it, in one run.

The sandbox (its own process) holds D dashboards and L Looks and adds a fixed latency to every
request. The guardian's plan pages through the dashboard search and the Look search (each live
and trashed), runs one System Activity query (dashboards and Looks) and reads Looker's own
exemptions (every user's schedules in one call, every owner's alerts; which Looks sit on a
dashboard comes with the dashboard search): at most ceil(D / page) + ceil(L / page) + 6 API
calls (the login aside; with L = 0 that is the former ceil(D / page) + 5 plus the one empty
Look search). The baseline is the original inventory, which knew dashboards only:
``all_dashboards`` (DashboardBase lacks the fields the policy needs), then ``dashboard(id)`` for
each dashboard, sequentially. The script prints both call counts, both times, their ratios and
the peak RSS.

    .venv/bin/python benchmarks/looker_plan.py [--dashboards 20000] [--looks 2000] [--latency-ms 20] [--page-size 1000]
    .venv/bin/python benchmarks/looker_plan.py --quick      # 2,000 dashboards and 200 Looks, under a minute

``--baseline-sample K`` times the baseline on its first K dashboards and extrapolates the
time linearly (the call count stays exact: 1 + live dashboards); the output says so.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dashboards", type=int, default=20_000)
    parser.add_argument("--looks", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--baseline-sample", type=int, default=0, help="0: run the whole baseline")
    parser.add_argument("--quick", action="store_true", help="2,000 dashboards")
    args = parser.parse_args()
    if args.quick:
        args.dashboards, args.looks = 2000, 200

    os.environ["GUARDIAN_DATA_DIR"] = tempfile.mkdtemp(prefix="guardian-bench-")
    os.environ["GUARDIAN_LOOKER__PAGE_SIZE"] = str(args.page_size)
    from guardian.looker import service
    from guardian.looker.client import connect
    from guardian.sandbox.looker import spawn
    from guardian.settings import load_settings

    print(
        f"starting the sandbox with {args.dashboards} dashboards and {args.looks} Looks, "
        f"{args.latency_ms} ms latency per request"
    )
    sandbox = spawn(dashboards=args.dashboards, latency_ms=args.latency_ms, looks=args.looks)
    try:
        os.environ.update(sandbox.env)
        settings = load_settings()

        client = connect(settings)
        client.sdk.auth.authenticate({})  # log in outside the timing: both sides reuse one token
        sandbox.reset_stats()
        started = time.perf_counter()
        plan = service.plan(settings, client=client)
        plan_s = time.perf_counter() - started
        plan_calls = sandbox.stats().get("total", 0)
        live, trashed = plan.counts["live"], plan.counts["trashed"]
        looks = plan.counts["looks_live"] + plan.counts["looks_trashed"]
        bound = math.ceil((live + trashed) / args.page_size) + math.ceil(looks / args.page_size) + 6

        base = connect(settings)
        base.sdk.auth.authenticate({})
        sandbox.reset_stats()
        started = time.perf_counter()
        ids = [str(d["id"]) for d in base.all_dashboards()]
        sample = ids if not args.baseline_sample else ids[: args.baseline_sample]
        for dashboard_id in sample:
            base.dashboard(dashboard_id)
        measured_s = time.perf_counter() - started
        measured_calls = sandbox.stats().get("total", 0)
        baseline_calls = 1 + len(ids)
        baseline_s = measured_s * (baseline_calls / measured_calls) if sample is not ids else measured_s
    finally:
        sandbox.stop()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    note = "" if not args.baseline_sample else f" (time extrapolated from {measured_calls} calls)"
    print(f"dashboards: {live} live + {trashed} in trash; Looks: {looks}; page size {args.page_size}")
    print(f"plan {plan.id}: counts {plan.counts}")
    print(f"guardian plan:  {plan_calls:>6} API calls  {plan_s:8.2f} s   (bound ceil(D/page)+ceil(L/page)+6 = {bound})")
    print(f"baseline:       {baseline_calls:>6} API calls  {baseline_s:8.2f} s{note} (dashboards only)")
    print(f"ratio:          {baseline_calls / plan_calls:8.1f}x fewer calls  {baseline_s / plan_s:8.1f}x faster")
    print(f"peak RSS:       {peak_mb:.0f} MB")
    ok = plan_calls <= bound and plan_s < 10
    print(
        "RESULT:",
        "OK" if ok else "over budget",
        f"(calls <= {bound}: {plan_calls <= bound}, under 10 s: {plan_s < 10})",
    )


if __name__ == "__main__":
    main()
