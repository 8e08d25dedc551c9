from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from backups import services
from backups.api.serializers import (
    BackupDetailSerializer,
    BackupPolicySerializer,
    BackupSerializer,
    RestoreSerializer,
    RetentionEntrySerializer,
    RetentionInputSerializer,
    VerificationSerializer,
)
from backups.models import Backup, BackupPolicy, Restore, Verification
from controlplane.roles import Role


class BackupPolicyViewSet(viewsets.ModelViewSet[BackupPolicy]):
    """Backup policies: admins configure them, operators run them, everyone reads them."""

    queryset = BackupPolicy.objects.select_related("periodic_task")
    serializer_class = BackupPolicySerializer
    write_role = Role.ADMIN
    action_roles = {"run": Role.OPERATOR, "drill": Role.OPERATOR, "retention": Role.ADMIN}
    filterset_fields = ["enabled", "source_kind", "storage_kind"]

    def perform_create(self, serializer: BaseSerializer[BackupPolicy]) -> None:
        serializer.instance = services.policy_create(**serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[BackupPolicy]) -> None:
        policy = self.get_object()
        serializer.instance = services.policy_update(policy=policy, **serializer.validated_data)

    def perform_destroy(self, instance: BackupPolicy) -> None:
        services.policy_delete(policy=instance)

    @extend_schema(request=None, responses={202: BackupSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Start a backup now (an overlapping run is recorded as ``skipped``)."""
        backup = services.backup_request(policy=self.get_object())
        return Response(BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: BackupSerializer})
    @action(detail=True, methods=["post"])
    def drill(self, request: Request, pk: str | None = None) -> Response:
        """Restore-drill the policy's newest backup now."""
        backup = services.newest_drillable(self.get_object())
        if backup is None:
            from controlplane.api.errors import Conflict

            raise Conflict("The policy has no succeeded PostgreSQL backup to drill.")
        services.verification_request(backup=backup, kind=Verification.Kind.DRILL)
        return Response(BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=RetentionInputSerializer, responses=RetentionEntrySerializer(many=True))
    @action(detail=True, methods=["post"])
    def retention(self, request: Request, pk: str | None = None) -> Response:
        """Apply retention now; ``dry_run`` (the default) only lists what would expire."""
        data = RetentionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = services.retention_apply(policy=self.get_object(), dry_run=data.validated_data["dry_run"])
        return Response(RetentionEntrySerializer(report, many=True).data)


class BackupViewSet(viewsets.ReadOnlyModelViewSet[Backup]):
    """The backup catalog."""

    queryset = Backup.objects.select_related("policy")
    filterset_fields = ["policy", "status", "trigger", "verify_status", "drill_status"]
    ordering_fields = ["created_at", "finished_at"]
    action_roles = {"verify": Role.OPERATOR, "drill": Role.OPERATOR}

    def get_queryset(self) -> QuerySet[Backup]:
        qs = super().get_queryset()
        if self.action == "retrieve":
            qs = qs.prefetch_related("events", "verifications")
        return qs

    def get_serializer_class(self) -> Any:
        return BackupDetailSerializer if self.action == "retrieve" else BackupSerializer

    @extend_schema(request=None, responses={202: BackupSerializer})
    @action(detail=True, methods=["post"])
    def verify(self, request: Request, pk: str | None = None) -> Response:
        """Queue a checksum verification (reads the object back)."""
        backup = self.get_object()
        services.verification_request(backup=backup, kind=Verification.Kind.CHECKSUM)
        return Response(BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: BackupSerializer})
    @action(detail=True, methods=["post"])
    def drill(self, request: Request, pk: str | None = None) -> Response:
        """Queue a restore drill into a scratch database."""
        backup = self.get_object()
        services.verification_request(backup=backup, kind=Verification.Kind.DRILL)
        return Response(BackupSerializer(backup).data, status=status.HTTP_202_ACCEPTED)


class VerificationViewSet(viewsets.ReadOnlyModelViewSet[Verification]):
    """Checksum verifications and restore drills with their results."""

    queryset = Verification.objects.all()
    serializer_class = VerificationSerializer
    filterset_fields = ["backup", "kind", "status", "backup__policy"]


class RestoreViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Restore],
):
    """Restores over a live database: admins only, typed confirmation, safety backup first."""

    queryset = Restore.objects.all()
    serializer_class = RestoreSerializer
    read_role = Role.ADMIN
    write_role = Role.ADMIN
    filterset_fields = ["status", "backup", "target_name"]

    @extend_schema(responses={202: RestoreSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        restore = services.restore_request(
            backup=data["backup"],
            confirm=data["confirm"],
            target_dsn_env=data.get("target_dsn_env", ""),
            target_db_alias=data.get("target_db_alias", ""),
            reason=data.get("reason", ""),
            requested_by=request.user.get_username(),
        )
        return Response(self.get_serializer(restore).data, status=status.HTTP_202_ACCEPTED)
