"""gs:// storage through the real google-cloud-storage client against fake-gcs-server."""

from __future__ import annotations

import threading
import uuid

import pytest

from guardian.errors import AlreadyExists, NotFound
from guardian.sandbox.fakegcs import FakeGCS
from guardian.settings import load_settings
from guardian.storage import GCSStorage, default_storage


@pytest.fixture
def bucket(fake_gcs: FakeGCS) -> str:
    name = f"guardian-{uuid.uuid4().hex[:10]}"
    fake_gcs.create_bucket(name)
    return name


def test_put_get_list_with_prefix(fake_gcs: FakeGCS, bucket: str) -> None:
    s = GCSStorage(f"gs://{bucket}/backups", endpoint=fake_gcs.endpoint)
    s.put("a/one.json", b"1")
    s.put("a/two.json", b"2")
    s.put("b/three.json", b"3")
    assert s.get("a/one.json") == b"1"
    assert s.list("a/") == ["a/one.json", "a/two.json"]
    assert s.list() == ["a/one.json", "a/two.json", "b/three.json"]
    assert s.uri("a/one.json") == f"gs://{bucket}/backups/a/one.json"
    s.delete("a/one.json")
    with pytest.raises(NotFound):
        s.get("a/one.json")


def test_write_once_is_enforced_by_the_server(fake_gcs: FakeGCS, bucket: str) -> None:
    s = GCSStorage(f"gs://{bucket}", endpoint=fake_gcs.endpoint)
    s.put_once("once.json", b"first")
    with pytest.raises(AlreadyExists):
        s.put_once("once.json", b"second")
    assert s.get("once.json") == b"first"


def test_racing_write_once_puts_have_one_winner(fake_gcs: FakeGCS, bucket: str) -> None:
    s = GCSStorage(f"gs://{bucket}", endpoint=fake_gcs.endpoint)
    outcomes: list[str] = []

    def put(i: int) -> None:
        try:
            s.put_once("race.json", f"writer {i}".encode())
            outcomes.append("won")
        except AlreadyExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 5 + ["won"]


def test_doctor_storage_check_on_gcs(fake_gcs: FakeGCS, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.doctor import run_checks

    monkeypatch.setenv("GUARDIAN_STORAGE__ROOT", f"gs://{bucket}/guardian")
    monkeypatch.setenv("GUARDIAN_STORAGE__GCS_ENDPOINT", fake_gcs.endpoint)
    settings = load_settings()
    assert default_storage(settings).root == f"gs://{bucket}/guardian"
    [result] = run_checks(settings, ["storage"])
    assert result.status == "OK", result.detail
    assert default_storage(settings).list() == []  # the probe object was removed


def test_doctor_reports_a_missing_bucket_with_the_fix(fake_gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.doctor import run_checks

    monkeypatch.setenv("GUARDIAN_STORAGE__ROOT", "gs://no-such-bucket-here")
    monkeypatch.setenv("GUARDIAN_STORAGE__GCS_ENDPOINT", fake_gcs.endpoint)
    [result] = run_checks(load_settings(), ["storage"])
    assert result.status == "FAIL"
    assert "gs://no-such-bucket-here" in result.detail
    assert "GUARDIAN_STORAGE__ROOT" in result.fix


def test_audit_export_to_gcs(fake_gcs: FakeGCS, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from datetime import date

    from guardian import audit

    monkeypatch.setenv("GUARDIAN_STORAGE__GCS_ENDPOINT", fake_gcs.endpoint)
    for i in range(3):
        audit.record("test.export", f"row:{i}")
    uri, written = audit.export(date(2000, 1, 1), f"gs://{bucket}/audit/")
    assert written == 3 and uri.startswith(f"gs://{bucket}/audit/audit-2000-01-01-to-")
    body = GCSStorage(f"gs://{bucket}", endpoint=fake_gcs.endpoint).get(uri.removeprefix(f"gs://{bucket}/"))
    assert [json.loads(line)["target"] for line in body.decode().splitlines()] == ["row:0", "row:1", "row:2"]
