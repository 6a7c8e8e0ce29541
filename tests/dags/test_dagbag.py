"""Every DAG file imports cleanly, follows the house rules, parses fast and touches nothing.

Each file is parsed in a fresh interpreter where Airflow is already imported (so the timing
is the file's own cost) and where the network, the database and Airflow Variables raise if
touched. Runs under Airflow 3 (`make test`) and Airflow 2.11 (`make test-af2`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_DIR = REPO / "dags"
DAG_FILES = sorted(p for p in DAG_DIR.glob("*.py") if not p.name.startswith("_"))
EXPECTED_DAGS = {"looker_dashboard_deletion", "bigquery_sales_query", "google_sheet_trigger_dag", "guardian_health"}
PARSE_BUDGET_MS = 200

PROBE = r"""
import json, socket, sys, time
path = sys.argv[1]

# Warm up: Airflow, the authoring API and the guardian DAG kit are paid for once per
# process by every DAG file, so they are not part of one file's parse time.
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3.2+
except ImportError:
    from airflow.models.dagbag import DagBag  # Airflow 2.11
import inspect
from airflow.providers.common.compat.sdk import dag, task, Param, Variable, BaseHook
import guardian.airflow.dagkit
import pendulum

extra = {"include_examples": False} if "include_examples" in inspect.signature(DagBag.__init__).parameters else {}
# A trivial DAG with a Param first pays what any DAG pays once per parsing process (DagBag's
# set-up, Param validation's jsonschema, macros), so the clock measures the file's own cost.
import os, tempfile
WARM_UP = (
    "import pendulum\n"
    "from airflow.providers.common.compat.sdk import Param, dag, task\n"
    "@dag(dag_id='warm_up', schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz='UTC'), catchup=False,\n"
    "     params={'n': Param(1, type='integer', minimum=0)})\n"
    "def warm_up():\n"
    "    @task\n"
    "    def t(): return 1\n"
    "    t()\n"
    "warm_up()\n"
)
with tempfile.TemporaryDirectory() as warm:
    with open(os.path.join(warm, "warm_up_dag.py"), "w") as handle:
        handle.write(WARM_UP)
    DagBag(dag_folder=warm, safe_mode=False, **extra)

touched = []
def deny(kind):
    def guard(*args, **kwargs):
        touched.append(kind)
        raise RuntimeError(f"{kind} touched at parse time")
    return guard

socket.socket.connect = deny("network")
socket.socket.connect_ex = deny("network")
socket.create_connection = deny("network")
socket.getaddrinfo = deny("network (DNS)")
import sqlalchemy.engine
sqlalchemy.engine.Engine.connect = deny("database")
sqlalchemy.engine.Engine.raw_connection = deny("database")
import sqlite3
sqlite3.connect = deny("database (sqlite)")
Variable.get = deny("Airflow Variable")
BaseHook.get_connection = deny("Airflow Connection")

started = time.perf_counter()
bag = DagBag(dag_folder=path, safe_mode=False, **extra)
elapsed_ms = (time.perf_counter() - started) * 1000

def callbacks(value):
    if value is None:
        return []
    return [getattr(v, "__qualname__", repr(v)) for v in (value if isinstance(value, (list, tuple)) else [value])]

dags = []
for dag_id, d in bag.dags.items():
    args = dict(d.default_args or {})
    dags.append({
        "dag_id": dag_id,
        "owner": args.get("owner") or getattr(d, "owner", None),
        "retries": args.get("retries"),
        "tags": sorted(d.tags or []),
        "on_failure_callback": callbacks(getattr(d, "on_failure_callback", None)),
        "task_failure_callbacks": sorted(
            {c for t in d.tasks for c in callbacks(getattr(t, "on_failure_callback", None))}
        ),
        "task_retries": sorted({getattr(t, "retries", 0) or 0 for t in d.tasks}),
        "catchup": d.catchup,
        "start_date": str(d.start_date) if d.start_date else None,
        "doc_md": bool(d.doc_md and d.doc_md.strip()),
        "tasks": len(d.tasks),
    })
print(json.dumps({"elapsed_ms": elapsed_ms, "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "touched": touched, "dags": dags}))
"""


def parse(path: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def parsed() -> dict[str, dict[str, Any]]:
    return {p.stem: parse(p) for p in DAG_FILES}


def test_the_four_dags_exist() -> None:
    assert {p.stem for p in DAG_FILES} >= EXPECTED_DAGS


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag_file_follows_the_rules(path: Path, parsed: dict[str, dict[str, Any]]) -> None:
    from guardian.airflow.dagkit import Tag

    result = parsed[path.stem]
    assert result["errors"] == {}, f"import errors: {result['errors']}"
    assert result["touched"] == [], f"{path.name} touched {result['touched']} at parse time"
    assert result["elapsed_ms"] < PARSE_BUDGET_MS, f"{path.name} parsed in {result['elapsed_ms']:.0f} ms"
    dags = {d["dag_id"]: d for d in result["dags"]}
    assert path.stem in dags, f"{path.name} must define a DAG whose dag_id is its file name"
    allowed_tags = {t.value for t in Tag}
    for d in dags.values():
        assert d["owner"] and d["owner"] != "airflow", f"{d['dag_id']}: set an owner"
        assert d["tags"] and set(d["tags"]) <= allowed_tags, f"{d['dag_id']}: tags must come from Tag: {d['tags']}"
        assert d["retries"] is not None and d["retries"] >= 1, f"{d['dag_id']}: default_args needs retries"
        assert d["on_failure_callback"], f"{d['dag_id']}: the DAG needs on_failure_callback"
        assert d["task_failure_callbacks"], f"{d['dag_id']}: tasks need on_failure_callback (dagkit.default_args)"
        assert d["catchup"] is False, f"{d['dag_id']}: catchup must be False"
        assert d["start_date"], f"{d['dag_id']}: needs a fixed start_date"
        assert d["doc_md"], f"{d['dag_id']}: needs doc_md with triage notes"


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag_file_is_explicit_and_uses_the_compat_layer(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keywords = {kw.arg for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords}
    for required in ("schedule", "start_date", "catchup", "doc_md", "tags", "default_args", "on_failure_callback"):
        assert required in keywords, f"{path.name}: pass {required}= explicitly"
    airflow_imports = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "airflow"
    ]
    for module in airflow_imports:
        assert module.startswith("airflow.providers."), f"{path.name}: import {module} through common-compat"


def test_the_probe_catches_parse_time_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad_dag.py"
    bad.write_text(
        "from __future__ import annotations\n"
        "import socket\n"
        "from airflow.providers.common.compat.sdk import Variable\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=1)\n"
        "except RuntimeError:\n"
        "    pass\n"
        "try:\n"
        "    Variable.get('x')\n"
        "except RuntimeError:\n"
        "    pass\n"
    )
    result = parse(bad)
    assert result["touched"] == ["network", "Airflow Variable"]


def test_the_probe_reports_import_errors(tmp_path: Path) -> None:
    bad = tmp_path / "broken_dag.py"
    bad.write_text("from airflow.providers.common.compat.sdk import dag\nimport guardian.no_such_module\n")
    result = parse(bad)
    assert result["errors"] and "no_such_module" in next(iter(result["errors"].values()))
