"""The demo warehouse: a seeded, realistic sales-entry table in a DuckDB file.

Rows look like LS Central's Trans. Sales Entry: stores per country and brand, POS terminals,
transactions of a few lines, items, sales and returns (negative quantity and amount), VAT,
discounts and the local currency. The data is generated inside DuckDB from a hash of the row
number and the seed, so the same seed always gives the same table, and no row passes through
Python. Rows are generated in (sale_date, country_code, brand_code, store_no) order without a
sort (country, brand and store follow from a row's position within its day, by weight), so
DuckDB's row-group min/max prunes like BigQuery's date partitions and clustering do.
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


COUNTRY_WEIGHT = {"TH": 28, "VN": 20, "ID": 18, "MY": 14, "PH": 12, "SG": 8}
BRAND_WEIGHT = {"X": 32, "Y": 24, "Z": 18, "NOVA": 14, "ACME": 12}


def _pick(fraction: str, codes: list[str], weights: dict[str, int], prefix: str = "") -> str:
    """SQL choosing a code by where ``fraction`` (0..1) falls in the codes' cumulative weights.

    Rows are generated in date order; picking country, then brand, then store from the row's
    position within its day stores the table in (date, country, brand, store) order with no sort.
    Returns the code (``<prefix>code``), the slice's lower bound and width (for the next level).
    """
    total = sum(weights.get(c, 10) for c in codes)
    bounds, low = [], 0.0
    for code in codes:
        width = weights.get(code, 10) / total
        bounds.append((code, low, width))
        low += width
    code_case = " ".join(f"WHEN {fraction} < {lo + w!r} THEN '{c}'" for c, lo, w in bounds[:-1])
    lo_case = " ".join(f"WHEN {fraction} < {lo + w!r} THEN {lo!r}" for c, lo, w in bounds[:-1])
    w_case = " ".join(f"WHEN {fraction} < {lo + w!r} THEN {w!r}" for c, lo, w in bounds[:-1])
    last_code, last_lo, last_w = bounds[-1]
    return (
        f"CASE {code_case} ELSE '{last_code}' END AS {prefix}code, "
        f"CASE {lo_case} ELSE {last_lo!r} END AS {prefix}lo, "
        f"CASE {w_case} ELSE {last_w!r} END AS {prefix}width"
    )


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
                i + 1 AS rn,
                DATE '{start.isoformat()}' + CAST((i * {days}) // {rows} AS INTEGER) AS sale_date,
                CAST((i * {days}) % {rows} AS DOUBLE) / {rows} AS f,
                CAST(hash(i, {seed}, 3) % 1000000007 AS BIGINT) AS h3,
                CAST(hash(i, {seed}, 4) % 1000000007 AS BIGINT) AS h4,
                CAST(hash(i, {seed}, 5) % 1000000007 AS BIGINT) AS h5
              FROM range({rows}) t(i)
            ), by_country AS (
              SELECT *, {_pick("f", countries, COUNTRY_WEIGHT)} FROM base
            ), by_brand AS (
              SELECT *, {_pick("(f - lo) / width", brands, BRAND_WEIGHT, "b_")} FROM by_country
            ), numbered AS (
              SELECT *,
                code AS country_code,
                b_code AS brand_code,
                code || '-' || b_code || '-'
                  || lpad(CAST(CAST(1 + least(7, floor(((f - lo) / width - b_lo) / b_width * 8)) AS BIGINT)
                          AS VARCHAR), 2, '0')
                  AS store_no
              FROM by_brand
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
            """
        )
        refresh_stats(con, table)
    return DemoResult(path, str(table), rows, time.monotonic() - t0, start, end)


def bytes_expr(name: str, kind: str) -> str:
    if kind == "STRING":
        return f'SUM(CASE WHEN "{name}" IS NULL THEN 0 ELSE 2 + octet_length(encode("{name}")) END)'
    return f'COUNT("{name}") * {LOGICAL_BYTES[kind]}'


def refresh_stats(con: Any, table: TableRef) -> None:
    """Store per-partition, per-column logical bytes: what a BigQuery dry run would bill."""
    schema = f'"{table.dataset}"'
    qualified = f'{schema}."{table.table}"'
    selects = ",\n".join(f'{bytes_expr(name, kind)} AS "{name}"' for name, kind in SOURCE_SCHEMA)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE {schema}.{STATS_TABLE} AS
        UNPIVOT (SELECT sale_date, {selects} FROM {qualified} GROUP BY sale_date)
        ON COLUMNS(* EXCLUDE (sale_date)) INTO NAME column_name VALUE bytes
        """
    )
