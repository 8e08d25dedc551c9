"""Roles as Django groups: viewer reads, operator acts, admin configures."""

from __future__ import annotations

import enum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

# Apps whose models operators work with day to day.
OPERATIONAL_APPS = ("deployments", "incidents", "backups")
VISIBLE_APPS = (*OPERATIONAL_APPS, "controlplane", "django_celery_beat")


class Role(enum.IntEnum):
    """Ranked roles; a higher role includes every right of the lower ones."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def group_name(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            role = cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}; choose viewer, operator or admin") from None
        if role is cls.NONE:
            raise ValueError("role must be viewer, operator or admin")
        return role


def role_of(user: AbstractBaseUser | AnonymousUser | None) -> Role:
    """The highest role a user holds (superusers are admins)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return Role.NONE
    if getattr(user, "is_superuser", False):
        return Role.ADMIN
    cached = getattr(user, "_controlplane_role", None)
    if cached is not None:
        return Role(cached)
    names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    role = max((r for r in Role if r is not Role.NONE and r.group_name in names), default=Role.NONE)
    user._controlplane_role = int(role)  # type: ignore[attr-defined]
    return role


def has_role(user: Any, role: Role) -> bool:
    return role_of(user) >= role


def set_role(user: Any, role: Role) -> None:
    """Give a user exactly one role (replacing any other role group) and admin-site access."""
    sync_role_groups()
    groups = {g.name: g for g in Group.objects.filter(name__in=[r.group_name for r in Role])}
    user.groups.remove(*[g for name, g in groups.items() if name != role.group_name])
    user.groups.add(groups[role.group_name])
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if hasattr(user, "_controlplane_role"):
        del user._controlplane_role


def sync_role_groups() -> None:
    """Create the three groups and give each the model permissions its role implies."""
    perms = Permission.objects.select_related("content_type")
    view = [p for p in perms if p.codename.startswith("view_") and p.content_type.app_label in VISIBLE_APPS]
    act = [
        p
        for p in perms
        if p.content_type.app_label in OPERATIONAL_APPS and not p.codename.startswith("delete_")
    ] + [
        p
        for p in perms
        if p.content_type.app_label == "django_celery_beat" and p.codename.startswith("change_")
    ]
    for role, granted in (
        (Role.VIEWER, view),
        (Role.OPERATOR, view + act),
        (Role.ADMIN, list(perms)),
    ):
        group, _ = Group.objects.get_or_create(name=role.group_name)
        group.permissions.set(granted)


def on_post_migrate(sender: Any, **kwargs: Any) -> None:
    if getattr(sender, "name", "") == "controlplane":
        sync_role_groups()
