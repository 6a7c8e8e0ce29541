"""The sales query: written once in BigQuery Standard SQL, run on BigQuery or (transpiled) DuckDB.

Templates live in ``sql/<granularity>.sql`` and read from the placeholder table
``sales_source``. The real table is put in by rewriting the parsed tree (never by formatting
text), after each part of its name has passed a strict pattern. Values are always named query
parameters (``@start_date`` ...): BigQuery binds them as typed query parameters, DuckDB as
``$name`` prepared parameters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import sqlglot
from sqlglot import exp

from guardian.errors import ValidationFailed
from guardian.sales.params import ExtractParams

PLACEHOLDER = "sales_source"
PARTITION_COLUMN = "sale_date"

# The fact table, in the style of LS Central's Trans. Sales Entry (BigQuery types).
SOURCE_SCHEMA: tuple[tuple[str, str], ...] = (
    ("entry_no", "INT64"),
    ("transaction_no", "INT64"),
    ("line_no", "INT64"),
    ("store_no", "STRING"),
    ("pos_terminal_no", "STRING"),
    ("sale_date", "DATE"),
    ("sale_time", "TIME"),
    ("country_code", "STRING"),
    ("brand_code", "STRING"),
    ("item_no", "STRING"),
    ("item_category", "STRING"),
    ("barcode", "STRING"),
    ("entry_type", "STRING"),
    ("quantity", "NUMERIC"),
    ("unit_price", "NUMERIC"),
    ("net_amount", "NUMERIC"),
    ("vat_amount", "NUMERIC"),
    ("discount_amount", "NUMERIC"),
    ("currency_code", "STRING"),
    ("staff_id", "STRING"),
    ("customer_no", "STRING"),
    ("receipt_no", "STRING"),
    ("created_at", "TIMESTAMP"),
)

_AGG = (
    ("entries", "INT64"),
    ("transactions", "INT64"),
    ("quantity", "NUMERIC"),
    ("net_amount", "NUMERIC"),
    ("vat_amount", "NUMERIC"),
    ("discount_amount", "NUMERIC"),
)
# The schema each granularity's result must have (the quality gate compares against it).
RESULT_SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "entry": tuple(
        (name, kind)
        for name, kind in SOURCE_SCHEMA
        if name
        in {
            "entry_no",
            "transaction_no",
            "store_no",
            "pos_terminal_no",
            "sale_date",
            "sale_time",
            "country_code",
            "brand_code",
            "item_no",
            "entry_type",
            "quantity",
            "net_amount",
            "vat_amount",
            "discount_amount",
            "currency_code",
        }
    ),
    "day": (
        ("sale_date", "DATE"),
        ("country_code", "STRING"),
        ("brand_code", "STRING"),
        ("store_no", "STRING"),
        ("currency_code", "STRING"),
        *_AGG,
    ),
    "month": (
        ("sale_month", "DATE"),
        ("country_code", "STRING"),
        ("brand_code", "STRING"),
        ("currency_code", "STRING"),
        *_AGG,
    ),
}
DATE_COLUMN = {"entry": "sale_date", "day": "sale_date", "month": "sale_month"}

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")


@dataclass(frozen=True)
class TableRef:
    """A checked ``project.dataset.table`` name."""

    project: str
    dataset: str
    table: str

    def __post_init__(self) -> None:
        check_identifier("project", self.project, _PROJECT)
        check_identifier("dataset", self.dataset, _NAME)
        check_identifier("table", self.table, _NAME)

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def node(self) -> exp.Table:
        """The table as a sqlglot node (each part quoted)."""
        return exp.Table(
            this=exp.to_identifier(self.table, quoted=True),
            db=exp.to_identifier(self.dataset, quoted=True),
            catalog=exp.to_identifier(self.project, quoted=True),
        )


def check_identifier(kind: str, value: str, pattern: re.Pattern[str] = _NAME) -> str:
    """Refuse any identifier outside a strict pattern (no backticks, quotes, semicolons, dots)."""
    if not isinstance(value, str) or not pattern.match(value):
        raise ValidationFailed(
            f"{kind} {value!r} is not a valid BigQuery {kind} name; use letters, digits and underscores"
            + (" (and hyphens)" if kind == "project" else "")
            + f", set GUARDIAN_SALES__{kind.upper()}"
        )
    return value


@cache
def template(granularity: str) -> str:
    """The BigQuery SQL text of one granularity's template."""
    if granularity not in RESULT_SCHEMAS:
        raise ValidationFailed(f"param granularity: {granularity!r} is not supported; use entry, day or month")
    return resources.files("guardian.sales").joinpath(f"sql/{granularity}.sql").read_text(encoding="utf-8")


def bind_table(sql: str, table: TableRef | exp.Table, placeholder: str = PLACEHOLDER) -> exp.Expr:
    """Parse BigQuery SQL and point every reference to ``placeholder`` at ``table``."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    target = table.node() if isinstance(table, TableRef) else table
    for node in list(tree.find_all(exp.Table)):
        if node.name == placeholder and not node.args.get("db"):
            alias = node.args.get("alias")
            replacement = target.copy()
            if alias is not None:
                replacement.set("alias", alias)
            node.replace(replacement)
    return tree


@dataclass(frozen=True)
class SalesQuery:
    """The query of one extract: BigQuery text, its DuckDB translation and the named params."""

    granularity: str
    table: TableRef
    bigquery_sql: str
    params: dict[str, tuple[str, Any]]  # name -> (BigQuery type, value)

    @property
    def duckdb_sql(self) -> str:
        """The same query in DuckDB's dialect (named params become ``$name``)."""
        return to_duckdb(self.bigquery_sql)

    @property
    def query_hash(self) -> str:
        """SHA-256 of the BigQuery text: which SQL produced an export (values excluded)."""
        return hashlib.sha256(self.bigquery_sql.encode()).hexdigest()

    def values(self) -> dict[str, Any]:
        """Param values by name (DuckDB binding)."""
        return {name: value for name, (_kind, value) in self.params.items()}

    @property
    def result_schema(self) -> tuple[tuple[str, str], ...]:
        """The expected schema of the result."""
        return RESULT_SCHEMAS[self.granularity]


def build_query(params: ExtractParams, table: TableRef) -> SalesQuery:
    """The query for validated params against ``table``."""
    tree = bind_table(template(params.granularity), table)
    return SalesQuery(
        granularity=params.granularity,
        table=table,
        bigquery_sql=tree.sql(dialect="bigquery", pretty=True),
        params={
            "start_date": ("DATE", params.start_date),
            "end_date": ("DATE", params.end_date),
            "countries": ("ARRAY<STRING>", list(params.countries)),
            "brands": ("ARRAY<STRING>", list(params.brands)),
        },
    )


def sheet_sql(granularity: str, result: exp.Table) -> str:
    """The sheet view of a result: entry results summed per month with the month template itself
    (run over the result table with the run's params), aggregates as they are; ordered."""
    source = template("month") if granularity == "entry" else f"SELECT * FROM {PLACEHOLDER}"
    inner = bind_table(source, result).sql(dialect="bigquery")
    return f"SELECT * FROM ({inner}) ORDER BY 1, 2, 3, 4"


def baseline_sql(table: TableRef) -> str:
    """The original system's query: every column of every partition (``LIMIT`` does not cut billing)."""
    return exp.select("*").from_(table.node()).limit(100).sql(dialect="bigquery")


@cache
def to_duckdb(bigquery_sql: str) -> str:
    """Transpile BigQuery Standard SQL to DuckDB with sqlglot."""
    return sqlglot.transpile(bigquery_sql, read="bigquery", write="duckdb")[0]


@dataclass(frozen=True)
class ScanPlan:
    """What a query reads from one table: the columns and the partition-column bounds."""

    columns: frozenset[str]
    start: date | None
    end: date | None


def scan_plan(bigquery_sql: str, table: TableRef, values: dict[str, Any]) -> ScanPlan:
    """Columns of ``table`` the query references, and the partition range its WHERE allows.

    A dry run in the DuckDB backend: the same rules BigQuery bills by (every referenced column,
    every partition the filter on the partition column cannot exclude; ``LIMIT`` and cluster
    filters do not reduce the estimate).
    """
    tree = sqlglot.parse_one(bigquery_sql, read="bigquery")
    schema = {name for name, _ in SOURCE_SCHEMA}
    if any(isinstance(node, exp.Star) for node in tree.find_all(exp.Star)) and not any(
        isinstance(node.parent, exp.Count) for node in tree.find_all(exp.Star)
    ):
        columns = frozenset(schema)
    else:
        columns = frozenset(col.name for col in tree.find_all(exp.Column) if col.name in schema)
    start: date | None = None
    end: date | None = None
    where = tree.args.get("where")
    if where is not None:
        for between in where.find_all(exp.Between):
            if isinstance(between.this, exp.Column) and between.this.name == PARTITION_COLUMN:
                low = _bound(between.args.get("low"), values)
                high = _bound(between.args.get("high"), values)
                start = low if start is None or (low and low > start) else start
                end = high if end is None or (high and high < end) else end
    return ScanPlan(columns=columns, start=start, end=end)


def _bound(node: exp.Expression | None, values: dict[str, Any]) -> date | None:
    if isinstance(node, exp.Parameter | exp.Placeholder):
        value = values.get(node.name)
        return value if isinstance(value, date) else None
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            return date.fromisoformat(node.this)
        except ValueError:
            return None
    if isinstance(node, exp.Cast | exp.Date | exp.TsOrDsToDate) and node.this is not None:
        return _bound(node.this, values)
    return None
