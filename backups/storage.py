"""Where backup objects live: S3 (or S3-compatible) through boto3, or a local directory.

Both take a readable stream and never need the whole object in memory or on disk
(S3 uploads are multipart with a bounded number of parts in memory).  A failed
upload leaves nothing behind: s3transfer aborts its multipart upload, the local
store removes its ``.partial`` file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any, Protocol

from django.conf import settings

from backups.models import BackupPolicy

Readable = IO[bytes] | io.RawIOBase


class StorageError(Exception):
    """The object store refused or lost something."""


class Storage(Protocol):
    def put(self, key: str, stream: Readable) -> str:
        """Store ``stream`` under ``key``; returns the version id (``""`` if unversioned)."""
        ...

    def open(self, key: str, version_id: str = "") -> IO[bytes]:
        """A readable stream of the object."""
        ...

    def size(self, key: str, version_id: str = "") -> int | None:
        """Size in bytes, or None when the object does not exist."""
        ...

    def delete(self, key: str, version_id: str = "") -> None: ...

    def abort_incomplete(self, key: str) -> int:
        """Remove leftovers of an interrupted upload of ``key``; returns how many were removed."""
        ...


def describe(policy: BackupPolicy) -> dict[str, Any]:
    """The storage location recorded on each catalog row (no secrets), so later reads need no policy."""
    if policy.storage_kind == BackupPolicy.StorageKind.S3:
        return {
            "kind": "s3",
            "bucket": policy.s3_bucket,
            "endpoint_url": policy.s3_endpoint_url,
            "region": policy.s3_region,
        }
    return {"kind": "local", "path": policy.local_path}


def from_description(desc: dict[str, Any]) -> Storage:
    if desc.get("kind") == "s3":
        return S3Storage(
            bucket=desc["bucket"],
            endpoint_url=desc.get("endpoint_url") or None,
            region=desc.get("region") or None,
        )
    if desc.get("kind") == "local":
        return LocalStorage(Path(desc["path"]))
    raise StorageError(f"unknown storage {desc.get('kind')!r}")


class S3Storage:
    """S3 via boto3; credentials from the environment / default chain only."""

    def __init__(self, *, bucket: str, endpoint_url: str | None = None, region: str | None = None) -> None:
        import boto3

        self.bucket = bucket
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region or None
        )

    def transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        concurrency = settings.BACKUPS_UPLOAD_CONCURRENCY
        config = TransferConfig(
            multipart_threshold=settings.BACKUPS_MULTIPART_THRESHOLD_BYTES,
            multipart_chunksize=settings.BACKUPS_MULTIPART_CHUNK_BYTES,
            max_concurrency=concurrency,
            use_threads=True,
            preferred_transfer_client="classic",
        )
        # Parts of a non-seekable stream are held in memory: this bounds the worker's RSS.
        config.max_in_memory_upload_chunks = concurrency
        return config

    def put(self, key: str, stream: Readable) -> str:
        self.client.upload_fileobj(stream, self.bucket, key, Config=self.transfer_config())
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        return str(head.get("VersionId") or "")

    def _version(self, version_id: str) -> dict[str, str]:
        return {"VersionId": version_id} if version_id else {}

    def open(self, key: str, version_id: str = "") -> IO[bytes]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key, **self._version(version_id))
        except self.client.exceptions.NoSuchKey as exc:
            raise StorageError(f"s3://{self.bucket}/{key} does not exist") from exc
        body: IO[bytes] = obj["Body"]
        return body

    def size(self, key: str, version_id: str = "") -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, **self._version(version_id))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def delete(self, key: str, version_id: str = "") -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key, **self._version(version_id))

    def abort_incomplete(self, key: str) -> int:
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])
        mine = [u for u in uploads if u["Key"] == key]
        for upload in mine:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
        return len(mine)


class LocalStorage:
    """A directory (a mounted volume, NFS...). Objects appear atomically by rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} escapes the storage directory")
        return path

    def _partial(self, key: str) -> Path:
        path = self._path(key)
        return path.with_name(path.name + ".partial")

    def put(self, key: str, stream: Readable) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._partial(key)
        try:
            with partial.open("wb") as out:
                while chunk := stream.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return ""

    def open(self, key: str, version_id: str = "") -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise StorageError(f"{key} does not exist in {self.root}") from exc

    def size(self, key: str, version_id: str = "") -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.exists() else None

    def delete(self, key: str, version_id: str = "") -> None:
        self._path(key).unlink(missing_ok=True)

    def abort_incomplete(self, key: str) -> int:
        partial = self._partial(key)
        if partial.exists():
            partial.unlink()
            return 1
        return 0
