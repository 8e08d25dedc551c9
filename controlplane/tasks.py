"""Project-wide Celery tasks."""

from __future__ import annotations

import socket

from celery import shared_task

from controlplane.heartbeat import heartbeat_record


@shared_task(name="controlplane.pipeline_heartbeat", ignore_result=True)
def pipeline_heartbeat(note: str = "") -> None:
    """Scheduled by beat, run by a worker: proves beat -> broker -> worker -> database works."""
    heartbeat_record(name="pipeline", details={"worker": socket.gethostname(), "note": note})
