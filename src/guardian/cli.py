"""The ``guardian`` command: the same functions the DAGs call.

Each service adds its own sub-app (``guardian looker ...``) from its ``cli`` module, listed in
:data:`SUBAPPS`. A :class:`GuardianError` is printed as one line, without a traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from guardian import __version__
from guardian.errors import GuardianError

app = typer.Typer(
    name="guardian",
    help="Airflow Guardian: operations and governance for a Looker / BigQuery / Sheets BI stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show and document the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Create and upgrade the Guardian store.", no_args_is_help=True)
audit_app = typer.Typer(help="Record, verify and export the hash-chained audit log.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")

console = Console()
err_console = Console(stderr=True)

# (command name, module with a Typer `app`): each service registers its own commands here.
SUBAPPS: list[tuple[str, str]] = [
    ("looker", "guardian.looker.cli"),
    ("sales", "guardian.sales.cli"),
    ("sheets", "guardian.sheets.cli"),
    ("sandbox", "guardian.sandbox.cli"),
    ("health", "guardian.monitoring.cli"),
    ("web", "guardian.web.cli"),
]


def _settings() -> Any:
    from guardian.settings import load_settings

    return load_settings()


@app.command()
def version() -> None:
    """Print the guardian version."""
    console.print(__version__)


# -- config ------------------------------------------------------------------------------
@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print every setting, its effective value (secrets masked) and where it came from."""
    from guardian.settings import describe, mask

    rows = describe(_settings())
    if as_json:
        print(
            json.dumps(
                [{"setting": r.env_var, "value": mask(r), "source": r.source} for r in rows],
                indent=2,
            )
        )
        return
    table = Table(title="Effective configuration")
    table.add_column("setting", style="cyan", no_wrap=True)
    table.add_column("value")
    table.add_column("source")
    for row in rows:
        table.add_row(row.env_var, mask(row), row.source)
    console.print(table)


@config_app.command("docs")
def config_docs(
    output: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("docs/configuration.md"),
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1 if the file is out of date instead of writing it."),
    ] = False,
) -> None:
    """Write the reference of every GUARDIAN_* setting (generated from the settings model)."""
    from guardian.settings_docs import render

    text = render()
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            err_console.print(f"{output} is out of date: run `guardian config docs`")
            raise typer.Exit(1)
        console.print(f"{output} is current")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


# -- db ----------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (the store is also migrated on first use)."""
    from guardian.store import get_store

    store = get_store(_settings())
    applied = store.migrate()
    console.print(
        f"{store.display_url}: {len(applied)} migration(s) applied; at {', '.join(sorted(store.current_revisions()))}"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the store's migration revisions and whether any are pending."""
    from guardian.store import get_store

    store = get_store(_settings())
    current, heads = store.current_revisions(), store.head_revisions()
    console.print(f"{store.display_url}: at {', '.join(sorted(current)) or '(empty)'}")
    if current != heads:
        console.print(f"pending: {', '.join(sorted(heads - current))} (run `guardian db upgrade`)")
        raise typer.Exit(1)


# -- audit -------------------------------------------------------------------------------
@audit_app.command("record")
def audit_record(
    action: Annotated[str, typer.Argument(help="What happened, e.g. 'runbook.rotate_credential'.")],
    target: Annotated[str, typer.Argument(help="What it happened to, e.g. 'connection:looker_default'.")],
    outcome: Annotated[str, typer.Option(help="ok, failed, skipped, ...")] = "ok",
    note: Annotated[str | None, typer.Option(help="Free text kept in the event's context.")] = None,
) -> None:
    """Append a manual event (e.g. a runbook step) to the audit log."""
    from guardian import audit

    event = audit.record(action, target, outcome=outcome, context={"note": note} if note else None)
    console.print(f"recorded #{event.seq} {event.action} {event.target} ({event.hash[:12]})")


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the hash chain; name the first edited, deleted or reordered row (exit 1 if any)."""
    from rich.progress import Progress

    from guardian import audit

    total = audit.count()
    with Progress(console=err_console, transient=True, disable=total < 5000) as bar:
        task = bar.add_task("verifying the audit chain", total=total)
        report = audit.verify(progress=lambda done: bar.update(task, completed=done))
    if report.ok:
        console.print(
            f"[green]audit chain OK[/green]: {report.rows} row(s), head {report.head_hash[:12]}, "
            f"{'keyed' if report.keyed else 'NOT keyed (set GUARDIAN_AUDIT__HMAC_KEY_REF)'}, "
            f"{f'anchored at row {report.anchor_seq}' if report.anchor_seq else 'no anchor yet'}"
        )
        return
    err_console.print(f"[red]audit chain BROKEN[/red] at row {report.first_bad_seq}: {report.reason}")
    raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Write the chain head to write-once storage (the health check does this every run)."""
    from guardian import audit

    written = audit.anchor(_settings())
    console.print(f"anchored row {written['seq']} ({written['hash'][:12]})" if written else "the log is empty")


@audit_app.command("export")
def audit_export(
    since: Annotated[str, typer.Option(help="First day to export (YYYY-MM-DD, UTC).")],
    to: Annotated[
        str,
        typer.Option(help="gs://bucket/path.jsonl or file:///abs/path.jsonl; a URI ending in / is a folder."),
    ],
) -> None:
    """Write events since a day as JSON Lines to storage (write-once)."""
    from guardian import audit
    from guardian.errors import ValidationFailed

    try:
        day = date.fromisoformat(since)
    except ValueError:
        raise ValidationFailed(f"--since {since!r} is not a date; use YYYY-MM-DD") from None
    uri, written = audit.export(day, to)
    console.print(f"exported {written} event(s) to {uri}")


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", help="How many of the newest events.")] = 20,
    target: Annotated[str | None, typer.Option(help="Only events about this target.")] = None,
) -> None:
    """Show the newest events."""
    from guardian import audit

    table = Table(title="Audit log (newest first)")
    for col in ("seq", "ts", "actor", "action", "target", "outcome"):
        table.add_column(col)
    for ev in audit.iter_events(newest_first=True, limit=n, target=target):
        table.add_row(str(ev.seq), ev.as_dict()["ts"], ev.actor, ev.action, ev.target, ev.outcome)
    console.print(table)


# -- doctor ------------------------------------------------------------------------------
@app.command()
def doctor(
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these checks.")] = None,
) -> None:
    """Check the store and each configured integration: OK, FAIL (with the fix) or SKIPPED."""
    from guardian.doctor import run_checks

    results = run_checks(_settings(), only)
    table = Table(title="guardian doctor")
    table.add_column("check", style="cyan")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("fix")
    colours = {"OK": "green", "FAIL": "red", "SKIPPED": "yellow"}
    for r in results:
        table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", r.detail, r.fix)
    console.print(table)
    if any(r.status == "FAIL" for r in results):
        raise typer.Exit(1)


@app.command()
def smoke(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (for CI) instead of a table.")] = False,
    dag: Annotated[list[str] | None, typer.Option("--dag", help="Expected DAG id (repeat; default: all).")] = None,
    allow_paused: Annotated[list[str] | None, typer.Option("--allow-paused", help="DAG id allowed paused.")] = None,
    no_doctor: Annotated[bool, typer.Option("--no-doctor", help="Skip `guardian doctor`'s checks.")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only these checks (repeat).")] = None,
    wait: Annotated[float, typer.Option(help="Retry failing checks for up to this many seconds.")] = 0,
    watch_for: Annotated[
        float, typer.Option("--watch", help="Post-deploy monitor: repeat for this many seconds; exit 1 on regression.")
    ] = 0,
    interval: Annotated[float, typer.Option(help="Seconds between rounds of --wait and --watch.")] = 15,
) -> None:
    """Post-deploy checks of the running system: Airflow health, DAGs, UI, doctor, audit (exit 1 on a FAIL)."""
    import time

    from guardian.smoke import EXPECTED_DAGS, SmokeOptions, failed, run_smoke, watch
    from guardian.smoke import as_json as smoke_json

    settings = _settings()
    options = SmokeOptions(
        tuple(dag or EXPECTED_DAGS), tuple(allow_paused or ()), not no_doctor, only=tuple(only or ())
    )
    if watch_for > 0:
        state, reason = watch(
            settings,
            options,
            seconds=watch_for,
            interval=interval,
            on_round=lambda _r, s: err_console.print(f"watch: {json.dumps(s.as_dict())}", highlight=False),
        )
        if as_json:
            print(json.dumps({"ok": reason is None, "regression": reason, **state.as_dict()}, indent=2))
        else:
            console.print(f"[red]ROLL BACK[/red]: {reason}" if reason else "[green]no regression[/green]")
        if reason:
            raise typer.Exit(1)
        return
    deadline = time.monotonic() + wait
    results = run_smoke(settings, options)
    while failed(results) and time.monotonic() < deadline:
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        results = run_smoke(settings, options)
    if as_json:
        print(json.dumps(smoke_json(results), indent=2))
    else:
        table = Table(title="guardian smoke")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, style="cyan" if column == "check" else None)
        colours = {"OK": "green", "FAIL": "red", "SKIPPED": "yellow"}
        for r in results:
            table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", r.detail, r.fix)
        console.print(table)
    if failed(results):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default GUARDIAN_WEB__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GUARDIAN_WEB__PORT).")] = None,
) -> None:
    """Run the Guardian web UI standalone, with its own login (GUARDIAN_WEB__USERS)."""
    from guardian.web.serve import run

    run(_settings(), host=host, port=port)


def _register_subapps() -> None:
    for name, module in SUBAPPS:
        sub = importlib.import_module(module).app
        app.add_typer(sub, name=name)


_register_subapps()


def main() -> None:
    """Console-script entry point: run the app, print our own errors as one line."""
    try:
        app()
    except GuardianError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
