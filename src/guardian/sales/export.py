"""Export a run's result to storage with a manifest written last.

Layout under the destination root::

    sales/run_id=<run>/country=<c>/brand=<b>/part-<attempt>-00000.parquet
    sales/run_id=<run>/_manifest.json

The manifest is the commit point: it lists exactly the files of one attempt (rows, bytes,
SHA-256 each), the schema, the query hash and the params. A reader that starts from the
manifest never sees a half export:

1. every file of the new attempt is written under a fresh attempt token (old files stay);
2. the manifest is replaced in one put (an atomic rename locally, one object on GCS);
3. only then are the previous attempt's files under this run's prefix deleted.

If anything fails before step 2, the new attempt's files are deleted and the previous
export (if any) is untouched; a first attempt leaves nothing at all. Nothing outside
``run_id=<run>/`` is ever listed or deleted.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guardian.errors import GuardianError
from guardian.sales.warehouse import PartitionExport, Warehouse
from guardian.storage import Storage

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1


class ExportFailed(GuardianError):
    """Writing the export failed; nothing of this attempt was left behind."""


def safe_run_id(run_id: str) -> str:
    """The run id as one path segment (Airflow ids hold ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:200] or "run"


def run_prefix(export_prefix: str, run_id: str) -> str:
    """Key prefix (with trailing slash) of one run's export."""
    return f"{export_prefix.strip('/')}/run_id={safe_run_id(run_id)}/"


@dataclass
class ExportResult:
    """The committed export of one run."""

    manifest_uri: str
    output_uri: str
    rows: int
    bytes: int
    files: list[dict[str, Any]]
    replaced: int


def export_result(
    warehouse: Warehouse,
    result_name: str,
    storage: Storage,
    *,
    export_prefix: str,
    run_id: str,
    fmt: str,
    manifest_fields: dict[str, Any],
    schema: list[tuple[str, str]],
) -> ExportResult:
    """Write every country x brand slice, then the manifest, then drop the previous attempt's files."""
    prefix = run_prefix(export_prefix, run_id)
    token = uuid.uuid4().hex[:12]
    before = set(storage.list(prefix))
    exported: list[PartitionExport] = []
    written: list[str] = []
    try:
        for country, brand, rows in warehouse.partitions(result_name):
            stem = f"{prefix}country={country}/brand={brand}/part-{token}"
            files = warehouse.export_partition(result_name, country, brand, fmt, storage, stem)
            written.extend(f.key for f in files)
            exported.append(PartitionExport(country, brand, rows, files))
        total_rows = sum(p.rows for p in exported)
        total_bytes = sum(f.bytes for p in exported for f in p.files)
        manifest_files: list[dict[str, Any]] = [
            {
                "path": f.key.removeprefix(prefix),
                "uri": f.uri,
                "country": p.country,
                "brand": p.brand,
                "rows": f.rows if f.rows is not None else (p.rows if len(p.files) == 1 else None),
                "bytes": f.bytes,
                "sha256": f.sha256,
            }
            for p in exported
            for f in p.files
        ]
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "run_id": run_id,
            "attempt": token,
            "created_at": datetime.now(UTC).isoformat(),
            "format": fmt,
            "compression": "zstd" if fmt == "parquet" else "gzip",
            "rows": total_rows,
            "bytes": total_bytes,
            "schema": [{"name": n, "type": t} for n, t in schema],
            "partitions": [
                {"country": p.country, "brand": p.brand, "rows": p.rows, "files": len(p.files)} for p in exported
            ],
            "files": manifest_files,
            **manifest_fields,
        }
        manifest_uri = storage.put(prefix + MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
    except BaseException as exc:
        for key in written:
            storage.delete(key)
        if isinstance(exc, GuardianError):
            raise
        if isinstance(exc, Exception):
            raise ExportFailed(f"export of run {run_id} failed ({exc}); nothing was left behind, re-run it") from exc
        raise
    # Committed: the previous attempt's files are no longer referenced by the manifest.
    stale = sorted(key for key in before if key not in set(written) and not key.endswith(MANIFEST))
    for key in stale:
        storage.delete(key)
    return ExportResult(
        manifest_uri=manifest_uri,
        output_uri=storage.uri(prefix.rstrip("/")),
        rows=total_rows,
        bytes=total_bytes,
        files=manifest_files,
        replaced=len(stale),
    )


def read_manifest(storage: Storage, export_prefix: str, run_id: str) -> dict[str, Any]:
    """The committed manifest of a run (NotFound when the run has no complete export)."""
    data: dict[str, Any] = json.loads(storage.get(run_prefix(export_prefix, run_id) + MANIFEST))
    return data
