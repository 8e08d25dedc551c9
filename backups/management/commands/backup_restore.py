"""Restore a backup over a database: checksum first, safety backup, then pg_restore --clean."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import APIException

from backups import services
from backups.models import Backup, Restore
from controlplane import context


class Command(BaseCommand):
    help = (
        "Restore BACKUP (id) into --target: a database alias from DATABASES or the name of an "
        "environment variable holding a DSN. Asks for the target database's name unless --confirm gives it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("backup", type=int)
        parser.add_argument("--target", required=True)
        parser.add_argument("--confirm", default="", help="The target database's name, typed exactly.")
        parser.add_argument("--reason", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        backup = Backup.objects.select_related("policy").filter(pk=options["backup"]).first()
        if backup is None:
            raise CommandError(f"no backup #{options['backup']}")
        target = options["target"]
        where = (
            {"target_db_alias": target}
            if target in settings.DATABASES
            else {"target_dsn_env": target}
            if target in os.environ
            else None
        )
        if where is None:
            raise CommandError(f"{target!r} is neither a database alias nor a set environment variable")
        confirm = options["confirm"] or input("Type the target database's name to confirm: ").strip()
        token = context.activate(context.ActorContext(request_id="", source="cli"))
        try:
            restore = services.restore_request(
                backup=backup,
                confirm=confirm,
                reason=options["reason"],
                requested_by=f"cli:{os.environ.get('USER', '')}",
                enqueue=False,
                **where,
            )
            restore = services.restore_execute(restore=restore)
        except APIException as exc:
            raise CommandError(str(getattr(exc, "detail", exc))) from exc
        finally:
            context.deactivate(token)
        self.stdout.write(restore.log)
        if restore.status != Restore.Status.SUCCEEDED:
            raise CommandError(f"restore #{restore.pk} failed: {restore.error}")
        self.stdout.write(f"restore #{restore.pk} succeeded (safety backup #{restore.safety_backup_id})")
