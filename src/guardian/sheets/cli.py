"""`guardian sheets ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Google Sheets control sheet: poll, requests.", no_args_is_help=True)
