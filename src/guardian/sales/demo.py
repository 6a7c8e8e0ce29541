"""The demo warehouse: a seeded, realistic sales-entry table in a DuckDB file.

Rows look like LS Central's Trans. Sales Entry: stores per country and brand, POS terminals,
transactions of a few lines, items, sales and returns (negative quantity and amount), VAT,
discounts and the local currency. The data is generated inside DuckDB from a hash of the row
number and the seed, so the same seed always gives the same table, and 10 M rows take seconds
without passing through Python. The table is written ordered by (sale_date, country_code,
brand_code): DuckDB's row-group min/max then prunes like BigQuery's date partitions and
clustering do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from guardian.sales.sql import SOURCE_SCHEMA, TableRef

CURRENCY = {"TH": "THB", "VN": "VND", "MY": "MYR", "SG": "SGD", "ID": "IDR", "PH": "PHP"}
# Typical unit-price scale per currency, so amounts look like each country's money.
PRICE_SCALE = {"THB": 1.0, "VND": 700.0, "MYR": 0.13, "SGD": 0.04, "IDR": 450.0, "PHP": 1.6, "USD": 0.03}
CATEGORIES = ["COFFEE", "BAKERY", "APPAREL", "FOOTWEAR", "BEAUTY", "HOME", "SNACKS", "ACCESSORIES"]
DEMO_START = date(2025, 1, 1)
DEMO_END = date(2026, 12, 31)
STATS_TABLE = "_guardian_partition_bytes"

_DUCKDB_TYPES = {
    "INT64": "BIGINT",
    "STRING": "VARCHAR",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP": "TIMESTAMP",
    "NUMERIC": "DECIMAL(18,3)",
}
# BigQuery's logical bytes per value (what on-demand queries are billed by); STRING is 2 + length.
LOGICAL_BYTES = {"INT64": 8, "DATE": 8, "TIME": 8, "TIMESTAMP": 8, "NUMERIC": 16, "FLOAT64": 8, "BOOL": 1}


@dataclass(frozen=True)
class DemoResult:
    """What the generator wrote."""

    path: Path
    table: str
    rows: int
    seconds: float
    first_date: date
    last_date: date


def _sql_list(values: list[str]) -> str:
    # Only our own constant code lists reach here (validated codes, never user text).
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def generate(
    path: Path,
    table: TableRef,
    *,
    rows: int,
    seed: int = 42,
    countries: list[str] | None = None,
    brands: list[str] | None = None,
    start: date = DEMO_START,
    end: date = DEMO_END,
    threads: int | None = None,
) -> DemoResult:
    """(Re)create the demo table and its partition statistics in the DuckDB file at ``path``."""
    import duckdb

    countries = [c for c in (countries or list(CURRENCY)) if c in CURRENCY] or list(CURRENCY)
    brands = brands or ["X", "Y", "Z", "NOVA", "ACME"]
    days = (end - start).days + 1
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    schema = f'"{table.dataset}"'
    qualified = f'{schema}."{table.table}"'
    currency_map = "MAP {" + ", ".join(f"'{c}': '{CURRENCY[c]}'" for c in countries) + "}"
    scale_map = "MAP {" + ", ".join(f"'{CURRENCY[c]}': {PRICE_SCALE[CURRENCY[c]]}" for c in countries) + "}"
    with duckdb.connect(str(path)) as con:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(f"DROP TABLE IF EXISTS {qualified}")
        con.execute(f"DROP TABLE IF EXISTS {schema}.{STATS_TABLE}")
        columns = ",\n".join(f'  "{name}" {_DUCKDB_TYPES[kind]}' for name, kind in SOURCE_SCHEMA)
        con.execute(f"CREATE TABLE {qualified} (\n{columns}\n)")
        con.execute(
            f"""
            INSERT INTO {qualified}
            WITH base AS (
              SELECT
                i,
                DATE '{start.isoformat()}' + CAST((i * {days}) // {rows} AS INTEGER) AS sale_date,
                {_sql_list(countries)}[1 + CAST(hash(i, {seed}, 1) % {len(countries)} AS BIGINT)] AS country_code,
                {_sql_list(brands)}[1 + CAST(hash(i, {seed}, 2) % {len(brands)} AS BIGINT)] AS brand_code,
                CAST(hash(i, {seed}, 3) % 1000000007 AS BIGINT) AS h3,
                CAST(hash(i, {seed}, 4) % 1000000007 AS BIGINT) AS h4,
                CAST(hash(i, {seed}, 5) % 1000000007 AS BIGINT) AS h5
              FROM range({rows}) t(i)
            ), ordered AS (
              SELECT *,
                country_code || '-' || brand_code || '-' || lpad(CAST(h3 % 8 + 1 AS VARCHAR), 2, '0') AS store_no
              FROM base
              ORDER BY sale_date, country_code, brand_code, store_no, i
            ), numbered AS (
              SELECT *, row_number() OVER () AS rn FROM ordered
            ), priced AS (
              SELECT *,
                CASE WHEN h4 % 100 < 5 THEN 'RETURN' ELSE 'SALE' END AS entry_type,
                CAST(1 + h4 % 5 AS DECIMAL(18,3)) AS abs_qty,
                {currency_map}[country_code] AS currency_code,
                CAST(round((20 + (h5 % 98000) / 100.0) * {scale_map}[{currency_map}[country_code]], 2)
                     AS DECIMAL(18,3)) AS unit_price,
                CASE WHEN h5 % 10 = 0 THEN 0.05 + (h5 % 4) * 0.05 ELSE 0 END AS discount_rate
              FROM numbered
            )
            SELECT
              CAST(rn AS BIGINT) AS entry_no,
              CAST(100000000 + (rn + 2) // 3 AS BIGINT) AS transaction_no,
              CAST(1 + (rn + 2) % 3 AS BIGINT) * 10000 AS line_no,
              store_no,
              'P' || CAST(1 + h3 % 4 AS VARCHAR) AS pos_terminal_no,
              sale_date,
              make_time(CAST(8 + h3 % 14 AS BIGINT), CAST(h4 % 60 AS BIGINT), CAST(h5 % 60 AS DOUBLE)) AS sale_time,
              country_code,
              brand_code,
              'I' || lpad(CAST(h3 % 5000 AS VARCHAR), 5, '0') AS item_no,
              {_sql_list(CATEGORIES)}[1 + h4 % {len(CATEGORIES)}] AS item_category,
              '885' || lpad(CAST(h5 % 10000000000 AS VARCHAR), 10, '0') AS barcode,
              entry_type,
              CASE WHEN entry_type = 'RETURN' THEN -abs_qty ELSE abs_qty END AS quantity,
              unit_price,
              CAST(round((CASE WHEN entry_type = 'RETURN' THEN -1 ELSE 1 END)
                         * abs_qty * unit_price * (1 - discount_rate), 2) AS DECIMAL(18,3)) AS net_amount,
              CAST(round((CASE WHEN entry_type = 'RETURN' THEN -1 ELSE 1 END)
                         * abs_qty * unit_price * (1 - discount_rate) * 0.07, 2) AS DECIMAL(18,3)) AS vat_amount,
              CAST(round(abs_qty * unit_price * discount_rate, 2) AS DECIMAL(18,3)) AS discount_amount,
              currency_code,
              'S' || lpad(CAST(h4 % 300 AS VARCHAR), 4, '0') AS staff_id,
              CASE WHEN h5 % 5 < 2 THEN 'C' || lpad(CAST(h5 % 200000 AS VARCHAR), 7, '0') END AS customer_no,
              store_no || '-' || CAST((rn + 2) // 3 AS VARCHAR) AS receipt_no,
              CAST(sale_date AS TIMESTAMP) + to_seconds(CAST((8 + h3 % 14) * 3600 + (h4 % 60) * 60 AS BIGINT))
                AS created_at
            FROM priced
            ORDER BY rn
            """
        )
        refresh_stats(con, table)
    return DemoResult(path, str(table), rows, time.monotonic() - t0, start, end)


def _bytes_expr(name: str, kind: str) -> str:
    if kind == "STRING":
        return f'SUM(CASE WHEN "{name}" IS NULL THEN 0 ELSE 2 + octet_length(encode("{name}")) END)'
    return f'COUNT("{name}") * {LOGICAL_BYTES[kind]}'


def refresh_stats(con: Any, table: TableRef) -> None:
    """Store per-partition, per-column logical bytes: what a BigQuery dry run would bill."""
    schema = f'"{table.dataset}"'
    qualified = f'{schema}."{table.table}"'
    selects = ",\n".join(f'{_bytes_expr(name, kind)} AS "{name}"' for name, kind in SOURCE_SCHEMA)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE {schema}.{STATS_TABLE} AS
        UNPIVOT (SELECT sale_date, {selects} FROM {qualified} GROUP BY sale_date)
        ON COLUMNS(* EXCLUDE (sale_date)) INTO NAME column_name VALUE bytes
        """
    )
