"""The streaming pipeline against real pg_dump, real PostgreSQL and a moto S3 server."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from backups import pipeline, services, storage
from backups.models import Backup, BackupPolicy
from tests.backups.conftest import PART, fingerprint


def run_now(policy: BackupPolicy) -> Backup:
    backup = services.backup_request(policy=policy, enqueue=False)
    return services.backup_execute(backup=backup)


def test_pg_client_matches_the_server(source_db: str) -> None:
    import psycopg

    with psycopg.connect(source_db) as conn:
        server_major = conn.info.server_version // 10000
    assert f"(PostgreSQL) {server_major}." in pipeline.tool_version("pg_dump")
    assert f"(PostgreSQL) {server_major}." in pipeline.tool_version("pg_restore")


def test_backup_to_s3_streams_multipart_and_records_the_catalog_row(
    s3_policy: BackupPolicy, bucket: tuple[str, Any], big_source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BK_SOURCE_DSN", big_source_db)
    backup = run_now(s3_policy)

    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    name, client = bucket
    assert backup.storage_key.startswith(f"nightly/{s3_policy.name}/")
    assert backup.storage_key.endswith(".dump.zst")
    head = client.head_object(Bucket=name, Key=backup.storage_key)
    # A multipart upload's ETag is "<md5 of part md5s>-<number of parts>".
    parts = int(head["ETag"].strip('"').split("-")[1])
    assert parts >= 2 and head["ContentLength"] == backup.stored_bytes
    assert backup.stored_bytes is not None and backup.stored_bytes > PART

    body = client.get_object(Bucket=name, Key=backup.storage_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == backup.sha256
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    assert raw.startswith(b"PGDMP") and len(raw) == backup.raw_bytes
    assert backup.stored_bytes is not None and backup.raw_bytes is not None
    assert backup.stored_bytes < backup.raw_bytes

    assert backup.row_counts == {
        "billing.invoices": 300,
        "public.customers": 500,
        "public.empty_table": 0,
        "public.events": 20000,
        "public.noise": 200_000,
    }
    assert "15." in backup.pg_dump_version and backup.server_version.startswith("15.")
    assert backup.source_name.startswith("cp_bk_big_")
    assert backup.duration_seconds and backup.duration_seconds > 0
    assert backup.throughput_bytes_per_second and backup.throughput_bytes_per_second > 0
    assert backup.storage == {
        "kind": "s3",
        "bucket": name,
        "endpoint_url": s3_policy.s3_endpoint_url,
        "region": "us-east-1",
    }
    # verify_after_backup read it back.
    assert backup.verify_status == Backup.Check.OK
    assert [e.to_status for e in backup.events.filter(kind="status")] == ["running", "succeeded"]


def test_gzip_compression_to_local_directory(local_policy: BackupPolicy) -> None:
    services.policy_update(policy=local_policy, compression="gzip", compression_level=6)
    backup = run_now(local_policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    path = Path(local_policy.local_path) / backup.storage_key
    assert path.name.endswith(".dump.gz")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == backup.sha256
    listing = subprocess.run(
        ["pg_restore", "--list"], input=__import__("gzip").decompress(data), capture_output=True, check=True
    ).stdout.decode()
    assert "TABLE DATA public events" in listing
    assert not list(path.parent.glob("*.partial"))


def test_directory_source_is_a_streamed_tar(db: Any, tmp_path: Path) -> None:
    src = tmp_path / "cache"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "nested" / "b.bin").write_bytes(bytes(range(256)) * 100)
    policy = services.policy_create(
        name="noodle-cache",
        source_kind="directory",
        source_path=str(src),
        storage_kind="local",
        local_path=str(tmp_path / "store"),
        drill_schedule="",
    )
    backup = run_now(policy)
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert backup.storage_key.endswith(".tar.zst")
    data = (tmp_path / "store" / backup.storage_key).read_bytes()
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert tar.extractfile("./a.txt").read() == b"alpha\n"  # type: ignore[union-attr]
        assert tar.extractfile("./nested/b.bin").read() == bytes(range(256)) * 100  # type: ignore[union-attr]


def test_a_source_that_fails_leaves_a_failed_row_with_the_error(
    local_policy: BackupPolicy, monkeypatch: pytest.MonkeyPatch, source_db: str
) -> None:
    monkeypatch.setenv("BK_SOURCE_DSN", source_db.replace("dbname=cp_bk_src", "dbname=cp_bk_missing"))
    backup = run_now(local_policy)
    assert backup.status == Backup.Status.FAILED
    assert "does not exist" in backup.error
    assert not backup.sha256
    assert backup.events.filter(kind="notification").exists()
    assert not any(Path(local_policy.local_path).rglob("*.dump.zst"))


def test_failure_mid_upload_aborts_the_multipart_upload(
    moto: Any, bucket: tuple[str, Any], small_parts: int, big_source_db: str
) -> None:
    name, client = bucket
    dumped = pipeline.SourceResult()

    def dump_then_break() -> Any:
        sent = 0
        for chunk in pipeline.postgres_source(big_source_db, dumped):
            yield chunk
            sent += len(chunk)
            if sent > 5 * PART:  # raw bytes; about 2.5 parts once compressed
                raise pipeline.PipelineError("source broke mid-stream")

    store = storage.S3Storage(bucket=name, endpoint_url=moto.url, region="us-east-1")
    stream = pipeline.CompressedStream(dump_then_break(), pipeline.compressor("gzip", 1))
    with pytest.raises(pipeline.PipelineError, match="mid-stream"):
        store.put("broken/key.dump.gz", stream)
    assert stream.stored_bytes >= 2 * PART  # whole parts went out before the failure
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert store.size("broken/key.dump.gz") is None


def test_restore_drill_reproduces_the_recorded_row_counts_and_drops_the_scratch_db(
    s3_policy: BackupPolicy, source_db: str
) -> None:
    import psycopg

    backup = run_now(s3_policy)
    check = services.backup_drill(backup=backup)
    assert check.status == "passed", check.error
    assert check.details["time_to_restore_seconds"] > 0
    assert check.details["mismatches"] == {}
    assert check.details["rows"] == 20800
    backup.refresh_from_db()
    assert backup.drill_status == Backup.Check.OK and backup.drilled_at is not None
    with psycopg.connect(source_db) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'cp_drill_%'").fetchone()
    assert left == (0,)
    assert fingerprint(source_db)["public.events"].startswith("20000:")


def test_drill_fails_when_restored_counts_differ(local_policy: BackupPolicy) -> None:
    backup = run_now(local_policy)
    Backup.objects.filter(pk=backup.pk).update(row_counts={**backup.row_counts, "public.events": 19999})
    backup.refresh_from_db()
    check = services.backup_drill(backup=backup)
    assert check.status == "failed"
    assert check.details["mismatches"] == {"public.events": {"expected": 19999, "restored": 20000}}
    backup.refresh_from_db()
    assert backup.drill_status == Backup.Check.FAILED
    assert backup.events.filter(kind="notification", details__kind="drill").exists()
