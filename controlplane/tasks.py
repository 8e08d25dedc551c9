"""Project-wide Celery tasks."""

from __future__ import annotations

import socket

from celery import shared_task

from controlplane.heartbeat import heartbeat_record


@shared_task(name="controlplane.pipeline_heartbeat", ignore_result=True)
def pipeline_heartbeat(note: str = "") -> None:
    """Scheduled by beat, run by a worker: proves beat -> broker -> worker -> database works."""
    heartbeat_record(name="pipeline", details={"worker": socket.gethostname(), "note": note})


# Maintenance (controlplane/maintenance.py): one task per job so each is paused on its own.
def _maintain(job: str) -> int:
    from controlplane.maintenance import maintenance_run

    return maintenance_run(job=job).rows


@shared_task(name="controlplane.prune_deployment_events")
def prune_deployment_events() -> int:
    return _maintain("prune_deployment_events")


@shared_task(name="controlplane.prune_measurements")
def prune_measurements() -> int:
    return _maintain("prune_measurements")


@shared_task(name="controlplane.prune_notifications")
def prune_notifications() -> int:
    return _maintain("prune_notifications")


@shared_task(name="controlplane.prune_audit_log")
def prune_audit_log() -> int:
    return _maintain("prune_audit_log")


@shared_task(name="controlplane.expire_idempotency_keys")
def expire_idempotency_keys() -> int:
    return _maintain("expire_idempotency_keys")


@shared_task(name="controlplane.vacuum_analyze")
def vacuum_analyze() -> int:
    return _maintain("vacuum_analyze")
