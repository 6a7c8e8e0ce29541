"""The guardian's side of a sandbox instance's past: what it trashed and whom it warned.

The demo seed describes an instance the guardian has been looking after for a while: two
dashboards (and, seeded with Looks, a Look) sit in the trash because the guardian's API user
trashed them. A real guardian
would hold the records of those trashes (with Looker's ``deleted_at``) and of the warnings
it sent before; :func:`seed_history` writes them into a store, so demos and tests start
where a year of monthly runs would have left them, not from an empty ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from guardian.looker.ledger import record_warnings
from guardian.looker.policy import ContentFacts, parse_ts
from guardian.looker.tables import looker_actions, looker_plans
from guardian.sandbox.looker.state import API_USER_ID, LookerState

if TYPE_CHECKING:
    from guardian.looker.client import LookerClient
    from guardian.settings import Settings
    from guardian.store import Store


def seed_history(settings: Settings, store: Store, state: LookerState, *, now: datetime | None = None) -> int:
    """Record past guardian trashes and a warning ``warning_days + 1`` days ago; returns the history plan id."""
    content = [("dashboard", d) for d in state.dashboards.values()] + [("look", lk) for lk in state.looks.values()]
    return _seed(settings, store, content, now=now or state.now(), guardian_id=API_USER_ID)


def seed_history_from_api(settings: Settings, store: Store, client: LookerClient) -> int:
    """The same, reading the dashboards through the API (a sandbox in another process: the demo)."""
    fields = (
        "id,title,user_id,user_name,folder_id,created_at,last_accessed_at,last_viewed_at,deleted,deleted_at,deleter_id"
    )
    rows = [
        (content_type, row)
        for content_type in ("dashboard", "look")
        for deleted in (False, True)
        for page in client.search_content(content_type, deleted=deleted, fields=fields, page_size=1000)
        for row in page
    ]
    return _seed(settings, store, rows, now=datetime.now(UTC), guardian_id=str(client.me_user()["id"]))


def _seed(
    settings: Settings,
    store: Store,
    content: list[tuple[str, dict[str, Any]]],
    *,
    now: datetime,
    guardian_id: str,
) -> int:
    cfg = settings.looker
    warned_at = now - timedelta(days=cfg.warning_days + 1)
    trashed = [
        (t, d)
        for t, d in content
        if d["deleted"] and str(d.get("deleter_id")) == guardian_id and "::" not in str(d["id"])
    ]
    created = min([parse_ts(d["deleted_at"]) or now for _, d in trashed] + [warned_at]) - timedelta(hours=1)
    warn: list[tuple[tuple[str, str], datetime | None]] = []
    for content_type, dash in content:
        if dash["deleted"] or "::" in str(dash["id"]):
            continue
        last, _ = ContentFacts.from_api(dash).last_access()
        if last is not None and (warned_at - last).days >= cfg.soft_delete_days - cfg.warning_days:
            warn.append(((content_type, str(dash["id"])), last))
    with store.write() as conn:
        inserted = conn.execute(
            insert(looker_plans).values(
                created_at=created,
                instance=cfg.instance_name,
                created_by="sandbox:history",
                status="applied",
                policy={},
                content_hash="history",
                counts={"soft_delete": len(trashed)},
                inventory_size=len(content),
                trash_size=0,
                api_calls=0,
                duration_s=0.0,
            )
        ).inserted_primary_key
        assert inserted is not None
        plan_id = int(inserted[0])
        rows: list[dict[str, Any]] = [
            {
                "plan_id": plan_id,
                "seq": seq,
                "content_type": content_type,
                "dashboard_id": str(d["id"]),
                "kind": "soft_delete",
                "reason": "history",
                "title": d["title"],
                "owner_id": d.get("user_id"),
                "owner_name": d.get("user_name"),
                "folder_id": d.get("folder_id"),
                "folder_name": None,
                "last_access": None,
                "snapshot": {"id": str(d["id"])},
                "state": "done",
                "outcome": "moved to trash",
                "after": {"deleted": True, "deleted_at": d["deleted_at"], "deleter_id": d["deleter_id"]},
                "attempts": 1,
                "updated_at": parse_ts(d["deleted_at"]) or created,
                "owner_notified": True,
            }
            for seq, (content_type, d) in enumerate(trashed, start=1)
        ]
        if rows:
            conn.execute(insert(looker_actions), rows)
        record_warnings(conn, cfg.instance_name, warn, address="history@example.com", warned_at=warned_at, plan_id=None)
    return plan_id
