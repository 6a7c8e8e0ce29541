"""The Sheets API sandbox served over HTTP, seeded with the demo control sheet, and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from guardian.sandbox.serve import ServerHandle, start_in_thread
from guardian.sandbox.sheets import SheetsSandbox, create_app
from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, demo_tabs


@dataclass
class Sandbox:
    """A running sandbox: its URL, its state and helpers over its admin routes."""

    handle: ServerHandle
    state: SheetsSandbox

    @property
    def url(self) -> str:
        return self.handle.url + "/"

    def calls(self) -> dict[str, Any]:
        return httpx.get(self.handle.url + "/_sandbox/calls").json()

    def reset_calls(self) -> None:
        httpx.post(self.handle.url + "/_sandbox/calls/reset")

    def fault(self, **body: Any) -> None:
        httpx.post(self.handle.url + "/_sandbox/faults", json=body).raise_for_status()

    def edit_after(self, after: str, a1: str, values: list[list[Any]]) -> None:
        body = {"after": after, "spreadsheetId": DEMO_SPREADSHEET_ID, "range": a1, "values": values}
        httpx.post(self.handle.url + "/_sandbox/edits", json=body).raise_for_status()

    def rows(self, a1: str = "Requests!A1:K", render: str = "FORMULA") -> list[list[Any]]:
        return self.state.get(DEMO_SPREADSHEET_ID, a1, render).get("values", [])

    def type(self, a1: str, values: list[list[Any]]) -> None:
        """A person types into the sheet (USER_ENTERED, as the Sheets UI does)."""
        self.state.update(DEMO_SPREADSHEET_ID, a1, values, "USER_ENTERED")


@pytest.fixture
def sheets_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A fresh sandbox with the demo control sheet; GUARDIAN_SHEETS__* point at it."""
    state = SheetsSandbox()
    state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
    handle = start_in_thread(create_app(state))
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", DEMO_SPREADSHEET_ID)
    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", handle.url + "/")
    monkeypatch.setenv("GUARDIAN_SHEETS__RANGE", "Requests!A1:Z")
    monkeypatch.setenv("GUARDIAN_SHEETS__BACKOFF_SECONDS", "0.01")
    yield Sandbox(handle, state)
    handle.stop()
