"""Local object storage: atomic puts, write-once, list, keys that escape the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardian.errors import AlreadyExists, NotFound, StorageError
from guardian.storage import LocalStorage, open_storage, put_once_uri, split_uri


def test_put_get_list_delete(tmp_path: Path) -> None:
    s = LocalStorage(f"file://{tmp_path}/root")
    assert s.list() == []
    s.put("a/b/one.json", b"1")
    s.put("a/two.json", b"2")
    s.put("c/three.json", b"3")
    assert s.get("a/b/one.json") == b"1"
    assert s.list("a/") == ["a/b/one.json", "a/two.json"]
    assert s.list() == ["a/b/one.json", "a/two.json", "c/three.json"]
    s.put("a/two.json", b"22")
    assert s.get("a/two.json") == b"22"
    s.delete("a/two.json")
    assert not s.exists("a/two.json")
    with pytest.raises(NotFound):
        s.get("a/two.json")
    assert s.uri("x/y") == f"file://{tmp_path}/root/x/y"


def test_put_once_never_overwrites_and_leaves_no_temp_files(tmp_path: Path) -> None:
    s = LocalStorage(f"file://{tmp_path}")
    s.put_once("k.bin", b"first")
    with pytest.raises(AlreadyExists, match="already exists"):
        s.put_once("k.bin", b"second")
    assert s.get("k.bin") == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["k.bin"]


def test_put_from_file(tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(b"x" * 3_000_000)
    s = LocalStorage(f"file://{tmp_path}/dest")
    s.put_once("big.bin", src)
    assert s.get("big.bin") == src.read_bytes()


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", ""])
def test_keys_may_not_escape_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError, match="relative path"):
        LocalStorage(f"file://{tmp_path}").put(key, b"x")


def test_uris() -> None:
    assert split_uri("gs://bucket/a/b.json") == ("gs://bucket", "a/b.json")
    assert split_uri("file:///tmp/x/y.json") == ("file:///tmp/x", "y.json")
    with pytest.raises(StorageError, match="unsupported"):
        open_storage("s3://bucket")
    with pytest.raises(StorageError, match="no object name"):
        put_once_uri("gs://bucket", b"x")
