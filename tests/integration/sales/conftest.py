"""The BigQuery path for real: bqemulator over HTTP, a jobs-API stub with realistic dry-run statistics.

- ``bq_emulator``: bqemulator (DuckDB-backed) in a subprocess, its spatial extension installed
  from the ``duckdb-extension-spatial`` wheel into a private HOME (no network); ``gs://`` URIs
  of ``EXPORT DATA`` land in a local folder (``BQEMU_GCS_LOCAL_ROOT``).
- ``bq_stub``: an HTTP proxy in front of the emulator that answers dry runs with BigQuery's
  statistics (the emulator says 0 bytes), enforces ``maximumBytesBilled`` the way BigQuery does
  (``bytesBilledLimitExceeded``), fills bytes billed and slot time into finished jobs, and
  runs extract jobs (not billed) by having the emulator write the table to the URI.
- ``emulator_gcs``: the emulator's ``gs://`` folder seen through the guardian Storage interface
  (it reads and writes the folder, and names objects ``gs://bucket/key``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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


MB = 1024 * 1024
# BigQuery's logical data sizes (https://cloud.google.com/bigquery/pricing#data): what on-demand
# queries are billed by. STRING is 2 bytes + its UTF-8 length; NULL is 0 bytes.
TYPE_BYTES = {
    "INTEGER": 8,
    "INT64": 8,
    "FLOAT": 8,
    "FLOAT64": 8,
    "NUMERIC": 16,
    "BIGNUMERIC": 32,
    "BOOLEAN": 1,
    "BOOL": 1,
    "DATE": 8,
    "DATETIME": 8,
    "TIME": 8,
    "TIMESTAMP": 8,
}


@dataclass
class TableMeta:
    """What BigQuery bills a read of a table by: its columns, partitioning and clustering."""

    table_id: str  # project.dataset.table
    columns: dict[str, str]  # name -> type
    partition_field: str | None
    clustering: list[str]


@dataclass
class JobsStub:
    """The jobs API in front of the emulator, sizing bytes the way BigQuery bills them.

    Computed from the emulator's tables (never constants):

    - bytes processed = the logical size of every column the query references, over the
      partitions its filter on the partition column cannot exclude; a dry run stops there
      (for clustered tables BigQuery's dry run is an upper bound:
      https://cloud.google.com/bigquery/docs/clustered-tables#clustered_table_pricing);
    - a real job also skips the blocks of a clustered table that its filters on the
      clustering columns exclude (block pruning, modelled at row granularity), and is billed
      that rounded up to the MB with at least 10 MB per table read
      (https://cloud.google.com/bigquery/pricing#on_demand_pricing);
    - a job whose bytes billed would exceed ``maximumBytesBilled`` fails with
      ``bytesBilledLimitExceeded`` and bills nothing, before it runs;
    - jobs.insert of a job id that exists answers 409 Already Exists
      (https://cloud.google.com/bigquery/docs/running-jobs#generate-jobid);
    - EXPORT DATA jobs report ``exportDataStatistics.rowCount``
      (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#ExportDataStatistics);
    - extract jobs (``configuration.extract``) write the whole source table (an extract has no
      filter or column list: https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobConfigurationExtract)
      and bill nothing: exporting data is a free operation
      (https://cloud.google.com/bigquery/pricing#free); they have no ``maximumBytesBilled`` and
      report ``statistics.extract.destinationUriFileCounts``
      (https://cloud.google.com/bigquery/docs/reference/rest/v2/Job#JobStatistics4).
    """

    upstream: str
    calls: list[dict[str, Any]] = field(default_factory=list)  # query jobs (dry runs too)
    extracts: list[dict[str, Any]] = field(default_factory=list)  # extract jobs
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # every real job by id, as answered
    billed: dict[str, int] = field(default_factory=dict)  # job id -> bytes billed (real jobs: 0 for extracts)
    created: dict[str, TableMeta] = field(default_factory=dict)  # CTAS tables: clustering from the DDL
    hold: set[str] = field(default_factory=set)  # job id substrings whose reads wait for release
    inserted: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    handle: ServerHandle | None = None

    @property
    def endpoint(self) -> str:
        assert self.handle is not None
        return self.handle.url

    def total_billed(self, contains: str = "") -> int:
        return sum(n for job_id, n in self.billed.items() if contains in job_id)


def _job_resource(project: str, job_id: str, configuration: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "bigquery#job",
        "id": f"{project}:US.{job_id}",
        "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
        "configuration": configuration,
        "status": {"state": "DONE"},
        "statistics": stats,
    }


class Sizer:
    """Sizes a query's reads from the emulator's tables (metadata and data)."""

    def __init__(self, client: httpx.Client, stub: JobsStub) -> None:
        self.client = client
        self.stub = stub

    def meta(self, project: str, dataset: str, table: str) -> TableMeta | None:
        table_id = f"{project}.{dataset}.{table}"
        resp = self.client.get(f"/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}")
        if resp.status_code != 200:
            return None
        data = resp.json()
        columns = {f["name"]: f["type"] for f in data.get("schema", {}).get("fields", [])}
        known = self.stub.created.get(table_id)
        partition = (data.get("timePartitioning") or {}).get("field")
        clustering = (data.get("clustering") or {}).get("fields") or (known.clustering if known else [])
        return TableMeta(table_id, columns, partition, list(clustering))

    def _scalar(self, project: str, sql: str, params: list[dict[str, Any]]) -> int:
        body = {"query": sql, "useLegacySql": False, "queryParameters": params, "parameterMode": "NAMED"}
        resp = self.client.post(f"/bigquery/v2/projects/{project}/queries", json=body)
        resp.raise_for_status()
        rows = resp.json().get("rows") or [{"f": [{"v": "0"}]}]
        return int(float(rows[0]["f"][0]["v"] or 0))

    def size(self, project: str, sql: str, config: dict[str, Any]) -> tuple[int, int, int]:
        """(bytes processed upper bound, bytes after cluster pruning, tables read) of ``sql``."""
        import sqlglot
        from sqlglot import exp

        tree = sqlglot.parse_one(sql, read="bigquery")
        select = tree.find(exp.Select)
        if select is None:
            return 0, 0, 0
        params = config.get("queryParameters") or []
        created = {
            t.sql(dialect="bigquery") for c in tree.find_all(exp.Create) for t in [c.this] if isinstance(t, exp.Table)
        }
        upper = pruned = tables = 0
        for node in select.find_all(exp.Table):
            if node.sql(dialect="bigquery") in created or not node.name:
                continue
            meta = self.meta(node.catalog or project, node.db, node.name)
            if meta is None:
                continue
            tables += 1
            if any(isinstance(s.parent, exp.Select) for s in select.find_all(exp.Star)):
                cols = list(meta.columns)
            else:
                cols = sorted({c.name for c in select.find_all(exp.Column) if c.name in meta.columns})
            if not cols:
                continue
            size = " + ".join(
                f"IFNULL(2 + BYTE_LENGTH(`{c}`), 0)"
                if meta.columns[c] == "STRING"
                else f"IF(`{c}` IS NULL, 0, {TYPE_BYTES.get(meta.columns[c], 8)})"
                for c in cols
            )
            where = select.args.get("where")
            partition_filter, cluster_filter = ["TRUE"], ["TRUE"]
            for cond in _conjuncts(where.this if where is not None else None):
                names = {c.name for c in cond.find_all(exp.Column)}
                if meta.partition_field and names == {meta.partition_field}:
                    partition_filter.append(cond.sql(dialect="bigquery"))
                elif names and names <= set(meta.clustering):
                    cluster_filter.append(cond.sql(dialect="bigquery"))
            used = [p for p in params if "@" + p["name"] in " ".join(partition_filter + cluster_filter)]
            table_sql = f"`{meta.table_id}`"
            base = f"SELECT SUM({size}) FROM {table_sql} WHERE {' AND '.join(partition_filter)}"
            upper += self._scalar(project, base, [p for p in used if "@" + p["name"] in base])
            pruned_sql = base + " AND " + " AND ".join(cluster_filter)
            pruned += self._scalar(project, pruned_sql, used)
        return upper, pruned, tables


def _conjuncts(node: Any) -> list[Any]:
    from sqlglot import exp

    if node is None:
        return []
    if isinstance(node, exp.Paren):
        return _conjuncts(node.this)
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def billed_bytes(processed: int, tables: int) -> int:
    """On-demand billing: rounded up to the MB, at least 10 MB per table read."""
    return max(10 * MB * max(tables, 1), -(-processed // MB) * MB)


def make_stub_app(stub: JobsStub) -> Any:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    client = httpx.Client(base_url=stub.upstream, timeout=120)
    sizer = Sizer(client, stub)
    lock = threading.Lock()

    def forward(request: Request, path: str, body: bytes) -> httpx.Response:
        return client.request(
            request.method,
            path,
            params=list(request.query_params.multi_items()),
            content=body,
            headers={k: v for k, v in request.headers.items() if k.lower() in {"content-type", "accept"}},
        )

    def insert(project: str, payload: dict[str, Any], request: Request, path: str, body: bytes) -> Response:
        config = payload.get("configuration") or {}
        query = config["query"]
        job_id = (payload.get("jobReference") or {}).get("jobId") or uuid.uuid4().hex
        limit = query.get("maximumBytesBilled")
        sql = query["query"]
        upper, pruned, tables = sizer.size(project, sql, query)
        dry = bool(config.get("dryRun"))
        stub.calls.append(
            {"dryRun": dry, "maximumBytesBilled": limit, "jobId": job_id, "labels": config.get("labels"), "sql": sql}
        )
        if dry:
            stats = {
                "creationTime": "1767225600000",
                "totalBytesProcessed": str(upper),
                "query": {
                    "totalBytesProcessed": str(upper),
                    "totalBytesProcessedAccuracy": "UPPER_BOUND" if pruned < upper else "PRECISE",
                    "totalBytesBilled": "0",
                    "cacheHit": False,
                },
            }
            return JSONResponse(_job_resource(project, job_id, config, stats))
        with lock:
            if job_id in stub.jobs:
                return JSONResponse(
                    {
                        "error": {
                            "code": 409,
                            "message": f"Already Exists: Job {project}:US.{job_id}",
                            "status": "ALREADY_EXISTS",
                            "errors": [
                                {"reason": "duplicate", "message": f"Already Exists: Job {project}:US.{job_id}"}
                            ],
                        }
                    },
                    409,
                )
            stub.jobs[job_id] = {}
        billed = billed_bytes(pruned, tables) if tables else 0
        if limit is not None and billed > int(limit):
            error = {
                "reason": "bytesBilledLimitExceeded",
                "message": f"Query exceeded limit for bytes billed: {limit}. {billed} or higher required.",
            }
            job = _job_resource(project, job_id, config, {"creationTime": "1767225600000"})
            job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
            stub.jobs[job_id] = job
            return JSONResponse(job)
        ddl = _created_table(sql)
        if ddl is not None:
            stub.created[ddl.table_id] = ddl
        rows = None
        if sql.lstrip().upper().startswith("EXPORT DATA"):
            inner = sql[sql.upper().index(" AS ", sql.upper().index("OPTIONS")) + 4 :]
            rows = sizer._scalar(project, f"SELECT COUNT(*) FROM ({inner})", query.get("queryParameters") or [])
        upstream = forward(request, path, body)
        data = upstream.json()
        extra = {
            "totalBytesProcessed": str(pruned),
            "totalBytesBilled": str(billed),
            "totalSlotMs": str(max(1, pruned // 4096)),
        }
        if rows is not None:
            extra["exportDataStatistics"] = {"fileCount": "1", "rowCount": str(rows)}
        stub.jobs[job_id] = {"stats": extra}
        if upstream.status_code == 200 and not (data.get("status") or {}).get("errorResult"):
            stub.billed[job_id] = billed
        stub.inserted.set()
        return JSONResponse(_decorate(data, extra), upstream.status_code)

    def extract(project: str, payload: dict[str, Any]) -> Response:
        config = payload["configuration"]
        spec = config["extract"]
        job_id = (payload.get("jobReference") or {}).get("jobId") or uuid.uuid4().hex
        stub.extracts.append({"jobId": job_id, "labels": config.get("labels"), **spec})
        with lock:
            if job_id in stub.jobs:
                message = f"Already Exists: Job {project}:US.{job_id}"
                return JSONResponse(
                    {
                        "error": {
                            "code": 409,
                            "message": message,
                            "status": "ALREADY_EXISTS",
                            "errors": [{"reason": "duplicate", "message": message}],
                        }
                    },
                    409,
                )
            stub.jobs[job_id] = {}
        src = spec["sourceTable"]
        uris = spec["destinationUris"]
        fmt = spec.get("destinationFormat", "CSV")
        fmt = {"NEWLINE_DELIMITED_JSON": "JSON"}.get(fmt, fmt)
        options = f"uri = '{uris[0]}', format = '{fmt}', overwrite = true"
        if spec.get("compression") not in (None, "NONE"):
            options += f", compression = '{spec['compression']}'"
        table = f"`{src.get('projectId', project)}.{src['datasetId']}.{src['tableId']}`"
        resp = client.post(
            f"/bigquery/v2/projects/{project}/queries",
            json={"query": f"EXPORT DATA OPTIONS ({options}) AS SELECT * FROM {table}", "useLegacySql": False},
        )
        job = _job_resource(project, job_id, {**config, "jobType": "EXTRACT"}, {"creationTime": "1767225600000"})
        if resp.status_code != 200:
            error = {"reason": "notFound" if resp.status_code == 404 else "invalid", "message": resp.text[:300]}
            job["status"] = {"state": "DONE", "errorResult": error, "errors": [error]}
        else:
            job["statistics"]["extract"] = {"destinationUriFileCounts": ["1"]}
            stub.billed[job_id] = 0
        stub.jobs[job_id] = job
        stub.inserted.set()
        return JSONResponse(job)

    async def proxy(request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        payload: dict[str, Any] = {}
        if body and request.headers.get("content-type", "").startswith("application/json"):
            payload = json.loads(body)
        project = path.split("/projects/")[1].split("/")[0] if "/projects/" in path else PROJECT
        if request.method == "POST" and path.endswith("/jobs") and "query" in (payload.get("configuration") or {}):
            return await anyio.to_thread.run_sync(insert, project, payload, request, path, body)
        if request.method == "POST" and path.endswith("/jobs") and "extract" in (payload.get("configuration") or {}):
            return await anyio.to_thread.run_sync(extract, project, payload)
        job_id = path.rstrip("/").split("/")[-1]
        if request.method == "GET" and ("/jobs/" in path or "/queries/" in path):
            if job_id in stub.jobs and any(h in job_id for h in stub.hold):
                await anyio.to_thread.run_sync(stub.released.wait)
            known = stub.jobs.get(job_id)
            if known and "status" in known:  # refused by the byte limit, or an extract: answered here
                if "/queries/" in path:
                    error = known["status"]["errorResult"]
                    return JSONResponse({"error": {"code": 400, "message": error["message"], "errors": [error]}}, 400)
                return JSONResponse(known)
        upstream = await anyio.to_thread.run_sync(forward, request, path, body)
        content = upstream.content
        if upstream.headers.get("content-type", "").startswith("application/json") and content:
            data = json.loads(content)
            known = stub.jobs.get(job_id) or {}
            if isinstance(data, dict) and known.get("stats"):
                content = json.dumps(_decorate(data, known["stats"])).encode()
        return Response(content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", proxy, methods=methods)])


def _decorate(data: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Put the sized statistics into a job resource (or getQueryResults answer) from the emulator."""
    if data.get("kind") == "bigquery#job":
        stats = data.setdefault("statistics", {})
        query_stats = stats.setdefault("query", {})
        stats["totalBytesProcessed"] = extra["totalBytesProcessed"]
        stats["totalSlotMs"] = extra["totalSlotMs"]
        query_stats.update(extra)
    elif "totalBytesProcessed" in data:
        data["totalBytesProcessed"] = extra["totalBytesProcessed"]
    return data


def _created_table(sql: str) -> TableMeta | None:
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="bigquery")
    if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Table):
        return None
    cluster = tree.find(exp.ClusterProperty) or tree.find(exp.Cluster)
    t = tree.this
    return TableMeta(
        f"{t.catalog}.{t.db}.{t.name}",
        {},
        None,
        [c.name for c in cluster.expressions] if cluster else [],
    )


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
