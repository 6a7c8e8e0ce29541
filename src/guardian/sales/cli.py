"""`guardian sales ...` commands: the same domain functions the DAG's tasks call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Sales extracts from BigQuery or DuckDB: estimate, run, demo data.", no_args_is_help=True)
console = Console()

FromOpt = Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")]
ToOpt = Annotated[str, typer.Option("--to", help="Last day (inclusive), YYYY-MM-DD.")]
CountryOpt = Annotated[list[str], typer.Option("--country", help="Country code; repeat or give A,B.")]
BrandOpt = Annotated[list[str], typer.Option("--brand", help="Brand code; repeat or give A,B.")]
GranularityOpt = Annotated[str, typer.Option("--granularity", help="entry, day or month.")]


def _settings() -> Any:
    from guardian.settings import load_settings

    return load_settings()


def _codes(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@app.command("demo-data")
def demo_data(
    rows: Annotated[
        int | None, typer.Option("--rows", help="Rows to generate (default GUARDIAN_SALES__DEMO_ROWS).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed gives the same table.")] = 42,
) -> None:
    """Create the demo sales-entry table in the DuckDB warehouse (replacing it)."""
    from guardian.errors import ConfigError
    from guardian.sales.demo import generate
    from guardian.sales.service import source_table

    settings = _settings()
    if settings.sales.backend != "duckdb":
        raise ConfigError("GUARDIAN_SALES__BACKEND is bigquery; demo data is for the DuckDB backend only")
    n = rows or settings.sales.demo_rows
    if n < 1:
        raise ConfigError("--rows must be at least 1")
    result = generate(
        settings.duckdb_path,
        source_table(settings),
        rows=n,
        seed=seed,
        countries=settings.sales.countries,
        brands=settings.sales.brands,
    )
    console.print(
        f"wrote {result.rows:,} rows to {result.table} in {result.path} "
        f"({result.first_date}..{result.last_date}, seed {seed}) in {result.seconds:.1f}s",
        highlight=False,
    )


@app.command()
def estimate(
    start: FromOpt,
    end: ToOpt,
    country: CountryOpt,
    brand: BrandOpt,
    granularity: GranularityOpt = "entry",
) -> None:
    """Dry-run the query: print the bytes it would process and the limit; nothing runs."""
    from guardian.sales.params import validate_params
    from guardian.sales.service import deps, query_for
    from guardian.sales.service import estimate as do_estimate

    settings = _settings()
    params = validate_params(
        {
            "start_date": start,
            "end_date": end,
            "countries": _codes(country),
            "brands": _codes(brand),
            "granularity": granularity,
        },
        settings,
    )
    d = deps(settings, params)
    check = do_estimate(d, params)
    console.print(check.line(), highlight=False, markup=False, soft_wrap=True)
    console.print(f"query hash {query_for(settings, params).query_hash[:16]}", highlight=False)
    if not check.ok:
        raise typer.Exit(3)


@app.command()
def run(
    start: FromOpt,
    end: ToOpt,
    country: CountryOpt,
    brand: BrandOpt,
    granularity: GranularityOpt = "entry",
    fmt: Annotated[str | None, typer.Option("--format", help="parquet (zstd, default) or csv (gzip).")] = None,
    to_sheet: Annotated[str | None, typer.Option("--to-sheet", help="Spreadsheet id for the result.")] = None,
    tab: Annotated[
        str | None, typer.Option("--tab", help="Tab of --to-sheet (default GUARDIAN_SALES__SHEET_TAB).")
    ] = None,
    destination: Annotated[
        str | None, typer.Option("--destination", help="Storage root override: gs://bucket/prefix or file:///path.")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run id; re-using one replaces its export.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Estimate only.")] = False,
) -> None:
    """Run an extract: cost guard, query, quality gate, export (manifest last), optional sheet."""
    from guardian.sales.service import run_extract
    from guardian.sales.warehouse import format_bytes

    settings = _settings()
    rid = run_id or f"cli__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    raw: dict[str, Any] = {
        "start_date": start,
        "end_date": end,
        "countries": _codes(country),
        "brands": _codes(brand),
        "granularity": granularity,
        "format": fmt,
        "destination": destination,
        "sheet_id": to_sheet,
        "sheet_tab": tab,
        "dry_run": dry_run,
    }
    report = run_extract(settings, raw, rid, on_step=lambda s: console.print(f"[dim]- {s}[/dim]"))
    if report.cost:
        console.print(report.cost.line(), highlight=False, markup=False)
    if report.stats:
        s = report.stats
        console.print(
            f"job {s.job_id}: {s.rows} rows, processed {format_bytes(s.bytes_processed)}, "
            f"billed {format_bytes(s.bytes_billed)}, {s.query_ms} ms",
            highlight=False,
        )
    for c in report.checks:
        mark = (
            "[green]pass[/green]"
            if c.passed
            else ("[yellow]warn[/yellow]" if c.severity == "warn" else "[red]FAIL[/red]")
        )
        console.print(f"  {mark} {c.check}: {c.message}", highlight=False)
    if report.export:
        e = report.export
        console.print(f"exported {e.rows} rows in {len(e.files)} file(s), {format_bytes(e.bytes)}", highlight=False)
        console.print(f"manifest {e.manifest_uri}", highlight=False)
    if report.sheet_range:
        console.print(f"sheet range {report.sheet_range}", highlight=False)
    console.print(f"run {rid}: {report.outcome.status}", highlight=False)


@app.command("runs")
def list_runs_cmd(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The latest sales runs, newest first."""
    from guardian.sales.runs import list_runs
    from guardian.sales.warehouse import format_bytes
    from guardian.store import get_store

    rows = list_runs(get_store(_settings()), limit)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title="Sales runs")
    for col in ("run id", "status", "started", "rows", "jobs", "processed", "billed", "output / error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["run_id"],
            r["status"],
            str(r["started_at"])[:19],
            str(r["rows"] if r["rows"] is not None else "-"),
            str(len(r.get("jobs") or [])),
            format_bytes(r["bytes_processed"]),
            format_bytes(r["bytes_billed"]) if r["bytes_billed"] is not None else "not billed",
            r["error"] or r["output_uri"] or "",
        )
    console.print(table)


@app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """One run's record and its quality results, as JSON."""
    from guardian.errors import ValidationFailed
    from guardian.quality.results import latest_results
    from guardian.sales.runs import get_run
    from guardian.sales.service import SUITE
    from guardian.store import get_store

    store = get_store(_settings())
    record = get_run(store, run_id)
    if record is None:
        raise ValidationFailed(f"no sales run {run_id!r}; list them with `guardian sales runs`")
    record["quality_results"] = latest_results(store, suite=SUITE, subject=run_id)
    print(json.dumps(record, indent=2, default=str))
