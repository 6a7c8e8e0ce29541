"""The Compose files are valid Compose and describe the same topology as `start_airflow.sh --local`.

All three read deploy/topology.yaml's description (services, environment keys, health endpoints);
these tests hold the Compose files and the local runner to it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
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


def _check_compose(*paths: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the current Compose Specification it ships (`vendor.compose-spec`)."""
    argv = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", *map(str, paths)]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def test_compose_files_validate_against_the_compose_specification() -> None:
    paths = [COMPOSE["dev"], COMPOSE["prod"], REPO / "docker-compose.secrets.yml"]
    out = _check_compose(*paths)
    assert out.returncode == 0, out.stdout + out.stderr


def test_schema_rejects_a_broken_service_and_allows_name_and_include(tmp_path: Path) -> None:
    """The schema catches a misspelt key (so the test above means something) and knows today's
    top-level `name:` and `include:`."""
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"services": {"x": {"image": "a", "healthchek": {"test": ["CMD", "true"]}}}}))
    out = _check_compose(broken)
    assert out.returncode == 1 and "healthchek" in out.stdout + out.stderr
    modern = tmp_path / "modern.yml"
    modern.write_text(yaml.safe_dump({"name": "x", "include": ["other.yml"], "services": {"x": {"image": "a"}}}))
    assert _check_compose(modern).returncode == 0


def test_dev_and_prod_are_separate_compose_projects(topology: dict[str, Any]) -> None:
    """Dev and prod commands cannot act on each other's containers: each file names its project."""
    names = {env: _load(path).get("name") for env, path in COMPOSE.items()}
    assert names == {env: topology["topologies"][env]["project"] for env in COMPOSE}
    assert len(set(names.values())) == 2


def test_only_the_tls_proxy_is_published_beyond_the_host() -> None:
    """Flower, Prometheus, Grafana and everything behind the proxy listen on 127.0.0.1 only."""
    for env, path in COMPOSE.items():
        for name, service in _load(path)["services"].items():
            for port in service.get("ports", []):
                if env == "prod" and name == "proxy":
                    continue
                published = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(port))  # as Compose reads it by default
                assert published.startswith("127.0.0.1:"), f"{env} {name} publishes {port} on every interface"
    proxy = _load(COMPOSE["prod"])["services"]["proxy"]
    assert {str(p).rsplit(":", 1)[-1] for p in proxy["ports"]} == {"80", "443", "8443"}
    conf = (REPO / "deploy" / "proxy" / "nginx.conf").read_text()
    assert "listen 443 ssl" in conf and "proxy_pass http://airflow-apiserver:8080" in conf
    assert "proxy_pass http://guardian-web:8090" in conf and "return 301 https://" in conf
    mounts = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert mounts["/etc/nginx/tls"] == "./deploy/tls"
    for cert in re.findall(r"ssl_certificate(?:_key)?\s+/etc/nginx/tls/(\S+);", conf):
        assert cert in (REPO / "deploy" / "tls" / "README.md").read_text()


def test_production_logs_in_through_fab_with_an_admin_created_at_init() -> None:
    prod = _load(COMPOSE["prod"])["services"]
    env = _service_env(prod["airflow-apiserver"])
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
    assert not any(k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER") for k in env)
    init = " ".join(prod["airflow-init"]["command"])
    assert "airflow users create --role Admin --username admin" in init
    locked = re.search(
        r'^name = "apache-airflow-providers-fab"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text(), re.M
    )
    assert locked, "the FAB provider is not in uv.lock"
    import importlib.metadata

    assert importlib.metadata.version("apache-airflow-providers-fab") == locked.group(1)


def test_google_credentials_default_to_the_machine_and_a_key_file_is_opt_in() -> None:
    """Application default credentials unless the operator gives a key: no env file or service points
    GOOGLE_APPLICATION_CREDENTIALS at a file that only the optional overlay provides."""
    for path in sorted((REPO / "deploy" / "env").glob("*.env*")):
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in _env_file(str(path.relative_to(REPO))), path.name
    for path in (*COMPOSE.values(), REPO / "docker-compose.secrets.yml"):
        for service in _load(path)["services"].values():
            assert "GOOGLE_APPLICATION_CREDENTIALS" not in (service.get("environment") or {}), path.name


def test_remote_task_logs_go_to_cloud_storage_in_production() -> None:
    prod = _env_file("deploy/env/prod.env")
    assert prod["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True"
    assert prod["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith("gs://")
    assert prod["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == "google_cloud_default"


@pytest.mark.airflow
def test_every_airflow_variable_in_compose_and_env_files_is_an_airflow_option() -> None:
    """AIRFLOW__SECTION__KEY names exist in this Airflow (core or provider options): a removed option
    (e.g. scheduler.standalone_dag_processor, gone in 3.x) is silently ignored, so none may stay."""
    from airflow.configuration import conf

    names: set[str] = set()
    for path in COMPOSE.values():
        for service in _load(path)["services"].values():
            names |= {k for k in _service_env(service) if k.startswith("AIRFLOW__")}
    for path in sorted((REPO / "deploy" / "env").glob("*.env*")):
        names |= {k for k in _env_file(str(path.relative_to(REPO))) if k.startswith("AIRFLOW__")}
    described = conf.configuration_description  # core options and every installed provider's
    unknown = []
    for name in sorted(names):
        section, key = name.removeprefix("AIRFLOW__").removesuffix("_CMD").lower().split("__", 1)
        if key not in described.get(section, {}).get("options", {}):
            unknown.append(name)
    assert names and unknown == []


def _documented_secret_modes() -> tuple[str, str, str]:
    """owner, folder mode, file mode from the overlay's documented command line."""
    text = (REPO / "docker-compose.secrets.yml").read_text()
    match = re.search(
        r"chown -R (\d+:\d+) deploy/secrets && sudo chmod (0\d{3}) deploy/secrets"
        r" && sudo chmod (0\d{3}) deploy/secrets/\*",
        text,
    )
    assert match, "docker-compose.secrets.yml no longer documents the ownership and modes"
    owner, folder, files = match.groups()
    return owner, folder, files


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners and switching to uid 50000 needs root")
def test_own_secret_files_are_readable_by_the_airflow_user_under_the_documented_modes() -> None:
    """Run deploy/secret.sh as the image's Airflow user (uid 50000, gid 0) against a deploy/secrets
    folder set up exactly as the overlay documents; as Compose's file secrets would hand them over
    (the host's root-owned 0400 files) it cannot read them, which is why the modes are documented."""
    owner, folder_mode, file_mode = _documented_secret_modes()
    uid, gid = map(int, owner.split(":"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        own, generated = base / "secrets", base / "generated"
        own.mkdir()
        generated.mkdir()
        values = {"fernet_key": "k" * 44, "postgres_password": "p@ss:w/rd", "redis_password": "r3d"}
        for name, value in values.items():
            (own / name).write_text(value + "\n")

        def as_airflow(*args: str) -> subprocess.CompletedProcess[str]:
            env = {"PATH": os.environ["PATH"], "DOCKER_SECRETS_DIR": str(own), "AIRFLOW_SECRETS_DIR": str(generated)}
            return subprocess.run(
                ["sh", str(REPO / "deploy" / "secret.sh"), *args],
                env=env,
                user=50000,
                group=0,
                capture_output=True,
                text=True,
                check=False,
            )

        # As Compose's file-based secrets leave them: the host's owner (root) and a private mode.
        for path in own.iterdir():
            path.chmod(0o400)
        assert as_airflow("fernet_key").returncode != 0
        # As documented.
        for path in [own, *own.iterdir()]:
            os.chown(path, uid, gid)
        own.chmod(int(folder_mode, 8))
        for path in own.iterdir():
            path.chmod(int(file_mode, 8))
        out = as_airflow("fernet_key")
        assert (out.returncode, out.stdout) == (0, values["fernet_key"]), out.stderr
        from sqlalchemy.engine import make_url

        url = make_url(as_airflow("sql_alchemy_conn").stdout)
        assert (url.username, url.password, url.host, url.database) == ("airflow", "p@ss:w/rd", "postgres", "airflow")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_compose_services_are_the_topology_services(topology: dict[str, Any], env: str) -> None:
    services = set(_load(COMPOSE[env])["services"])
    assert services == set(_in_topology(topology, env))
    assert topology["topologies"][env]["compose"] == COMPOSE[env].name


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_airflow_service_gets_the_topology_env_keys(topology: dict[str, Any], env: str) -> None:
    compose = _load(COMPOSE[env])
    executor = topology["topologies"][env]["executor"]
    wanted = set(_localrun().env_keys(topology, executor, topology["topologies"][env]["auth"]))
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
    assert set(localrun.env_keys(topology, executor, topology["topologies"]["local"]["auth"])) <= set(env)
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


def test_image_build_checks_airflow_against_the_lock_and_runs_pip_check(tmp_path: Path) -> None:
    """`deploy/install.sh check` (run by the image build after installing) passes on the locked
    Airflow and stops the build on any other version."""
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "RUN deploy/install.sh image" in dockerfile
    image_mode = (REPO / "deploy" / "install.sh").read_text().split("  image)", 1)[1].split(";;", 1)[0]
    assert '"$0" check' in image_mode
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = str(REPO / "deploy" / "install.sh")
    ok = subprocess.run(["bash", script, "check"], env=env, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "compatible" in ok.stdout + ok.stderr
    # An image built on another Airflow: a stand-in `airflow` package with another version first on the path.
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "__init__.py").write_text('__version__ = "2.9.9"\n')
    wrong = subprocess.run(
        ["bash", script, "check"], env={**env, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, check=False
    )
    assert wrong.returncode != 0
    assert "Airflow 2.9.9 here" in wrong.stderr and "AIRFLOW_VERSION=" in wrong.stderr


def test_status_stop_and_logs_act_on_the_options_start_was_given(tmp_path: Path) -> None:
    """After `start --port 8123 --workers 3`, commands without flags use that port and those workers
    (the options are saved with the supervisord configuration), and a fresh start takes defaults."""
    localrun = _localrun()
    state = tmp_path / "state"
    started = localrun.Config(state_dir=state, logs_dir=tmp_path / "logs", port=8123, workers=3)
    started.run_dir.mkdir(parents=True)
    localrun.save_config(started)
    localrun.write_supervisor_conf(started)
    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "localrun.py"), "--state-dir", str(state), "env"],
        capture_output=True,
        text=True,
        check=True,
    )
    env_sh = Path(out.stdout.strip().splitlines()[-1]).read_text()
    assert "export AIRFLOW__API__PORT=8123" in env_sh
    conf = localrun.supervisor_conf(started).read_text()
    assert [line for line in conf.splitlines() if line.startswith("[program:airflow-worker-")] == [
        f"[program:airflow-worker-{i}]" for i in (1, 2, 3)
    ]
    # Every program restarts when it dies, and stops as a whole process group.
    programs = conf.split("[program:")[1:]
    assert programs and all(
        "autorestart=true" in p and "stopasgroup=true" in p and "killasgroup=true" in p for p in programs
    )
    assert "worker1-local@%%h" in conf  # supervisord would expand a lone %
    loaded = localrun.load_config(state)
    assert (loaded.port, loaded.workers, loaded.logs_dir) == (8123, 3, tmp_path / "logs")
