"""The guardian command as a user runs it (a real subprocess, the installed entry point)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GUARDIAN = shutil.which("guardian") or str(Path(__file__).resolve().parents[3] / ".venv" / "bin" / "guardian")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GUARDIAN, *args], capture_output=True, text=True, timeout=120, env=None)


def test_help_lists_every_command() -> None:
    out = run("--help").stdout
    for command in ("doctor", "config", "db", "audit", "looker", "sales", "sheets", "sandbox", "version"):
        assert command in out
    assert "Record, verify and export" in run("audit", "--help").stdout


def test_doctor_on_embedded_defaults_is_ok_or_skipped(guardian_env: Path) -> None:
    proc = run("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert proc.stdout.count("OK") >= 2  # store and storage


def test_doctor_fails_with_the_fix_when_the_store_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_STORE__URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    proc = run("doctor", "--only", "store")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "unreachable" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_record_verify_and_export(guardian_env: Path, tmp_path: Path) -> None:
    assert run("db", "upgrade").returncode == 0
    assert run("db", "current").returncode == 0
    proc = run("audit", "record", "runbook.rotate", "connection:looker_default", "--note", "quarterly rotation")
    assert proc.returncode == 0 and "recorded #1" in proc.stdout
    verify = run("audit", "verify")
    assert verify.returncode == 0 and "1 row(s)" in verify.stdout
    export = run("audit", "export", "--since", "2020-01-01", "--to", f"file://{tmp_path}/out/")
    assert export.returncode == 0 and "exported 1 event(s)" in export.stdout
    bad = run("audit", "export", "--since", "last tuesday", "--to", f"file://{tmp_path}/out/")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --since 'last tuesday' is not a date; use YYYY-MM-DD"


def test_config_show_names_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_LOOKER__PURGE_DAYS", "30")
    out = run("config", "show", "--json").stdout
    assert '"setting": "GUARDIAN_LOOKER__PURGE_DAYS"' in out
    assert '"value": "30",\n    "source": "env"' in out


def test_doctor_security_names_what_prod_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian import audit
    from guardian.doctor import run_checks
    from guardian.settings import load_settings

    audit.record("test.doctor", "thing:1")
    [dev] = run_checks(load_settings(), ["security"])
    assert dev.status == "OK" and "audit chain OK (1 rows, not keyed" in dev.detail
    monkeypatch.setenv("GUARDIAN_ENVIRONMENT", "prod")
    [prod] = run_checks(load_settings(), ["security"])
    assert prod.status == "FAIL" and "GUARDIAN_AUDIT__HMAC_KEY_REF" in prod.detail
    assert "GUARDIAN_WEB__METRICS_TOKEN_REF" in prod.detail
