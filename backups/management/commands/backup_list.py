"""List the backup catalog."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from backups.models import Backup


class Command(BaseCommand):
    help = "List backups, newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--policy", help="Only this policy (name).")
        parser.add_argument("--status", help="Only this status.")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        qs = Backup.objects.select_related("policy")
        if options["policy"]:
            qs = qs.filter(policy__name=options["policy"])
        if options["status"]:
            qs = qs.filter(status=options["status"])
        self.stdout.write(
            f"{'id':>6}  {'policy':<20} {'status':<10} {'created':<20} {'stored':>12}  verify drill  key"
        )
        for b in qs[: options["limit"]]:
            self.stdout.write(
                f"{b.pk:>6}  {b.policy.name:<20} {b.status:<10} {b.created_at:%Y-%m-%d %H:%M:%S}  "
                f"{b.stored_bytes or 0:>12}  {b.verify_status or '-':<6} {b.drill_status or '-':<5} "
                f"{b.storage_key}"
            )
