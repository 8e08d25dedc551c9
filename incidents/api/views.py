"""Incidents API: thin views that parse input, call one service and render the result."""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import authentication, mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from controlplane.api.mixins import AuditedModelMixin
from controlplane.authentication import ApiTokenAuthentication
from controlplane.roles import Role, has_role
from deployments.models import Environment
from incidents import selectors, services
from incidents.api import serializers as s
from incidents.intake import alertmanager_ingest
from incidents.models import (
    ActionItem,
    DeadlineBreach,
    DeploymentLink,
    Incident,
    IncidentRoleAssignment,
    PostMortem,
    SeverityPolicy,
    TimelineEvent,
)


class SeverityPolicyViewSet(AuditedModelMixin, viewsets.ModelViewSet[SeverityPolicy]):
    """Severity policies (P1/P2/P3): deadlines, post-mortem rule, channels. Admins edit."""

    queryset = SeverityPolicy.objects.all()
    serializer_class = s.SeverityPolicySerializer
    write_role = Role.ADMIN
    pagination_class = None


class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Incident]):
    """Incidents: declare, transition, roles and hand-off, severity, timeline, alerts, report."""

    serializer_class = s.IncidentSerializer
    filterset_fields = ["status", "source", "severity__code"]
    ordering_fields = ["declared_at", "severity__rank"]

    def get_queryset(self) -> QuerySet[Incident]:
        return Incident.objects.select_related("severity", "postmortem").prefetch_related(
            Prefetch(
                "role_assignments",
                queryset=IncidentRoleAssignment.objects.select_related("user", "assigned_by"),
            ),
            Prefetch("breaches", queryset=DeadlineBreach.objects.order_by("detected_at")),
            Prefetch("environments", queryset=Environment.objects.select_related("service")),
            Prefetch(
                "deployment_links",
                queryset=DeploymentLink.objects.select_related(
                    "deployment__environment__service", "deployment__release"
                ),
            ),
        )

    def _out(self, incident: Incident, code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(self.get_queryset().get(pk=incident.pk)).data, status=code)

    @extend_schema(request=s.IncidentCreateSerializer, responses={201: s.IncidentSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(s.IncidentCreateSerializer, request)
        environments = data.pop("environments")
        with transaction.atomic():
            incident = services.incident_declare(actor=request.user, **data)
            for env in environments:
                services.incident_add_environment(incident=incident, environment=env, actor=request.user)
        return self._out(incident, status.HTTP_201_CREATED)

    @extend_schema(request=s.IncidentUpdateSerializer, responses=s.IncidentSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.IncidentUpdateSerializer, request)
        return self._out(services.incident_update(incident=self.get_object(), actor=request.user, **data))

    @extend_schema(request=s.TransitionSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.TransitionSerializer, request)
        incident = services.incident_transition(
            incident=self.get_object(), to=data["status"], note=data["note"], actor=request.user
        )
        return self._out(incident)

    @extend_schema(request=s.AssignRoleSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def roles(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.AssignRoleSerializer, request)
        incident = self.get_object()
        services.incident_assign_role(incident=incident, actor=request.user, **data)
        return self._out(incident)

    @extend_schema(request=s.HandoffSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def handoff(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.HandoffSerializer, request)
        incident = self.get_object()
        services.incident_handoff_commander(
            incident=incident, to_user=data["to"], note=data["note"], actor=request.user
        )
        return self._out(incident)

    @extend_schema(request=None, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str | None = None) -> Response:
        """Take command (sets acknowledged_at the first time)."""
        incident = self.get_object()
        services.incident_assign_role(
            incident=incident,
            role=IncidentRoleAssignment.Role.COMMANDER,
            user=request.user,
            actor=request.user,
        )
        return self._out(incident)

    @extend_schema(request=None, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def escalate(self, request: Request, pk: str | None = None) -> Response:
        return self._out(services.incident_escalate(incident=self.get_object(), actor=request.user))

    @extend_schema(request=s.SeverityChangeSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def severity(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.SeverityChangeSerializer, request)
        return self._out(
            services.incident_set_severity(incident=self.get_object(), actor=request.user, **data)
        )

    @extend_schema(
        methods=["get"],
        request=None,
        responses=s.TimelineEventSerializer(many=True),
        parameters=[OpenApiParameter("pinned", bool, required=False)],
    )
    @extend_schema(methods=["post"], request=s.NoteSerializer, responses={201: s.TimelineEventSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        """The incident's timeline; POST adds a manual note."""
        incident = self.get_object()
        if request.method == "POST":
            data = _valid(s.NoteSerializer, request)
            event = services.incident_add_note(incident=incident, actor=request.user, **data)
            return Response(s.TimelineEventSerializer(event).data, status=status.HTTP_201_CREATED)
        events = incident.timeline.select_related("actor")
        if request.query_params.get("pinned") in ("true", "1"):
            events = events.filter(pinned=True)
        return Response(s.TimelineEventSerializer(events, many=True).data)

    @extend_schema(request=s.EnvironmentChangeSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def environments(self, request: Request, pk: str | None = None) -> Response:
        """Add (or with ``affected: false`` remove) an affected environment."""
        data = _valid(s.EnvironmentChangeSerializer, request)
        incident = self.get_object()
        if data["affected"]:
            services.incident_add_environment(
                incident=incident, environment=data["environment"], actor=request.user
            )
        else:
            services.incident_remove_environment(
                incident=incident, environment=data["environment"], actor=request.user
            )
        return self._out(incident)

    @extend_schema(request=s.LinkDeploymentSerializer, responses=s.IncidentSerializer)
    @action(detail=True, methods=["post"])
    def deployments(self, request: Request, pk: str | None = None) -> Response:
        """Link a deployment as caused / fixed / suspect / dismissed (or change its relation)."""
        data = _valid(s.LinkDeploymentSerializer, request)
        incident = self.get_object()
        services.incident_link_deployment(incident=incident, actor=request.user, **data)
        return self._out(incident)

    @extend_schema(request=None, responses=s.SuspectDeploymentSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="suspect-deployments", pagination_class=None)
    def suspect_deployments(self, request: Request, pk: str | None = None) -> Response:
        """Deployments on the affected environments shortly before detection (dismissed ones left out)."""
        return Response(
            s.SuspectDeploymentSerializer(selectors.suspect_deployments(self.get_object()), many=True).data
        )

    @extend_schema(request=None, responses=s.AlertSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def alerts(self, request: Request, pk: str | None = None) -> Response:
        return Response(s.AlertSerializer(self.get_object().alerts.all(), many=True).data)

    @extend_schema(parameters=[s.ReportQuerySerializer], responses=s.ReportSerializer)
    @action(detail=False, methods=["get"])
    def report(self, request: Request) -> Response:
        """MTTA / MTTM / MTTR and deadline breaches per severity (default: the last 30 days)."""
        q = s.ReportQuerySerializer(data=request.query_params)
        q.is_valid(raise_exception=True)
        return Response(s.ReportSerializer(selectors.incidents_report(**q.validated_data)).data)


class TimelineEventViewSet(viewsets.ReadOnlyModelViewSet[TimelineEvent]):
    """Timeline events across incidents (append-only); pinning is the one change allowed."""

    queryset = TimelineEvent.objects.select_related("actor")
    serializer_class = s.TimelineEventSerializer
    filterset_fields = ["incident", "kind", "pinned"]

    @extend_schema(request=s.PinSerializer, responses=s.TimelineEventSerializer)
    @action(detail=True, methods=["post"])
    def pin(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.PinSerializer, request)
        event = services.timeline_event_pin(
            event=self.get_object(), pinned=data["pinned"], actor=request.user
        )
        return Response(self.get_serializer(event).data)


class PostMortemViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[PostMortem]
):
    """Post-mortems: SRE-book sections, draft -> in_review -> published, due from the policy."""

    queryset = PostMortem.objects.select_related("author").prefetch_related("action_items__owner")
    serializer_class = s.PostMortemSerializer
    filterset_fields = ["status", "incident"]

    @extend_schema(request=s.PostMortemCreateSerializer, responses={201: s.PostMortemSerializer})
    def create(self, request: Request) -> Response:
        data = _valid(s.PostMortemCreateSerializer, request)
        pm = services.postmortem_create(incident=data["incident"], actor=request.user)
        return Response(self.get_serializer(pm).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.PostMortemSerializer, responses=s.PostMortemSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        pm = self.get_object()
        ser = self.get_serializer(pm, data=request.data, partial=True)
        ser.is_valid(raise_exception=True)
        sections = {k: v for k, v in ser.validated_data.items() if k in PostMortem.SECTIONS}
        pm = services.postmortem_update(postmortem=pm, actor=request.user, **sections)
        return Response(self.get_serializer(pm).data)

    @extend_schema(request=s.PostMortemTransitionSerializer, responses=s.PostMortemSerializer)
    @action(detail=True, methods=["post"])
    def transition(self, request: Request, pk: str | None = None) -> Response:
        data = _valid(s.PostMortemTransitionSerializer, request)
        pm = services.postmortem_transition(
            postmortem=self.get_object(), to=data["status"], actor=request.user
        )
        return Response(self.get_serializer(pm).data)


class ActionItemViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet[ActionItem],
):
    """Action items from post-mortems: owner, due date, kind, status, ticket link."""

    queryset = ActionItem.objects.select_related("owner")
    serializer_class = s.ActionItemSerializer
    filterset_fields = ["status", "kind", "postmortem", "owner__username"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def perform_create(self, serializer: Any) -> None:
        serializer.instance = services.action_item_create(
            actor=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer: Any) -> None:
        data = dict(serializer.validated_data)
        data.pop("postmortem", None)
        serializer.instance = services.action_item_update(
            item=serializer.instance, actor=self.request.user, **data
        )


def _valid(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    ser = serializer_class(data=request.data)
    ser.is_valid(raise_exception=True)
    return dict(ser.validated_data)


# --- Alertmanager intake -------------------------------------------------------------


class IntegrationTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <ALERTMANAGER_TOKEN>``: the static token Alertmanager is configured with."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        expected = settings.ALERTMANAGER_TOKEN
        header = authentication.get_authorization_header(request).split()
        if not expected or len(header) != 2 or header[0].lower() != b"bearer":
            return None
        if hmac.compare_digest(header[1], expected.encode()):
            return AnonymousUser(), "alertmanager"
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="alertmanager"'


class AlertmanagerPermission(permissions.BasePermission):
    message = "Needs the Alertmanager integration token or an operator's API token."

    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth == "alertmanager" or has_role(request.user, Role.OPERATOR)


class AlertmanagerWebhookView(APIView):
    """Alertmanager webhook receiver (payload version 4): one incident per groupKey."""

    authentication_classes = [IntegrationTokenAuthentication, ApiTokenAuthentication]
    permission_classes = [AlertmanagerPermission]
    # Alertmanager retries on its own and the intake is idempotent: never throttle alerts away.
    throttle_classes: list[Any] = []

    @extend_schema(request=OpenApiTypes.OBJECT, responses=s.IntakeResultSerializer)
    def post(self, request: Request) -> Response:
        result = alertmanager_ingest(payload=request.data)
        return Response(
            {
                "incident": result.incident.pk if result.incident else None,
                "created": result.created,
                "new": result.new,
                "fired": result.fired,
                "resolved": result.resolved,
                "unchanged": result.unchanged,
                "reopened": result.reopened,
                "auto_resolved": result.auto_resolved,
            }
        )
