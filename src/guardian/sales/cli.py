"""`guardian sales ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sales extracts from BigQuery or DuckDB: estimate, run, demo data.", no_args_is_help=True)
