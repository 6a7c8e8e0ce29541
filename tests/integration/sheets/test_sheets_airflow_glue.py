"""Inside Airflow the Sheets client takes its credentials from google_cloud_default through the
Google provider's hook (a service-account key here, made up for the test; no token is fetched)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from guardian.settings import load_settings


def _fake_service_account() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "guardian-test",
        "private_key_id": "0" * 40,
        "private_key": pem,
        "client_email": "guardian@guardian-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def _credentials(client: Any) -> Any:
    return client._service._http.credentials


def test_google_cloud_default_connection_supplies_service_account_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from guardian.airflow.sheets import sheets_client

    conn = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(_fake_service_account())}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", "prod-sheet")
    creds = _credentials(sheets_client(load_settings()))
    assert creds.service_account_email == "guardian@guardian-test.iam.gserviceaccount.com"
    assert "https://www.googleapis.com/auth/spreadsheets" in (creds.scopes or [])


def test_sandbox_endpoint_uses_anonymous_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials

    from guardian.airflow.sheets import sheets_client

    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", "http://127.0.0.1:9/")
    assert isinstance(_credentials(sheets_client(load_settings())), AnonymousCredentials)


def test_key_file_setting_wins_outside_the_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from guardian.sheets.client import SheetsClient

    key = tmp_path / "key.json"
    key.write_text(json.dumps(_fake_service_account()))
    monkeypatch.setenv("GUARDIAN_SHEETS__CREDENTIALS_FILE", str(key))
    creds = _credentials(SheetsClient.from_settings(load_settings()))
    assert creds.service_account_email.startswith("guardian@")


def test_unreadable_key_file_is_one_actionable_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from guardian.errors import ConfigError
    from guardian.sheets.client import SheetsClient

    monkeypatch.setenv("GUARDIAN_SHEETS__CREDENTIALS_FILE", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=r"GUARDIAN_SHEETS__CREDENTIALS_FILE=.*cannot read a service-account key"):
        SheetsClient.from_settings(load_settings())


def test_domain_client_inside_airflow_uses_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """report_run runs inside the sales DAG's task: task_settings() wires google_cloud_default."""
    from guardian.airflow.dagkit import task_settings
    from guardian.sheets import client as client_module

    client_module.set_credentials_provider(None)
    conn = {"conn_type": "google_cloud_platform", "extra": {"keyfile_dict": json.dumps(_fake_service_account())}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))
    try:
        creds = _credentials(client_module.SheetsClient.from_settings(task_settings()))
        assert creds.service_account_email == "guardian@guardian-test.iam.gserviceaccount.com"
    finally:
        client_module.set_credentials_provider(None)
