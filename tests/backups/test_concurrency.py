"""Overlapping runs and a worker killed mid-upload, with real processes."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from django.db import connection

from backups import services
from backups.models import Backup, BackupPolicy
from backups.tasks import run_backup
from tests.backups.conftest import GatedProxy
from tests.conftest import wait_for


def test_two_runs_at_once_record_one_skipped(
    transactional_db: Any, local_policy: BackupPolicy, source_db: str
) -> None:
    first = services.backup_request(policy=local_policy, enqueue=False)
    second = services.backup_request(policy=local_policy, enqueue=False)
    # Hold the first run inside pg_dump: it waits for a table this test keeps locked.
    blocker = psycopg.connect(source_db)
    blocker.execute("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")

    def run_first() -> None:
        try:
            services.backup_execute(backup=first)
        finally:
            connection.close()

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        wait_for(lambda: Backup.objects.get(pk=first.pk).status == Backup.Status.RUNNING, timeout=30)
        services.backup_execute(backup=second)
        assert second.status == Backup.Status.SKIPPED
        assert f"(#{first.pk})" in second.error
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=60)
    first.refresh_from_db()
    assert first.status == Backup.Status.SUCCEEDED, first.error
    assert second.events.get(kind="status").to_status == "skipped"


@pytest.mark.worker
def test_worker_killed_mid_upload_leaves_no_succeeded_row_and_the_next_run_succeeds(
    celery_worker_factory: Any,
    moto: Any,
    bucket: tuple[str, Any],
    big_source_db: str,
    small_parts: int,
    gated_proxy: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BK_SOURCE_DSN", big_source_db)
    name, s3 = bucket
    proxy: GatedProxy = gated_proxy(small_parts + small_parts // 2)
    policy = services.policy_create(
        name="killed",
        source_dsn_env="BK_SOURCE_DSN",
        storage_kind="s3",
        s3_bucket=name,
        s3_endpoint_url=proxy.url,
        s3_region="us-east-1",
    )
    worker = celery_worker_factory()
    doomed = services.backup_request(policy=policy, enqueue=False)
    run_backup.delay(doomed.pk)

    # The upload is under way: multipart upload created, a part through, the rest held at the proxy.
    wait_for(proxy.blocked.is_set, timeout=90)
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads"), worker.output()
    assert Backup.objects.get(pk=doomed.pk).status == Backup.Status.RUNNING
    worker.kill()
    proxy.release()

    def lock_released() -> bool:
        with psycopg.connect(services.pipeline.resolve_dsn(db_alias="default")) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                (services.LOCK_NAMESPACE, policy.pk),
            ).fetchone()
            return row == (0,)

    wait_for(lock_released, timeout=30)
    assert not Backup.objects.filter(policy=policy, status=Backup.Status.SUCCEEDED).exists()

    following = services.backup_request(policy=policy, enqueue=False)
    services.backup_execute(backup=following)

    assert following.status == Backup.Status.SUCCEEDED, following.error
    doomed.refresh_from_db()
    assert doomed.status == Backup.Status.FAILED
    assert "interrupted" in doomed.error
    assert doomed.events.get(kind="status", to_status="failed").details == {"partial_uploads_removed": 1}
    assert list(Backup.objects.filter(policy=policy, status=Backup.Status.SUCCEEDED)) == [following]
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
