"""The BigQuery path for real: bqemulator over HTTP, a jobs-API stub with realistic dry-run statistics.

- ``bq_emulator``: bqemulator (DuckDB-backed) in a subprocess, its spatial extension installed
  from the ``duckdb-extension-spatial`` wheel into a private HOME (no network); ``gs://`` URIs
  of ``EXPORT DATA`` land in a local folder (``BQEMU_GCS_LOCAL_ROOT``).
- ``bq_stub``: an HTTP proxy in front of the emulator that answers dry runs with BigQuery's
  statistics (the emulator says 0 bytes), enforces ``maximumBytesBilled`` the way BigQuery does
  (``bytesBilledLimitExceeded``) and fills bytes billed and slot time into finished jobs.
- ``emulator_gcs``: the emulator's ``gs://`` folder seen through the guardian Storage interface
  (it reads and writes the folder, and names objects ``gs://bucket/key``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from guardian.sandbox.serve import ServerHandle, free_port, start_in_thread, wait_for_port
from guardian.storage import LocalStorage

LAUNCHER = r"""
import sys
from pathlib import Path
import duckdb
import duckdb_extension_spatial
ext = Path(duckdb_extension_spatial.__file__).parent / "extensions" / f"v{duckdb.__version__}"
ext = ext / "spatial.duckdb_extension"
duckdb.connect().execute("INSTALL '" + str(ext) + "'")
from bqemulator.cli import main
sys.argv = ["bqemulator", *sys.argv[1:]]
sys.exit(main())
"""
PROJECT = "guardian-demo"
BUCKET = "guardian-exports"


@dataclass
class Emulator:
    """A running bqemulator."""

    endpoint: str
    gcs_root: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    home = tmp_path_factory.mktemp("bqhome")
    gcs_root = tmp_path_factory.mktemp("bqgcs")
    port = free_port()
    env = {**os.environ, "HOME": str(home), "BQEMU_GCS_LOCAL_ROOT": str(gcs_root)}
    log = (home / "emulator.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCHER,
            "start",
            "--rest-port",
            str(port),
            "--grpc-port",
            "0",
            "--project",
            PROJECT,
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=90)
        yield Emulator(f"http://127.0.0.1:{port}", gcs_root, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@dataclass
class JobsStub:
    """Dry-run statistics and byte-limit enforcement in front of the emulator."""

    upstream: str
    bytes_processed: int = 5 * 1024**3
    dry_run_bytes: int | None = None  # what dry runs report (default: bytes_processed)
    slot_ms: int = 4321
    calls: list[dict[str, Any]] = field(default_factory=list)
    failed_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    handle: ServerHandle | None = None

    @property
    def endpoint(self) -> str:
        assert self.handle is not None
        return self.handle.url

    def billed(self) -> int:
        # BigQuery bills at least 10 MB per query, rounded up to the next MB.
        mb = 1024 * 1024
        return max(10 * mb, -(-self.bytes_processed // mb) * mb)


def _job_resource(project: str, job_id: str, configuration: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "bigquery#job",
        "id": f"{project}:US.{job_id}",
        "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
        "configuration": configuration,
        "status": {"state": "DONE"},
        "statistics": stats,
    }


def make_stub_app(stub: JobsStub) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    client = httpx.Client(base_url=stub.upstream, timeout=60)

    async def proxy(request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        payload: dict[str, Any] = {}
        if body and request.headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(body)
        config = payload.get("configuration") or {}
        project = path.split("/projects/")[1].split("/")[0] if "/projects/" in path else PROJECT
        if request.method == "POST" and path.endswith("/jobs") and "query" in config:
            job_id = (payload.get("jobReference") or {}).get("jobId") or uuid.uuid4().hex
            limit = config["query"].get("maximumBytesBilled")
            stub.calls.append({"dryRun": bool(config.get("dryRun")), "maximumBytesBilled": limit})
            if config.get("dryRun"):
                n = str(stub.bytes_processed if stub.dry_run_bytes is None else stub.dry_run_bytes)
                stats = {
                    "creationTime": "1767225600000",
                    "totalBytesProcessed": n,
                    "query": {
                        "totalBytesProcessed": n,
                        "totalBytesProcessedAccuracy": "PRECISE",
                        "totalBytesBilled": "0",
                        "cacheHit": False,
                        "statementType": "SELECT",
                    },
                }
                return JSONResponse(_job_resource(project, job_id, config, stats))
            if limit is not None and int(limit) < stub.billed():
                error = {
                    "reason": "bytesBilledLimitExceeded",
                    "message": f"Query exceeded limit for bytes billed: {limit}. {stub.billed()} or higher required.",
                }
                job = _job_resource(project, job_id, config, {"creationTime": "1767225600000"})
                job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
                stub.failed_jobs[job_id] = job
                return JSONResponse(job)
        job_id_in_path = path.rstrip("/").split("/")[-1]
        if request.method == "GET" and job_id_in_path in stub.failed_jobs:
            job = stub.failed_jobs[job_id_in_path]
            if "/queries/" in path:
                error = job["status"]["errorResult"]
                return JSONResponse({"error": {"code": 400, "message": error["message"], "errors": [error]}}, 400)
            return JSONResponse(job)
        upstream = client.request(
            request.method,
            path,
            params=list(request.query_params.multi_items()),
            content=body,
            headers={k: v for k, v in request.headers.items() if k.lower() in {"content-type", "accept"}},
        )
        content = upstream.content
        if upstream.headers.get("content-type", "").startswith("application/json") and content:
            data = json.loads(content)
            if (
                isinstance(data, dict)
                and data.get("kind") == "bigquery#job"
                and "query" in data.get("configuration", {})
            ):
                stats = data.setdefault("statistics", {})
                query_stats = stats.setdefault("query", {})
                stats["totalBytesProcessed"] = query_stats["totalBytesProcessed"] = str(stub.bytes_processed)
                query_stats["totalBytesBilled"] = str(stub.billed())
                stats["totalSlotMs"] = query_stats["totalSlotMs"] = str(stub.slot_ms)
                content = json.dumps(data).encode()
        return Response(content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", proxy, methods=methods)])


@pytest.fixture
def bq_stub(bq_emulator: Emulator) -> Iterator[JobsStub]:
    stub = JobsStub(bq_emulator.endpoint)
    stub.handle = start_in_thread(make_stub_app(stub))
    wait_for_port("127.0.0.1", int(stub.handle.url.rsplit(":", 1)[1]))
    yield stub
    stub.handle.stop()


class EmulatorGCS(LocalStorage):
    """The emulator's gs:// folder for one bucket, addressed as gs://bucket/key."""

    def __init__(self, gcs_root: Path, bucket: str) -> None:
        (gcs_root / bucket).mkdir(parents=True, exist_ok=True)
        super().__init__(f"file://{gcs_root / bucket}")
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"


@pytest.fixture
def emulator_gcs(bq_emulator: Emulator) -> EmulatorGCS:
    return EmulatorGCS(bq_emulator.gcs_root, f"{BUCKET}-{uuid.uuid4().hex[:8]}")


def _load_sales_table(endpoint: str, dataset: str, rows: list[dict[str, Any]]) -> None:
    """Create the partitioned, clustered sales table in the emulator and load rows through the API."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from guardian.sales.sql import SOURCE_SCHEMA

    client = bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )
    client.create_dataset(f"{PROJECT}.{dataset}", exists_ok=True)
    table = bigquery.Table(
        f"{PROJECT}.{dataset}.sales_entries", schema=[bigquery.SchemaField(n, t) for n, t in SOURCE_SCHEMA]
    )
    table.time_partitioning = bigquery.TimePartitioning(field="sale_date")
    table.clustering_fields = ["country_code", "brand_code"]
    client.delete_table(table, not_found_ok=True)
    client.create_table(table)
    for start in range(0, len(rows), 500):
        errors = client.insert_rows_json(table, rows[start : start + 500])
        assert not errors, errors[:3]


def _demo_rows(tmp_path: Path, n: int = 6000) -> list[dict[str, Any]]:
    """Rows of the seeded demo generator, as JSON for insert_rows_json."""
    import duckdb

    from guardian.sales.demo import generate
    from guardian.sales.sql import TableRef

    path = tmp_path / "seed.duckdb"
    generate(path, TableRef(PROJECT, "sales", "sales_entries"), rows=n)
    with duckdb.connect(str(path), read_only=True) as con:
        cursor = con.execute(
            "SELECT * FROM sales.sales_entries WHERE sale_date BETWEEN DATE '2026-01-01' AND DATE '2026-03-31'"
        )
        names = [d[0] for d in cursor.description]
        return [
            {k: (None if v is None else str(v)) for k, v in zip(names, row, strict=True)} for row in cursor.fetchall()
        ]


@pytest.fixture
def load_sales_table() -> Any:
    """load_sales_table(endpoint, dataset, rows): the sales table in the emulator."""
    return _load_sales_table


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The demo generator's first quarter of 2026 (6000 rows over two years), as JSON rows."""
    return _demo_rows(tmp_path_factory.mktemp("rows"))


@pytest.fixture
def sheets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from guardian.sandbox.serve import start_in_thread
    from guardian.sandbox.sheets import SheetsSandbox, create_app
    from guardian.sandbox.sheets.seed import DEMO_SPREADSHEET_ID, demo_tabs

    state = SheetsSandbox()
    state.create(DEMO_SPREADSHEET_ID, "Guardian demo control sheet", demo_tabs())
    handle = start_in_thread(create_app(state))
    monkeypatch.setenv("GUARDIAN_SHEETS__SPREADSHEET_ID", DEMO_SPREADSHEET_ID)
    monkeypatch.setenv("GUARDIAN_SHEETS__API_ENDPOINT", handle.url + "/")
    monkeypatch.setenv("GUARDIAN_SHEETS__RANGE", "Requests!A1:Z")
    monkeypatch.setenv("GUARDIAN_SHEETS__BACKOFF_SECONDS", "0.01")
    yield state
    handle.stop()
