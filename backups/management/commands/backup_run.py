"""Run one backup of a policy now, in this process (no worker needed)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from backups import services
from backups.models import Backup, BackupPolicy
from controlplane import context


class Command(BaseCommand):
    help = "Back up POLICY now (by name or id) and print the catalog row; exits 1 unless it succeeded."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("policy")

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["policy"]
        policy = BackupPolicy.objects.filter(name=ref).first() or (
            BackupPolicy.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        )
        if policy is None:
            raise CommandError(f"no backup policy {ref!r}")
        token = context.activate(context.ActorContext(request_id="", source="cli"))
        try:
            backup = services.backup_request(policy=policy, enqueue=False)
            backup = services.backup_execute(backup=backup)
        finally:
            context.deactivate(token)
        self.stdout.write(
            f"backup #{backup.pk} {backup.status} key={backup.storage_key} raw={backup.raw_bytes} "
            f"stored={backup.stored_bytes} sha256={backup.sha256} duration={backup.duration_seconds}"
        )
        if backup.status != Backup.Status.SUCCEEDED:
            raise CommandError(f"backup #{backup.pk} {backup.status}: {backup.error}")
