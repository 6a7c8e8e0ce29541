"""deploy/helm/values.yaml sets what the guardian needs on the official Apache Airflow chart.

The chart itself is not installed here (no cluster); these tests hold the values to the same
contract as the Compose files: the guardian image at the locked Airflow version, an autoscaled
executor, external databases through secrets only, task logs in Cloud Storage, FAB, and only
settings that exist (Airflow options, Guardian settings).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "helm" / "values.yaml"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(VALUES.read_text())
    return data


def _locked_version(package: str) -> str:
    match = re.search(rf'^name = "{re.escape(package)}"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text(), re.M)
    assert match, f"{package} not in uv.lock"
    return match.group(1)


def _env(values: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in values["env"]}


def test_the_guardian_image_at_the_locked_airflow_version(values: dict[str, Any]) -> None:
    locked = _locked_version("apache-airflow")
    assert values["airflowVersion"] == locked
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert re.search(rf"^ARG AIRFLOW_VERSION={re.escape(locked)}$", dockerfile, re.M)
    image = values["images"]["airflow"]
    assert image["repository"] == values["defaultAirflowRepository"]
    assert not image["repository"].startswith("apache/airflow"), "the guardian image carries the DAGs and plugin"
    # DAGs are in the image, not synced from git or a volume.
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False


def test_an_autoscaled_executor(values: dict[str, Any]) -> None:
    executor = values["executor"]
    assert executor in {"CeleryExecutor", "KubernetesExecutor"}
    if executor == "CeleryExecutor":
        keda = values["workers"]["keda"]
        assert keda["enabled"] is True
        assert 1 <= keda["minReplicaCount"] < keda["maxReplicaCount"]
        # KEDA's query goes to the metadata database directly when PgBouncer is off.
        assert keda["usePgbouncer"] is values["pgbouncer"]["enabled"]


def test_external_databases_and_every_credential_through_secrets(values: dict[str, Any]) -> None:
    assert values["postgresql"]["enabled"] is False
    assert values["redis"]["enabled"] is False
    data = values["data"]
    for key in ("metadataSecretName", "resultBackendSecretName", "brokerUrlSecretName"):
        assert data[key], key
    assert "metadataConnection" not in data and "brokerUrl" not in data
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"):
        assert key not in values, f"{key}: a secret value in the values file"
    # Secret names documented in the header are the ones used.
    header = VALUES.read_text().split("\n\n", 1)[0]
    for name in (data["metadataSecretName"], data["brokerUrlSecretName"], values["jwtSecretName"]):
        assert name in header
    # No password in any value: the store's comes from a Kubernetes secret by reference.
    env = _env(values)
    for name, value in env.items():
        assert not re.search(r"://[^/@:]+:[^/@]+@", value), f"{name} holds a password"
    ref = env["GUARDIAN_STORE__PASSWORD_REF"]
    assert ref.startswith("env:")
    assert {s["envName"] for s in values["secret"]} >= {ref.removeprefix("env:")}


def test_task_logs_in_cloud_storage_and_no_log_volume(values: dict[str, Any]) -> None:
    logging = values["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert logging["remote_base_log_folder"].startswith("gs://")
    assert logging["remote_log_conn_id"] == "google_cloud_default"
    assert values["logs"]["persistence"]["enabled"] is False
    assert values["workers"]["persistence"]["enabled"] is False


def test_fab_auth_manager_and_workload_identity(values: dict[str, Any]) -> None:
    assert values["config"]["core"]["auth_manager"].endswith("fab_auth_manager.FabAuthManager")
    for component in ("workers", "scheduler", "dagProcessor", "triggerer", "apiServer"):
        annotations = values[component]["serviceAccount"]["annotations"]
        assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com"), component
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in _env(values)


def test_the_guardian_settings_it_needs_are_set_and_all_are_real(values: dict[str, Any]) -> None:
    from guardian.settings import known_env_vars

    env = _env(values)
    guardian = {k for k in env if k.startswith("GUARDIAN_")}
    assert sorted(guardian - known_env_vars()) == []
    for needed in (
        "GUARDIAN_ENVIRONMENT",
        "GUARDIAN_STORE__URL",
        "GUARDIAN_STORE__PASSWORD_REF",
        "GUARDIAN_STORAGE__ROOT",
        "GUARDIAN_MONITORING__AIRFLOW_API_URL",
    ):
        assert needed in env, needed
    assert env["GUARDIAN_ENVIRONMENT"] == "prod"
    assert env["GUARDIAN_STORAGE__ROOT"].startswith("gs://")
    # Secret names may not look like settings: an unknown GUARDIAN_* variable stops every process.
    assert not any(s["envName"].startswith("GUARDIAN_") for s in values["secret"])
    # The same production settings as the Compose deployment's env file.
    prod = dict(
        line.split("=", 1)
        for line in (REPO / "deploy" / "env" / "prod.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values["config"]["secrets"]["backend"] == prod["AIRFLOW__SECRETS__BACKEND"]
    for key in ("GUARDIAN_SALES__BACKEND", "GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF"):
        assert env[key] == prod[key], key


@pytest.mark.airflow
def test_every_config_entry_is_an_airflow_option(values: dict[str, Any]) -> None:
    from airflow.configuration import conf

    described = conf.configuration_description
    unknown = [
        f"{section}.{key}"
        for section, options in values["config"].items()
        for key in options
        if key not in described.get(section, {}).get("options", {})
    ]
    assert unknown == []
