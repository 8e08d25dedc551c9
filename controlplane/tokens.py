"""API token services: create (the key is returned once), authenticate, revoke."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone

from controlplane.audit import audit_record
from controlplane.models import ApiToken

KEY_PREFIX = "cp_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_create(*, user: Any, name: str = "", ttl_days: int | None = None) -> tuple[ApiToken, str]:
    """Create a token; return it and the plaintext key, which is never stored."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    expires_at = timezone.now() + timedelta(days=ttl_days) if ttl_days else None
    token = ApiToken.objects.create(
        user=user, name=name, prefix=prefix, key_hash=hash_key(key), expires_at=expires_at
    )
    audit_record(action="api_token.create", obj=token, changes={"user": user.get_username(), "name": name})
    return token, key


def token_authenticate(key: str) -> ApiToken | None:
    """The active token for a key, or None; refreshes ``last_used_at`` at most once a minute."""
    if not key.startswith(KEY_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(action="api_token.revoke", obj=token)
    return token
