"""Write the code-defined beat schedule into django-celery-beat's tables."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from controlplane.beat import sync_beat_schedule


class Command(BaseCommand):
    help = "Create or update the periodic tasks of controlplane/schedule.py (paused entries stay paused)."

    def handle(self, *args: Any, **options: Any) -> None:
        names = sync_beat_schedule()
        self.stdout.write(f"Synced {len(names)} periodic tasks: {', '.join(sorted(names))}")
