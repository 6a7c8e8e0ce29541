"""Exactly once on real PostgreSQL: a killed poll, a retried poll and overlapping polls give one
request (one deterministic run id) per `run` row. Polls run as separate `guardian sheets poll`
processes against the sandbox over HTTP, as workers would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from guardian.errors import IntegrationError
from guardian.settings import load_settings
from guardian.sheets import ledger
from guardian.sheets.client import SheetsClient
from guardian.sheets.poll import run_poll
from guardian.store import get_store

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)
GUARDIAN = (
    [sys.executable, "-m", "guardian.cli"]
    if not Path(sys.prefix, "bin", "guardian").exists()
    else [str(Path(sys.prefix, "bin", "guardian"))]
)


def cli_poll(**popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*GUARDIAN, "sheets", "poll", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        **popen,
    )


def requests_in_ledger() -> list[dict[str, Any]]:
    return ledger.list_requests(get_store(load_settings()), 1000)


def add_run_rows(sandbox: Sandbox, n: int) -> None:
    rows = [
        ["VN", "NOVA", f"2025-{1 + i % 12:02d}-01", f"2025-{1 + i % 12:02d}-{10 + i // 12:02d}", "", "", "run"]
        for i in range(n)
    ]
    sandbox.type("Requests!A7", rows)


def test_poll_killed_before_its_write_back_then_rerun(pg_env: str, sheets_sandbox: Sandbox) -> None:
    # The write-back hangs; the poll process is SIGKILLed after it recorded the request.
    sheets_sandbox.fault(delay=15, count=1, method="values.batchUpdate")
    proc = cli_poll()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not requests_in_ledger():
        time.sleep(0.2)
    assert requests_in_ledger(), proc.stderr.read() if proc.poll() is not None and proc.stderr else "no request"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    row = sheets_sandbox.rows("Requests!G2:H2")
    assert row == [["run"]]  # the kill hit before the status reached the sheet

    settings = load_settings()
    result = run_poll(settings, get_store(settings), lambda: SheetsClient.from_settings(settings))
    assert result.new == []  # recognised, not recorded again
    ledger_rows = requests_in_ledger()
    assert len(ledger_rows) == 1
    assert [r.dag_run_id for r in result.to_trigger] == [ledger_rows[0]["dag_run_id"]]
    assert sheets_sandbox.rows("Requests!G2:H2") == [["queued", ledger_rows[0]["dag_run_id"]]]


def test_retried_poll_after_failed_write_back_records_nothing_twice(
    pg_env: str, sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "1")
    sheets_sandbox.fault(status=503, count=2, method="values.batchUpdate")
    settings = load_settings()
    store = get_store(settings)
    with pytest.raises(IntegrationError, match="HTTP 503"):
        run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
    first = requests_in_ledger()
    assert len(first) == 1
    retry = run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
    assert retry.new == [] and [r.request_id for r in retry.to_trigger] == [first[0]["request_id"]]
    assert len(requests_in_ledger()) == 1
    # The request stays in to_trigger until Airflow confirms its run, then leaves it.
    ledger.mark_triggered(store, [first[0]["request_id"]])
    assert run_poll(settings, store, lambda: SheetsClient.from_settings(settings)).to_trigger == []


def test_overlapping_polls_give_one_request_per_row(pg_env: str, sheets_sandbox: Sandbox) -> None:
    add_run_rows(sheets_sandbox, 30)
    # Every poll's read is slowed so that all four read the sheet before any of them writes.
    sheets_sandbox.fault(delay=1.5, count=4, method="values.get")
    procs = [cli_poll() for _ in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    rows = requests_in_ledger()
    assert len(rows) == 31
    assert len({r["dag_run_id"] for r in rows}) == 31
    assert sum(len(o["new_requests"]) for o in outputs) == 31  # each request recorded by exactly one poll
    # Every poll hands the same run ids to the trigger step: Airflow refuses duplicates by run id.
    for o in outputs:
        assert {t["trigger_run_id"] for t in o["to_trigger"]} == {r["dag_run_id"] for r in rows}
    statuses = sheets_sandbox.rows("Requests!G2:H37")
    run_ids = [r[1] for r in statuses if r and r[0] == "queued"]
    assert sorted(run_ids) == sorted(r["dag_run_id"] for r in rows)


def test_rerun_of_the_same_sheet_state_after_ack_is_not_a_new_request(pg_env: str, sheets_sandbox: Sandbox) -> None:
    """A poll that read the sheet before another poll's write-back must not take the old `run` as new."""
    settings = load_settings()
    store = get_store(settings)
    early_read = ledger.now_utc()
    first = run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
    assert len(first.new) == 1
    with store.read() as conn:
        req = first.new[0]
        acked = ledger.by_key(conn, req.request_key)
        assert acked is not None and acked.acked_at is not None
        # A poll whose read began before the acknowledgement computes the same key.
        assert ledger.generation(conn, req.base_key, early_read) == 0
        assert ledger.generation(conn, req.base_key, ledger.now_utc()) == 1


@pytest.mark.parametrize("seed", [20261128, 7])
def test_random_failures_converge_to_one_run_per_row(
    seed: int, pg_env: str, sheets_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls, confirmations and completions interleaved with API failures at every step (seeded)."""
    import random

    from guardian.sheets.completion import report_run

    monkeypatch.setenv("GUARDIAN_SHEETS__RETRIES", "0")
    add_run_rows(sheets_sandbox, 20)
    settings = load_settings()
    store = get_store(settings)
    rng = random.Random(seed)

    def poll_once() -> None:
        try:
            result = run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
        except IntegrationError:
            return
        if rng.random() < 0.6:  # the trigger + confirm tasks ran (or the worker died before confirm)
            ledger.mark_triggered(store, [r.request_id for r in result.to_trigger])

    for _ in range(25):
        action = rng.choice(["poll", "read_fails", "write_fails", "complete", "complete_write_fails"])
        if action == "read_fails":
            sheets_sandbox.fault(status=503, count=1, method="values.get")
        elif action == "write_fails":
            sheets_sandbox.fault(status=500, count=1, method="values.batchUpdate")
        if action.startswith("complete"):
            triggered = [r for r in requests_in_ledger() if r["status"] == "triggered"]
            if triggered:
                if action == "complete_write_fails":
                    sheets_sandbox.fault(status=503, count=1, method="values.batchUpdate")
                req = rng.choice(triggered)
                report_run(
                    settings,
                    request_id=req["request_id"],
                    dag_run_id=req["dag_run_id"],
                    ok=rng.random() < 0.8,
                    rows=rng.randint(1, 99),
                    output_uri="gs://exports/x",
                    error="boom",
                )
            continue
        poll_once()
    httpx.delete(sheets_sandbox.handle.url + "/_sandbox/faults").raise_for_status()

    # Quiet period: polls, Airflow confirms everything, every run finishes, polls again.
    for _ in range(2):
        result = run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
        ledger.mark_triggered(store, [r.request_id for r in result.to_trigger])
    for req in requests_in_ledger():
        if req["status"] == "triggered":
            report_run(
                settings,
                request_id=req["request_id"],
                dag_run_id=req["dag_run_id"],
                ok=True,
                rows=1,
                output_uri=None,
                error=None,
            )
    run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
    final = run_poll(settings, store, lambda: SheetsClient.from_settings(settings))
    assert final.outcome == "no_change"

    rows = requests_in_ledger()
    assert len(rows) == 21 and len({r["dag_run_id"] for r in rows}) == 21
    sheet = sheets_sandbox.rows("Requests!A1:K30")
    by_run_id = {r["dag_run_id"]: r for r in rows}
    shown = {line[7]: line[6] for line in sheet[1:] if len(line) > 7 and line[7]}
    assert set(shown) == set(by_run_id)
    for run_id, status in shown.items():
        assert status == by_run_id[run_id]["status"] and status in {"completed", "failed"}
