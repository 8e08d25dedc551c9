"""The audit log service: every mutation, from the API, the admin or a worker."""

from __future__ import annotations

from typing import Any

from django.db import models

from controlplane import context
from controlplane.models import AuditEntry


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, models.Model):
        return value.pk
    return str(value)


def audit_record(
    *,
    action: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str | int = "",
    object_repr: str = "",
    changes: dict[str, Any] | None = None,
    actor: Any = None,
) -> AuditEntry:
    """Append one audit entry; actor, source, IP and request id come from the current context."""
    ctx = context.current()
    if actor is None and ctx is not None and ctx.request is not None:
        actor = getattr(ctx.request, "user", None)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:200]
    return AuditEntry.objects.create(
        actor=actor,
        actor_repr=actor.get_username() if actor is not None else "system",
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        object_repr=object_repr[:200],
        changes=_jsonable(changes or {}),
        source=ctx.source if ctx is not None else AuditEntry.Source.WORKER,
        source_ip=ctx.ip if ctx is not None else None,
        request_id=ctx.request_id if ctx is not None else "",
    )


def model_snapshot(obj: models.Model) -> dict[str, Any]:
    """Concrete field values of a model instance, for computing changed fields."""
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Changed fields as ``{field: [old, new]}``; secrets are never copied into the log."""
    out: dict[str, Any] = {}
    for key in after.keys() | before.keys():
        if before.get(key) != after.get(key):
            if any(s in key for s in ("password", "secret", "key_hash", "token")):
                out[key] = ["<redacted>", "<redacted>"]
            else:
                out[key] = [_jsonable(before.get(key)), _jsonable(after.get(key))]
    return out
