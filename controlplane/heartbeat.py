"""Heartbeats: every worker records that it is alive, whatever the broker supports."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

WORKER_HEARTBEAT_SECONDS = 15.0


def heartbeat_record(*, name: str, details: dict[str, Any] | None = None) -> None:
    """Upsert ``name``'s last-seen time (one row per worker or pipeline)."""
    from django.db import close_old_connections
    from django.utils import timezone

    from controlplane.models import Heartbeat

    close_old_connections()
    Heartbeat.objects.update_or_create(
        name=name, defaults={"last_seen": timezone.now(), "details": details or {}}
    )


class WorkerHeartbeatStep(bootsteps.StartStopStep):
    """Worker bootstep writing ``worker:<hostname>`` to the database every 15 s.

    Celery's own remote-control ping needs a fanout-capable broker; a database row
    works with every broker and lets every web process report the same truth.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def _beat(self, hostname: str) -> None:
        try:
            heartbeat_record(
                name=f"worker:{hostname}",
                details={"pid": os.getpid(), "host": socket.gethostname()},
            )
        except Exception:
            log.exception("worker heartbeat failed")

    def start(self, parent: Any) -> None:
        self._beat(parent.hostname)
        self.tref = parent.timer.call_repeatedly(WORKER_HEARTBEAT_SECONDS, self._beat, (parent.hostname,))

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
