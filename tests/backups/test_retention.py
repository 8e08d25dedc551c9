"""Retention: keep days, keep last N, minimum redundancy, and the newest verified backup is sacred."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from backups import services
from backups.models import Backup, BackupPolicy
from backups.tasks import apply_retention

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def policy(db: Any, tmp_path: Path) -> BackupPolicy:
    return services.policy_create(
        name="ret",
        source_db_alias="default",
        storage_kind="local",
        local_path=str(tmp_path),
        min_redundancy=1,
    )


def make(policy: BackupPolicy, days_ago: float, **extra: Any) -> Backup:
    backup = Backup.objects.create(
        policy=policy,
        status=extra.pop("status", Backup.Status.SUCCEEDED),
        source_kind="postgres",
        compression="zstd",
        created_at=NOW - timedelta(days=days_ago),
        storage={"kind": "local", "path": policy.local_path},
        **extra,
    )
    backup.storage_key = f"ret/{backup.pk}.dump.zst"
    backup.save(update_fields=["storage_key"])
    path = Path(policy.local_path) / backup.storage_key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return backup


def expiring(policy: BackupPolicy) -> list[int]:
    return [b.pk for b, _ in services.retention_plan(policy=policy, now=NOW)]


def test_keep_days_expires_old_backups_oldest_first(policy: BackupPolicy) -> None:
    old2, old1, fresh = make(policy, 45), make(policy, 31), make(policy, 1)
    assert expiring(policy) == [old2.pk, old1.pk]
    assert fresh.pk not in expiring(policy)


def test_keep_last_expires_beyond_the_newest_n(policy: BackupPolicy) -> None:
    services.policy_update(policy=policy, keep_last=2)
    b = [make(policy, d) for d in (4, 3, 2, 1)]
    assert expiring(policy) == [b[0].pk, b[1].pk]


def test_minimum_redundancy_keeps_backups_even_when_all_are_old(policy: BackupPolicy) -> None:
    services.policy_update(policy=policy, min_redundancy=2)
    b = [make(policy, d) for d in (90, 80, 70)]
    assert expiring(policy) == [b[0].pk]


def test_the_newest_verified_backup_is_never_deleted(policy: BackupPolicy) -> None:
    verified = make(policy, 60, verify_status=Backup.Check.OK)
    make(policy, 50, verify_status=Backup.Check.FAILED)
    newest = make(policy, 40)
    plan = expiring(policy)
    assert verified.pk not in plan and newest.pk not in plan and len(plan) == 1


def test_failed_skipped_and_expired_rows_are_left_alone(policy: BackupPolicy) -> None:
    make(policy, 1)
    for status in (Backup.Status.FAILED, Backup.Status.SKIPPED, Backup.Status.EXPIRED):
        make(policy, 99, status=status)
    assert expiring(policy) == []


def test_dry_run_changes_nothing_and_apply_deletes_objects_and_marks_rows(
    policy: BackupPolicy, api: Any
) -> None:
    old, fresh = make(policy, 40), make(policy, 1)
    response = api("admin").post(
        f"/api/v1/backup-policies/{policy.pk}/retention/", {"dry_run": True}, format="json"
    )
    assert response.status_code == 200
    assert [e["backup"] for e in response.json()] == [old.pk]
    assert "older than 30 days" in response.json()[0]["reason"]
    old.refresh_from_db()
    assert old.status == Backup.Status.SUCCEEDED and (Path(policy.local_path) / old.storage_key).exists()

    report = services.retention_apply(policy=policy, now=NOW)

    assert report[0]["expired"] is True
    old.refresh_from_db()
    assert old.status == Backup.Status.EXPIRED and old.expired_at is not None
    assert not (Path(policy.local_path) / old.storage_key).exists()
    assert (Path(policy.local_path) / fresh.storage_key).exists()
    assert old.events.filter(to_status="expired").exists()


def test_beat_retention_also_fails_runs_left_running_by_a_dead_worker(policy: BackupPolicy) -> None:
    stale = make(policy, 0.1, status=Backup.Status.RUNNING)
    (Path(policy.local_path) / (stale.storage_key + ".partial")).write_bytes(b"half")
    apply_retention()
    stale.refresh_from_db()
    assert stale.status == Backup.Status.FAILED and "interrupted" in stale.error
    assert not (Path(policy.local_path) / (stale.storage_key + ".partial")).exists()


def test_sweep_leaves_a_young_running_safety_backup_alone_and_fails_stuck_restores(
    policy: BackupPolicy, settings: Any
) -> None:
    from backups.models import Restore

    young = make(policy, 0, status=Backup.Status.RUNNING, trigger=Backup.Trigger.SAFETY, started_at=NOW)
    source = make(policy, 1)
    stuck = Restore.objects.create(
        backup=source,
        target_name="noodle",
        status=Restore.Status.RESTORING,
        started_at=NOW - timedelta(days=1),
    )
    apply_retention()
    young.refresh_from_db()
    stuck.refresh_from_db()
    assert young.status == Backup.Status.RUNNING
    assert stuck.status == Restore.Status.FAILED and "interrupted" in stuck.error


def test_latest_verified_backup_feeds_the_pre_deployment_gate(policy: BackupPolicy) -> None:
    from backups.selectors import latest_verified_backup

    make(policy, 2, verify_status=Backup.Check.OK, finished_at=NOW - timedelta(days=2))
    assert latest_verified_backup(now=NOW) is None
    recent = make(policy, 0.1, verify_status=Backup.Check.OK, finished_at=NOW - timedelta(hours=2))
    assert latest_verified_backup(now=NOW) == recent
    Backup.objects.filter(pk=recent.pk).update(drill_status=Backup.Check.FAILED)
    assert latest_verified_backup(now=NOW) is None
    assert latest_verified_backup(now=NOW, within=timedelta(days=3), policy="ret") is not None
    assert latest_verified_backup(now=NOW, within=timedelta(days=3), policy="other") is None
