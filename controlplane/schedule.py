"""The one beat schedule.

Synced into django-celery-beat's tables (``manage.py sync_beat_schedule``, and by
beat itself at start), where operators see and pause entries in the admin; a sync
never re-enables an entry an operator paused.  Every entry has an expiry so a
backlog after an outage does not run stale ticks.
"""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Health reports the scheduler pipeline stale after 2 minutes; 30 s keeps it well inside.
    "pipeline-heartbeat": {
        "task": "controlplane.pipeline_heartbeat",
        "schedule": 30.0,
        "options": {"expire_seconds": 25},
    },
    # Retention deletes by day granularity (keep_days); hourly keeps storage within an hour of
    # policy and also fails runs a dead worker left "running" (their policy lock is free).
    "backups-retention": {
        "task": "backups.apply_retention",
        "schedule": 3600.0,
        "options": {"expire_seconds": 3000},
    },
}
