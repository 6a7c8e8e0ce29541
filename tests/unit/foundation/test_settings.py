"""Settings: defaults, sources, and one clear line for every kind of bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guardian.errors import ConfigError
from guardian.settings import describe, known_env_vars, load_settings, mask


def test_defaults_carry_the_original_policy(guardian_env: Path) -> None:
    s = load_settings()
    assert s.looker.soft_delete_days == 180
    assert s.looker.purge_days == 180
    assert s.looker.test_mode_limit == 10
    assert s.looker.api_timeout == 300
    assert s.notify.email_to == ["data-team@example.com"]
    assert s.data_dir == guardian_env
    assert s.store_url == f"sqlite:///{guardian_env / 'guardian.db'}"
    assert s.storage_root == f"file://{guardian_env / 'storage'}"


def test_env_beats_dotenv_beats_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GUARDIAN_LOOKER__PURGE_DAYS=90\nGUARDIAN_LOOKER__WARNING_DAYS=7\n")
    monkeypatch.setenv("GUARDIAN_LOOKER__WARNING_DAYS", "3")
    monkeypatch.setenv("GUARDIAN_LOOKER__PROTECTED_FOLDER_IDS", "1, 22 ,333")
    s = load_settings()
    assert s.looker.purge_days == 90
    assert s.looker.warning_days == 3
    assert s.looker.protected_folder_ids == ["1", "22", "333"]
    sources = {row.env_var: row.source for row in describe(s)}
    assert sources["GUARDIAN_LOOKER__PURGE_DAYS"] == ".env"
    assert sources["GUARDIAN_LOOKER__WARNING_DAYS"] == "env"
    assert sources["GUARDIAN_LOOKER__SOFT_DELETE_DAYS"] == "default"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("GUARDIAN_LOOKER__SOFT_DELETE_DAYZ", "3", "unknown setting; did you mean GUARDIAN_LOOKER__SOFT_DELETE_DAYS?"),
        ("GUARDIAN_LOOKER__SOFT_DELETE_DAYS", "-5", "greater than or equal to 1"),
        ("GUARDIAN_LOOKER__PURGE_DAYS", "soon", "valid integer"),
        ("GUARDIAN_STORE__URL", "not a url", "not a database URL"),
        ("GUARDIAN_STORE__URL", "mysql://u@h/db", "not supported"),
        ("GUARDIAN_STORE__URL", "postgresql://u:hunter2@h/db", "holds a password"),
        ("GUARDIAN_STORAGE__ROOT", "s3://bucket", "must start with gs:// or file:///"),
        ("GUARDIAN_STORAGE__ROOT", "file://relative/path", "must be absolute"),
        ("GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF", "https://hooks.slack.com/services/T/B/secret", "plain secret"),
        ("GUARDIAN_SALES__BACKEND", "oracle", "'duckdb' or 'bigquery'"),
    ],
)
def test_bad_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(var)
    assert expected in message
    assert "\n" not in message
    # A secret typed in the wrong place is never echoed back.
    assert "hunter2" not in message
    assert "services/T/B/secret" not in message


def test_unknown_key_in_dotenv_is_reported_with_its_source(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GUARDIAN_SHEETS__SPREADSHEETID=abc\n")
    with pytest.raises(ConfigError, match=r"GUARDIAN_SHEETS__SPREADSHEETID \(.env\): unknown setting; did you mean"):
        load_settings()


def test_secret_references_are_shown_never_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_HOOK", "https://hooks.slack.com/services/T0/B0/very-secret")
    monkeypatch.setenv("GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF", "env:SLACK_HOOK")
    rows = {r.env_var: r for r in describe(load_settings())}
    shown = mask(rows["GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF"])
    assert shown == "env:SLACK_HOOK (reference)"
    assert all("very-secret" not in mask(r) for r in rows.values())


def test_store_password_comes_from_reference_or_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASS", "s3cret")
    monkeypatch.setenv("GUARDIAN_STORE__PASSWORD_REF", "env:PGPASS")
    assert load_settings().store_password() == "s3cret"
    assert load_settings(store_password="from-connection").store_password() == "from-connection"
    monkeypatch.delenv("PGPASS")
    with pytest.raises(ConfigError, match="env var PGPASS is not set"):
        load_settings().store_password()


def test_every_setting_has_a_description() -> None:
    missing = [row.env_var for row in describe(load_settings()) if not row.description]
    assert missing == []
    assert "GUARDIAN_DATA_DIR" in known_env_vars()


def test_configuration_docs_are_current() -> None:
    from guardian.settings_docs import render

    docs = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
    assert docs.read_text(encoding="utf-8") == render(), "run `guardian config docs` and commit docs/configuration.md"


def test_cli_prints_one_line_and_no_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_LOOKER__MAX_FRACTION", "1.5")
    proc = subprocess.run([sys.executable, "-m", "guardian.cli", "config", "show"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: GUARDIAN_LOOKER__MAX_FRACTION (env):")
