"""`guardian looker ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Looker dashboard lifecycle: plan, apply, restore, report.", no_args_is_help=True)
