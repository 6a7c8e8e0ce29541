"""The sandbox speaks Sheets API v4: the real google-api-python-client, built from the discovery
document it ships, talks to it, and every response validates against that document's schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import googleapiclient
import httpx
import jsonschema
import pytest
from google.auth.credentials import AnonymousCredentials

from guardian.errors import IntegrationError
from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID
from guardian.sheets.client import SheetsClient

Sandbox = Any  # the sheets_sandbox fixture (tests/integration/sheets/conftest.py)

DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "sheets.v4.json"
_DROP = {"description", "id", "format", "annotations", "readOnly", "enumDescriptions", "deprecated"}


def _convert(node: Any) -> Any:
    """Discovery schema -> JSON Schema (draft 7); objects with properties refuse unknown keys."""
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": f"#/definitions/{node['$ref']}"}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "type" and value == "any":
            continue
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        else:
            out[key] = _convert(value)
    if node.get("type") == "object" and "properties" in node:
        out.setdefault("additionalProperties", False)
    return out


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    doc = json.loads(DISCOVERY.read_text())
    return {name: _convert(schema) for name, schema in doc["schemas"].items()}


def check(schemas: dict[str, Any], name: str, instance: Any) -> None:
    jsonschema.validate(instance, {"$ref": f"#/definitions/{name}", "definitions": schemas})


@pytest.fixture
def client(sheets_sandbox: Sandbox) -> SheetsClient:
    return SheetsClient.build(AnonymousCredentials(), api_endpoint=sheets_sandbox.url, retries=3, backoff=0.01)


def test_every_method_answers_with_the_discovery_schema(
    client: SheetsClient, schemas: dict[str, Any], sheets_sandbox: Sandbox
) -> None:
    svc = client._service
    values = svc.spreadsheets().values()
    sid = DEMO_SPREADSHEET_ID

    got = svc.spreadsheets().get(spreadsheetId=sid).execute()
    check(schemas, "Spreadsheet", got)
    assert [s["properties"]["title"] for s in got["sheets"]] == ["Requests", "Notes"]

    vr = values.get(spreadsheetId=sid, range="Requests!A1:Z", valueRenderOption="FORMULA").execute()
    check(schemas, "ValueRange", vr)
    assert vr["values"][0][:3] == ["Country", "Brand", "Start date"]
    assert vr["range"].startswith("Requests!A1:Z")

    upd = values.update(
        spreadsheetId=sid, range="Requests!L1:M2", valueInputOption="RAW", body={"values": [["a", "b"], ["=1+1", 2]]}
    ).execute()
    check(schemas, "UpdateValuesResponse", upd)
    assert upd["updatedRange"] == "Requests!L1:M2" and upd["updatedCells"] == 4

    app = values.append(
        spreadsheetId=sid,
        range="Notes!A1",
        valueInputOption="RAW",
        insertDataOption="INSERT_ROWS",
        body={"values": [["x"]]},
    ).execute()
    check(schemas, "AppendValuesResponse", app)
    assert app["updates"]["updatedRange"] == "Notes!A2"

    bg = values.batchGet(spreadsheetId=sid, ranges=["Requests!A1:B2", "'Notes'!A:A"]).execute()
    check(schemas, "BatchGetValuesResponse", bg)
    assert bg["valueRanges"][1]["values"] == [["Type run in the Status column of the Requests tab."], ["x"]]

    bu = values.batchUpdate(
        spreadsheetId=sid,
        body={
            "valueInputOption": "RAW",
            "data": [{"range": "Requests!N2", "values": [["y"]]}, {"range": "Notes!B1", "values": [["z"]]}],
        },
    ).execute()
    check(schemas, "BatchUpdateValuesResponse", bu)
    assert bu["totalUpdatedCells"] == 2 and bu["totalUpdatedSheets"] == 2

    cl = values.clear(spreadsheetId=sid, range="Requests!L1:N2", body={}).execute()
    check(schemas, "ClearValuesResponse", cl)

    sb = (
        svc.spreadsheets()
        .batchUpdate(spreadsheetId=sid, body={"requests": [{"addSheet": {"properties": {"title": "Out"}}}]})
        .execute()
    )
    check(schemas, "BatchUpdateSpreadsheetResponse", sb)


def test_errors_use_google_error_format_and_map_to_one_line(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    with pytest.raises(IntegrationError, match=r"HTTP 404 .*GUARDIAN_SHEETS__SPREADSHEET_ID"):
        client.title("no-such-sheet")
    with pytest.raises(IntegrationError, match=r"HTTP 400 \(Unable to parse range: Missing"):
        client.get_values(DEMO_SPREADSHEET_ID, "Missing!A1:B")


def test_raw_keeps_formulas_as_text_user_entered_does_not(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    client.batch_update_values(DEMO_SPREADSHEET_ID, [("Requests!L2", [['=IMPORTXML("http://x","//a")']])])
    sheets_sandbox.type("Requests!L3", [["=1+1"]])
    shown = client.get_values(DEMO_SPREADSHEET_ID, "Requests!L2:L3")  # FORMATTED_VALUE
    assert shown == [['=IMPORTXML("http://x","//a")'], ["#NAME?"]]


def test_retries_429_and_5xx_then_succeeds(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.fault(status=429, count=1, method="values.get")
    sheets_sandbox.fault(status=503, count=1, method="values.get")
    rows = client.get_values(DEMO_SPREADSHEET_ID, "Requests!A1:B1")
    assert rows == [["Country", "Brand"]]
    assert client.calls["values.get"] == 3
    assert sheets_sandbox.calls()["by_method"]["values.get"] == 3


def test_gives_up_after_bounded_retries(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.fault(status=500, count=10, method="spreadsheets.get")
    with pytest.raises(IntegrationError, match=r"HTTP 500 .*after 4 tries"):
        client.title(DEMO_SPREADSHEET_ID)
    assert client.calls["spreadsheets.get"] == 4


def test_slow_answer_hits_the_timeout_and_is_retried(sheets_sandbox: Sandbox) -> None:
    client = SheetsClient.build(
        AnonymousCredentials(), api_endpoint=sheets_sandbox.url, timeout=0.5, retries=1, backoff=0.01
    )
    sheets_sandbox.fault(delay=1.5, count=1, method="spreadsheets.get")
    assert client.title(DEMO_SPREADSHEET_ID) == "Guardian demo control sheet"
    assert client.calls["spreadsheets.get"] == 2


def test_write_table_creates_then_replaces_a_tab(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    first = client.write_table(DEMO_SPREADSHEET_ID, "Sales out", [["country", "rows"], ["TH", 10], ["VN", 2.5]])
    assert first == "'Sales out'!A1:B3"
    second = client.write_table(DEMO_SPREADSHEET_ID, "Sales out", [["only"]] * 1200)
    assert second == "'Sales out'!A1:A1200"
    values = client.get_values(DEMO_SPREADSHEET_ID, "'Sales out'")
    assert len(values) == 1200 and values[0] == ["only"]
    assert client.title(DEMO_SPREADSHEET_ID) == "Guardian demo control sheet"


def test_batch_get_of_many_ranges_goes_as_post_override(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    # Hundreds of ranges make the URL too long: the library sends POST + X-HTTP-Method-Override: GET.
    ranges = [f"Requests!A{n}:K{n}" for n in range(1, 401)]
    got = client.batch_get_values(DEMO_SPREADSHEET_ID, ranges)
    assert len(got) == 400 and got[0][0][0] == "Country" and got[399] == []


def _row_tag(svc: Any, sid: str, row: int, value: str) -> dict[str, Any]:
    location = {"dimensionRange": {"sheetId": 0, "dimension": "ROWS", "startIndex": row, "endIndex": row + 1}}
    md = {"metadataKey": "k", "metadataValue": value, "location": location, "visibility": "DOCUMENT"}
    return {"createDeveloperMetadata": {"developerMetadata": md}}


def test_row_operations_metadata_and_data_filters_follow_the_discovery_document(
    client: SheetsClient, schemas: dict[str, Any], sheets_sandbox: Sandbox
) -> None:
    svc = client._service
    sid = DEMO_SPREADSHEET_ID

    def batch(*requests: dict[str, Any], **extra: Any) -> dict[str, Any]:
        out = svc.spreadsheets().batchUpdate(spreadsheetId=sid, body={"requests": list(requests), **extra}).execute()
        check(schemas, "BatchUpdateSpreadsheetResponse", out)
        return out

    def where(value: str) -> int:
        found = (
            svc.spreadsheets()
            .developerMetadata()
            .search(spreadsheetId=sid, body={"dataFilters": [{"developerMetadataLookup": {"metadataValue": value}}]})
            .execute()
        )
        check(schemas, "SearchDeveloperMetadataResponse", found)
        return int(
            found["matchedDeveloperMetadata"][0]["developerMetadata"]["location"]["dimensionRange"]["startIndex"]
        )

    made = batch(_row_tag(svc, sid, 1, "acme"), _row_tag(svc, sid, 5, "manual"))
    assert made["replies"][0]["createDeveloperMetadata"]["developerMetadata"]["metadataId"] > 0
    # insertDimension above: the metadata moves down with its row.
    batch({"insertDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 3}}})
    assert where("acme") == 3 and where("manual") == 7
    # moveDimension: destinationIndex counts rows before the source is taken out.
    batch(
        {
            "moveDimension": {
                "source": {"sheetId": 0, "dimension": "ROWS", "startIndex": 3, "endIndex": 4},
                "destinationIndex": 8,
            }
        }
    )
    assert where("acme") == 7 and where("manual") == 6
    # sortRange of whole rows: metadata travels with the row.
    batch(
        {
            "sortRange": {
                "range": {"sheetId": 0, "startRowIndex": 1, "endRowIndex": 9},
                "sortSpecs": [{"dimensionIndex": 10, "sortOrder": "ASCENDING"}],
            }
        }
    )
    rows = client.get_values(sid, "Requests!A1:K9", render="FORMULA")
    assert rows[where("acme")][10] == "January, Thailand" and rows[where("manual")][6] == "done by hand"
    # values by data filter: the tagged row, whatever its number; nulls leave cells alone.
    lookup = {"developerMetadataLookup": {"metadataKey": "k", "metadataValue": "acme"}}
    got = (
        svc.spreadsheets()
        .values()
        .batchGetByDataFilter(spreadsheetId=sid, body={"dataFilters": [lookup], "valueRenderOption": "FORMULA"})
        .execute()
    )
    check(schemas, "BatchGetValuesByDataFilterResponse", got)
    assert got["valueRanges"][0]["valueRange"]["values"][0][10] == "January, Thailand"
    put = (
        svc.spreadsheets()
        .values()
        .batchUpdateByDataFilter(
            spreadsheetId=sid,
            body={"valueInputOption": "RAW", "data": [{"dataFilter": lookup, "values": [[None] * 6 + ["queued"]]}]},
        )
        .execute()
    )
    check(schemas, "BatchUpdateValuesByDataFilterResponse", put)
    row = client.get_values(sid, f"Requests!A{where('acme') + 1}:K{where('acme') + 1}")[0]
    assert row[6] == "queued" and row[0] == "TH" and row[10] == "January, Thailand"
    # spreadsheets.get with grid data: values and each row's metadata in one answer.
    grid = svc.spreadsheets().get(spreadsheetId=sid, ranges=["Requests!A1:K12"], includeGridData=True).execute()
    check(schemas, "Spreadsheet", grid)
    metas = grid["sheets"][0]["data"][0]["rowMetadata"]
    assert metas[where("acme")]["developerMetadata"][0]["metadataValue"] == "acme"
    # deleteDimension: the row's metadata goes with it.
    at = where("acme")
    batch({"deleteDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": at, "endIndex": at + 1}}})
    gone = (
        svc.spreadsheets()
        .developerMetadata()
        .search(spreadsheetId=sid, body={"dataFilters": [{"developerMetadataLookup": {"metadataValue": "acme"}}]})
        .execute()
    )
    assert gone == {}
    # The updated spreadsheet in a batchUpdate's answer, as asked.
    answer = batch(
        {
            "setDataValidation": {
                "range": {
                    "sheetId": 0,
                    "startRowIndex": 1,
                    "endRowIndex": 5,
                    "startColumnIndex": 6,
                    "endColumnIndex": 7,
                },
                "rule": {
                    "condition": {"type": "ONE_OF_LIST", "values": [{"userEnteredValue": "run"}]},
                    "showCustomUi": True,
                },
            }
        },
        {
            "addProtectedRange": {
                "protectedRange": {
                    "range": {"sheetId": 0, "startColumnIndex": 7, "endColumnIndex": 8},
                    "description": "d",
                    "warningOnly": True,
                }
            }
        },
        includeSpreadsheetInResponse=True,
        responseRanges=["Requests!A1:K3"],
        responseIncludeGridData=True,
    )
    updated = answer["updatedSpreadsheet"]["sheets"][0]
    assert updated["protectedRanges"][0]["warningOnly"] is True
    assert updated["data"][0]["rowData"][1]["values"][6]["dataValidation"]["showCustomUi"] is True


def test_batches_are_all_or_nothing(client: SheetsClient, sheets_sandbox: Sandbox) -> None:
    before = sheets_sandbox.rows()
    with pytest.raises(IntegrationError, match="HTTP 400"):
        client.batch_update_spreadsheet(
            DEMO_SPREADSHEET_ID,
            [
                {"insertDimension": {"range": {"sheetId": 0, "dimension": "ROWS", "startIndex": 1, "endIndex": 2}}},
                {"deleteDimension": {"range": {"sheetId": 99, "dimension": "ROWS", "startIndex": 1, "endIndex": 2}}},
            ],
        )
    with pytest.raises(IntegrationError, match="HTTP 400"):
        client.batch_update_values(DEMO_SPREADSHEET_ID, [("Requests!L1", [["x"]]), ("Requests!A1:B1", [["a"], ["b"]])])
    assert sheets_sandbox.rows() == before


def test_quota_error_carries_googles_details(sheets_sandbox: Sandbox) -> None:
    sheets_sandbox.fault(status=429, count=1, method="spreadsheets.get")
    answer = httpx.get(f"{sheets_sandbox.handle.url}/v4/spreadsheets/{DEMO_SPREADSHEET_ID}")
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    info = next(d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    assert info["reason"] == "RATE_LIMIT_EXCEEDED" and info["metadata"]["quota_metric"].endswith("read_requests")


def test_setup_is_idempotent_and_changes_no_value(sheets_sandbox: Sandbox) -> None:
    from guardian.settings import load_settings
    from guardian.sheets.setup import setup

    settings = load_settings()
    before = sheets_sandbox.rows()
    first = setup(settings, SheetsClient.from_settings(settings))
    second = setup(settings, SheetsClient.from_settings(settings))
    assert first.protected_added == ["run_id", "message", "updated_at"] and second.protected_added == []
    assert sheets_sandbox.rows() == before
    tab = sheets_sandbox.state.spreadsheets[DEMO_SPREADSHEET_ID].tabs[0]
    assert len(tab.protected) == 3 and all(p["warningOnly"] for p in tab.protected)
    rule = tab.validation[(2, 7)]  # Status of the first data row
    assert [v["userEnteredValue"] for v in rule["condition"]["values"]][:2] == ["run", "queued"]
    assert "guardian" in tab.notes[(1, 8)].lower()  # Run ID header note
