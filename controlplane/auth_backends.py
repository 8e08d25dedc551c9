"""Password login with brute-force protection (admin and browsable API)."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from controlplane.middleware import client_ip


def _key(username: str, ip: str | None) -> str:
    digest = hashlib.sha256(f"{username.lower()}|{ip or '-'}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


class LockoutModelBackend(ModelBackend):
    """Refuses a username from an address after N failures within the lockout window.

    Failures are counted per (username, source IP) in the shared cache, so every
    web process enforces the same limit; a success clears the counter.  A locked
    out attempt is refused even with the right password (``PermissionDenied``
    stops Django from trying other backends).
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            username = kwargs.get("username", "")
        ip = client_ip(request) if request is not None else None
        key = _key(username or "", ip)
        if cache.get(key, 0) >= settings.LOGIN_MAX_FAILURES:
            raise PermissionDenied("too many failed logins; try again later")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        else:
            cache.delete(key)
        return user
