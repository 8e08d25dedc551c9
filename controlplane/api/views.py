from __future__ import annotations

import django_filters
from rest_framework import viewsets

from controlplane.api.serializers import AuditEntrySerializer
from controlplane.models import AuditEntry
from controlplane.roles import Role


class AuditEntryFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    actor = django_filters.CharFilter(field_name="actor_repr")

    class Meta:
        model = AuditEntry
        fields = ["action", "object_type", "object_id", "source", "request_id"]


class AuditEntryViewSet(viewsets.ReadOnlyModelViewSet[AuditEntry]):
    """The audit log (admins only): every mutation with actor, source IP and request id."""

    queryset = AuditEntry.objects.all()
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilter
    read_role = Role.ADMIN
    ordering_fields = ["created_at"]
