"""Audit for the admin: every add, change, delete and bulk action becomes an AuditEntry."""

from __future__ import annotations

import functools
import json
from typing import Any

from django.contrib import admin
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from controlplane.audit import audit_record, diff, model_snapshot


def _message_changes(message: Any) -> dict[str, Any]:
    if isinstance(message, str):
        try:
            message = json.loads(message) if message else []
        except ValueError:
            return {"message": message}
    return {"admin": message} if message else {}


class AuditedModelAdmin(admin.ModelAdmin):
    """Base for every ModelAdmin of the project (and re-registered third-party ones)."""

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        audit_record(action=f"{obj._meta.model_name}.create", obj=obj, changes=_message_changes(message))
        return super().log_addition(request, obj, message)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = None
        if change and obj.pk is not None:
            old = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = model_snapshot(old) if old is not None else None
        super().save_model(request, obj, form, change)
        if before is not None:
            request._audit_changes = diff(before, model_snapshot(obj))  # type: ignore[attr-defined]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        changes = getattr(request, "_audit_changes", None)
        if changes is None:
            changes = _message_changes(message)
        audit_record(action=f"{obj._meta.model_name}.update", obj=obj, changes=changes)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        for obj in queryset:
            audit_record(action=f"{obj._meta.model_name}.delete", obj=obj)
        return super().log_deletions(request, queryset)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = dict(super().get_actions(request) or {})
        return {name: (self._audited(a[0], name), *a[1:]) for name, a in actions.items()}

    def _audited(self, func: Any, name: str) -> Any:
        if name == "delete_selected":  # audited per object through log_deletions
            return func

        @functools.wraps(func)
        def wrapper(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
            ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[:500]]
            audit_record(
                action=f"{self.model._meta.model_name}.admin_action.{name}",
                object_type=self.model._meta.label_lower,
                object_id=ids[0] if len(ids) == 1 else "",
                object_repr=f"{len(ids)} selected",
                changes={"ids": ids},
            )
            return func(modeladmin, request, queryset)

        return wrapper


def reregister(model: type[Model], base: type[admin.ModelAdmin]) -> None:
    """Replace a third-party ModelAdmin with an audited subclass of it."""
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    audited = type(f"Audited{base.__name__}", (AuditedModelAdmin, base), {})
    admin.site.register(model, audited)
