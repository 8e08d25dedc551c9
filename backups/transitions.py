"""The allowed status moves of backups and restores, and the one function that makes each."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from backups.models import Backup, BackupEvent, Restore

BS = Backup.Status
BACKUP_TRANSITIONS: dict[str, set[str]] = {
    BS.PENDING: {BS.RUNNING, BS.SKIPPED, BS.FAILED},
    BS.RUNNING: {BS.SUCCEEDED, BS.FAILED},
    BS.SUCCEEDED: {BS.EXPIRED},
    # A failed run may have left a partial object behind; retention removes it too.
    BS.FAILED: {BS.EXPIRED},
    BS.SKIPPED: set(),
    BS.EXPIRED: set(),
}

RS = Restore.Status
RESTORE_TRANSITIONS: dict[str, set[str]] = {
    RS.PENDING: {RS.VERIFYING, RS.FAILED},
    RS.VERIFYING: {RS.SAFETY_BACKUP, RS.FAILED},
    RS.SAFETY_BACKUP: {RS.RESTORING, RS.FAILED},
    RS.RESTORING: {RS.SUCCEEDED, RS.FAILED},
    RS.SUCCEEDED: set(),
    RS.FAILED: set(),
}


class IllegalTransition(Exception):
    """A status move the table does not allow (a bug or a lost race, never user input)."""


def backup_transition(
    backup: Backup,
    to: str,
    *,
    message: str = "",
    details: dict[str, Any] | None = None,
    fields: dict[str, Any] | None = None,
) -> Backup:
    """Move ``backup`` to ``to`` with a conditional UPDATE (lost races raise) and append the event."""
    src = backup.status
    if to not in BACKUP_TRANSITIONS[src]:
        raise IllegalTransition(f"backup {backup.pk}: {src} -> {to}")
    now = timezone.now()
    values: dict[str, Any] = {"status": to, **(fields or {})}
    if to == BS.RUNNING:
        values.setdefault("started_at", now)
    if to in (BS.SUCCEEDED, BS.FAILED, BS.SKIPPED):
        values.setdefault("finished_at", now)
    if to == BS.EXPIRED:
        values.setdefault("expired_at", now)
    with transaction.atomic():
        if Backup.objects.filter(pk=backup.pk, status=src).update(**values) != 1:
            raise IllegalTransition(f"backup {backup.pk}: no longer {src}")
        BackupEvent.objects.create(
            backup=backup,
            kind="status",
            from_status=src,
            to_status=to,
            message=message,
            details=details or {},
        )
    for key, value in values.items():
        setattr(backup, key, value)
    return backup


def backup_event(backup: Backup, kind: str, message: str = "", details: dict[str, Any] | None = None) -> None:
    """Append a non-transition event (check, drill, notification) to the backup's history."""
    BackupEvent.objects.create(backup=backup, kind=kind, message=message, details=details or {})


def restore_transition(
    restore: Restore, to: str, *, log: str = "", fields: dict[str, Any] | None = None
) -> Restore:
    """Move ``restore`` to ``to``; every move appends a timestamped line to its visible log."""
    src = restore.status
    if to not in RESTORE_TRANSITIONS[src]:
        raise IllegalTransition(f"restore {restore.pk}: {src} -> {to}")
    now = timezone.now()
    line = f"{now:%Y-%m-%dT%H:%M:%SZ} {src} -> {to}" + (f": {log}" if log else "")
    values: dict[str, Any] = {"status": to, "log": (restore.log + "\n" + line).strip(), **(fields or {})}
    if to == RS.VERIFYING:
        values.setdefault("started_at", now)
    if to in (RS.SUCCEEDED, RS.FAILED):
        values.setdefault("finished_at", now)
    if Restore.objects.filter(pk=restore.pk, status=src).update(**values) != 1:
        raise IllegalTransition(f"restore {restore.pk}: no longer {src}")
    for key, value in values.items():
        setattr(restore, key, value)
    return restore
