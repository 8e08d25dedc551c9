"""Verification and restores: corrupted objects are caught before anything is touched."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from backups import services
from backups.models import Backup, BackupPolicy, Restore
from controlplane.api.errors import Conflict
from controlplane.models import AuditEntry
from tests.backups.conftest import fill_sample, fingerprint
from tests.backups.test_pipeline import run_now


def corrupt(bucket: tuple[str, Any], backup: Backup) -> None:
    """Flip one byte in the middle of the stored object, keeping its size."""
    name, client = bucket
    body = bytearray(client.get_object(Bucket=name, Key=backup.storage_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    client.put_object(Bucket=name, Key=backup.storage_key, Body=bytes(body))


@pytest.fixture
def target(scratch_db: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A live database holding other data, reachable through the BK_TARGET_DSN variable."""
    dsn = scratch_db("target")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE customers (id int, name text); INSERT INTO customers VALUES (1, 'newer data')"
        )
        conn.execute("CREATE TABLE only_in_target (x int); INSERT INTO only_in_target VALUES (42)")
    monkeypatch.setenv("BK_TARGET_DSN", dsn)
    return dsn, psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]  # type: ignore[return-value]


def test_a_corrupted_object_fails_verification_and_the_api_refuses_to_restore(
    s3_policy: BackupPolicy, bucket: tuple[str, Any], target: tuple[str, str], api: Any
) -> None:
    backup = run_now(s3_policy)
    assert backup.verify_status == Backup.Check.OK
    corrupt(bucket, backup)

    check = services.backup_verify(backup=backup)

    assert check.status == "failed"
    assert "checksum mismatch" in check.error
    backup.refresh_from_db()
    assert backup.verify_status == Backup.Check.FAILED
    assert backup.events.filter(kind="notification", details__kind="verification").exists()
    response = api("admin").post(
        "/api/v1/restores/",
        {"backup": backup.pk, "target_dsn_env": "BK_TARGET_DSN", "confirm": target[1]},
        format="json",
    )
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "conflict"
    assert not Restore.objects.exists()


def test_restore_of_a_corrupted_object_stops_before_touching_the_target(
    s3_policy: BackupPolicy, bucket: tuple[str, Any], target: tuple[str, str]
) -> None:
    backup = run_now(s3_policy)
    restore = services.restore_request(
        backup=backup, confirm=target[1], target_dsn_env="BK_TARGET_DSN", enqueue=False
    )
    before = fingerprint(target[0])
    corrupt(bucket, backup)

    services.restore_execute(restore=restore)

    assert restore.status == Restore.Status.FAILED
    assert "checksum" in restore.error and "not touched" in restore.error
    assert restore.safety_backup is None
    assert fingerprint(target[0]) == before
    assert "verifying" in restore.log and "failed" in restore.log


def test_restore_reproduces_the_backed_up_data_exactly_after_a_safety_backup(
    s3_policy: BackupPolicy, target: tuple[str, str], source_db: str, api: Any
) -> None:
    backup = run_now(s3_policy)
    before_target = fingerprint(target[0])
    admin = api("admin")
    response = admin.post(
        "/api/v1/restores/",
        {"backup": backup.pk, "target_dsn_env": "BK_TARGET_DSN", "confirm": target[1], "reason": "drill day"},
        format="json",
    )
    assert response.status_code == 202, response.content
    restore = Restore.objects.get(pk=response.json()["id"])
    assert restore.target_name == target[1] and restore.requested_by == admin.user.username

    services.restore_execute(restore=restore)

    assert restore.status == Restore.Status.SUCCEEDED, restore.error
    # --clean drops what the dump contains; tables only in the target stay (pg_restore semantics).
    restored = fingerprint(target[0])
    assert {k: v for k, v in restored.items() if k != "public.only_in_target"} == fingerprint(source_db)
    assert restore.safety_backup_id is not None
    safety = Backup.objects.get(pk=restore.safety_backup_id)
    assert safety.trigger == Backup.Trigger.SAFETY and safety.status == Backup.Status.SUCCEEDED
    assert safety.source_name == target[1]
    assert safety.row_counts == {k: int(v.split(":")[0]) for k, v in before_target.items()}
    assert AuditEntry.objects.filter(action="restore.request", object_id=str(restore.pk)).exists()
    assert AuditEntry.objects.filter(action="restore.succeeded", object_id=str(restore.pk)).exists()
    detail = admin.get(f"/api/v1/restores/{restore.pk}/").json()
    assert detail["status"] == "succeeded" and "restore complete" in detail["log"]


def test_restore_needs_the_admin_role_and_the_exact_target_name(
    local_policy: BackupPolicy, target: tuple[str, str], api: Any
) -> None:
    backup = run_now(local_policy)
    body = {"backup": backup.pk, "target_dsn_env": "BK_TARGET_DSN", "confirm": target[1]}
    assert api("operator").post("/api/v1/restores/", body, format="json").status_code == 403
    assert api("operator").get("/api/v1/restores/").status_code == 403
    wrong = api("admin").post("/api/v1/restores/", {**body, "confirm": target[1].upper()}, format="json")
    assert wrong.status_code == 400
    assert "confirm" in wrong.json()["details"]
    unset = api("admin").post("/api/v1/restores/", {**body, "target_dsn_env": "BK_NOT_SET"}, format="json")
    assert unset.status_code == 400
    assert not Restore.objects.exists()


def test_a_restore_that_fails_midway_leaves_the_target_unchanged(
    local_policy: BackupPolicy, scratch_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source whose dump cannot load into the target: a table there depends on one the dump drops.
    backup = run_now(local_policy)
    dsn = scratch_db("blocked")
    fill_sample(dsn, events=10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW customer_names AS SELECT name FROM customers")
    monkeypatch.setenv("BK_BLOCKED_DSN", dsn)
    before = fingerprint(dsn)
    restore = services.restore_request(
        backup=backup,
        confirm=str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]),
        target_dsn_env="BK_BLOCKED_DSN",
        enqueue=False,
    )
    services.restore_execute(restore=restore)
    assert restore.status == Restore.Status.FAILED
    assert "pg_restore exited" in restore.error
    assert fingerprint(dsn) == before
    failed = Backup.objects.create(policy=local_policy, status=Backup.Status.FAILED, source_kind="postgres")
    with pytest.raises(Conflict):
        services.restore_request(backup=failed, confirm=restore.target_name, target_dsn_env="BK_BLOCKED_DSN")


def test_a_checksum_failure_at_the_end_of_the_stream_keeps_pg_restore_from_committing(
    local_policy: BackupPolicy, scratch_db: Any
) -> None:
    from pathlib import Path

    from backups import pipeline

    backup = run_now(local_policy)
    dsn = scratch_db("uncommitted")
    read = pipeline.ReadResult()
    chunks = pipeline.read_back(
        (Path(local_policy.local_path) / backup.storage_key).open("rb"), compression="zstd", result=read
    )

    def reject() -> None:
        assert read.sha256 == backup.sha256  # the whole object was read and hashed by now
        raise pipeline.PipelineError("checksum mismatch (simulated)")

    with pytest.raises(pipeline.PipelineError, match="simulated"):
        pipeline.pg_restore(chunks, dsn=dsn, extra=[], before_commit=reject)
    assert fingerprint(dsn) == {}
