"""Input and output serializers of the deployments API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from deployments.hooks import parse_hooks
from deployments.models import (
    Approval,
    ChecklistItem,
    Deployment,
    DeploymentEvent,
    Environment,
    Instance,
    Measurement,
    Release,
    Service,
)
from deployments.provider_set import validate_environment_config
from deployments.providers.base import ProviderConfigError
from deployments.selectors import environment_by_ref


@extend_schema_field(OpenApiTypes.STR)
class EnvironmentRefField(serializers.RelatedField[Environment, str, str]):
    """An environment addressed as ``service/env``."""

    default_error_messages = {
        "does_not_exist": "No environment '{value}' (address environments as service/env).",
        "invalid": "Address environments as service/env, e.g. noodle/production.",
    }

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", Environment.objects.all())
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Environment:
        if not isinstance(data, str) or data.count("/") != 1:
            self.fail("invalid")
        try:
            return environment_by_ref(data)
        except Environment.DoesNotExist:
            self.fail("does_not_exist", value=data)
        raise AssertionError("unreachable")  # pragma: no cover

    def to_representation(self, value: Any) -> str:
        return str(value)


class ServiceSerializer(serializers.ModelSerializer[Service]):
    class Meta:
        model = Service
        fields = ["slug", "name", "health_check_path", "created_at"]
        read_only_fields = ["created_at"]


class InstanceSerializer(serializers.ModelSerializer[Instance]):
    environment = EnvironmentRefField()
    release: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="version", read_only=True
    )

    class Meta:
        model = Instance
        fields = ["id", "environment", "name", "address", "slot", "release", "state", "created_at"]
        read_only_fields = ["id", "release", "state", "created_at"]


class EnvironmentInstanceSerializer(serializers.ModelSerializer[Instance]):
    release: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="version", read_only=True
    )

    class Meta:
        model = Instance
        fields = ["id", "name", "address", "slot", "release", "state"]


class EnvironmentSerializer(serializers.ModelSerializer[Environment]):
    service = serializers.SlugRelatedField(slug_field="slug", queryset=Service.objects.all())
    ref = serializers.SerializerMethodField()
    current_release: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="version", read_only=True, allow_null=True
    )
    instances = EnvironmentInstanceSerializer(many=True, read_only=True)

    class Meta:
        model = Environment
        fields = [
            "ref",
            "service",
            "slug",
            "name",
            "router",
            "deployer",
            "health_check",
            "metrics",
            "hooks",
            "frozen",
            "freeze_reason",
            "forbid_self_approval",
            "live_slot",
            "traffic",
            "current_release",
            "instances",
            "created_at",
        ]
        read_only_fields = ["live_slot", "traffic", "current_release", "created_at"]

    def get_ref(self, obj: Environment) -> str:
        return str(obj)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        for field in ("router", "deployer", "health_check", "metrics", "hooks"):
            if field in attrs and not isinstance(attrs[field], dict):
                errors[field] = ["must be an object"]
        if errors:
            raise serializers.ValidationError(errors)
        errors = validate_environment_config(
            router=attrs.get("router"),
            deployer=attrs.get("deployer"),
            health_check=attrs.get("health_check"),
            metrics=attrs.get("metrics"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        if "hooks" in attrs:
            try:
                parse_hooks(attrs["hooks"])
            except ProviderConfigError as exc:
                raise serializers.ValidationError({exc.field: [exc.rule]}) from None
        return attrs


class ReleaseSerializer(serializers.ModelSerializer[Release]):
    service = serializers.SlugRelatedField(slug_field="slug", queryset=Service.objects.all())

    class Meta:
        model = Release
        fields = ["id", "service", "version", "artifact", "git_sha", "notes", "ci_status", "created_at"]
        read_only_fields = ["id", "created_at"]


class DeploymentCreateSerializer(serializers.Serializer[Any]):
    environment = EnvironmentRefField()
    release = serializers.CharField(
        max_length=100, help_text="Version of a release of the environment's service."
    )
    deployment = serializers.JSONField(help_text="One of the strategy blocks: canary, blue-green or rolling.")
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        env: Environment = attrs["environment"]
        try:
            attrs["release"] = Release.objects.select_related("service").get(
                service_id=env.service_id, version=attrs["release"]
            )
        except Release.DoesNotExist:
            raise serializers.ValidationError(
                {"release": [f"No release '{attrs['release']}' of service {env.service.slug}."]}
            ) from None
        return attrs


class VerbSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class DeploymentEventSerializer(serializers.ModelSerializer[DeploymentEvent]):
    class Meta:
        model = DeploymentEvent
        fields = ["id", "created_at", "kind", "step", "actor_repr", "message", "details"]


class MeasurementSerializer(serializers.ModelSerializer[Measurement]):
    class Meta:
        model = Measurement
        fields = [
            "id",
            "step",
            "metric",
            "slot",
            "version",
            "value",
            "error",
            "threshold",
            "outcome",
            "taken_at",
        ]


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    environment = EnvironmentRefField(read_only=True)
    release: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="version", read_only=True
    )
    previous_release: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="version", read_only=True
    )
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    step_total = serializers.IntegerField(read_only=True)
    current_step_title = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "environment",
            "release",
            "previous_release",
            "kind",
            "rollback_of",
            "strategy",
            "status",
            "status_reason",
            "current_step",
            "step_total",
            "current_step_title",
            "progress",
            "next_check_at",
            "created_by",
            "reason",
            "idempotency_key",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_current_step_title(self, obj: Deployment) -> str:
        step = obj.current_step_spec
        return str(step["title"]) if step else ""

    def get_progress(self, obj: Deployment) -> float:
        """Completed steps as a percentage of the plan."""
        if obj.status == Deployment.Status.SUCCEEDED or not obj.plan:
            return 100.0 if obj.status == Deployment.Status.SUCCEEDED else 0.0
        return round(100.0 * obj.current_step / len(obj.plan), 1)


class DeploymentDetailSerializer(DeploymentSerializer):
    events = DeploymentEventSerializer(many=True, read_only=True)
    measurements = MeasurementSerializer(many=True, read_only=True)
    traffic = serializers.SerializerMethodField()

    class Meta(DeploymentSerializer.Meta):
        fields = [
            *DeploymentSerializer.Meta.fields,
            "config",
            "plan",
            "step_state",
            "stable_slot",
            "target_slot",
            "warm_until",
            "time_to_recover",
            "traffic",
            "events",
            "measurements",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_traffic(self, obj: Deployment) -> Any:
        return obj.environment.traffic


class ChecklistItemSerializer(serializers.ModelSerializer[ChecklistItem]):
    checked_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    kind = serializers.SerializerMethodField()

    class Meta:
        model = ChecklistItem
        fields = [
            "id",
            "phase",
            "position",
            "title",
            "kind",
            "evaluator",
            "params",
            "required",
            "state",
            "checked_by",
            "checked_at",
            "note",
            "evidence",
            "due_at",
        ]
        read_only_fields = fields

    def get_kind(self, obj: ChecklistItem) -> str:
        return "automatic" if obj.evaluator else "manual"


class ApprovalSerializer(serializers.ModelSerializer[Approval]):
    decided_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Approval
        fields = [
            "id",
            "step",
            "role",
            "on_timeout",
            "requested_at",
            "expires_at",
            "status",
            "decided_by",
            "decided_at",
            "reason",
        ]
        read_only_fields = fields


class ChecklistsSerializer(serializers.Serializer[Any]):
    pre = ChecklistItemSerializer(many=True)
    post = ChecklistItemSerializer(many=True)
    blocking = serializers.ListField(
        child=serializers.IntegerField(), help_text="Ids of required pre items not passed."
    )
    approvals = ApprovalSerializer(many=True)


class CheckItemSerializer(serializers.Serializer[Any]):
    passed = serializers.BooleanField(default=True, help_text="false records the item as failed.")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class OverrideSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=2000, help_text="Why the checklist is overridden (audited).")
