"""`guardian sheets ...` commands: the same poll the DAG runs, and the request ledger."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Google Sheets control sheet: poll, requests.", no_args_is_help=True)
console = Console()


def _settings() -> Any:
    from guardian.settings import load_settings

    return load_settings()


@app.command("poll")
def poll(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and validate only: record nothing, write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the poll summary as JSON.")] = False,
) -> None:
    """Run one poll outside Airflow: requests are recorded and printed, not triggered.

    Run states come from GUARDIAN_MONITORING__AIRFLOW_API_URL or AIRFLOW__DATABASE__SQL_ALCHEMY_CONN when set.
    """
    import os

    from guardian.sheets.client import SheetsClient
    from guardian.sheets.poll import run_poll
    from guardian.sheets.runs import from_environment
    from guardian.store import get_store

    settings = _settings()
    store = get_store(settings)
    runs = from_environment(settings, dict(os.environ))
    result = run_poll(settings, store, lambda: SheetsClient.from_settings(settings), runs=runs, dry_run=dry_run)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
        return
    console.print(
        f"{result.outcome}: {result.rows} row(s), {len(result.new)} new request(s), {len(result.invalid)} invalid, "
        f"{result.written_rows} row(s) written, {result.calls} Sheets API call(s) in {result.elapsed:.2f}s",
        highlight=False,
    )
    for number, reason in result.invalid:
        console.print(f"  row {number}: invalid: {reason}", highlight=False)
    for number, reason in result.waiting:
        console.print(f"  row {number}: {reason}", highlight=False)
    for number, reason in result.skipped_writes:
        console.print(f"  row {number}: not written: {reason}", highlight=False)
    if result.to_trigger:
        label = "would trigger" if dry_run else "to trigger (Airflow's trigger task does this; the CLI does not)"
        console.print(f"{label}:", highlight=False)
        for req in result.to_trigger:
            console.print(
                f"  {req.target_dag} run_id={req.dag_run_id} conf={json.dumps(req.conf, sort_keys=True)}",
                highlight=False,
            )
    if result.deferred:
        console.print(
            f"  {result.deferred} more `run` row(s) wait for the next poll (GUARDIAN_SHEETS__MAX_REQUESTS_PER_POLL)"
        )


@app.command("setup")
def setup_sheet() -> None:
    """Make the control sheet hard to misuse: Status dropdown, guardian columns protected (warning), header notes.

    Idempotent and safe on a sheet in use: no value is changed.
    """
    from guardian.sheets.client import SheetsClient
    from guardian.sheets.setup import setup

    settings = _settings()
    result = setup(settings, SheetsClient.from_settings(settings))
    console.print(
        f"{result.spreadsheet_id} {result.tab}: Status dropdown set, header notes set, "
        f"{len(result.protected_added)} guardian column(s) newly protected "
        f"({', '.join(result.protected_added) or 'already protected'})",
        highlight=False,
    )


@app.command("requests")
def requests(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N requests.")] = 50,
    status: Annotated[
        str | None, typer.Option(help="Only this ledger status (accepted, triggered, completed, failed).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the request ledger, newest first, with statuses."""
    from guardian.sheets.ledger import list_requests
    from guardian.store import get_store

    rows = list_requests(get_store(_settings()), limit, status=status)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=f"Sheet requests (newest {limit})")
    for col in ("request", "row", "target", "run id", "status", "sheet shows", "message", "created"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["request_id"],
            str(r["row_number"]),
            r["target_dag"],
            r["dag_run_id"],
            r["status"],
            r["row_status"],
            r["message"][:80],
            r["created_at"].strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command("show")
def show(
    a1_range: Annotated[str | None, typer.Option("--range", help="A1 range (default GUARDIAN_SHEETS__RANGE).")] = None,
    max_chars: Annotated[int, typer.Option(help="Cut cells longer than this for display.")] = 60,
    columns: Annotated[
        str | None, typer.Option(help="Only these header columns, comma-separated (case-insensitive).")
    ] = None,
) -> None:
    """Print the control sheet as the guardian reads it (formulas shown as formulas)."""
    from guardian.errors import ConfigError
    from guardian.sheets.client import SheetsClient

    settings = _settings()
    sid = settings.sheets.spreadsheet_id
    if not sid:
        raise ConfigError("GUARDIAN_SHEETS__SPREADSHEET_ID is not set; set it to the control spreadsheet's id")
    rng = a1_range or settings.sheets.range
    values = SheetsClient.from_settings(settings).get_values(sid, rng, render="FORMULA")
    if not values:
        console.print(f"{sid} {rng}: empty")
        return
    width = max(len(r) for r in values)
    header = values[0] + [""] * (width - len(values[0]))
    wanted = {c.strip().lower() for c in columns.split(",")} if columns else None
    keep = [i for i, title in enumerate(header) if wanted is None or title.strip().lower() in wanted]
    table = Table(title=f"{sid} {rng}", show_lines=False)
    table.add_column("row", justify="right")
    for i in keep:
        table.add_column(header[i], overflow="fold")
    for number, row in enumerate(values[1:], start=2):
        cells = [row[i] if i < len(row) else "" for i in keep]
        table.add_row(str(number), *[(c if len(c) <= max_chars else c[: max_chars - 1] + "…") for c in cells])
    console.print(table)
