"""Every write of the backups app: policies, runs, checks, drills, retention and restores."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from psycopg import sql
from rest_framework.exceptions import ValidationError

from backups import pipeline, storage
from backups.models import Backup, BackupPolicy, Restore, Verification
from backups.transitions import IllegalTransition, backup_event, backup_transition, restore_transition
from controlplane.api.errors import Conflict
from controlplane.audit import audit_record, diff, model_snapshot

log = logging.getLogger(__name__)

BS = Backup.Status
LOCK_NAMESPACE = 0x42414B  # "BAK": first key of pg_try_advisory_lock(int, int); the second is the policy id.
POLICY_FIELDS = {f.name for f in BackupPolicy._meta.concrete_fields} - {
    "id",
    "created_at",
    "updated_at",
    "periodic_task",
    "drill_periodic_task",
}


# --- notifications ---------------------------------------------------------------------


def notify_failure(*, backup: Backup, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
    """The one hook for "a backup, check or drill failed": log, event, and the notification outbox.

    The outbox rows are written in the caller's transaction, so a rolled-back failure
    notifies nobody and a committed one is delivered even if the broker is down now.
    """
    from incidents.notifications import notify

    log.error(
        "backup %s failed: %s",
        kind,
        message,
        extra={"backup_id": backup.pk, "policy": backup.policy.name, "kind": kind},
    )
    sent = notify(
        event=f"backup.{kind}_failed",
        summary=f"Backup policy {backup.policy.name}: {kind} failed: {message}"[:500],
        severity="error",
        details={"backup": backup.pk, "policy": backup.policy.name, "kind": kind, **(details or {})},
        dedup_key=f"backup:{backup.policy.name}:{kind}",
    )
    backup_event(
        backup,
        "notification",
        message,
        {"kind": kind, **(details or {}), "notifications": [n.pk for n in sent]},
    )


# --- policies ---------------------------------------------------------------------------


def policy_validate(policy: BackupPolicy) -> None:
    """Cross-field rules of a policy (400 naming the field)."""
    errors: dict[str, list[str]] = {}
    if policy.source_kind == BackupPolicy.SourceKind.POSTGRES:
        if bool(policy.source_dsn_env) == bool(policy.source_db_alias):
            errors["source_dsn_env"] = ["Give exactly one of source_dsn_env and source_db_alias."]
        elif policy.source_db_alias and policy.source_db_alias not in settings.DATABASES:
            errors["source_db_alias"] = [f"Unknown database alias {policy.source_db_alias!r}."]
    elif not policy.source_path.startswith("/"):
        errors["source_path"] = ["An absolute directory path is required for a directory source."]
    if policy.storage_kind == BackupPolicy.StorageKind.S3 and not policy.s3_bucket:
        errors["s3_bucket"] = ["Required for S3 storage."]
    if policy.storage_kind == BackupPolicy.StorageKind.LOCAL and not policy.local_path.startswith("/"):
        errors["local_path"] = ["An absolute directory path is required for local storage."]
    if policy.keep_last is not None and policy.keep_last < policy.min_redundancy:
        errors["keep_last"] = ["Must not be below min_redundancy."]
    max_level = 9 if policy.compression == BackupPolicy.Compression.GZIP else 19
    if not 1 <= policy.compression_level <= max_level:
        errors["compression_level"] = [f"Must be between 1 and {max_level} for {policy.compression}."]
    for field in ("schedule", "drill_schedule"):
        value = getattr(policy, field)
        if value and len(value.split()) != 5:
            errors[field] = ["Five crontab fields: minute hour day-of-month month day-of-week."]
    if errors:
        raise ValidationError(errors)


def _crontab(expr: str) -> CrontabSchedule:
    minute, hour, dom, month, dow = expr.split()
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow, timezone="UTC"
    )
    return schedule


def _sync_periodic_tasks(policy: BackupPolicy, *, enabled_changed: bool) -> None:
    """One PeriodicTask for the backups and one for the drills of ``policy``.

    Operators pause them in the admin; a policy edit keeps that pause unless the
    policy's own ``enabled`` changed.
    """
    for attr, prefix, task, expr in (
        ("periodic_task", "backup-policy", "backups.run_policy", policy.schedule),
        ("drill_periodic_task", "backup-drill", "backups.drill_policy", policy.drill_schedule),
    ):
        current: PeriodicTask | None = getattr(policy, attr)
        if not expr:
            if current is not None:
                setattr(policy, attr, None)
                current.delete()
            continue
        values = {
            "name": f"{prefix}:{policy.name}",
            "task": task,
            "crontab": _crontab(expr),
            "kwargs": json.dumps({"policy_id": policy.pk}),
            # A tick still queued an hour later (an outage) is dropped; the next one comes.
            "expire_seconds": 3600,
            "description": f"{task} for backup policy {policy.name} (managed by the policy).",
        }
        if current is None:
            current = PeriodicTask.objects.create(enabled=policy.enabled, **values)
            setattr(policy, attr, current)
        else:
            for key, value in values.items():
                setattr(current, key, value)
            if enabled_changed:
                current.enabled = policy.enabled
            current.save()
    policy.save(update_fields=["periodic_task", "drill_periodic_task"])


@transaction.atomic
def policy_create(**fields: Any) -> BackupPolicy:
    unknown = set(fields) - POLICY_FIELDS
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    policy = BackupPolicy(**fields)
    policy_validate(policy)
    policy.full_clean(exclude=["periodic_task", "drill_periodic_task"])
    policy.save()
    _sync_periodic_tasks(policy, enabled_changed=True)
    audit_record(action="backuppolicy.create", obj=policy, changes=diff({}, model_snapshot(policy)))
    return policy


@transaction.atomic
def policy_update(*, policy: BackupPolicy, **changes: Any) -> BackupPolicy:
    unknown = set(changes) - POLICY_FIELDS
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    before = model_snapshot(policy)
    for key, value in changes.items():
        setattr(policy, key, value)
    policy_validate(policy)
    policy.full_clean(exclude=["periodic_task", "drill_periodic_task"])
    policy.save()
    _sync_periodic_tasks(policy, enabled_changed=before["enabled"] != policy.enabled)
    audit_record(action="backuppolicy.update", obj=policy, changes=diff(before, model_snapshot(policy)))
    return policy


@transaction.atomic
def policy_delete(*, policy: BackupPolicy) -> None:
    if policy.backups.exists():
        raise Conflict(
            "The policy has backups in the catalog; disable it instead.",
            details={"backups": policy.backups.count()},
        )
    audit_record(action="backuppolicy.delete", obj=policy)
    for task in (policy.periodic_task, policy.drill_periodic_task):
        if task is not None:
            task.delete()
    policy.delete()


# --- running backups ------------------------------------------------------------------------


class PolicyLock:
    """``pg_try_advisory_lock`` per policy on a connection of its own (freed if the worker dies)."""

    def __init__(self, policy_id: int) -> None:
        self.policy_id = policy_id
        self.conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        conn = psycopg.connect(pipeline.resolve_dsn(db_alias="default"), autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, self.policy_id)).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        self.conn = conn
        return True

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()  # ending the session releases the lock
            self.conn = None


def _storage_key(policy: BackupPolicy, backup: Backup) -> str:
    ext = "dump" if policy.source_kind == BackupPolicy.SourceKind.POSTGRES else "tar"
    ext += ".zst" if policy.compression == BackupPolicy.Compression.ZSTD else ".gz"
    created = backup.created_at
    prefix = policy.s3_prefix.strip("/") if policy.storage_kind == BackupPolicy.StorageKind.S3 else ""
    parts = [
        prefix,
        policy.name,
        f"{created:%Y/%m/%d}",
        f"{policy.name}-{backup.pk}-{created:%Y%m%dT%H%M%SZ}.{ext}",
    ]
    return "/".join(p for p in parts if p)


def backup_request(
    *, policy: BackupPolicy, trigger: str = Backup.Trigger.MANUAL, enqueue: bool = True
) -> Backup:
    """Record a pending backup of ``policy``; a worker runs it (overlaps end ``skipped``)."""
    with transaction.atomic():
        backup = Backup.objects.create(
            policy=policy,
            trigger=trigger,
            source_kind=policy.source_kind,
            compression=policy.compression,
            storage=storage.describe(policy),
        )
        backup.storage_key = _storage_key(policy, backup)
        backup.save(update_fields=["storage_key"])
        backup_event(backup, "requested", f"{trigger} backup requested")
        if trigger == Backup.Trigger.MANUAL:
            audit_record(action="backup.request", obj=backup, changes={"policy": policy.name})
        if enqueue:
            from backups.tasks import run_backup

            transaction.on_commit(lambda: run_backup.delay(backup.pk))
    return backup


def fail_interrupted(*, policy: BackupPolicy, exclude: int | None = None) -> list[int]:
    """Mark ``running`` rows of a policy whose worker died as failed and clean up their partial uploads.

    Only call while holding the policy lock: then no scheduled or manual run of this
    policy is alive. Safety backups run inside a restore without that lock, so theirs are
    only failed once older than the task time limit (no task can still be running them).
    """
    failed = []
    dead_by = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    running = policy.backups.filter(status=BS.RUNNING).exclude(pk=exclude or 0)
    running = running.exclude(trigger=Backup.Trigger.SAFETY, started_at__gte=dead_by)
    for backup in running:
        removed = 0
        try:
            removed = storage.from_description(backup.storage).abort_incomplete(backup.storage_key)
        except Exception:
            log.exception("cleaning up the partial upload of backup %s failed", backup.pk)
        try:
            backup_transition(
                backup,
                BS.FAILED,
                message="interrupted: the worker running it stopped",
                details={"partial_uploads_removed": removed},
                fields={"error": "interrupted: the worker running this backup stopped before it finished"},
            )
        except IllegalTransition:
            continue
        notify_failure(backup=backup, kind="backup", message="backup interrupted (worker lost)")
        failed.append(backup.pk)
    return failed


def backup_execute(*, backup: Backup) -> Backup:
    """Run a pending backup under its policy's advisory lock; an overlap is recorded as ``skipped``."""
    if backup.status != BS.PENDING:
        return backup
    policy = backup.policy
    lock = PolicyLock(policy.pk)
    if not lock.acquire():
        running = policy.backups.filter(status=BS.RUNNING).exclude(pk=backup.pk).first()
        message = "another backup of this policy is running" + (f" (#{running.pk})" if running else "")
        try:
            return backup_transition(backup, BS.SKIPPED, message=message, fields={"error": message})
        except IllegalTransition:
            return backup
    try:
        fail_interrupted(policy=policy, exclude=backup.pk)
        try:
            backup_transition(backup, BS.RUNNING)
        except IllegalTransition:
            return backup
        _run(backup, dsn=None)
    finally:
        lock.release()
    if backup.status == BS.SUCCEEDED and policy.verify_after_backup:
        backup_verify(backup=backup)
    return backup


def _run(backup: Backup, *, dsn: str | None) -> None:
    """Stream one backup to storage and finish its row (``succeeded`` or ``failed``, never half)."""
    policy = backup.policy
    source = pipeline.SourceResult()
    started = time.monotonic()
    try:
        target = storage.from_description(backup.storage)
        if backup.source_kind == BackupPolicy.SourceKind.POSTGRES:
            dsn = dsn or pipeline.resolve_dsn(dsn_env=policy.source_dsn_env, db_alias=policy.source_db_alias)
            chunks = pipeline.postgres_source(dsn, source)
        else:
            chunks = pipeline.directory_source(policy.source_path, source)
        stream = pipeline.CompressedStream(
            chunks, pipeline.compressor(backup.compression, policy.compression_level)
        )
        version_id = target.put(backup.storage_key, stream)
        if not stream.closed and stream.read(1):
            raise pipeline.PipelineError("storage stopped reading before the end of the stream")
    except BaseException as exc:
        message = str(exc) or type(exc).__name__
        backup_transition(
            backup,
            BS.FAILED,
            message=message[:500],
            fields={
                "error": message,
                "duration_seconds": time.monotonic() - started,
                "source_name": source.name,
            },
        )
        notify_failure(backup=backup, kind="backup", message=message[:500])
        if not isinstance(exc, Exception):
            raise
        return
    duration = time.monotonic() - started
    backup_transition(
        backup,
        BS.SUCCEEDED,
        fields={
            "source_name": source.name,
            "storage_version_id": version_id,
            "raw_bytes": stream.raw_bytes,
            "stored_bytes": stream.stored_bytes,
            "sha256": stream.sha256.hexdigest(),
            "pg_dump_version": source.tool_version,
            "server_version": source.server_version,
            "duration_seconds": duration,
            "throughput_bytes_per_second": stream.raw_bytes / duration if duration > 0 else None,
            "row_counts": source.row_counts,
        },
    )


# --- verification and drills -----------------------------------------------------------------


def _finish(
    verification: Verification, *, passed: bool, started: float, error: str = "", **details: Any
) -> None:
    verification.status = Verification.Status.PASSED if passed else Verification.Status.FAILED
    verification.finished_at = timezone.now()
    verification.seconds = time.monotonic() - started
    verification.error = error
    verification.details = {**verification.details, **details}
    verification.save(update_fields=["status", "finished_at", "seconds", "error", "details"])


def backup_verify(*, backup: Backup) -> Verification:
    """Cheap check: the object exists, has the recorded size, and its bytes hash to the recorded sha256."""
    if backup.status != BS.SUCCEEDED:
        raise Conflict("Only a succeeded backup can be verified.", details={"status": backup.status})
    verification = Verification.objects.create(backup=backup, kind=Verification.Kind.CHECKSUM)
    started = time.monotonic()
    error = ""
    result = pipeline.ReadResult()
    try:
        target = storage.from_description(backup.storage)
        size = target.size(backup.storage_key, backup.storage_version_id)
        if size is None:
            error = "object missing from storage"
        elif size != backup.stored_bytes:
            error = f"size mismatch: stored {size} bytes, catalog says {backup.stored_bytes}"
        else:
            for _ in pipeline.read_back(
                target.open(backup.storage_key, backup.storage_version_id), compression=None, result=result
            ):
                pass
            if result.sha256 != backup.sha256:
                error = f"checksum mismatch: read {result.sha256}, catalog says {backup.sha256}"
    except (storage.StorageError, pipeline.PipelineError, OSError) as exc:
        error = f"cannot read the object: {exc}"
    except Exception as exc:  # botocore errors and the like: a failed check, not a crash
        error = f"cannot read the object: {type(exc).__name__}: {exc}"
    _finish(verification, passed=not error, started=started, error=error, sha256=result.sha256)
    Backup.objects.filter(pk=backup.pk).update(
        verified_at=verification.finished_at, verify_status=Backup.Check.FAILED if error else Backup.Check.OK
    )
    backup.refresh_from_db(fields=["verified_at", "verify_status"])
    backup_event(backup, "verified", error or "checksum ok", {"verification": verification.pk})
    if error:
        notify_failure(backup=backup, kind="verification", message=error)
    return verification


def _scratch_dsn() -> str:
    return settings.BACKUPS_SCRATCH_DSN or pipeline.with_dbname(
        pipeline.resolve_dsn(db_alias="default"), "postgres"
    )


def backup_drill(*, backup: Backup) -> Verification:
    """Restore drill: restore into a scratch database, compare row counts, record time to restore, drop it."""
    if backup.status != BS.SUCCEEDED or backup.source_kind != BackupPolicy.SourceKind.POSTGRES:
        raise Conflict(
            "Only a succeeded PostgreSQL backup can be drilled.",
            details={"status": backup.status, "source_kind": backup.source_kind},
        )
    verification = Verification.objects.create(backup=backup, kind=Verification.Kind.DRILL)
    started = time.monotonic()
    admin_dsn = _scratch_dsn()
    scratch = f"cp_drill_{backup.pk}_{uuid.uuid4().hex[:8]}"
    details: dict[str, Any] = {"scratch_database": scratch}
    error = ""
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            read = pipeline.ReadResult()
            target = storage.from_description(backup.storage)
            chunks = pipeline.read_back(
                target.open(backup.storage_key, backup.storage_version_id),
                compression=backup.compression,
                result=read,
            )

            def check() -> None:
                if read.sha256 != backup.sha256:
                    raise pipeline.PipelineError(
                        f"checksum mismatch: read {read.sha256}, catalog {backup.sha256}"
                    )

            restore_started = time.monotonic()
            pipeline.pg_restore(
                chunks,
                dsn=pipeline.with_dbname(admin_dsn, scratch),
                extra=["--no-owner", "--no-privileges"],
                before_commit=check,
            )
            details["time_to_restore_seconds"] = time.monotonic() - restore_started
            with (
                psycopg.connect(pipeline.with_dbname(admin_dsn, scratch)) as conn,
                conn.cursor() as cur,
            ):
                restored = pipeline.count_rows(cur)
            expected = backup.row_counts
            mismatches = {
                table: {"expected": expected.get(table), "restored": restored.get(table)}
                for table in sorted(set(expected) | set(restored))
                if expected.get(table) != restored.get(table)
            }
            details.update(tables=len(restored), rows=sum(restored.values()), mismatches=mismatches)
            if mismatches:
                error = f"row counts differ in {len(mismatches)} table(s): {', '.join(list(mismatches)[:5])}"
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
                )
    except (pipeline.PipelineError, storage.StorageError, psycopg.Error, OSError) as exc:
        error = str(exc).strip()[:2000] or type(exc).__name__
    _finish(verification, passed=not error, started=started, error=error, **details)
    Backup.objects.filter(pk=backup.pk).update(
        drilled_at=verification.finished_at, drill_status=Backup.Check.FAILED if error else Backup.Check.OK
    )
    backup.refresh_from_db(fields=["drilled_at", "drill_status"])
    backup_event(backup, "drill", error or "restore drill passed", {"verification": verification.pk})
    if error:
        notify_failure(backup=backup, kind="drill", message=error[:500])
    return verification


def verification_request(*, backup: Backup, kind: str) -> None:
    """Queue a checksum check or a restore drill of ``backup`` (API and admin)."""
    if backup.status != BS.SUCCEEDED:
        raise Conflict("Only a succeeded backup can be verified.", details={"status": backup.status})
    if kind == Verification.Kind.DRILL and backup.source_kind != BackupPolicy.SourceKind.POSTGRES:
        raise Conflict(
            "Restore drills need a PostgreSQL backup.", details={"source_kind": backup.source_kind}
        )
    from backups.tasks import drill_backup, verify_backup

    task = drill_backup if kind == Verification.Kind.DRILL else verify_backup
    audit_record(action=f"backup.{kind}_request", obj=backup)
    transaction.on_commit(lambda: task.delay(backup.pk))


def newest_drillable(policy: BackupPolicy) -> Backup | None:
    return (
        policy.backups.filter(status=BS.SUCCEEDED, source_kind=BackupPolicy.SourceKind.POSTGRES)
        .exclude(trigger=Backup.Trigger.SAFETY)
        .order_by("-created_at", "-id")
        .first()
    )


# --- retention --------------------------------------------------------------------------------


def retention_plan(*, policy: BackupPolicy, now: datetime | None = None) -> list[tuple[Backup, str]]:
    """Which succeeded backups expire now, and why, in catalog order (oldest first).

    Kept whatever the rules say: the newest ``min_redundancy`` backups and the newest
    verified one (checksum or drill passed).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=policy.keep_days)
    regular = list(
        policy.backups.filter(status=BS.SUCCEEDED)
        .exclude(trigger=Backup.Trigger.SAFETY)
        .order_by("-created_at", "-id")
    )
    protected = {b.pk for b in regular[: policy.min_redundancy]}
    verified = next(
        (b for b in regular if b.verify_status == Backup.Check.OK or b.drill_status == Backup.Check.OK), None
    )
    if verified is not None:
        protected.add(verified.pk)
    plan: list[tuple[Backup, str]] = []
    for index, backup in enumerate(regular):
        if backup.pk in protected:
            continue
        if backup.created_at < cutoff:
            plan.append((backup, f"older than {policy.keep_days} days"))
        elif policy.keep_last is not None and index >= policy.keep_last:
            plan.append((backup, f"beyond the newest {policy.keep_last}"))
    safety = policy.backups.filter(status=BS.SUCCEEDED, trigger=Backup.Trigger.SAFETY, created_at__lt=cutoff)
    plan.extend((b, f"safety backup older than {policy.keep_days} days") for b in safety)
    plan.sort(key=lambda item: (item[0].created_at, item[0].pk))
    return plan


def retention_apply(
    *, policy: BackupPolicy, now: datetime | None = None, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Delete expired objects and mark their rows ``expired`` (nothing changes with ``dry_run``)."""
    report = []
    for backup, reason in retention_plan(policy=policy, now=now):
        entry: dict[str, Any] = {
            "backup": backup.pk,
            "created_at": backup.created_at.isoformat(),
            "reason": reason,
        }
        if not dry_run:
            try:
                storage.from_description(backup.storage).delete(backup.storage_key, backup.storage_version_id)
                backup_transition(backup, BS.EXPIRED, message=reason)
                audit_record(action="backup.expire", obj=backup, changes={"reason": reason})
                entry["expired"] = True
            except Exception as exc:
                log.exception("retention could not delete backup %s", backup.pk)
                entry["error"] = str(exc)
        report.append(entry)
    return report


def retention_sweep(*, now: datetime | None = None) -> dict[str, Any]:
    """Beat entry: apply every policy's retention and fail runs left ``running`` by dead workers."""
    out: dict[str, Any] = {}
    for policy in BackupPolicy.objects.all():
        lock = PolicyLock(policy.pk)
        if lock.acquire():
            try:
                fail_interrupted(policy=policy)
            finally:
                lock.release()
        out[policy.name] = retention_apply(policy=policy, now=now)
    dead_by = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
    unfinished = [Restore.Status.VERIFYING, Restore.Status.SAFETY_BACKUP, Restore.Status.RESTORING]
    for restore in Restore.objects.filter(status__in=unfinished, started_at__lt=dead_by):
        try:
            restore_transition(
                restore,
                Restore.Status.FAILED,
                log="interrupted: the worker running it stopped (pg_restore ran in one transaction)",
                fields={"error": "interrupted: the worker running this restore stopped"},
            )
        except IllegalTransition:
            continue
    return out


# --- restores -----------------------------------------------------------------------------------


def restore_validate(
    *, backup: Backup, confirm: str, target_dsn_env: str = "", target_db_alias: str = ""
) -> str:
    """Check a restore request (400/409) and return the target database's name."""
    if bool(target_dsn_env) == bool(target_db_alias):
        raise ValidationError({"target_dsn_env": ["Give exactly one of target_dsn_env and target_db_alias."]})
    try:
        dsn = pipeline.resolve_dsn(dsn_env=target_dsn_env, db_alias=target_db_alias)
        name = pipeline.database_name(dsn)
    except pipeline.PipelineError as exc:
        raise ValidationError(
            {"target_dsn_env" if target_dsn_env else "target_db_alias": [str(exc)]}
        ) from exc
    if not name:
        raise ValidationError({"target_dsn_env": ["The target DSN names no database."]})
    if confirm != name:
        raise ValidationError({"confirm": ["Type the target database's name exactly to confirm."]})
    if backup.status != BS.SUCCEEDED or backup.source_kind != BackupPolicy.SourceKind.POSTGRES:
        raise Conflict(
            "Only a succeeded PostgreSQL backup can be restored.",
            details={"backup": backup.pk, "status": backup.status},
        )
    if backup.verify_status == Backup.Check.FAILED:
        raise Conflict(
            "This backup failed verification; it will not be restored.", details={"backup": backup.pk}
        )
    return name


def restore_request(
    *,
    backup: Backup,
    confirm: str,
    target_dsn_env: str = "",
    target_db_alias: str = "",
    reason: str = "",
    requested_by: str = "",
    enqueue: bool = True,
) -> Restore:
    """Accept a restore of ``backup`` over a target database once its name is typed exactly."""
    name = restore_validate(
        backup=backup, confirm=confirm, target_dsn_env=target_dsn_env, target_db_alias=target_db_alias
    )
    with transaction.atomic():
        active = Restore.objects.filter(target_name=name).exclude(
            status__in=[Restore.Status.SUCCEEDED, Restore.Status.FAILED]
        )
        if active.exists():
            raise Conflict(
                "A restore into this database is already in progress.", details={"restore": active[0].pk}
            )
        restore = Restore.objects.create(
            backup=backup,
            target_dsn_env=target_dsn_env,
            target_db_alias=target_db_alias,
            target_name=name,
            reason=reason,
            requested_by=requested_by,
            log=f"{timezone.now():%Y-%m-%dT%H:%M:%SZ} requested by {requested_by or 'system'}",
        )
        audit_record(
            action="restore.request",
            obj=restore,
            changes={"backup": backup.pk, "target": name, "reason": reason},
        )
        if enqueue:
            from backups.tasks import run_restore

            transaction.on_commit(lambda: run_restore.delay(restore.pk))
    return restore


def restore_execute(*, restore: Restore) -> Restore:
    """Verify the checksum, back up the target, then ``pg_restore --clean`` in one transaction."""
    RS = Restore.Status
    if restore.status != RS.PENDING:
        return restore
    backup = restore.backup
    try:
        restore_transition(restore, RS.VERIFYING, log=f"reading back backup #{backup.pk}")
    except IllegalTransition:
        return restore

    def fail(message: str) -> Restore:
        restore_transition(restore, RS.FAILED, log=message, fields={"error": message})
        audit_record(action="restore.failed", obj=restore, changes={"error": message})
        return restore

    try:
        dsn = pipeline.resolve_dsn(dsn_env=restore.target_dsn_env, db_alias=restore.target_db_alias)
    except pipeline.PipelineError as exc:
        return fail(str(exc))
    check = backup_verify(backup=backup)
    if check.status != Verification.Status.PASSED:
        return fail(f"checksum verification failed, the target was not touched: {check.error}")
    restore_transition(restore, RS.SAFETY_BACKUP, log="checksum ok; backing up the target first")
    safety = Backup.objects.create(
        policy=backup.policy,
        trigger=Backup.Trigger.SAFETY,
        source_kind=BackupPolicy.SourceKind.POSTGRES,
        source_name=restore.target_name,
        compression=backup.policy.compression,
        storage=storage.describe(backup.policy),
    )
    safety.storage_key = _storage_key(backup.policy, safety).replace(
        f"/{backup.policy.name}-", f"/safety-{restore.target_name}-"
    )
    safety.save(update_fields=["storage_key"])
    Restore.objects.filter(pk=restore.pk).update(safety_backup=safety)
    restore.safety_backup = safety
    backup_transition(safety, BS.RUNNING, message=f"safety backup before restore #{restore.pk}")
    _run(safety, dsn=dsn)
    if safety.status != BS.SUCCEEDED:
        return fail(f"safety backup failed, the target was not touched: {safety.error[:500]}")
    restore_transition(restore, RS.RESTORING, log=f"safety backup #{safety.pk} ok; pg_restore --clean")
    read = pipeline.ReadResult()
    try:
        chunks = pipeline.read_back(
            storage.from_description(backup.storage).open(backup.storage_key, backup.storage_version_id),
            compression=backup.compression,
            result=read,
        )

        def check_stream() -> None:
            if read.sha256 != backup.sha256:
                raise pipeline.PipelineError("checksum changed while restoring; pg_restore was stopped")

        output = pipeline.pg_restore(
            chunks, dsn=dsn, extra=["--clean", "--if-exists"], before_commit=check_stream
        )
    except (pipeline.PipelineError, storage.StorageError, OSError) as exc:
        return fail(f"restore failed (single transaction, so the target is unchanged): {exc}")
    restore_transition(restore, RS.SUCCEEDED, log=(output.strip() + "\nrestore complete").strip())
    audit_record(
        action="restore.succeeded", obj=restore, changes={"backup": backup.pk, "safety_backup": safety.pk}
    )
    return restore
