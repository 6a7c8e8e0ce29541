"""Export a run's result to storage with a manifest written last.

Layout under the destination root::

    sales/run_id=<run>/country=<c>/brand=<b>/part-<attempt>-00000.parquet
    sales/run_id=<run>/_manifest.json
    sales/run_id=<run>/_staging-<step>-<attempt>/...  (only while a step reads it: BigQuery's extract of the result)

The manifest is the commit point: it lists exactly the files of one attempt (rows, bytes,
the storage's MD5 each), the schema, the query hash, the params, and every job of the run with
its bytes. A reader that starts from the manifest never sees a half export:

1. every file of the attempt is written under the attempt token (derived from the run and the
   job that produced the result, so a retry rewrites the same keys; other attempts' files stay);
2. the files are reconciled with the result (``gate``), which may refuse the commit;
3. the manifest is replaced in one put (an atomic rename locally, one object on GCS);
4. only then are the previous attempts' files under this run's prefix deleted.

If anything fails before step 2, the new attempt's files are deleted and the previous
export (if any) is untouched; a first attempt leaves nothing at all. Nothing outside
``run_id=<run>/`` is ever listed or deleted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guardian.errors import GuardianError
from guardian.sales.warehouse import LocalCopy, PartitionExport, write_slices
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


def staging_prefix(export_prefix: str, run_id: str, step: str, token: str) -> str:
    """Where a step of the run stages BigQuery's extract of the result (deleted when it is read)."""
    return f"{run_prefix(export_prefix, run_id)}_staging-{step}-{token}/"


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
    local: LocalCopy,
    storage: Storage,
    *,
    export_prefix: str,
    run_id: str,
    token: str,
    fmt: str,
    slices: list[tuple[str, str, int]],
    gate: Callable[[list[PartitionExport]], None],
    manifest_fields: Callable[[], dict[str, Any]],
    schema: list[tuple[str, str]],
) -> ExportResult:
    """Write every country x brand slice of the local copy, reconcile, then the manifest, then drop earlier files."""
    prefix = run_prefix(export_prefix, run_id)
    before = set(storage.list(prefix))
    written: list[str] = []
    try:
        exported = write_slices(
            local.con,
            "result",
            local.folder,
            fmt,
            slices,
            storage,
            lambda country, brand: f"{prefix}country={country}/brand={brand}/part-{token}",
        )
        written.extend(f.key for p in exported for f in p.files)
        gate(exported)
        total_rows = sum(p.rows for p in exported)
        total_bytes = sum(f.bytes for p in exported for f in p.files)
        manifest_files: list[dict[str, Any]] = [
            {
                "path": f.key.removeprefix(prefix),
                "uri": f.uri,
                "country": p.country,
                "brand": p.brand,
                "rows": f.rows,
                "bytes": f.bytes,
                "md5": f.md5,
                "crc32c": f.crc32c,
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
            **manifest_fields(),
        }
        manifest_uri = storage.put(prefix + MANIFEST, json.dumps(manifest, indent=2, default=str).encode())
    except BaseException as exc:
        # This attempt's files (also those of slices written before the failure) go; earlier ones stay.
        ours = {k for k in storage.list(prefix) if f"/part-{token}-" in k}
        for key in set(written) | ours:
            if key not in before:
                storage.delete(key)
        if isinstance(exc, GuardianError):
            raise
        if isinstance(exc, Exception):
            raise ExportFailed(f"export of run {run_id} failed ({exc}); nothing was left behind, re-run it") from exc
        raise
    # Committed: the previous attempts' files are no longer referenced by the manifest.
    stale = sorted(key for key in before if key not in set(written) and not key.endswith(MANIFEST))
    for key in stale:
        storage.delete(key)
    return ExportResult(
        manifest_uri=manifest_uri,
        output_uri=storage.uri(prefix.rstrip("/")),
        rows=total_rows,
        bytes=total_bytes,
        files=manifest_files,
        replaced=sum(1 for key in stale if "/_staging-" not in key),  # staged extracts are not exports
    )
