"""`guardian sales ...` as a user runs it (a real subprocess, the installed entry point)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

GUARDIAN = shutil.which("guardian") or str(Path(__file__).resolve().parents[3] / ".venv" / "bin" / "guardian")
QUARTER = ["--from", "2026-01-01", "--to", "2026-03-31", "--country", "TH", "--brand", "X"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GUARDIAN, "sales", *args], capture_output=True, text=True, timeout=180)


def test_demo_data_estimate_run_runs_show(guardian_env: Path) -> None:
    made = run("demo-data", "--rows", "30000")
    assert made.returncode == 0, made.stderr
    assert "wrote 30,000 rows" in made.stdout

    est = run("estimate", *QUARTER)
    assert est.returncode == 0, est.stderr
    assert "within the budget of 10.0 GiB" in est.stdout and "15 columns x 90 partitions" in est.stdout

    done = run("run", *QUARTER, "--format", "csv", "--run-id", "cli-1")
    assert done.returncode == 0, done.stderr
    assert "run cli-1: succeeded" in done.stdout and "_manifest.json" in done.stdout
    manifest = guardian_env / "storage/sales/run_id=cli-1/_manifest.json"
    assert json.loads(manifest.read_text())["format"] == "csv"

    listed = run("runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["cli-1"]
    shown = json.loads(run("show", "cli-1").stdout)
    assert shown["status"] == "succeeded" and {r["check_name"] for r in shown["quality_results"]} >= {"schema"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["estimate", "--from", "2026-03-31", "--to", "2026-01-01", "--country", "TH", "--brand", "X"], "end_date"),
        (["estimate", "--from", "2026-01-01", "--to", "2026-03-31", "--country", "ZZ", "--brand", "X"], "countries"),
        (["run", *QUARTER, "--format", "xlsx"], "param format"),
    ],
)
def test_bad_input_is_one_line_without_traceback(guardian_env: Path, args: list[str], expected: str) -> None:
    assert run("demo-data", "--rows", "1000").returncode == 0
    proc = run(*args)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert not (guardian_env / "storage" / "sales").exists()


def test_estimate_over_the_limit_exits_3(guardian_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("demo-data", "--rows", "1000").returncode == 0
    monkeypatch.setenv("GUARDIAN_SALES__MAX_BYTES_BILLED", "10")
    proc = run("estimate", *QUARTER)
    assert proc.returncode == 3 and "OVER the budget" in proc.stdout
