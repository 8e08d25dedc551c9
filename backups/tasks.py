"""Celery entry points of the backups app: fetch by id, call a service."""

from __future__ import annotations

from celery import shared_task

from backups import services
from backups.models import Backup, BackupPolicy, Restore


@shared_task(name="backups.run_policy", ignore_result=True)
def run_policy(policy_id: int) -> None:
    """Beat tick of a policy's schedule: record a backup and run it here."""
    policy = BackupPolicy.objects.filter(pk=policy_id, enabled=True).first()
    if policy is None:
        return
    backup = services.backup_request(policy=policy, trigger=Backup.Trigger.SCHEDULE, enqueue=False)
    services.backup_execute(backup=backup)


@shared_task(name="backups.run_backup", ignore_result=True)
def run_backup(backup_id: int) -> None:
    backup = Backup.objects.select_related("policy").filter(pk=backup_id).first()
    if backup is not None:
        services.backup_execute(backup=backup)


@shared_task(name="backups.verify_backup", ignore_result=True)
def verify_backup(backup_id: int) -> None:
    backup = (
        Backup.objects.select_related("policy").filter(pk=backup_id, status=Backup.Status.SUCCEEDED).first()
    )
    if backup is not None:
        services.backup_verify(backup=backup)


@shared_task(name="backups.drill_backup", ignore_result=True)
def drill_backup(backup_id: int) -> None:
    backup = (
        Backup.objects.select_related("policy").filter(pk=backup_id, status=Backup.Status.SUCCEEDED).first()
    )
    if backup is not None:
        services.backup_drill(backup=backup)


@shared_task(name="backups.drill_policy", ignore_result=True)
def drill_policy(policy_id: int) -> None:
    """Beat tick of a policy's drill schedule: restore-drill its newest backup."""
    policy = BackupPolicy.objects.filter(pk=policy_id).first()
    backup = services.newest_drillable(policy) if policy is not None else None
    if backup is not None:
        services.backup_drill(backup=backup)


@shared_task(name="backups.run_restore", ignore_result=True)
def run_restore(restore_id: int) -> None:
    restore = Restore.objects.select_related("backup__policy").filter(pk=restore_id).first()
    if restore is not None:
        services.restore_execute(restore=restore)


@shared_task(name="backups.apply_retention", ignore_result=True)
def apply_retention() -> None:
    services.retention_sweep()
