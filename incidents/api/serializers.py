"""Input and output serializers of the incidents API (no writes here: views call services)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.api.serializers import EnvironmentRefField
from deployments.models import Deployment
from incidents.models import (
    ActionItem,
    Alert,
    DeadlineBreach,
    DeploymentLink,
    Incident,
    IncidentRoleAssignment,
    PostMortem,
    SeverityPolicy,
    TimelineEvent,
)
from incidents.transitions import INCIDENT_TRANSITIONS, POSTMORTEM_TRANSITIONS

User = get_user_model()


def _username_field(**kwargs: Any) -> serializers.SlugRelatedField[Any]:
    return serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.filter(is_active=True), **kwargs
    )


class SeverityPolicySerializer(serializers.ModelSerializer[SeverityPolicy]):
    class Meta:
        model = SeverityPolicy
        fields = [
            "id",
            "code",
            "rank",
            "name",
            "description",
            "acknowledge_within",
            "assess_within",
            "mitigate_within",
            "resolve_within",
            "postmortem_within",
            "postmortem_required",
            "channels",
            "alert_severities",
            "auto_resolve",
            "open_on_deployment_failure",
        ]

    def validate_channels(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(v in SeverityPolicy.Channel.values for v in value):
            raise serializers.ValidationError(
                f"List of channels among {', '.join(SeverityPolicy.Channel.values)}."
            )
        return value

    def validate_alert_severities(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise serializers.ValidationError("List of non-empty strings.")
        return value


class RoleAssignmentSerializer(serializers.ModelSerializer[IncidentRoleAssignment]):
    user = serializers.CharField(source="user.get_username", read_only=True)
    assigned_by = serializers.SerializerMethodField()

    class Meta:
        model = IncidentRoleAssignment
        fields = ["id", "role", "user", "assigned_by", "assigned_at", "ended_at", "note"]

    def get_assigned_by(self, obj: IncidentRoleAssignment) -> str | None:
        return obj.assigned_by.get_username() if obj.assigned_by else None


class BreachSerializer(serializers.ModelSerializer[DeadlineBreach]):
    class Meta:
        model = DeadlineBreach
        fields = ["phase", "severity_code", "deadline_at", "detected_at"]


class NextDeadlineSerializer(serializers.Serializer[Any]):
    phase = serializers.CharField()
    due_at = serializers.DateTimeField()
    seconds_left = serializers.FloatField()


class DeploymentLinkSerializer(serializers.ModelSerializer[DeploymentLink]):
    environment = serializers.CharField(source="deployment.environment", read_only=True)
    version = serializers.CharField(source="deployment.release.version", read_only=True)
    deployment_status = serializers.CharField(source="deployment.status", read_only=True)

    class Meta:
        model = DeploymentLink
        fields = [
            "deployment",
            "relation",
            "note",
            "environment",
            "version",
            "deployment_status",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SuspectDeploymentSerializer(serializers.ModelSerializer[Deployment]):
    environment = serializers.CharField(read_only=True)
    version = serializers.CharField(source="release.version", read_only=True)

    class Meta:
        model = Deployment
        fields = ["id", "environment", "version", "kind", "status", "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class LinkDeploymentSerializer(serializers.Serializer[Any]):
    deployment = serializers.PrimaryKeyRelatedField(
        queryset=Deployment.objects.select_related("environment__service", "release")
    )
    relation = serializers.ChoiceField(choices=DeploymentLink.Relation.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class EnvironmentChangeSerializer(serializers.Serializer[Any]):
    environment = EnvironmentRefField()
    affected = serializers.BooleanField(default=True, help_text="false removes the environment.")


class IncidentSerializer(serializers.ModelSerializer[Incident]):
    severity = serializers.CharField(source="severity.code", read_only=True)
    environments = serializers.SerializerMethodField()
    deployment_links = DeploymentLinkSerializer(many=True, read_only=True)
    roles = serializers.SerializerMethodField()
    role_history = RoleAssignmentSerializer(source="role_assignments", many=True, read_only=True)
    breaches = BreachSerializer(many=True, read_only=True)
    allowed_transitions = serializers.SerializerMethodField()
    next_deadline = serializers.SerializerMethodField()
    postmortem = serializers.SerializerMethodField()

    class Meta:
        model = Incident
        fields = [
            "id",
            "title",
            "severity",
            "status",
            "source",
            "description",
            "impact_summary",
            "declared_at",
            "acknowledged_at",
            "investigating_at",
            "mitigated_at",
            "resolved_at",
            "closed_at",
            "reopened_count",
            "roles",
            "role_history",
            "breaches",
            "allowed_transitions",
            "next_deadline",
            "postmortem",
            "environments",
            "deployment_links",
            "updated_at",
        ]
        read_only_fields = fields

    def get_roles(self, obj: Incident) -> dict[str, str]:
        return {a.role: a.user.get_username() for a in obj.role_assignments.all() if a.ended_at is None}

    def get_allowed_transitions(self, obj: Incident) -> list[str]:
        return list(INCIDENT_TRANSITIONS.get(obj.status, ()))

    def get_environments(self, obj: Incident) -> list[str]:
        return [str(e) for e in obj.environments.all()]

    @extend_schema_field(NextDeadlineSerializer(allow_null=True))
    def get_next_deadline(self, obj: Incident) -> dict[str, Any] | None:
        nxt = obj.next_deadline()
        if nxt is None:
            return None
        phase, due = nxt
        return {"phase": phase, "due_at": due, "seconds_left": (due - timezone.now()).total_seconds()}

    def get_postmortem(self, obj: Incident) -> int | None:
        pm = getattr(obj, "postmortem", None)
        return pm.pk if pm is not None else None


class IncidentCreateSerializer(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=300)
    severity = serializers.SlugRelatedField(slug_field="code", queryset=SeverityPolicy.objects.all())
    environments = serializers.ListField(child=EnvironmentRefField(), required=False, default=list)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    impact_summary = serializers.CharField(required=False, allow_blank=True, default="")


class IncidentUpdateSerializer(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=300, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    impact_summary = serializers.CharField(required=False, allow_blank=True)


class TransitionSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Incident.Status.choices)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class AssignRoleSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=IncidentRoleAssignment.Role.choices)
    user = _username_field()
    note = serializers.CharField(required=False, allow_blank=True, default="")


class HandoffSerializer(serializers.Serializer[Any]):
    to = _username_field()
    note = serializers.CharField(required=False, allow_blank=True, default="")


class SeverityChangeSerializer(serializers.Serializer[Any]):
    severity = serializers.SlugRelatedField(slug_field="code", queryset=SeverityPolicy.objects.all())
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class TimelineEventSerializer(serializers.ModelSerializer[TimelineEvent]):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = TimelineEvent
        fields = ["id", "incident", "kind", "created_at", "actor", "message", "details", "pinned"]
        read_only_fields = fields

    def get_actor(self, obj: TimelineEvent) -> str | None:
        return obj.actor.get_username() if obj.actor else None


class NoteSerializer(serializers.Serializer[Any]):
    message = serializers.CharField()
    pinned = serializers.BooleanField(required=False, default=False)


class PinSerializer(serializers.Serializer[Any]):
    pinned = serializers.BooleanField()


class AlertSerializer(serializers.ModelSerializer[Alert]):
    class Meta:
        model = Alert
        fields = [
            "id",
            "fingerprint",
            "status",
            "name",
            "labels",
            "annotations",
            "starts_at",
            "ends_at",
            "generator_url",
            "first_seen_at",
            "last_seen_at",
            "resolved_at",
        ]
        read_only_fields = fields


class ReportQuerySerializer(serializers.Serializer[Any]):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - timedelta(days=30)
        if since >= until:
            raise serializers.ValidationError({"since": ["Must be before until."]})
        return {"since": since, "until": until}


class ReportRowSerializer(serializers.Serializer[Any]):
    severity = serializers.CharField()
    incidents = serializers.IntegerField()
    open = serializers.IntegerField()
    mtta_seconds = serializers.FloatField(allow_null=True)
    mttm_seconds = serializers.FloatField(allow_null=True)
    mttr_seconds = serializers.FloatField(allow_null=True)
    deadline_breaches = serializers.IntegerField()
    breaches_by_phase = serializers.DictField(child=serializers.IntegerField())


class ReportSerializer(serializers.Serializer[Any]):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    severities = ReportRowSerializer(many=True)


class ActionItemSerializer(serializers.ModelSerializer[ActionItem]):
    owner = _username_field(required=False, allow_null=True)
    is_overdue = serializers.BooleanField(read_only=True)

    class Meta:
        model = ActionItem
        fields = [
            "id",
            "postmortem",
            "title",
            "owner",
            "due_date",
            "kind",
            "status",
            "link",
            "is_overdue",
            "created_at",
            "completed_at",
            "last_reminded_at",
        ]
        read_only_fields = ["id", "is_overdue", "created_at", "completed_at", "last_reminded_at"]


class PostMortemSerializer(serializers.ModelSerializer[PostMortem]):
    is_overdue = serializers.BooleanField(read_only=True)
    action_items = ActionItemSerializer(many=True, read_only=True)
    allowed_transitions = serializers.SerializerMethodField()
    author = serializers.SerializerMethodField()

    class Meta:
        model = PostMortem
        fields = [
            "id",
            "incident",
            "status",
            *PostMortem.SECTIONS,
            "timeline",
            "author",
            "due_at",
            "is_overdue",
            "created_at",
            "published_at",
            "allowed_transitions",
            "action_items",
        ]
        read_only_fields = [
            "id",
            "status",
            "timeline",
            "author",
            "due_at",
            "is_overdue",
            "created_at",
            "published_at",
        ]

    def get_allowed_transitions(self, obj: PostMortem) -> list[str]:
        return list(POSTMORTEM_TRANSITIONS.get(obj.status, ()))

    def get_author(self, obj: PostMortem) -> str | None:
        return obj.author.get_username() if obj.author else None


class PostMortemCreateSerializer(serializers.Serializer[Any]):
    incident = serializers.PrimaryKeyRelatedField(queryset=Incident.objects.select_related("severity"))


class PostMortemTransitionSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=PostMortem.Status.choices)


class IntakeResultSerializer(serializers.Serializer[Any]):
    incident = serializers.IntegerField(allow_null=True)
    created = serializers.BooleanField()
    new = serializers.IntegerField()
    fired = serializers.IntegerField()
    resolved = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    reopened = serializers.BooleanField()
    auto_resolved = serializers.BooleanField()
