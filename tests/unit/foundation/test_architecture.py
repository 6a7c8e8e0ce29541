"""Rules of the house that code review alone would miss."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "guardian"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_guardian_airflow_imports_airflow() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if SRC / "airflow" in path.parents:
            continue
        bad = sorted(n for n in _imports(path) if n == "airflow" or n.startswith("airflow."))
        if bad:
            offenders.append(f"{path.relative_to(SRC.parent)}: {', '.join(bad)}")
    assert offenders == [], "the domain must not import airflow:\n" + "\n".join(offenders)


def test_the_rule_detects_an_offender(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from airflow.providers.common.compat.sdk import dag\nimport os\n")
    assert "airflow.providers.common.compat.sdk" in _imports(sample)
