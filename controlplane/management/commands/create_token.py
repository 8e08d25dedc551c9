"""``manage.py create_token USERNAME --role viewer|operator|admin``: the key is the last line."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from controlplane import context
from controlplane.roles import Role, set_role
from controlplane.tokens import token_create


class Command(BaseCommand):
    help = "Create (if needed) a user with the given role and print a new API token for it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", default="viewer", choices=["viewer", "operator", "admin"])
        parser.add_argument("--name", default="", help="What the token is for.")
        parser.add_argument(
            "--ttl-days", type=int, default=None, help="Expire after N days (default: never)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            role = Role.parse(options["role"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        token_ctx = context.activate(context.ActorContext(request_id="", source="cli"))
        try:
            with transaction.atomic():
                user, created = get_user_model().objects.get_or_create(username=options["username"])
                if created:
                    user.set_unusable_password()
                    user.save()
                set_role(user, role)
                token, key = token_create(user=user, name=options["name"], ttl_days=options["ttl_days"])
        finally:
            context.deactivate(token_ctx)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} user {user.get_username()} with role {role.group_name}.")
        self.stdout.write(f"Token prefix {token.prefix}; the key is shown once:")
        self.stdout.write(key)
