"""The Compose files are valid Compose and describe the same topology as `start_airflow.sh --local`.

All three read deploy/topology.yaml's description (services, environment keys, health endpoints);
these tests hold the Compose files and the local runner to it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).resolve().parent / "schema" / "compose-spec.json"
COMPOSE = {"dev": REPO / "docker-compose.yml", "prod": REPO / "docker-compose.prod.yml"}


def _localrun() -> ModuleType:
    if "guardian_localrun" in sys.modules:
        return sys.modules["guardian_localrun"]
    spec = importlib.util.spec_from_file_location("guardian_localrun", REPO / "deploy" / "localrun.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["guardian_localrun"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def topology() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "deploy" / "topology.yaml").read_text())
    return data


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _env_file(ref: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file; a gitignored real file is checked through its .example."""
    path = REPO / re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", ref)
    if not path.exists():
        path = path.with_name(path.name + ".example")
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _service_env(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ref in service.get("env_file", []):
        env.update(_env_file(ref))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def _in_topology(topology: dict[str, Any], name: str) -> list[str]:
    return [n for section in ("services", "infra") for n, s in topology[section].items() if name in s["topologies"]]


@pytest.mark.parametrize(
    "path", [COMPOSE["dev"], COMPOSE["prod"], REPO / "docker-compose.secrets.yml"], ids=lambda p: p.name
)
def test_compose_file_validates_against_the_compose_specification(path: Path) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(_load(path)), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_schema_rejects_a_broken_service() -> None:
    """The vendored schema is strict enough to catch a misspelt key (so the test above means something)."""
    schema = json.loads(SCHEMA.read_text())
    broken = {"services": {"x": {"image": "a", "healthchek": {"test": ["CMD", "true"]}}}}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_compose_services_are_the_topology_services(topology: dict[str, Any], env: str) -> None:
    services = set(_load(COMPOSE[env])["services"])
    assert services == set(_in_topology(topology, env))
    assert topology["topologies"][env]["compose"] == COMPOSE[env].name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_airflow_service_gets_the_topology_env_keys(topology: dict[str, Any], env: str) -> None:
    compose = _load(COMPOSE[env])
    executor = topology["topologies"][env]["executor"]
    wanted = set(topology["env"]["airflow"])
    if executor == "CeleryExecutor":
        wanted |= set(topology["env"]["celery"])
    checked = 0
    for name, spec in topology["services"].items():
        if env not in spec["topologies"]:
            continue
        env_values = _service_env(compose["services"][name])
        # Secret settings are given as KEY_CMD (a command printing the value): the same setting.
        keys = {key.removesuffix("_CMD") for key in env_values}
        assert wanted - keys == set(), f"{name} lacks {sorted(wanted - keys)}"
        assert env_values["AIRFLOW__CORE__EXECUTOR"] == executor
        assert not any(k.endswith(("PASSWORD", "SECRET", "FERNET_KEY", "SECRET_KEY")) for k in env_values), name
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_compose_health_checks_probe_the_topology_endpoints(topology: dict[str, Any], env: str) -> None:
    compose = _load(COMPOSE[env])
    for section in ("services", "infra"):
        for name, spec in topology[section].items():
            if env not in spec["topologies"]:
                continue
            health = compose["services"][name].get("healthcheck", {})
            if spec.get("oneshot"):
                assert health.get("disable") is True, name
                continue
            test = " ".join(health["test"]).replace("$$", "$").replace('\\"', "").replace('"', "")
            probe = spec["health"]
            if "http" in probe:
                port = f":{topology['ports'][probe['port']]}" if "port" in probe else ""
                assert f"localhost{port}{probe['http']}" in test, f"{name}: {test}"
            else:
                assert " ".join(probe["cli"]) in test, f"{name}: {test}"


def test_image_health_check_covers_every_airflow_service(topology: dict[str, Any]) -> None:
    script = (REPO / "deploy" / "healthcheck.sh").read_text().replace('"', "")
    for name, spec in topology["services"].items():
        probe = spec.get("health")
        if probe is None:
            continue
        if "http" in probe:
            assert f"localhost:{topology['ports'][probe['port']]}{probe['http']}".split("{")[0] in script.replace(
                "${GUARDIAN_WEB__PORT:-8090}", "8090"
            ), name
        else:
            assert " ".join(probe["cli"][:-1]) in script, name


def test_workers_scale_and_prod_has_restart_policies_and_limits() -> None:
    prod = _load(COMPOSE["prod"])["services"]
    worker = prod["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale airflow-worker=N works
    for name, spec in prod.items():
        if name == "airflow-secrets":
            continue
        assert spec.get("restart") in {"always", "on-failure", "unless-stopped"}, name
        if name != "airflow-init":
            assert spec["deploy"]["resources"]["limits"]["memory"], name


def test_env_files_differ_only_in_values_the_settings_know(topology: dict[str, Any]) -> None:
    from guardian.settings import known_env_vars

    known = known_env_vars()
    files = sorted((REPO / "deploy" / "env").glob("*.env*"))
    assert {f.name for f in files} >= {"dev.env", "staging.env.example", "prod.env.example"}
    for path in files:
        values = _env_file(str(path.relative_to(REPO)))
        unknown = [k for k in values if k.startswith("GUARDIAN_") and k not in known]
        assert unknown == [], f"{path.name}: {unknown}"
        assert "AIRFLOW__CORE__EXECUTOR" in values and "AIRFLOW__CORE__PARALLELISM" in values
        assert "AIRFLOW__SECRETS__BACKEND" in values
    prod = _env_file("deploy/env/prod.env")
    assert prod["AIRFLOW__SECRETS__BACKEND"].endswith("secret_manager.CloudSecretManagerBackend")
    assert json.loads(prod["AIRFLOW__SECRETS__BACKEND_KWARGS"])["connections_prefix"] == "airflow-connections"
    assert json.loads(prod["AIRFLOW__OPENLINEAGE__TRANSPORT"])["type"] == "http"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_bind_mount_and_env_file_exists_in_the_repository(env: str) -> None:
    """Bind mounts (dags, config, the observability files) and env files point at real paths."""
    for name, service in _load(COMPOSE[env])["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"
    prod = _load(COMPOSE["prod"])["services"]
    mounted = {v.split(":")[1]: v.split(":")[0] for s in prod.values() for v in s.get("volumes", [])}
    assert (REPO / mounted["/etc/statsd"] / "mapping.yml").is_file()
    assert (REPO / mounted["/etc/prometheus"] / "prometheus.yml").is_file()
    assert (REPO / mounted["/etc/grafana/provisioning"] / "dashboards").is_dir()
    assert list((REPO / mounted["/var/lib/grafana/dashboards"]).glob("*.json"))


def test_every_guardian_variable_in_compose_and_image_is_a_setting() -> None:
    """GUARDIAN_* names are settings; an unknown one stops every guardian process, so none may slip in."""
    from guardian.settings import known_env_vars

    known = known_env_vars()
    names = set()
    for path in (COMPOSE["dev"], COMPOSE["prod"]):
        for service in _load(path)["services"].values():
            names |= {k for k in _service_env(service) if k.startswith("GUARDIAN_")}
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    names |= set(re.findall(r"\b(GUARDIAN_[A-Z0-9_]+)=", dockerfile))
    names |= set(re.findall(r"\b(GUARDIAN_[A-Z0-9_]+)", (REPO / "deploy" / "secret.sh").read_text()))
    assert names and sorted(names - known) == []


def test_local_topology_reads_the_same_description(topology: dict[str, Any], tmp_path: Path) -> None:
    localrun = _localrun()
    cfg = localrun.Config(state_dir=tmp_path / "state", logs_dir=tmp_path / "logs", workers=2)
    env = localrun.environment(cfg, topology)
    executor = topology["topologies"]["local"]["executor"]
    assert set(localrun.env_keys(topology, executor)) <= set(env)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    procs = localrun.processes(cfg, topology)
    expected = []
    for name, spec in localrun.local_services(topology).items():
        if name == "guardian-web":
            continue
        replicas = spec.get("local_replicas", 1)
        expected += [f"{name}-{i}" for i in range(1, replicas + 1)] if replicas > 1 else [name]
    assert [p.name for p in procs] == expected
    for proc in procs:
        spec = topology["services"][proc.name.rsplit("-", 1)[0] if proc.name[-1].isdigit() else proc.name]
        assert proc.health == spec.get("health")
        if proc.health and "http" in proc.health:
            assert localrun.health_url(cfg, topology, proc.health).endswith(proc.health["http"])
    # No default password: the admin password and the Fernet key were generated, private.
    passwords = json.loads(cfg.passwords_file.read_text())
    assert len(passwords["admin"]) >= 20
    assert cfg.passwords_file.stat().st_mode & 0o077 == 0
    assert cfg.secrets_file.stat().st_mode & 0o077 == 0
    from cryptography.fernet import Fernet

    Fernet(env["AIRFLOW__CORE__FERNET_KEY"].encode())
    # Generated once: a second start keeps them.
    assert localrun.environment(cfg, topology)["AIRFLOW__CORE__FERNET_KEY"] == env["AIRFLOW__CORE__FERNET_KEY"]


def test_start_airflow_script_usage_and_status_when_stopped(tmp_path: Path) -> None:
    script = REPO / "start_airflow.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    usage = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for word in ("start", "stop", "status", "logs", "restart", "--local"):
        assert word in usage
    bad = subprocess.run([str(script), "launch"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "localrun.py"), "--state-dir", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 3
    assert re.search(r"airflow-scheduler\s+stopped", out.stdout)
    stop = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "localrun.py"), "--state-dir", str(tmp_path), "stop"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "nothing was running" in stop.stdout
