"""`guardian sandbox ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Local stand-ins for the Looker and Sheets APIs.", no_args_is_help=True)
