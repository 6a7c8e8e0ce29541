"""In-memory state of the Looker sandbox: users, folders, dashboards, Looks, queries, System Activity usage.

Dashboards and Looks are kept as the JSON the real API returns (``Dashboard`` and
``LookWithQuery`` in the 4.0 spec), plus sandbox-only usage counters that feed the
``system__activity`` ``content_usage`` view (keyed by content type and id: a Look and a
dashboard may share an id, as they do in Looker).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

API_USER_ID = "1"


def iso(ts: datetime | None) -> str | None:
    """Looker's timestamp format (ISO 8601 with offset)."""
    return None if ts is None else ts.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class Usage:
    """What System Activity knows about one piece of content."""

    last_accessed: datetime | None = None
    schedule_total: int = 0
    public_total: int = 0
    api_total: int = 0


@dataclass
class LookerState:
    """Everything the sandbox serves; one lock guards all mutations."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    looks: dict[str, dict[str, Any]] = field(default_factory=dict)
    look_usage: dict[str, Usage] = field(default_factory=dict)
    queries: dict[str, dict[str, Any]] = field(default_factory=dict)
    lookml_export: dict[str, str] = field(default_factory=dict)
    """Dashboards whose LookML export differs from their JSON (a lossy export), by id."""
    scheduled_plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    """The instance's time (a simulation moves it month by month)."""
    next_id: int = 1
    next_other_id: int = 1
    next_look_id: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)
    clients: dict[str, tuple[str, str]] = field(
        # The guardian's API key, and one of a person (Bob, user 3) for "changed by hand" scenarios.
        default_factory=lambda: {"sandbox-id": ("sandbox-secret", API_USER_ID), "bob-id": ("bob-secret", "3")}
    )

    # -- builders ---------------------------------------------------------------------
    def add_user(self, user_id: str, first: str, last: str, email: str) -> dict[str, Any]:
        """Add a user."""
        user = {
            "id": user_id,
            "first_name": first,
            "last_name": last,
            "display_name": f"{first} {last}",
            "email": email,
            "is_disabled": False,
        }
        self.users[user_id] = user
        return user

    def add_folder(self, folder_id: str, name: str, parent_id: str | None) -> dict[str, Any]:
        """Add a folder."""
        folder = {
            "id": folder_id,
            "name": name,
            "parent_id": parent_id,
            "content_metadata_id": f"cm-f{folder_id}",
            "created_at": iso(datetime(2020, 1, 1, tzinfo=UTC)),
            "creator_id": API_USER_ID,
            "child_count": 0,
            "is_personal": False,
            "is_shared_root": parent_id is None and name == "Shared",
            "is_users_root": parent_id is None and name == "Users",
        }
        self.folders[folder_id] = folder
        if parent_id and parent_id in self.folders:
            self.folders[parent_id]["child_count"] += 1
        return folder

    def folder_base(self, folder_id: str | None) -> dict[str, Any] | None:
        """The FolderBase embedded in a dashboard."""
        if folder_id is None or folder_id not in self.folders:
            return None
        return dict(self.folders[folder_id])

    def add_dashboard(
        self,
        *,
        title: str,
        user_id: str,
        folder_id: str,
        created_at: datetime,
        last_accessed: datetime | None = None,
        favorite_count: int = 0,
        schedule_total: int = 0,
        public_total: int = 0,
        deleted_at: datetime | None = None,
        deleter_id: str | None = None,
        dashboard_id: str | None = None,
        elements: int = 2,
        look_ids: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Add a user-defined dashboard (or a LookML one when the id contains '::')."""
        with self.lock:
            if dashboard_id is None:
                dashboard_id = str(self.next_id)
                self.next_id += 1
            user = self.users.get(user_id, {})
            seen = last_accessed
            dash: dict[str, Any] = {
                "id": dashboard_id,
                "title": title,
                "description": f"{title} (sandbox)",
                "user_id": user_id,
                "user_name": user.get("display_name"),
                "folder_id": folder_id,
                "folder": self.folder_base(folder_id),
                "content_metadata_id": f"cm-d{dashboard_id}",
                "content_favorite_id": None,
                "slug": f"slug{dashboard_id.replace(':', '')}",
                "created_at": iso(created_at),
                "updated_at": iso(created_at),
                "last_accessed_at": iso(seen),
                "last_viewed_at": iso(seen),
                "view_count": 0 if seen is None else 3,
                "favorite_count": favorite_count,
                "deleted": deleted_at is not None,
                "deleted_at": iso(deleted_at),
                "deleter_id": deleter_id,
                "hidden": False,
                "readonly": "::" in dashboard_id,
                "refresh_interval": None,
                "query_timezone": "UTC",
                "show_title": True,
                "show_filters_bar": True,
                "preferred_viewer": "dashboards-next",
                "url": f"/dashboards/{dashboard_id}",
                "last_updater_id": user_id,
                "last_updater_name": user.get("display_name"),
                "dashboard_filters": [],
                "dashboard_elements": [
                    {
                        "id": f"{dashboard_id}-e{i}",
                        "dashboard_id": dashboard_id,
                        "look_id": None,
                        "title": f"Tile {i}",
                        "type": "vis",
                    }
                    for i in range(elements)
                ],
                "dashboard_layouts": [],
            }
            self.dashboards[dashboard_id] = dash
            self.usage[dashboard_id] = Usage(seen, schedule_total, public_total)
            for look_id in look_ids:
                self.put_look_on_dashboard(dashboard_id, look_id)
            return dash

    def add_query(self, model: str = "thelook", view: str = "orders", fields: tuple[str, ...] = ()) -> dict[str, Any]:
        """A query (``Query`` in the 4.0 spec); an identical one is returned instead of a copy.

        Spec, create_query: "If you create a query that is exactly like an existing query then
        the existing query will be returned"; queries are immutable and never deleted.
        """
        with self.lock:
            wanted = {"model": model, "view": view, "fields": list(fields or ("orders.count",))}
            for query in self.queries.values():
                if {k: query.get(k) for k in wanted} == wanted:
                    return query
            query_id = f"q{len(self.queries) + 1}"
            query = {
                "id": query_id,
                **wanted,
                "filters": None,
                "sorts": [],
                "limit": "500",
                "slug": f"qs{query_id}",
                "client_id": f"c{query_id}",
            }
            self.queries[query_id] = query
            return query

    def add_look(
        self,
        *,
        title: str,
        user_id: str,
        folder_id: str,
        created_at: datetime,
        last_accessed: datetime | None = None,
        favorite_count: int = 0,
        public: bool = False,
        deleted_at: datetime | None = None,
        deleter_id: str | None = None,
        query_id: str | None = None,
        look_id: str | None = None,
    ) -> dict[str, Any]:
        """Add a Look (``LookWithQuery`` in the 4.0 spec) over a query."""
        with self.lock:
            if look_id is None:
                look_id = str(self.next_look_id)
                self.next_look_id += 1
            query = self.queries[query_id] if query_id else self.add_query(fields=(f"orders.f{look_id}",))
            user = self.users.get(user_id, {})
            look: dict[str, Any] = {
                "id": look_id,
                "title": title,
                "description": f"{title} (sandbox)",
                "user_id": user_id,
                "user_name": user.get("display_name"),
                "folder_id": folder_id,
                "folder": self.folder_base(folder_id),
                "content_metadata_id": f"cm-l{look_id}",
                "content_favorite_id": None,
                "query_id": query["id"],
                "query": dict(query),
                "model": {"id": query["model"], "label": query["model"]},
                "public": public,
                "public_slug": f"pub{look_id}" if public else None,
                "public_url": f"/looks/public/pub{look_id}" if public else None,
                "short_url": f"/x/l{look_id}",
                "url": f"/looks/{look_id}",
                "created_at": iso(created_at),
                "updated_at": iso(created_at),
                "last_accessed_at": iso(last_accessed),
                "last_viewed_at": iso(last_accessed),
                "view_count": 0 if last_accessed is None else 3,
                "favorite_count": favorite_count,
                "deleted": deleted_at is not None,
                "deleted_at": iso(deleted_at),
                "deleter_id": deleter_id,
                "last_updater_id": user_id,
                "is_run_on_load": False,
            }
            self.looks[look_id] = look
            self.look_usage[look_id] = Usage(last_accessed)
            return look

    def put_look_on_dashboard(self, dashboard_id: str, look_id: str) -> dict[str, Any]:
        """Add a tile showing a Look to a dashboard (a ``DashboardElement`` with ``look_id``)."""
        with self.lock:
            dash = self.dashboards[dashboard_id]
            elements = dash["dashboard_elements"]
            n = len(elements)
            element = {
                "id": f"{dashboard_id}-e{n}",
                "dashboard_id": dashboard_id,
                "look_id": look_id,
                "title": f"Tile {n}",
                "type": "vis",
            }
            while any(e["id"] == element["id"] for e in elements):
                n += 1
                element["id"], element["title"] = f"{dashboard_id}-e{n}", f"Tile {n}"
            elements.append(element)
            return element

    def view_look(self, look_id: str, when: datetime | None = None) -> None:
        """Someone opened the Look (tests and demo)."""
        when = when or self.now()
        with self.lock:
            look = self.looks[look_id]
            look["last_accessed_at"] = look["last_viewed_at"] = iso(when)
            look["view_count"] = int(look.get("view_count") or 0) + 1
            self.look_usage.setdefault(look_id, Usage()).last_accessed = when

    def now(self) -> datetime:
        """The instance's current time."""
        return self.clock()

    def _other_id(self) -> str:
        with self.lock:
            ident = str(self.next_other_id)
            self.next_other_id += 1
            return ident

    def personal_folder(self, user_id: str) -> str:
        """The user's personal folder under Users (created on first use, as Looker does)."""
        with self.lock:
            for folder in self.folders.values():
                if folder.get("is_personal") and str(folder.get("creator_id")) == user_id:
                    return str(folder["id"])
            users_root = next((f["id"] for f in self.folders.values() if f.get("is_users_root")), None)
            folder_id = f"p{user_id}"
            name = str(self.users.get(user_id, {}).get("display_name") or f"user {user_id}")
            folder = self.add_folder(folder_id, name, users_root)
            folder.update(is_personal=True, creator_id=user_id)
            return folder_id

    def add_schedule(
        self, dashboard_id: str | None, user_id: str, *, enabled: bool = True, look_id: str | None = None
    ) -> dict[str, Any]:
        """A scheduled plan (``ScheduledPlan`` in the 4.0 spec) delivering a dashboard or Look by email."""
        plan_id = self._other_id()
        user = self.users.get(user_id, {})
        plan = {
            "id": plan_id,
            "name": f"Delivery {plan_id}",
            "user_id": user_id,
            "run_as_recipient": False,
            "enabled": enabled,
            "dashboard_id": dashboard_id,
            "look_id": look_id,
            "lookml_dashboard_id": None,
            "crontab": "0 6 * * 1",
            "timezone": "UTC",
            "require_results": False,
            "require_no_results": False,
            "require_change": False,
            "send_all_results": False,
            "include_links": False,
            "scheduled_plan_destination": [
                {"format": "wysiwyg_pdf", "type": "email", "address": user.get("email") or "nobody@example.com"}
            ],
            "created_at": iso(self.now()),
            "updated_at": iso(self.now()),
            "user": {"id": user_id, "display_name": user.get("display_name")},
        }
        self.scheduled_plans[plan_id] = plan
        return plan

    def add_alert(self, dashboard_element_id: str, owner_id: str, *, disabled: bool = False) -> dict[str, Any]:
        """An alert (``Alert`` in the 4.0 spec) on a dashboard tile."""
        alert_id = self._other_id()
        alert = {
            "id": alert_id,
            "comparison_type": "GREATER_THAN",
            "cron": "0 5 * * *",
            "destinations": [{"destination_type": "EMAIL", "email_address": "alerts@example.com"}],
            "field": {"title": "Orders Count", "name": "orders.count"},
            "owner_id": owner_id,
            "owner_display_name": self.users.get(owner_id, {}).get("display_name"),
            "threshold": 100.0,
            "dashboard_element_id": dashboard_element_id,
            "is_disabled": disabled,
            "is_public": False,
            "custom_title": f"Alert {alert_id}",
        }
        self.alerts[alert_id] = alert
        return alert

    def element_dashboard(self, element_id: str) -> str | None:
        """The dashboard a tile belongs to."""
        for dash in self.dashboards.values():
            if any(str(e["id"]) == str(element_id) for e in dash.get("dashboard_elements") or []):
                return str(dash["id"])
        return None

    # -- queries ------------------------------------------------------------------------
    def folder_path(self, folder_id: str | None) -> str:
        """'Shared/Finance/Archive' style path of a folder."""
        parts: list[str] = []
        seen: set[str] = set()
        while folder_id and folder_id in self.folders and folder_id not in seen:
            seen.add(folder_id)
            parts.append(self.folders[folder_id]["name"])
            folder_id = self.folders[folder_id]["parent_id"]
        return "/".join(reversed(parts))

    def lookml_of(self, dash: dict[str, Any]) -> str:
        """A LookML rendering of a dashboard (what ``GET /dashboards/lookml/{id}`` returns)."""
        # Looker's export names the dashboard by its slug and carries it as preferred_slug
        # (Looker docs, "Dashboard LookML": an import with that slug overwrites the live dashboard).
        lines = [
            f"- dashboard: {dash['slug']}",
            f"  title: {json.dumps(dash['title'])}",
            "  layout: newspaper",
            "  preferred_viewer: dashboards-next",
            f"  description: {json.dumps(dash.get('description') or '')}",
            f"  preferred_slug: {dash['slug']}",
            "  elements:",
        ]
        for element in dash.get("dashboard_elements") or []:
            lines += [
                f"  - title: {json.dumps(element['title'])}",
                f"    name: {json.dumps(str(element['id']))}",
                "    type: looker_column",
            ]
        return "\n".join(lines) + "\n"

    def view(self, dashboard_id: str, when: datetime | None = None) -> None:
        """Someone opened the dashboard (tests and demo)."""
        when = when or self.now()
        with self.lock:
            dash = self.dashboards[dashboard_id]
            dash["last_accessed_at"] = dash["last_viewed_at"] = iso(when)
            dash["view_count"] = int(dash.get("view_count") or 0) + 1
            self.usage.setdefault(dashboard_id, Usage()).last_accessed = when


def seed_demo(state: LookerState, now: datetime | None = None, *, looks: bool = False) -> LookerState:
    """A small demo instance: folders, owners, and a dashboard (with ``looks``: also a Look) for every policy case."""
    now = now or datetime.now(UTC)

    def days(n: int) -> datetime:
        return now - timedelta(days=n)

    state.add_user(API_USER_ID, "Guardian", "Bot", "guardian-bot@example.com")
    state.add_user("2", "Alice", "Analyst", "alice@example.com")
    state.add_user("3", "Bob", "Builder", "bob@example.com")
    state.add_user("4", "Carol", "Controller", "carol@example.com")
    state.add_user("5", "Dave", "Designer", "dave@example.com")
    state.add_folder("1", "Shared", None)
    state.add_folder("2", "Users", None)
    state.add_folder("3", "Finance", "1")
    state.add_folder("4", "Marketing", "1")
    state.add_folder("5", "Sales", "1")
    state.add_folder("6", "Archive", "5")
    state.add_folder("7", "Close", "3")
    state.add_folder("8", "alice", "2")
    add = state.add_dashboard
    add(title="Executive KPIs", user_id="2", folder_id="1", created_at=days(900), last_accessed=days(1))
    add(title="Weekly Sales", user_id="3", folder_id="5", created_at=days(700), last_accessed=days(3))
    add(title="Marketing Funnel", user_id="5", folder_id="4", created_at=days(600), last_accessed=days(40))
    add(title="Old Campaign 2023", user_id="5", folder_id="4", created_at=days(800), last_accessed=days(400))
    add(title="Legacy Pipeline", user_id="3", folder_id="6", created_at=days(1000), last_accessed=days(250))
    add(title="Q1 Region Drilldown", user_id="3", folder_id="5", created_at=days(500), last_accessed=days(200))
    add(title="Alice scratchpad", user_id="2", folder_id="8", created_at=days(400), last_accessed=None)
    add(title="Unused Prototype", user_id="4", folder_id="4", created_at=days(365), last_accessed=days(190))
    add(title="Almost Stale Report", user_id="4", folder_id="5", created_at=days(400), last_accessed=days(172))
    add(title="Soon Stale Board", user_id="2", folder_id="4", created_at=days(300), last_accessed=days(170))
    add(title="New Dashboard", user_id="5", folder_id="4", created_at=days(30), last_accessed=None)
    add(
        title="Board Pack (scheduled)",
        user_id="4",
        folder_id="5",
        created_at=days(900),
        last_accessed=days(300),
        schedule_total=12,
    )
    add(
        title="Team Favourite",
        user_id="3",
        folder_id="5",
        created_at=days(900),
        last_accessed=days(300),
        favorite_count=4,
    )
    add(
        title="Public Status Page",
        user_id="5",
        folder_id="4",
        created_at=days(900),
        last_accessed=days(300),
        public_total=50,
    )
    add(title="Month-end Close", user_id="4", folder_id="7", created_at=days(900), last_accessed=days(330))
    add(title="Finance Overview", user_id="4", folder_id="3", created_at=days(900), last_accessed=days(220))
    add(
        title="Trashed by Guardian long ago",
        user_id="3",
        folder_id="5",
        created_at=days(900),
        last_accessed=days(500),
        deleted_at=days(200),
        deleter_id=API_USER_ID,
    )
    add(
        title="Trashed by Guardian recently",
        user_id="5",
        folder_id="4",
        created_at=days(900),
        last_accessed=days(300),
        deleted_at=days(20),
        deleter_id=API_USER_ID,
    )
    add(
        title="Trashed by Bob",
        user_id="3",
        folder_id="5",
        created_at=days(900),
        last_accessed=days(500),
        deleted_at=days(250),
        deleter_id="3",
    )
    add(
        title="Thelook Business Pulse",
        user_id=API_USER_ID,
        folder_id="1",
        created_at=days(900),
        last_accessed=days(400),
        dashboard_id="thelook::business_pulse",
    )
    add(
        title="Thelook Brand Lookup",
        user_id=API_USER_ID,
        folder_id="1",
        created_at=days(900),
        last_accessed=days(2),
        dashboard_id="thelook::brand_lookup",
    )
    if looks:
        seed_looks(state, now)
    return state


def seed_looks(state: LookerState, now: datetime | None = None) -> LookerState:
    """Looks for every policy case on the demo instance (its users and folders must exist).

    Look ids start at 1 like dashboard ids: Looker numbers them separately, so Look 4 and
    dashboard 4 are different things (the guardian names a Look ``look:4``).
    """
    now = now or datetime.now(UTC)

    def days(n: int) -> datetime:
        return now - timedelta(days=n)

    add = state.add_look
    add(title="Revenue by Region", user_id="2", folder_id="5", created_at=days(700), last_accessed=days(5))  # 1
    add(title="Stale Cohort Look", user_id="3", folder_id="5", created_at=days(700), last_accessed=days(300))  # 2
    add(title="Old Funnel Look", user_id="5", folder_id="4", created_at=days(700), last_accessed=days(220))  # 3
    on_board = add(title="Tile Look", user_id="3", folder_id="5", created_at=days(700), last_accessed=days(400))  # 4
    state.put_look_on_dashboard("1", str(on_board["id"]))
    add(title="Public Look", user_id="5", folder_id="4", created_at=days(700), last_accessed=days(400), public=True)
    scheduled = add(title="Scheduled Look", user_id="4", folder_id="5", created_at=days(700), last_accessed=days(400))
    state.add_schedule(None, "4", look_id=str(scheduled["id"]))  # 6
    add(
        title="Favourite Look",
        user_id="3",
        folder_id="5",
        created_at=days(700),
        last_accessed=days(400),
        favorite_count=2,
    )
    add(title="Nearly Stale Look", user_id="2", folder_id="4", created_at=days(700), last_accessed=days(171))  # 8
    add(
        title="Look trashed by Guardian long ago",
        user_id="3",
        folder_id="5",
        created_at=days(900),
        last_accessed=days(500),
        deleted_at=days(200),
        deleter_id=API_USER_ID,
    )  # 9
    return state


def _bulk_age(
    rng: random.Random, now: datetime, trashed_fraction: float, inactive_fraction: float
) -> tuple[datetime, datetime | None, str | None]:
    """One bulk item's last access, and its trash date and deleter when it lies in the guardian's trash."""
    roll = rng.random()
    if roll < trashed_fraction:
        last = now - timedelta(days=rng.randint(200, 800))  # drawn first: the same seed, the same instance
        return last, now - timedelta(days=rng.randint(1, 400)), API_USER_ID
    if roll < trashed_fraction + inactive_fraction:
        return now - timedelta(days=rng.randint(181, 900)), None, None
    return now - timedelta(days=rng.randint(0, 150)), None, None


def seed_bulk(
    state: LookerState,
    n: int,
    *,
    inactive_fraction: float = 0.05,
    trashed_fraction: float = 0.05,
    now: datetime | None = None,
    rng_seed: int = 7,
    looks: int = 0,
) -> LookerState:
    """A large instance for benchmarks: ``n`` dashboards and ``looks`` Looks (a share inactive, a share trashed).

    Every tenth Look is shown on a dashboard tile (the first dashboards' second tile).
    """
    now = now or datetime.now(UTC)
    rng = random.Random(rng_seed)
    if not state.users:
        state.add_user(API_USER_ID, "Guardian", "Bot", "guardian-bot@example.com")
        for i in range(2, 52):
            state.add_user(str(i), f"User{i}", "Owner", f"user{i}@example.com")
        state.add_folder("1", "Shared", None)
        for i in range(2, 42):
            state.add_folder(str(i), f"Team {i}", "1")
    owners = [u for u in state.users if u != API_USER_ID]
    folders = [f for f in state.folders if f != "1"]
    for i in range(n):
        last, deleted_at, deleter = _bulk_age(rng, now, trashed_fraction, inactive_fraction)
        state.add_dashboard(
            title=f"Dashboard {i}",
            user_id=rng.choice(owners),
            folder_id=rng.choice(folders),
            created_at=now - timedelta(days=1000),
            last_accessed=last,
            deleted_at=deleted_at,
            deleter_id=deleter,
            elements=1,
        )
    dashboards = sorted((k for k, d in state.dashboards.items() if not d["deleted"]), key=lambda k: int(k))
    for i in range(looks):
        last, deleted_at, deleter = _bulk_age(rng, now, trashed_fraction, inactive_fraction)
        look = state.add_look(
            title=f"Look {i}",
            user_id=rng.choice(owners),
            folder_id=rng.choice(folders),
            created_at=now - timedelta(days=1000),
            last_accessed=last,
            deleted_at=deleted_at,
            deleter_id=deleter,
            query_id=state.add_query(fields=(f"orders.m{i % 50}",))["id"],
        )
        if i % 10 == 0 and dashboards:
            state.put_look_on_dashboard(dashboards[(i // 10) % len(dashboards)], str(look["id"]))
    return state
