from __future__ import annotations

from typing import Any

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.api.serializers import ApiTokenSerializer, AuditEntrySerializer
from controlplane.models import ApiToken, AuditEntry
from controlplane.roles import Role
from controlplane.tokens import token_create, token_revoke


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


class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet[ApiToken],
):
    """API tokens (admins only). The key is returned once, in the create response."""

    queryset = ApiToken.objects.select_related("user")
    serializer_class = ApiTokenSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    filterset_fields = ["user__username", "prefix"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token, key = token_create(user=data["user"], name=data.get("name", ""), ttl_days=data.get("ttl_days"))
        out = self.get_serializer(token, context={**self.get_serializer_context(), "plaintext_key": key})
        return Response(out.data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiTokenSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = token_revoke(token=self.get_object())
        return Response(self.get_serializer(token).data)
