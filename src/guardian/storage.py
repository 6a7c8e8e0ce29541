"""Object storage: ``gs://`` (google-cloud-storage) and ``file://`` (a local folder).

One small interface for backups, exports and audit exports: put, get, list with a prefix,
delete, and a write-once put that raises :class:`AlreadyExists` instead of overwriting
(``if_generation_match=0`` on Cloud Storage, an exclusive link on a local folder). Local
writes are atomic: a reader never sees a half-written file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from guardian.errors import AlreadyExists, NotFound, StorageError

if TYPE_CHECKING:
    from guardian.settings import Settings


@dataclass(frozen=True)
class ObjectHash:
    """An object's size and checksums (hex), as Cloud Storage keeps them in its metadata.

    ``md5`` is None for a composite object: Cloud Storage keeps only a CRC32C for those
    (https://cloud.google.com/storage/docs/hashes-etags).
    """

    size: int
    md5: str | None
    crc32c: str


class Storage(Protocol):
    """A bucket-like place addressed by keys relative to its root URI."""

    root: str

    def put(self, key: str, data: bytes | Path) -> str: ...
    def put_once(self, key: str, data: bytes | Path) -> str: ...
    def get(self, key: str) -> bytes: ...
    def download(self, key: str, path: Path) -> None: ...
    def hash(self, key: str) -> ObjectHash: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def uri(self, key: str) -> str: ...


def _clean_key(key: str) -> str:
    path = PurePosixPath(key)
    if not key or key.startswith("/") or ".." in path.parts:
        raise StorageError(f"storage key {key!r} is not a relative path without '..'; fix the key")
    return str(path)


class LocalStorage:
    """A folder on this machine (``file:///abs/path``), the embedded default."""

    def __init__(self, root: str) -> None:
        if not root.startswith("file:///"):
            raise StorageError(f"{root}: local storage roots look like file:///absolute/path")
        self.root = root.rstrip("/")
        self.base = Path(self.root.removeprefix("file://"))

    def _path(self, key: str) -> Path:
        return self.base / _clean_key(key)

    def uri(self, key: str) -> str:
        return f"{self.root}/{_clean_key(key)}"

    @contextlib.contextmanager
    def _staged(self, key: str, data: bytes | Path) -> Iterator[tuple[Path, Path]]:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, Path):
                    with data.open("rb") as source:
                        shutil.copyfileobj(source, handle, 1024 * 1024)
                else:
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            yield tmp, target
        finally:
            tmp.unlink(missing_ok=True)

    def put(self, key: str, data: bytes | Path) -> str:
        with self._staged(key, data) as (tmp, target):
            os.replace(tmp, target)
        return self.uri(key)

    def put_once(self, key: str, data: bytes | Path) -> str:
        with self._staged(key, data) as (tmp, target):
            try:
                # link() is atomic and fails if the name exists: an exclusive create of a
                # complete file.
                os.link(tmp, target)
            except FileExistsError:
                raise AlreadyExists(
                    f"{self.uri(key)} already exists; write-once objects are never overwritten"
                ) from None
        return self.uri(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{self.uri(key)} does not exist") from None

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise NotFound(f"{self.uri(key)} does not exist") from None

    def hash(self, key: str) -> ObjectHash:
        """Size, MD5 and CRC32C of the stored file, computed from its bytes where it lies."""
        import google_crc32c

        md5 = hashlib.md5(usedforsecurity=False)
        crc = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        try:
            with self._path(key).open("rb") as handle:
                for chunk in iter(lambda: handle.read(1024 * 1024), b""):
                    md5.update(chunk)
                    crc.update(chunk)  # type: ignore[no-untyped-call]
                size = handle.tell()
        except FileNotFoundError:
            raise NotFound(f"{self.uri(key)} does not exist") from None
        return ObjectHash(size, md5.hexdigest(), bytes(crc.digest()).hex())  # type: ignore[no-untyped-call]

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        if not self.base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(self.base):
            for name in files:
                if name.startswith(".tmp-"):
                    continue
                key = str(PurePosixPath(Path(dirpath, name).relative_to(self.base)))
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class GCSStorage:
    """A Cloud Storage bucket and optional prefix (``gs://bucket/prefix``)."""

    def __init__(
        self,
        root: str,
        *,
        endpoint: str | None = None,
        project: str | None = None,
        timeout: int = 60,
    ) -> None:
        bucket_and_prefix = root.removeprefix("gs://").rstrip("/")
        bucket, _, prefix = bucket_and_prefix.partition("/")
        if not bucket:
            raise StorageError(f"{root}: no bucket; use gs://BUCKET/optional/prefix")
        self.root = root.rstrip("/")
        self.bucket_name = bucket
        self.prefix = prefix
        self.timeout = timeout
        self._endpoint = endpoint
        self._project = project
        self._local = threading.local()

    @property
    def _bucket(self) -> Any:
        # One client per thread: the client's HTTP session is not thread-safe.
        bucket = getattr(self._local, "bucket", None)
        if bucket is None:
            from google.cloud import storage as gcs  # type: ignore[attr-defined]

            if self._endpoint:
                from google.auth.credentials import AnonymousCredentials

                client = gcs.Client(
                    project=self._project or "guardian-local",
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                    client_options={"api_endpoint": self._endpoint},
                )
            else:
                client = gcs.Client(project=self._project)
            bucket = client.bucket(self.bucket_name)
            self._local.bucket = bucket
        return bucket

    def _name(self, key: str) -> str:
        key = _clean_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._name(key)}"

    def _upload(self, key: str, data: bytes | Path, **preconditions: Any) -> str:
        from google.api_core import exceptions as gexc

        blob = self._bucket.blob(self._name(key))
        try:
            if isinstance(data, Path):
                blob.upload_from_filename(str(data), timeout=self.timeout, **preconditions)
            else:
                blob.upload_from_string(data, timeout=self.timeout, **preconditions)
        except gexc.PreconditionFailed:
            raise AlreadyExists(f"{self.uri(key)} already exists; write-once objects are never overwritten") from None
        except gexc.GoogleAPIError as exc:
            raise StorageError(
                f"{self.uri(key)}: upload failed ({_short(exc)}); check the bucket and credentials"
            ) from exc
        return self.uri(key)

    def put(self, key: str, data: bytes | Path) -> str:
        return self._upload(key, data)

    def put_once(self, key: str, data: bytes | Path) -> str:
        # Generation 0 means "only if no live object has this name": the server decides,
        # so two writers racing on one key cannot both win.
        return self._upload(key, data, if_generation_match=0)

    def get(self, key: str) -> bytes:
        from google.api_core import exceptions as gexc

        try:
            return bytes(self._bucket.blob(self._name(key)).download_as_bytes(timeout=self.timeout))
        except gexc.NotFound:
            raise NotFound(f"{self.uri(key)} does not exist") from None
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"{self.uri(key)}: download failed ({_short(exc)})") from exc

    def download(self, key: str, path: Path) -> None:
        from google.api_core import exceptions as gexc

        try:
            self._bucket.blob(self._name(key)).download_to_filename(str(path), timeout=self.timeout)
        except gexc.NotFound:
            raise NotFound(f"{self.uri(key)} does not exist") from None

    def hash(self, key: str) -> ObjectHash:
        """Size, MD5 and CRC32C from the object's metadata (one objects.get; nothing is downloaded).

        The object resource's ``size``, ``md5Hash`` and ``crc32c`` (base64, big-endian CRC32C)
        (https://cloud.google.com/storage/docs/json_api/v1/objects#resource).
        """
        from google.api_core import exceptions as gexc

        try:
            blob = self._bucket.get_blob(self._name(key), timeout=self.timeout)
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"{self.uri(key)}: metadata read failed ({_short(exc)})") from exc
        if blob is None:
            raise NotFound(f"{self.uri(key)} does not exist")
        md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
        return ObjectHash(int(blob.size or 0), md5, base64.b64decode(blob.crc32c or "").hex())

    def exists(self, key: str) -> bool:
        return bool(self._bucket.blob(self._name(key)).exists(timeout=self.timeout))

    def list(self, prefix: str = "") -> list[str]:
        from google.api_core import exceptions as gexc

        full = self._name(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        if prefix.endswith("/") and not full.endswith("/"):
            full += "/"
        strip = f"{self.prefix}/" if self.prefix else ""
        try:
            blobs = self._bucket.client.list_blobs(self.bucket_name, prefix=full, timeout=self.timeout)
            return sorted(blob.name.removeprefix(strip) for blob in blobs)
        except gexc.GoogleAPIError as exc:
            raise StorageError(f"{self.root}: list failed ({_short(exc)}); check the bucket and credentials") from exc

    def delete(self, key: str) -> None:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(self._name(key)).delete(timeout=self.timeout)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]


def open_storage(root: str, settings: Settings | None = None) -> Storage:
    """Storage for a root URI; Cloud Storage options come from the settings."""
    if root.startswith("file://"):
        return LocalStorage(root)
    if root.startswith("gs://"):
        if settings is None:
            from guardian.settings import load_settings

            settings = load_settings()
        return GCSStorage(
            root,
            endpoint=settings.storage.gcs_endpoint,
            project=settings.storage.gcs_project,
            timeout=settings.storage.timeout,
        )
    raise StorageError(f"{root}: unsupported storage URI; use gs://bucket/prefix or file:///absolute/path")


def default_storage(settings: Settings | None = None) -> Storage:
    """Storage at the configured root (GUARDIAN_STORAGE__ROOT, else a folder under data_dir)."""
    if settings is None:
        from guardian.settings import load_settings

        settings = load_settings()
    return open_storage(settings.storage_root, settings)


def split_uri(uri: str) -> tuple[str, str]:
    """Split an object URI into (root, key): the bucket or the file's folder, and the rest."""
    if uri.startswith("gs://"):
        bucket, _, key = uri.removeprefix("gs://").partition("/")
        return f"gs://{bucket}", key
    if uri.startswith("file:///"):
        path = PurePosixPath(uri.removeprefix("file://"))
        return f"file://{path.parent}", path.name
    raise StorageError(f"{uri}: unsupported storage URI; use gs://bucket/key or file:///absolute/path")


def put_once_uri(uri: str, data: bytes | Path, settings: Settings | None = None) -> str:
    """Write-once put to a full object URI."""
    root, key = split_uri(uri)
    if not key:
        raise StorageError(f"{uri}: no object name; add a file name or end the URI with '/'")
    return open_storage(root, settings).put_once(key, data)
