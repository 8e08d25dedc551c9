"""Viewset mixins shared by the apps' APIs."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework.serializers import BaseSerializer

from controlplane.audit import audit_record, diff, model_snapshot


class AuditedModelMixin:
    """Records create/update/delete of plain configuration models in the audit log.

    Stateful objects (deployments, incidents, backups) change through services, which
    audit themselves; this mixin is for the configuration CRUD around them.
    """

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        with transaction.atomic():
            obj = serializer.save()
            audit_record(
                action=f"{obj._meta.model_name}.create", obj=obj, changes=diff({}, model_snapshot(obj))
            )

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        before = model_snapshot(serializer.instance)  # type: ignore[arg-type]
        with transaction.atomic():
            obj = serializer.save()
            audit_record(
                action=f"{obj._meta.model_name}.update", obj=obj, changes=diff(before, model_snapshot(obj))
            )

    def perform_destroy(self, instance: Any) -> None:
        with transaction.atomic():
            audit_record(action=f"{instance._meta.model_name}.delete", obj=instance)
            instance.delete()
