"""Syncing the code-defined schedule into the database scheduler."""

from __future__ import annotations

from django_celery_beat.schedulers import ModelEntry

from controlplane.celery import app
from controlplane.schedule import BEAT_SCHEDULE


def sync_beat_schedule() -> list[str]:
    """Create/update every entry by name; never touches ``enabled`` (operators pause in the admin).

    This is the same upsert beat's DatabaseScheduler does at start, run ahead of time
    so the admin lists the entries before beat first runs.
    """
    for name, entry in BEAT_SCHEDULE.items():
        ModelEntry.from_entry(name, app=app, **entry)
    return list(BEAT_SCHEDULE)
