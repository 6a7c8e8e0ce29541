"""The demo generator: seeded, LS Central-like, consistent with the quality rules."""

from __future__ import annotations

from pathlib import Path

import duckdb

from guardian.sales.demo import generate
from guardian.sales.sql import SOURCE_SCHEMA, TableRef

TABLE = TableRef("guardian-demo", "sales", "sales_entries")


def _digest(path: Path) -> tuple:  # type: ignore[type-arg]
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT count(*), sum(hash(entry_no, store_no, item_no, quantity, net_amount)) FROM sales.sales_entries"
        ).fetchone()


def test_same_seed_same_table_other_seed_other_table(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.duckdb" for n in "abc")
    generate(a, TABLE, rows=3000, seed=7)
    generate(b, TABLE, rows=3000, seed=7)
    generate(c, TABLE, rows=3000, seed=8)
    assert _digest(a) == _digest(b) != _digest(c)


def test_rows_follow_the_schema_and_the_business_rules(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    result = generate(path, TABLE, rows=4000)
    assert result.rows == 4000
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE sales.sales_entries").fetchall()]
        assert columns == [name for name, _ in SOURCE_SCHEMA]
        stats = con.execute(
            """
            SELECT count(DISTINCT entry_no), count(*),
                   count_if((entry_type = 'SALE' AND (quantity <= 0 OR net_amount < 0))
                         OR (entry_type = 'RETURN' AND (quantity >= 0 OR net_amount > 0))),
                   count_if(entry_type = 'RETURN'),
                   count(DISTINCT country_code), count(DISTINCT brand_code),
                   min(sale_date), max(sale_date),
                   count_if(country_code = 'TH' AND currency_code <> 'THB')
            FROM sales.sales_entries
            """
        ).fetchone()
        assert stats[0] == stats[1] == 4000
        assert stats[2] == 0 and 0 < stats[3] < 400
        assert stats[4] == 6 and stats[5] == 5
        assert str(stats[6]) == "2025-01-01" and str(stats[7]) == "2026-12-31"
        assert stats[8] == 0
        # Stored in partition (date) then cluster order, like the BigQuery table.
        ordered = con.execute(
            "SELECT bool_and(sale_date >= prev) FROM (SELECT sale_date, "
            "lag(sale_date, 1, sale_date) OVER (ORDER BY entry_no) prev FROM sales.sales_entries)"
        ).fetchone()
        assert ordered[0] is True
        # ...and each (date, country, brand) is one contiguous block, like a clustered partition.
        blocks, keys = con.execute(
            "SELECT count_if(k IS DISTINCT FROM prev), count(DISTINCT k) FROM (SELECT k, "
            "lag(k) OVER (ORDER BY entry_no) prev FROM (SELECT entry_no, sale_date || country_code || brand_code AS k "
            "FROM sales.sales_entries))"
        ).fetchone()
        assert blocks == keys
        stats_rows = con.execute(
            "SELECT count(DISTINCT column_name), sum(bytes) FROM sales._guardian_partition_bytes"
        ).fetchone()
        assert stats_rows[0] == len(SOURCE_SCHEMA) and stats_rows[1] > 4000 * 100
