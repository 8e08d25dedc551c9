"""Scheduled maintenance (the guide's maintenance.sh as beat tasks): prune, expire, vacuum.

Every job deletes or updates in bounded batches (one short statement per batch, in
autocommit), never touches what an active deployment, an unclosed incident or an
unfinished restore still needs, and records its last run in :class:`MaintenanceRun`
(exported at ``/metrics`` as ``controlplane_maintenance_last_run_*``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models import Q, Subquery
from django.utils import timezone

from controlplane.audit import audit_record
from controlplane.models import AuditEntry, MaintenanceRun

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    rows: int = 0
    status: str = MaintenanceRun.Status.OK
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)


# --- What is still needed ---------------------------------------------------------


def _needed_deployment_ids(now: datetime) -> set[int]:
    """Deployments whose history is still in use.

    Active ones (the engine reads their measurements), ones a running rollback started
    from, ones whose old slot is still warm for a fast rollback, and ones linked to an
    incident that is not closed (its post-mortem cites their timeline).
    """
    from deployments.models import Deployment
    from incidents.models import DeploymentLink, Incident

    active = Deployment.objects.filter(status__in=Deployment.ACTIVE_STATUSES)
    ids = set(active.values_list("pk", flat=True))
    ids |= set(active.exclude(rollback_of=None).values_list("rollback_of_id", flat=True))
    ids |= set(Deployment.objects.filter(warm_until__gt=now).values_list("pk", flat=True))
    ids |= set(
        DeploymentLink.objects.exclude(incident__status=Incident.Status.CLOSED).values_list(
            "deployment_id", flat=True
        )
    )
    return ids


def _open_incident_ids() -> set[int]:
    from incidents.models import Incident

    return set(Incident.objects.exclude(status=Incident.Status.CLOSED).values_list("pk", flat=True))


def _open_restore_ids() -> set[int]:
    from backups.models import Restore

    done = (Restore.Status.SUCCEEDED, Restore.Status.FAILED)
    return set(Restore.objects.exclude(status__in=done).values_list("pk", flat=True))


# --- Batching ---------------------------------------------------------------------


def _delete_in_batches(queryset: models.QuerySet[Any], *, batch_size: int | None = None) -> tuple[int, int]:
    """Delete the queryset's rows ``batch_size`` at a time; returns (rows, batches)."""
    size = batch_size or settings.MAINTENANCE_BATCH_SIZE
    model = queryset.model
    total = batches = 0
    while True:
        # One statement per batch: DELETE ... WHERE id IN (SELECT id ... LIMIT n). _raw_delete
        # skips per-row collection (append-only models refuse instance deletes; none of these
        # models has dependent rows).
        batch = queryset.order_by().values("pk")[:size]
        deleted = model.objects.filter(pk__in=Subquery(batch))._raw_delete(model.objects.db)
        total += deleted
        batches += 1 if deleted else 0
        if deleted < size:
            return total, batches


# --- Jobs -------------------------------------------------------------------------


def prune_deployment_events(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """Timeline events of deployments finished more than RETENTION_DEPLOYMENT_EVENTS_DAYS ago."""
    from deployments.models import Deployment, DeploymentEvent

    cutoff = now - timedelta(days=settings.RETENTION_DEPLOYMENT_EVENTS_DAYS)
    finished = Deployment.objects.exclude(status__in=Deployment.ACTIVE_STATUSES).filter(
        finished_at__lt=cutoff
    )
    qs = DeploymentEvent.objects.filter(deployment__in=finished.exclude(pk__in=_needed_deployment_ids(now)))
    rows, batches = _delete_in_batches(qs, batch_size=batch_size)
    return JobResult(rows=rows, details={"cutoff": cutoff.isoformat(), "batches": batches})


def prune_measurements(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """Analysis measurements of deployments finished more than RETENTION_MEASUREMENTS_DAYS ago."""
    from deployments.models import Deployment, Measurement

    cutoff = now - timedelta(days=settings.RETENTION_MEASUREMENTS_DAYS)
    finished = Deployment.objects.exclude(status__in=Deployment.ACTIVE_STATUSES).filter(
        finished_at__lt=cutoff
    )
    qs = Measurement.objects.filter(deployment__in=finished.exclude(pk__in=_needed_deployment_ids(now)))
    rows, batches = _delete_in_batches(qs, batch_size=batch_size)
    return JobResult(rows=rows, details={"cutoff": cutoff.isoformat(), "batches": batches})


def prune_notifications(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """Delivered outbox rows older than RETENTION_NOTIFICATIONS_DAYS (failed ones stay for operators)."""
    from incidents.models import Notification

    cutoff = now - timedelta(days=settings.RETENTION_NOTIFICATIONS_DAYS)
    qs = Notification.objects.filter(status=Notification.Status.DELIVERED, delivered_at__lt=cutoff).exclude(
        incident_id__in=_open_incident_ids()
    )
    rows, batches = _delete_in_batches(qs, batch_size=batch_size)
    return JobResult(rows=rows, details={"cutoff": cutoff.isoformat(), "batches": batches})


def prune_audit_log(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """Audit entries older than RETENTION_AUDIT_DAYS, except those of still-open work."""
    cutoff = now - timedelta(days=settings.RETENTION_AUDIT_DAYS)
    keep = Q()
    for object_type, ids in (
        ("deployments.deployment", _needed_deployment_ids(now)),
        ("incidents.incident", _open_incident_ids()),
        ("backups.restore", _open_restore_ids()),
    ):
        if ids:
            keep |= Q(object_type=object_type, object_id__in=[str(pk) for pk in ids])
    qs = AuditEntry.objects.filter(created_at__lt=cutoff)
    if keep:
        qs = qs.exclude(keep)
    rows, batches = _delete_in_batches(qs, batch_size=batch_size)
    return JobResult(rows=rows, details={"cutoff": cutoff.isoformat(), "batches": batches})


def expire_idempotency_keys(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """Forget Idempotency-Keys of finished deployments created more than IDEMPOTENCY_KEY_TTL_HOURS ago.

    An active deployment keeps its key: a client retrying its POST must still get it back.
    """
    from deployments.models import Deployment

    cutoff = now - timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    qs = (
        Deployment.objects.exclude(idempotency_key="")
        .exclude(status__in=Deployment.ACTIVE_STATUSES)
        .filter(created_at__lt=cutoff)
    )
    size = batch_size or settings.MAINTENANCE_BATCH_SIZE
    rows = batches = 0
    while True:
        ids = list(qs.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            break
        # Re-check the condition in the UPDATE: a retried deployment may have become active.
        rows += qs.filter(pk__in=ids).update(idempotency_key="", request_fingerprint="")
        batches += 1
        if len(ids) < size:
            break
    return JobResult(rows=rows, details={"cutoff": cutoff.isoformat(), "batches": batches})


def vacuum_analyze(*, now: datetime, batch_size: int | None = None) -> JobResult:
    """``VACUUM ANALYZE`` the whole database on PostgreSQL; rows = dead rows it found to reclaim."""
    if connection.vendor != "postgresql":
        return JobResult(
            status=MaintenanceRun.Status.SKIPPED,
            message=f"VACUUM ANALYZE runs on PostgreSQL only; skipped on {connection.vendor}",
        )
    if connection.in_atomic_block:
        raise RuntimeError("VACUUM cannot run inside a transaction")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables")
        tables, dead = cursor.fetchone()
        cursor.execute("VACUUM ANALYZE")
    return JobResult(rows=int(dead), details={"tables": int(tables)})


Job = Callable[..., JobResult]
JOBS: dict[str, Job] = {
    "prune_deployment_events": prune_deployment_events,
    "prune_measurements": prune_measurements,
    "prune_notifications": prune_notifications,
    "prune_audit_log": prune_audit_log,
    "expire_idempotency_keys": expire_idempotency_keys,
    "vacuum_analyze": vacuum_analyze,
}


def maintenance_run(
    *, job: str, now: datetime | None = None, batch_size: int | None = None
) -> MaintenanceRun:
    """Run one job, record its figures (also when it fails, then re-raise) and audit what it removed."""
    func = JOBS[job]
    now = now or timezone.now()
    started_at = timezone.now()
    started = time.monotonic()
    error: BaseException | None = None
    try:
        result = func(now=now, batch_size=batch_size)
    except Exception as exc:
        error = exc
        result = JobResult(status=MaintenanceRun.Status.FAILED, message=f"{type(exc).__name__}: {exc}")
        log.exception("maintenance job %s failed", job)
    duration = time.monotonic() - started
    run, _ = MaintenanceRun.objects.update_or_create(
        job=job,
        defaults={
            "status": result.status,
            "started_at": started_at,
            "finished_at": timezone.now(),
            "duration_seconds": duration,
            "rows": result.rows,
            "message": result.message,
            "details": result.details,
        },
    )
    if result.rows and job != "vacuum_analyze":
        audit_record(action=f"maintenance.{job}", obj=run, changes={"rows": result.rows, **result.details})
    log.info("maintenance %s: %s, %d rows in %.3fs", job, result.status, result.rows, duration)
    if error is not None:
        raise error
    return run
