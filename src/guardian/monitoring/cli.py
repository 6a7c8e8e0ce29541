"""``guardian health ...``: run the health check, show health, test alert delivery, local receivers."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="DAG health, threshold alerts and alert delivery.", no_args_is_help=True)
console = Console()


def _settings() -> Any:
    from guardian.settings import load_settings

    return load_settings()


@app.command("check")
def check(
    airflow_db: Annotated[
        str | None,
        typer.Option(
            help="Read runs from this Airflow metadata DB URL (default: the REST API when "
            "GUARDIAN_MONITORING__AIRFLOW_API_URL is set, else AIRFLOW__DATABASE__SQL_ALCHEMY_CONN)."
        ),
    ] = None,
    no_notify: Annotated[bool, typer.Option("--no-notify", help="Evaluate and record, but send nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Collect runs, snapshot each DAG's health, evaluate thresholds and deliver alert changes."""
    from guardian.monitoring.airflow_api import collect_runs, default_since
    from guardian.monitoring.health import last_collected
    from guardian.monitoring.service import run_health_check
    from guardian.store import get_store

    settings = _settings()
    store = get_store(settings)
    since = default_since(last_collected(store), settings.monitoring.history_days)
    metadb = airflow_db or (
        None if settings.monitoring.airflow_api_url else os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    )
    dag_ids, runs, source = collect_runs(settings, since, metadata_db_url=metadb)
    report = run_health_check(settings, store, runs, source=source, dag_ids=dag_ids, notify=not no_notify)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        console.print(f"source: {source}")
        console.print(report.text(), highlight=False)


@app.command("show")
def show() -> None:
    """Print the newest health snapshot of every DAG and the open alerts."""
    from guardian.monitoring.alerts import open_alerts
    from guardian.monitoring.health import latest_snapshots
    from guardian.store import get_store

    store = get_store(_settings())
    table = Table(title="DAG health (newest snapshot)")
    for col in ("dag", "last run", "success 7d", "p50/p95 7d s", "trend", "last success", "retries 7d"):
        table.add_column(col)
    for dag_id, s in sorted(latest_snapshots(store).items()):
        rate = f"{s['success_rate_7d']:.0%} of {s['runs_7d']}" if s.get("success_rate_7d") is not None else "-"
        p = "/".join(f"{s[k]:.1f}" if s.get(k) is not None else "-" for k in ("p50_7d", "p95_7d"))
        table.add_row(
            dag_id,
            s.get("last_run_state") or "-",
            rate,
            p,
            s["trend"],
            s.get("last_success") or "never",
            str(s["retries_7d"]),
        )
    console.print(table)
    alerts = open_alerts(store)
    console.print(f"open alerts: {len(alerts)}")
    for a in alerts:
        console.print(f"  [red]{a['kind']}[/red] {a['message']} (since {a['opened_at']})", highlight=False)


@app.command("test-alert")
def test_alert() -> None:
    """Send a test message by email and Slack with the current settings."""
    from guardian.monitoring.messages import Message, deliver
    from guardian.store import get_store

    settings = _settings()
    msg = Message(
        "test",
        "[guardian] test alert",
        "This is a test alert from `guardian health test-alert`.",
        "<p>This is a test alert from <code>guardian health test-alert</code>.</p>",
        ":white_check_mark: test alert from `guardian health test-alert`",
    )
    results = deliver(settings, msg, slack=True, store=get_store(settings))
    if not results:
        console.print("nothing configured: set GUARDIAN_NOTIFY__SMTP_HOST and/or GUARDIAN_NOTIFY__SLACK_WEBHOOK_REF")
        raise typer.Exit(1)
    for r in results:
        console.print(f"{r.channel}: {'delivered' if r.delivered else 'FAILED: ' + (r.error or '')}", highlight=False)
    if not all(r.delivered for r in results):
        raise typer.Exit(1)


@app.command("receivers")
def receivers(
    folder: Annotated[Path, typer.Option(help="Write each received email and Slack message here.")],
    smtp_port: Annotated[int, typer.Option(help="SMTP port (0: any free port).")] = 0,
    slack_port: Annotated[int, typer.Option(help="Slack webhook receiver port (0: any free port).")] = 0,
) -> None:
    """Run a local SMTP server and Slack webhook receiver until stopped (demo and laptop use)."""
    from guardian.monitoring.receivers import SlackReceiver, SmtpReceiver

    smtp = SmtpReceiver(port=smtp_port, folder=folder).start()
    slack = SlackReceiver(port=slack_port, folder=folder).start()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "receivers.env").write_text(f"SMTP_PORT={smtp.port}\nSLACK_URL={slack.url}\n")
    console.print(f"SMTP on 127.0.0.1:{smtp.port}, Slack webhook at {slack.url}; writing to {folder}")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        smtp.stop()
        slack.stop()
