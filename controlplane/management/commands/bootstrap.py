"""First-run setup for the run command: the admin user and the beat schedule."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from controlplane.beat import sync_beat_schedule
from controlplane.roles import Role, set_role, sync_role_groups


class Command(BaseCommand):
    help = "Ensure the admin user exists (password from CONTROLPLANE_ADMIN_PASSWORD or generated once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        sync_role_groups()
        sync_beat_schedule()
        username = options["username"]
        user_model = get_user_model()
        password_file = Path(settings.DATA_DIR) / "admin-password"
        from_env = os.environ.get("CONTROLPLANE_ADMIN_PASSWORD", "")
        password = from_env
        if not password and password_file.exists():
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        user, _ = user_model.objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        set_role(user, Role.ADMIN)
        self.stdout.write(f"Admin user: {username}")
        if from_env:
            self.stdout.write("Password:   from CONTROLPLANE_ADMIN_PASSWORD")
        else:
            self.stdout.write(f"Password:   {password}  (stored in {password_file})")
