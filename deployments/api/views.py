"""Thin views: parse, call one service, render."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlplane.api.mixins import AuditedModelMixin
from controlplane.roles import Role
from deployments import approvals, checklists, selectors, services
from deployments.api import serializers as s
from deployments.api.filters import DeploymentFilter, EnvironmentFilter, InstanceFilter, ReleaseFilter
from deployments.models import (
    Approval,
    ChecklistItem,
    Deployment,
    Environment,
    Instance,
    Phase,
    Release,
    Service,
)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="A retried request with the same key returns the same deployment.",
)


class ServiceViewSet(AuditedModelMixin, viewsets.ModelViewSet[Service]):
    """Services (the applications being deployed), addressed by slug."""

    queryset = Service.objects.all()
    serializer_class = s.ServiceSerializer
    lookup_field = "slug"
    action_roles = {"destroy": Role.ADMIN}


@extend_schema(
    parameters=[OpenApiParameter("ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="service/env")]
)
class EnvironmentViewSet(AuditedModelMixin, viewsets.ModelViewSet[Environment]):
    """Environments, addressed as ``service/env`` (``/api/v1/environments/noodle/production/``)."""

    queryset = Environment.objects.select_related("service", "current_release").prefetch_related(
        "instances__release"
    )
    serializer_class = s.EnvironmentSerializer
    lookup_field = "ref"
    # service/env; a single segment is routed too, so it gets auth errors and a 404 like any id.
    lookup_value_regex = r"[^/]+(?:/[^/]+)?"
    filterset_class = EnvironmentFilter
    action_roles = {"destroy": Role.ADMIN}

    def get_object(self) -> Environment:
        service, _, slug = str(self.kwargs["ref"]).partition("/")
        obj = self.filter_queryset(self.get_queryset()).filter(service__slug=service, slug=slug).first()
        if obj is None:
            raise Http404
        self.check_object_permissions(self.request, obj)
        return obj


class InstanceViewSet(AuditedModelMixin, viewsets.ModelViewSet[Instance]):
    """Instances of an environment: base URL, slot and the release on it."""

    queryset = Instance.objects.select_related("environment__service", "release")
    serializer_class = s.InstanceSerializer
    filterset_class = InstanceFilter
    action_roles = {"destroy": Role.ADMIN}


class ReleaseViewSet(
    AuditedModelMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet[Release],
):
    """Releases are immutable: create, list and read only."""

    queryset = Release.objects.select_related("service")
    serializer_class = s.ReleaseSerializer
    filterset_class = ReleaseFilter


class DeploymentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Deployment]
):
    """Rollouts: create one, follow its timeline, and act on it (the operator verbs)."""

    filterset_class = DeploymentFilter
    ordering_fields = ["created_at", "id"]
    action_roles = {
        **dict.fromkeys(
            (
                "create",
                "pause",
                "resume",
                "promote",
                "promote_full",
                "abort",
                "retry",
                "rollback",
                "start",
                "approve",
                "reject",
                "check_item",
            ),
            Role.OPERATOR,
        ),
        "override": Role.ADMIN,
    }

    def get_queryset(self) -> QuerySet[Deployment]:
        if self.action == "list":
            return selectors.deployment_list()
        return selectors.deployment_detail().prefetch_related("measurements")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "list":
            return s.DeploymentSerializer
        if self.action == "create":
            return s.DeploymentCreateSerializer
        if self.action in ("retrieve",):
            return s.DeploymentDetailSerializer
        return s.VerbSerializer

    def _render(self, deployment: Deployment, code: int = status.HTTP_200_OK) -> Response:
        fresh = selectors.deployment_detail().prefetch_related("measurements").get(pk=deployment.pk)
        return Response(
            s.DeploymentDetailSerializer(fresh, context=self.get_serializer_context()).data, status=code
        )

    @extend_schema(
        request=s.DeploymentCreateSerializer,
        responses={201: s.DeploymentDetailSerializer, 200: s.DeploymentDetailSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.DeploymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment, created = services.deployment_create(
            environment=data.validated_data["environment"],
            release=data.validated_data["release"],
            config=data.validated_data["deployment"],
            actor=request.user,
            reason=data.validated_data["reason"],
            idempotency_key=request.headers.get("Idempotency-Key", "")[:200],
        )
        return self._render(deployment, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def _verb(self, request: Request, verb: str) -> Response:
        data = s.VerbSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.VERBS[verb](
            deployment=self.get_object(), actor=request.user, reason=data.validated_data["reason"]
        )
        return self._render(deployment)

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "pause")

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "resume")

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "promote")

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"], url_path="promote-full")
    def promote_full(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "promote-full")

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def abort(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "abort")

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        return self._verb(request, "retry")

    @extend_schema(
        request=s.VerbSerializer,
        responses={201: s.DeploymentDetailSerializer, 200: s.DeploymentDetailSerializer},
        parameters=[IDEMPOTENCY_HEADER],
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        """Create a deployment of the previous release (fast while its slot is still warm)."""
        data = s.VerbSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")[:200]
        rollback = services.deployment_rollback(
            deployment=self.get_object(),
            actor=request.user,
            reason=data.validated_data["reason"],
            idempotency_key=key,
        )
        return self._render(rollback, status.HTTP_201_CREATED)

    # --- gates: checklists and approvals ----------------------------------------------------

    @extend_schema(request=None, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        """Start a pending deployment; 409 lists the required checklist items that block it."""
        deployment = checklists.deployment_start(deployment=self.get_object(), actor=request.user)
        return self._render(deployment)

    @extend_schema(request=s.OverrideSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def override(self, request: Request, pk: str | None = None) -> Response:
        """Admins: start despite the pre-deployment checklist, with a written reason."""
        data = s.OverrideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = checklists.deployment_override_gate(
            deployment=self.get_object(), actor=request.user, reason=data.validated_data["reason"]
        )
        return self._render(deployment)

    def _decide(self, request: Request, approve: bool) -> Response:
        data = s.VerbSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approvals.approval_decide(
            deployment=self.get_object(),
            actor=request.user,
            approve=approve,
            reason=data.validated_data["reason"],
        )
        return self._render(self.get_object())

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve the approval step the deployment waits at (needs the step's role)."""
        return self._decide(request, True)

    @extend_schema(request=s.VerbSerializer, responses=s.DeploymentDetailSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        """Reject it with a reason: the deployment is aborted and traffic returns to stable."""
        return self._decide(request, False)

    def _checklists(self, deployment: Deployment) -> Response:
        items = list(ChecklistItem.objects.filter(deployment=deployment).select_related("checked_by"))
        body = {
            "pre": [i for i in items if i.phase == Phase.PRE],
            "post": [i for i in items if i.phase == Phase.POST],
            "blocking": [
                i.pk
                for i in items
                if i.phase == Phase.PRE and i.required and i.state != ChecklistItem.State.PASSED
            ]
            if deployment.status == Deployment.Status.PENDING
            else [],
            "approvals": Approval.objects.filter(deployment=deployment).select_related("decided_by"),
        }
        return Response(s.ChecklistsSerializer(body).data)

    @extend_schema(request=None, responses=s.ChecklistsSerializer)
    @action(detail=True, methods=["get"], url_path="checklists")
    def checklists(self, request: Request, pk: str | None = None) -> Response:
        """The pre and post checklist items with state, who checked them and evidence; approvals."""
        return self._checklists(self.get_object())

    @extend_schema(
        request=s.CheckItemSerializer,
        responses=s.ChecklistItemSerializer,
        parameters=[OpenApiParameter("item_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["post"], url_path=r"checklists/items/(?P<item_id>[0-9]+)/check")
    def check_item(self, request: Request, pk: str | None = None, item_id: str | None = None) -> Response:
        """Check (or fail) a manual item, with an optional note."""
        deployment = self.get_object()
        data = s.CheckItemSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item_pk = int(item_id or 0)
        item = (
            ChecklistItem.objects.filter(deployment=deployment, pk=item_pk).first()
            if item_pk < 2**63
            else None
        )
        if item is None:
            raise Http404
        item = checklists.checklist_item_check(
            item=item,
            actor=request.user,
            passed=data.validated_data["passed"],
            note=data.validated_data["note"],
        )
        return Response(s.ChecklistItemSerializer(item).data)
