"""`guardian looker ...` commands: the same functions the DAGs call."""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Looker dashboard and Look lifecycle: plan, apply, restore, report. A Look is named look:ID, a dashboard ID.",
    no_args_is_help=True,
)
# Piped output (logs, the demo) gets a wide console instead of rich's 80 columns.
console = Console(width=None if sys.stdout.isatty() else 180)


def _settings() -> Any:
    from guardian.settings import load_settings

    return load_settings()


def _exclusion_kind(reason: str) -> str:
    for marker, kind in (
        ("LookML", "LookML"),
        ("protected folder", "protected folder"),
        ("allow-listed", "allow-listed"),
        ("dashboard tile", "on a dashboard"),
        ("kept by its owner", "kept"),
        ("scheduled", "scheduled"),
        ("alerted", "alerted"),
        ("favorited", "favorited"),
        ("public", "public"),
        ("trashed by a person", "trashed by a person or changed since"),
    ):
        if marker in reason:
            return kind
    return "other"


def _print_plan(plan: Any, actions: list[Any], *, show_all: bool) -> None:
    console.print(
        f"[bold]plan {plan.id}[/bold] on {plan.instance} ({plan.status}), made {plan.created_at:%Y-%m-%d %H:%M} UTC "
        f"by {plan.created_by}; hash {plan.content_hash[:16]}; {plan.api_calls} API calls in {plan.duration_s:.2f}s"
    )
    counts = plan.counts
    console.print(
        f"inventory: {counts.get('live', 0)} live, {counts.get('trashed', 0)} in trash | "
        f"soft_delete {counts.get('soft_delete', 0)}, purge {counts.get('purge', 0)}, warn {counts.get('warn', 0)}, "
        f"skip {counts.get('skip', 0)}, keep {counts.get('keep', 0)}"
    )
    if counts.get("looks_live") or counts.get("looks_trashed"):
        console.print(
            f"Looks: {counts.get('looks_live', 0)} live, {counts.get('looks_trashed', 0)} in trash | "
            f"soft_delete {counts.get('looks_soft_delete', 0)}, purge {counts.get('looks_purge', 0)}, "
            f"warn {counts.get('looks_warn', 0)}, skip {counts.get('looks_skip', 0)} (included in the counts above)"
        )
    skipped = [a for a in actions if a.kind == "skip"]
    if skipped:
        groups = Counter(_exclusion_kind(a.reason) for a in skipped)
        console.print("exclusions: " + ", ".join(f"{kind} {n}" for kind, n in groups.most_common()))
    table = Table(title="actions" if show_all else "actions (use --all to list more than 200)")
    for col in ("#", "content", "kind", "state", "title", "owner", "folder", "reason / outcome"):
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "content", "kind", "state"))
    colours = {"soft_delete": "red", "purge": "magenta", "warn": "yellow", "skip": "cyan"}
    for a in actions if show_all else actions[:200]:
        note = a.outcome if a.outcome and a.outcome != a.reason else a.reason
        table.add_row(
            str(a.seq),
            a.label,
            f"[{colours.get(a.kind, 'white')}]{a.kind}[/]",
            a.state,
            a.title or "",
            a.owner_name or a.owner_id or "",
            a.folder_name or a.folder_id or "",
            note or "",
        )
    console.print(table)


@app.command("plan")
def plan_cmd(
    show: Annotated[int | None, typer.Option("--show", help="Print an existing plan instead of making one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every action.")] = False,
) -> None:
    """Inventory Looker and persist a plan (nothing is changed); print it with counts and exclusions."""
    from guardian.looker import service
    from guardian.looker.plan import require_plan
    from guardian.store import get_store

    settings = _settings()
    store = get_store(settings)
    plan = require_plan(store, show) if show is not None else service.plan(settings)
    actions = service.list_actions(store, plan.id)
    if as_json:
        print(json.dumps({"plan": plan.as_dict(), "actions": [a.as_dict() for a in actions]}, indent=1, default=str))
        return
    _print_plan(plan, actions, show_all=show_all)


@app.command("apply")
def apply_cmd(
    plan_id: Annotated[int, typer.Argument(help="The plan to apply (see `guardian looker plan`).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    test: Annotated[
        bool, typer.Option("--test", help="Test mode: only the first N actions (test_mode_limit).")
    ] = False,
    override_breaker: Annotated[
        bool, typer.Option("--override-breaker", help="Allow this plan past the circuit breaker (audited).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Back up, then trash / purge the dashboards and Looks of a plan. Safe to rerun after an interruption."""
    from guardian import audit
    from guardian.looker import service
    from guardian.looker.plan import require_plan
    from guardian.store import get_store

    settings = _settings()
    store = get_store(settings)
    plan = require_plan(store, plan_id)
    counts = plan.counts
    if not yes:
        typer.confirm(
            f"Apply plan {plan_id} on {plan.instance} ({'test mode, ' if test else ''}"
            f"{counts.get('soft_delete', 0)} to trash, {counts.get('purge', 0)} to purge)?",
            abort=True,
        )
    # Warnings first: a refused or failed apply must not cost the owners their warning.
    warned = service.warn(settings, plan_id)
    if warned.warned_owners or warned.skipped:
        console.print(f"warnings: {warned.as_dict()}")
    if override_breaker:
        service.override_breaker(settings, store, plan_id, actor=audit.default_actor())
    report = service.apply(settings, plan_id, mode="test" if test else "apply")
    mode = "test" if test else "apply"
    notified = service.notify(settings, plan_id, mode=mode, backup_bytes=report.backup_bytes)
    if as_json:
        print(json.dumps({"apply": report.as_dict(), "notify": notified.as_dict()}, indent=1, default=str))
    else:
        console.print(
            f"plan {plan_id} ({mode}): {report.selected} selected, {report.already_final} already finished, "
            f"{report.done} done, {report.noop} no-op, {report.skipped} skipped, {report.parked} parked, "
            f"{report.failed} failed; "
            f"{report.backup_bytes} backup bytes; {report.duration_s:.2f}s"
        )
        for outcome in report.outcomes:
            if outcome["state"] != "done":
                console.print(f"  {outcome['label']} {outcome['kind']}: {outcome['state']}: {outcome['note']}")
        console.print(f"notifications: {notified.as_dict()}")
    if report.failed:
        raise typer.Exit(1)


@app.command("warn")
def warn_cmd(
    plan_id: Annotated[int, typer.Argument(help="The plan whose owners to warn (see `guardian looker plan`).")],
) -> None:
    """Warn owners of the plan's inactive dashboards and Looks (recorded in the warning ledger; any mode)."""
    from guardian.looker import service

    console.print(service.warn(_settings(), plan_id).as_dict())


@app.command("keep")
def keep_cmd(
    dashboard_id: Annotated[
        str, typer.Argument(help="What to keep, as the warning email names it: a dashboard id (12) or look:12.")
    ],
    until: Annotated[str, typer.Option("--until", help="Keep it through this date (YYYY-MM-DD).")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is still needed (kept in the audit log).")],
) -> None:
    """Keep a dashboard or Look out of the trash until a date; audited, expires on its own."""
    from guardian import audit
    from guardian.looker import service

    kept = service.keep(_settings(), dashboard_id, until=until, reason=reason, actor=audit.default_actor())
    console.print(f"{kept.content_type} {kept.dashboard_id} kept until {kept.until:%Y-%m-%d %H:%M} UTC: {kept.reason}")


@app.command("restore")
def restore_cmd(
    ids: Annotated[list[str], typer.Argument(help="Dashboard ids (12) and Looks (look:12) to restore.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Restore dashboards and Looks: un-trash, or re-create a purged one from its backup."""
    from guardian.looker import service

    results = service.restore(_settings(), ids)
    if as_json:
        print(json.dumps([r.as_dict() for r in results], indent=1))
    else:
        for r in results:
            colour = {"failed": "red", "noop": "yellow"}.get(r.method, "green")
            console.print(f"{r.label}: [{colour}]{r.method}[/] {r.detail}")
            if r.not_restored:
                console.print(f"   not restored: {', '.join(r.not_restored)}")
    if any(not r.ok for r in results):
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    limit: Annotated[int, typer.Option(help="How many plans, backups and restores to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recent plans with their action states, recent backups and restores."""

    from guardian.looker import service
    from guardian.store import get_store

    settings = _settings()
    store = get_store(settings)
    plans = service.list_plans(store, limit)
    states = {p.id: Counter(f"{a.kind}/{a.state}" for a in service.list_actions(store, p.id)) for p in plans}
    backups = service.list_backups(store, limit=limit)
    restores = service.list_restores(store, limit)
    if as_json:
        print(
            json.dumps(
                {
                    "plans": [p.as_dict() | {"actions": dict(states[p.id])} for p in plans],
                    "backups": [b.as_dict() for b in backups],
                    "restores": restores,
                },
                indent=1,
                default=str,
            )
        )
        return
    table = Table(title="Looker plans")
    for col in ("plan", "made", "status", "live", "trash", "actions by state", "calls"):
        table.add_column(col, overflow="fold")
    for p in plans:
        table.add_row(
            str(p.id),
            f"{p.created_at:%Y-%m-%d %H:%M}",
            p.status,
            str(p.inventory_size),
            str(p.trash_size),
            ", ".join(f"{k}={v}" for k, v in sorted(states[p.id].items())),
            str(p.api_calls),
        )
    console.print(table)
    btable = Table(title="Recent backups")
    for col in ("content", "title", "bytes", "sha256", "uri"):
        btable.add_column(col, overflow="fold")
    for b in backups:
        name = b.dashboard_id if b.content_type == "dashboard" else f"{b.content_type}:{b.dashboard_id}"
        btable.add_row(name, b.title or "", str(b.bytes), b.sha256[:12], b.uri)
    console.print(btable)
    rtable = Table(title="Recent restores")
    for col in ("when", "content", "method", "new id", "detail"):
        rtable.add_column(col, overflow="fold")
    for r in restores:
        rtable.add_row(r["ts"][:19], r["label"], r["method"], r["new_dashboard_id"] or "", r["detail"])
    console.print(rtable)
