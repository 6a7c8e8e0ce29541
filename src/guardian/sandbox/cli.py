"""`guardian sandbox ...` commands."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Local stand-ins for the Looker and Sheets APIs.", no_args_is_help=True)


@app.command("looker")
def looker(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 8910,
    dashboards: Annotated[int, typer.Option(help="Seed this many bulk dashboards instead of the demo instance.")] = 0,
    latency_ms: Annotated[float, typer.Option(help="Latency added to every API request, in milliseconds.")] = 0.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Fault rule STATUS:PROBABILITY[:PATH_REGEX] (429:0.1, 503:0.05:/dashboards) or slowMS:PROBABILITY "
            "(slow2000:0.1 answers 2 s late); repeatable."
        ),
    ] = None,
    token_ttl: Annotated[int, typer.Option(help="Seconds an access token stays valid.")] = 3600,
    inactive_fraction: Annotated[float, typer.Option(help="Bulk seed: share of inactive dashboards.")] = 0.05,
    trashed_fraction: Annotated[float, typer.Option(help="Bulk seed: share of long-trashed dashboards.")] = 0.05,
    looks: Annotated[int, typer.Option(help="Bulk seed: number of Looks (same shares as dashboards).")] = 0,
    demo_looks: Annotated[bool, typer.Option(help="Demo seed: a Look for every policy case too.")] = True,
) -> None:
    """Serve the Looker API 4.0 sandbox in the foreground (client id sandbox-id, secret sandbox-secret)."""
    import uvicorn

    from guardian.sandbox.looker import FaultRule, LookerState, SandboxConfig, create_app, seed_bulk, seed_demo

    rules = []
    for text in fault or []:
        status, _, rest = text.partition(":")
        probability, _, path = rest.partition(":")
        slow = int(status.removeprefix("slow")) if status.startswith("slow") else 0
        rules.append(
            FaultRule(
                status=None if slow else int(status),
                delay_ms=slow,
                probability=float(probability or 1),
                path=path or ".*",
            )
        )
    state = (
        seed_bulk(
            LookerState(),
            dashboards,
            inactive_fraction=inactive_fraction,
            trashed_fraction=trashed_fraction,
            looks=looks,
        )
        if dashboards
        else seed_demo(LookerState(), looks=demo_looks)
    )
    config = SandboxConfig(latency_ms=latency_ms, token_ttl=token_ttl, faults=rules)
    typer.echo(
        f"Looker sandbox on http://127.0.0.1:{port} ({len(state.dashboards)} dashboards, {len(state.looks)} Looks)",
        err=True,
    )
    uvicorn.run(create_app(state, config), host="127.0.0.1", port=port, log_level="warning")


@app.command("sheets")
def sheets(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 8766,
    seed: Annotated[str, typer.Option(help="demo (the demo control sheet), big, or none.")] = "demo",
    rows: Annotated[int, typer.Option(help="With --seed big: request rows in the sheet.")] = 5000,
    run_rows: Annotated[int, typer.Option(help="With --seed big: rows marked run.")] = 500,
) -> None:
    """Serve the Sheets API v4 sandbox in the foreground (no credentials needed; admin routes under /_sandbox/)."""
    import uvicorn

    from guardian.sandbox.sheets import SheetsSandbox, create_app
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, DEMO_TAB, big_rows, demo_tabs

    state = SheetsSandbox()
    if seed == "demo":
        state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
    elif seed == "big":
        state.create(DEMO_SPREADSHEET_ID, "Guardian benchmark control sheet", {DEMO_TAB: big_rows(rows, run_rows)})
    elif seed != "none":
        raise typer.BadParameter("use demo, big or none", param_hint="--seed")
    typer.echo(
        f"Sheets sandbox on http://127.0.0.1:{port}/ (spreadsheets: {', '.join(state.spreadsheets) or 'none'})",
        err=True,
    )
    uvicorn.run(create_app(state), host="127.0.0.1", port=port, log_level="warning")
