"""Storage.hash, which the sales export's manifest takes its checksums from, on gs:// and file://.

Cloud Storage's answer comes from fake-gcs-server's object metadata; the local folder's from the
file's bytes. Both must equal checksums computed here from the bytes, in the same convention
(hex MD5, hex big-endian CRC32C), so a manifest reads the same whichever store holds the files.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import google_crc32c
import pytest

from guardian.errors import NotFound
from guardian.sandbox.fakegcs import FakeGCS
from guardian.storage import GCSStorage, LocalStorage, ObjectHash


def _expected(data: bytes) -> ObjectHash:
    return ObjectHash(len(data), hashlib.md5(data).hexdigest(), google_crc32c.value(data).to_bytes(4, "big").hex())


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 * 1024 + 7])
def test_hash_of_gcs_and_local_objects_match_their_bytes(fake_gcs: FakeGCS, tmp_path: Path, size: int) -> None:
    bucket = f"guardian-{uuid.uuid4().hex[:10]}"
    fake_gcs.create_bucket(bucket)
    data = os.urandom(size)
    gcs = GCSStorage(f"gs://{bucket}/exports", endpoint=fake_gcs.endpoint)
    local = LocalStorage(f"file://{tmp_path}")
    for store in (gcs, local):
        store.put("sales/run_id=r/part-0.parquet", data)
        assert store.hash("sales/run_id=r/part-0.parquet") == _expected(data)
        with pytest.raises(NotFound):
            store.hash("sales/run_id=r/missing.parquet")
    # A changed object has changed checksums (nothing is cached).
    gcs.put("sales/run_id=r/part-0.parquet", data + b"x")
    assert gcs.hash("sales/run_id=r/part-0.parquet") == _expected(data + b"x")
