"""Exit 0 when a heartbeat is fresh: container healthchecks for worker and beat."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from controlplane.models import Heartbeat


class Command(BaseCommand):
    help = "Fail unless this host's worker (--worker) or the beat pipeline (default) beat recently."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--worker", action="store_true", help="Check this host's Celery worker.")
        parser.add_argument("--max-age", type=int, default=120, help="Seconds (default 120).")

    def handle(self, *args: Any, **options: Any) -> None:
        since = timezone.now() - timedelta(seconds=options["max_age"])
        rows = Heartbeat.objects.filter(last_seen__gte=since)
        if options["worker"]:
            rows = rows.filter(name__startswith="worker:", name__endswith=f"@{socket.gethostname()}")
            what = f"worker on {socket.gethostname()}"
        else:
            rows = rows.filter(name="pipeline")
            what = "beat -> worker pipeline"
        if not rows.exists():
            raise CommandError(f"no heartbeat from the {what} in the last {options['max_age']}s")
        self.stdout.write(f"{what}: ok")
