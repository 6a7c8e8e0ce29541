"""The Airflow glue finds BigQuery credentials through the Google provider's connection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _service_account(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sa-project",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "guardian@sa-project.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


@pytest.mark.usefixtures("airflow_db")
def test_bigquery_client_comes_from_google_cloud_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.airflow.sales import bigquery_client
    from guardian.settings import load_settings

    monkeypatch.setenv("GUARDIAN_SALES__BACKEND", "bigquery")
    monkeypatch.setenv("GUARDIAN_SALES__PROJECT", "analytics-prod")
    monkeypatch.setenv("GUARDIAN_SALES__LOCATION", "EU")
    settings = load_settings()
    assert bigquery_client(settings) is None  # no connection: the domain uses default credentials

    keyfile = _service_account(tmp_path / "sa.json")
    conn = {"conn_type": "google_cloud_platform", "extra": {"key_path": str(keyfile), "project": "sa-project"}}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))
    client = bigquery_client(settings)
    assert client is not None
    assert client.project == "analytics-prod" and client.location == "EU"
    assert client._credentials.service_account_email == "guardian@sa-project.iam.gserviceaccount.com"


def test_duckdb_backend_needs_no_client() -> None:
    from guardian.airflow.sales import bigquery_client
    from guardian.settings import load_settings

    assert bigquery_client(load_settings()) is None
