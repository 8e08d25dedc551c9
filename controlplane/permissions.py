"""Role checks for every API endpoint."""

from __future__ import annotations

from typing import Any

from rest_framework import permissions
from rest_framework.request import Request

from controlplane.roles import Role, has_role


class RolePermission(permissions.BasePermission):
    """Viewers read, operators act, admins configure.

    A view may set ``read_role`` / ``write_role`` or map action names to roles in
    ``action_roles``; the defaults are viewer for safe methods and operator otherwise.
    """

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        return has_role(request.user, required_role(request, view))


def required_role(request: Request, view: Any) -> Role:
    action = getattr(view, "action", None)
    action_roles: dict[str, Role] = getattr(view, "action_roles", {})
    if action and action in action_roles:
        return action_roles[action]
    if request.method in permissions.SAFE_METHODS:
        return getattr(view, "read_role", Role.VIEWER)
    return getattr(view, "write_role", Role.OPERATOR)
