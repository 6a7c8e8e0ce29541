"""Sheets poll cost: API calls and time per poll against the one-write-per-row baseline, and latency.

A control sheet of ROWS request rows of which RUN say `run` is served by the Sheets sandbox in
its own process (`guardian sandbox sheets --seed big`); the real google-api-python-client talks
to it over HTTP and the sandbox counts every call it receives.

* guardian: one poll that accepts every `run` row (1 spreadsheets.get + 1 spreadsheets.batchUpdate
  that tags the rows and re-reads them + 1 values.batchUpdateByDataFilter), then the polls of the
  runs' life (runs queued in Airflow: only the guardian's own cells change, read + write; Status
  changes: read + re-check by data filter + write), then polls of a settled sheet;
* baseline (the original system's way): the same read, then one values.update per `run` row.

Latency from `run` typed to the request handed to the trigger step: a live loop polls every
--interval seconds while a "person" types `run` at random moments; the measured processing
time is then combined with the 5-minute schedule and a shorter interval (mean = interval/2 +
processing, worst = interval + processing; Airflow's own task start-up, a few seconds, comes on top).

    .venv/bin/python benchmarks/sheets_poll.py [--rows 5000] [--run 500] [--samples 12] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SID = "demo-control-sheet"


def _free_port() -> int:
    from guardian.sandbox.serve import free_port

    return free_port()


def _start_sandbox(rows: int, run: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    guardian = str(Path(sys.prefix) / "bin" / "guardian")
    cmd = [
        guardian,
        "sandbox",
        "sheets",
        "--port",
        str(port),
        "--seed",
        "big",
        "--rows",
        str(rows),
        "--run-rows",
        str(run),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from guardian.sandbox.serve import wait_for_port

    wait_for_port("127.0.0.1", port, timeout=60)
    return proc, f"http://127.0.0.1:{port}"


def _reseed(url: str, rows: int, run: int) -> None:
    from guardian.sandbox.sheets.seed import DEMO_TAB, big_rows

    body = {"spreadsheetId": SID, "title": "bench", "tabs": {DEMO_TAB: big_rows(rows, run)}}
    httpx.post(f"{url}/_sandbox/spreadsheets", json=body, timeout=120).raise_for_status()
    httpx.post(f"{url}/_sandbox/calls/reset").raise_for_status()


def _calls(url: str) -> dict[str, int]:
    by_method: dict[str, int] = httpx.get(f"{url}/_sandbox/calls").json()["by_method"]
    httpx.post(f"{url}/_sandbox/calls/reset").raise_for_status()
    return by_method


def _env(url: str, data_dir: str) -> None:
    os.environ.update(
        GUARDIAN_DATA_DIR=data_dir,
        GUARDIAN_SHEETS__SPREADSHEET_ID=SID,
        GUARDIAN_SHEETS__API_ENDPOINT=url + "/",
        GUARDIAN_SHEETS__RANGE="Requests!A1:Z",
        GUARDIAN_SHEETS__MAX_REQUESTS_PER_POLL="1000",
        GUARDIAN_SHEETS__MAX_REQUESTS_PER_DAY="100000",
    )
    from guardian.store import reset_stores

    reset_stores()


class Runs:
    """Airflow's runs as the poll sees them (a RunSource): created by the trigger step, moved on by the script."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}

    def states(self, run_ids: dict[str, list[str]], since: object) -> dict[str, str]:
        return {r: self.state[r] for rids in run_ids.values() for r in rids if r in self.state}

    def dag_ids(self) -> set[str]:
        return {"bigquery_sales_query"}


def guardian_poll(url: str, rows: int, run: int) -> dict[str, object]:
    from guardian.settings import load_settings
    from guardian.sheets.client import SheetsClient
    from guardian.sheets.poll import run_poll
    from guardian.store import get_store

    _reseed(url, rows, run)
    settings = load_settings()
    store = get_store(settings)
    store.ensure_migrated()
    client = SheetsClient.from_settings(settings)
    runs = Runs()
    t0 = time.perf_counter()
    result = run_poll(settings, store, lambda: client, runs=runs)
    poll_s = time.perf_counter() - t0
    first_calls = _calls(url)
    # The trigger step created the runs; Airflow has them queued: Status stays `queued`, Message gets each
    # run's link (the guardian's own cell: written by tag without a re-check).
    runs.state.update({r.dag_run_id: "queued" for r in result.to_trigger})
    run_poll(settings, store, lambda: client, runs=runs)
    queued_calls = _calls(url)
    # Airflow starts them: the rows go to running in one write (Status changes: read, re-check, write).
    runs.state.update(dict.fromkeys(runs.state, "running"))
    run_poll(settings, store, lambda: client, runs=runs)
    running_calls = _calls(url)
    # Requests in flight, nothing changed in Airflow or on the sheet: one read, nothing to write.
    t0 = time.perf_counter()
    inflight = run_poll(settings, store, lambda: client, runs=runs)
    inflight_s = time.perf_counter() - t0
    inflight_calls = _calls(url)
    # Every run finished: the rows converge in one write, then the sheet is settled.
    runs.state.update(dict.fromkeys(runs.state, "success"))
    converge = run_poll(settings, store, lambda: client, runs=runs)
    converge_calls = _calls(url)
    t0 = time.perf_counter()
    idle = run_poll(settings, store, lambda: client, runs=runs)
    idle_s = time.perf_counter() - t0
    idle_calls = _calls(url)
    return {
        "accepted": len(result.new),
        "poll_calls": first_calls,
        "poll_s": poll_s,
        "queued_calls": queued_calls,
        "running_calls": running_calls,
        "inflight_outcome": inflight.outcome,
        "inflight_calls": inflight_calls,
        "inflight_s": inflight_s,
        "converge_written": converge.written_rows,
        "converge_calls": converge_calls,
        "idle_outcome": idle.outcome,
        "idle_calls": idle_calls,
        "idle_s": idle_s,
    }


def baseline_poll(url: str, rows: int, run: int) -> dict[str, object]:
    """The original system: read the sheet, then one values.update per `run` row."""
    from guardian.settings import load_settings
    from guardian.sheets.client import SheetsClient

    _reseed(url, rows, run)
    client = SheetsClient.from_settings(load_settings())
    t0 = time.perf_counter()
    values = client.get_values(SID, "Requests!A1:Z")
    header = [h.strip().lower() for h in values[0]]
    status_col = header.index("status")
    from guardian.sheets.a1 import index_to_col

    for number, row in enumerate(values[1:], start=2):
        if len(row) > status_col and row[status_col].strip().lower() == "run":
            client.update_values(SID, f"Requests!{index_to_col(status_col + 1)}{number}", [["queued"]])
    elapsed = time.perf_counter() - t0
    return {"calls": _calls(url), "s": elapsed}


def latency(url: str, interval: float, samples: int) -> tuple[list[float], list[float]]:
    """Seconds from `run` typed to the request recorded for the trigger step, with a live poll loop."""
    from guardian.settings import load_settings
    from guardian.sheets.client import SheetsClient
    from guardian.sheets.poll import run_poll
    from guardian.store import get_store

    body = {
        "spreadsheetId": SID,
        "title": "latency",
        "tabs": {"Requests": [["Country", "Brand", "Start date", "End date", "Status"]]},
    }
    httpx.post(f"{url}/_sandbox/spreadsheets", json=body).raise_for_status()
    settings = load_settings()
    store = get_store(settings)
    client = SheetsClient.from_settings(settings)
    typed: dict[int, float] = {}
    seen: dict[int, float] = {}
    processing: list[float] = []
    stop = threading.Event()

    def poller() -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            started = time.monotonic()
            result = run_poll(settings, store, lambda: client)
            now = time.monotonic()
            if result.new:
                processing.append(now - started)
            for req in result.new:
                seen.setdefault(req.row_number, now)
            next_tick += interval
            time.sleep(max(0.0, next_tick - time.monotonic()))

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    rng = random.Random(7)
    for i in range(samples):
        time.sleep(rng.uniform(0, interval))
        row = i + 2
        values = [["TH", "ACME", f"2025-01-{1 + i % 28:02d}", f"2025-02-{1 + i % 28:02d}", "run"]]
        typed[row] = time.monotonic()
        httpx.put(
            f"{url}/v4/spreadsheets/{SID}/values/Requests!A{row}:E{row}",
            params={"valueInputOption": "USER_ENTERED"},
            json={"values": values},
        ).raise_for_status()
    deadline = time.monotonic() + interval * 3 + 10
    while len(seen) < samples and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=interval * 2 + 10)
    return [seen[r] - typed[r] for r in typed if r in seen], processing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--run", type=int, default=500)
    parser.add_argument("--samples", type=int, default=12, help="latency samples")
    parser.add_argument("--interval", type=float, default=2.0, help="live poll interval for the latency loop (s)")
    parser.add_argument("--quick", action="store_true", help="1,000 rows / 100 run, 5 latency samples")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.run, args.samples = 1000, 100, 5
    proc, url = _start_sandbox(10, 1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _env(url, tmp + "/g")
            g = guardian_poll(url, args.rows, args.run)
            b = baseline_poll(url, args.rows, args.run)
            _env(url, tmp + "/lat")
            lat, proc_s = latency(url, args.interval, args.samples)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    g_calls = sum(g["poll_calls"].values())  # type: ignore[attr-defined]
    b_calls = sum(b["calls"].values())  # type: ignore[attr-defined]
    print(f"control sheet: {args.rows:,} rows, {args.run:,} marked run")
    print(f"guardian poll : {g_calls} calls {g['poll_calls']}, {g['poll_s']:.2f}s, {g['accepted']} requests accepted")
    print(f"baseline      : {b_calls} calls (1 read + 1 write per row), {b['s']:.2f}s")
    print(f"ratio         : {b_calls / g_calls:.0f}x fewer calls, {b['s'] / g['poll_s']:.1f}x faster")  # type: ignore[operator]
    print(f"runs queued, links written : {sum(g['queued_calls'].values())} calls {g['queued_calls']}")  # type: ignore[attr-defined]
    print(f"runs started, rows -> running: {sum(g['running_calls'].values())} calls")  # type: ignore[attr-defined]
    print(
        f"in flight, sheet unchanged : {sum(g['inflight_calls'].values())} call ({g['inflight_outcome']}), "
        f"{g['inflight_s']:.2f}s"
    )  # type: ignore[attr-defined]
    print(
        f"runs finished, rows converge: {sum(g['converge_calls'].values())} calls, {g['converge_written']} rows written"
    )  # type: ignore[attr-defined]
    print(
        f"unchanged sheet, idle       : {sum(g['idle_calls'].values())} call ({g['idle_outcome']}), {g['idle_s']:.2f}s"
    )  # type: ignore[attr-defined]
    if lat:
        print(
            f"latency, live {args.interval:g}s loop ({len(lat)} samples): mean {statistics.mean(lat):.2f}s, "
            f"max {max(lat):.2f}s; poll processing mean {statistics.mean(proc_s):.2f}s, max {max(proc_s):.2f}s"
        )
        for label, interval in (("5-minute schedule", 300.0), ("1-minute schedule", 60.0)):
            print(
                f"latency, {label}: mean {interval / 2 + statistics.mean(proc_s):.1f}s, "
                f"worst {interval + max(proc_s):.1f}s (+ Airflow's task start-up and the trigger task)"
            )
    print(json.dumps({"guardian": g, "baseline": b, "latency_s": lat, "processing_s": proc_s}, default=str))


if __name__ == "__main__":
    main()
