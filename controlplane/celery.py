"""The Celery application: JSON only, late acks, beat on the database scheduler."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_schedule(sender: Celery, **_: object) -> None:
    from controlplane.schedule import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE


def _install_worker_heartbeat() -> None:
    from controlplane.heartbeat import WorkerHeartbeatStep

    app.steps["worker"].add(WorkerHeartbeatStep)


_install_worker_heartbeat()
