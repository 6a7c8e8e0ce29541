"""Schema drift: compare a result's columns and types with the expected schema.

Types are compared by family (BigQuery, DuckDB and Arrow spell them differently):
``INT64``/``BIGINT``/``int64`` are all ``integer``; ``NUMERIC``/``DECIMAL(18,3)``/``decimal128``
are ``decimal``; and so on. A drift is reported as the columns added, removed and retyped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from guardian.quality.results import CheckResult, Severity

_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"^(int64|integer|int|bigint|smallint|tinyint|hugeint|ubigint|uinteger|int8|int16|int32|uint\d+)$", "integer"),
    (r"^(numeric|bignumeric|decimal.*|decimal128.*|decimal256.*)$", "decimal"),
    (r"^(float64|float|double|real|float32|halffloat|float16)$", "float"),
    (r"^(string|varchar.*|text|utf8|large_string|large_utf8|char.*)$", "string"),
    (r"^(date|date32.*|date64.*)$", "date"),
    (r"^(time|time64.*|time32.*)$", "time"),
    (r"^(timestamp.*|datetime)$", "timestamp"),
    (r"^(bool|boolean)$", "boolean"),
    (r"^(bytes|blob|binary|large_binary)$", "bytes"),
)


def type_family(type_name: str) -> str:
    """The family of a BigQuery, DuckDB or Arrow type name (unknown names are returned lowered)."""
    name = type_name.strip().lower()
    for pattern, family in _FAMILIES:
        if re.match(pattern, name):
            return family
    return name


@dataclass(frozen=True)
class SchemaDiff:
    """Columns added (unexpected), removed (missing) and retyped (name, expected, actual)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: list[tuple[str, str, str]] = field(default_factory=list)
    reordered: bool = False

    @property
    def drifted(self) -> bool:
        """True when columns were added, removed or retyped (order alone is not drift)."""
        return bool(self.added or self.removed or self.retyped)

    def summary(self) -> str:
        """One line: what changed."""
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        if self.retyped:
            parts.append("retyped " + ", ".join(f"{n} {e}->{a}" for n, e, a in self.retyped))
        return "; ".join(parts) or "no drift"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored with the check result."""
        return {
            "added": self.added,
            "removed": self.removed,
            "retyped": [{"column": n, "expected": e, "actual": a} for n, e, a in self.retyped],
            "reordered": self.reordered,
        }


def diff_schema(expected: Sequence[tuple[str, str]], actual: Sequence[tuple[str, str]]) -> SchemaDiff:
    """Compare two (name, type) lists; names are case-insensitive, types compared by family."""
    exp_map = {name.lower(): kind for name, kind in expected}
    act_map = {name.lower(): kind for name, kind in actual}
    added = [name for name, _ in actual if name.lower() not in exp_map]
    removed = [name for name, _ in expected if name.lower() not in act_map]
    retyped = [
        (name, type_family(kind), type_family(act_map[name.lower()]))
        for name, kind in expected
        if name.lower() in act_map and type_family(kind) != type_family(act_map[name.lower()])
    ]
    common_expected = [n.lower() for n, _ in expected if n.lower() in act_map]
    common_actual = [n.lower() for n, _ in actual if n.lower() in exp_map]
    return SchemaDiff(added, removed, retyped, reordered=common_expected != common_actual)


def schema_check(
    expected: Sequence[tuple[str, str]],
    actual: Sequence[tuple[str, str]],
    *,
    name: str = "schema",
    severity: Severity = "error",
) -> CheckResult:
    """A check result: passed when the schemas match; on drift the diff is in the details."""
    diff = diff_schema(expected, actual)
    if diff.drifted:
        return CheckResult(name, False, f"schema drift: {diff.summary()}", severity, diff.as_dict())
    return CheckResult(name, True, f"schema matches ({len(expected)} columns)", severity, diff.as_dict())
