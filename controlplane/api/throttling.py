"""Per-user request rates: one for everything, a stricter one for mutations."""

from __future__ import annotations

from typing import Any

from rest_framework import throttling
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request


class UserRateThrottle(throttling.UserRateThrottle):
    scope = "user"


class MutationRateThrottle(throttling.UserRateThrottle):
    scope = "mutation"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
