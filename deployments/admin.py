"""Admin for operators: environments with their instances, deployments with their timeline and verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import APIException

from controlplane.admin_audit import AuditedModelAdmin
from controlplane.roles import Role, role_of
from controlplane.templatetags.badges import badge_column
from deployments import services
from deployments.admin_forms import DeploymentStartForm
from deployments.models import (
    Deployment,
    DeploymentEvent,
    Environment,
    Instance,
    Measurement,
    Release,
    Service,
)


@admin.register(Service)
class ServiceAdmin(AuditedModelAdmin):
    list_display = ["slug", "name", "health_check_path", "created_at"]
    search_fields = ["slug", "name"]


class InstanceInline(admin.TabularInline):
    model = Instance
    extra = 0
    fields = ["name", "address", "slot", "release", "state"]
    readonly_fields = ["release", "state"]


@admin.register(Environment)
class EnvironmentAdmin(AuditedModelAdmin):
    list_display = ["__str__", "current_release", "live_slot", "frozen", "instance_count"]
    list_filter = ["frozen", "service"]
    search_fields = ["slug", "service__slug"]
    readonly_fields = ["live_slot", "traffic", "current_release", "created_at"]
    inlines = [InstanceInline]
    list_select_related = ["service", "current_release"]

    @admin.display(description="instances")
    def instance_count(self, obj: Environment) -> int:
        return obj.instances.count()


@admin.register(Release)
class ReleaseAdmin(AuditedModelAdmin):
    list_display = ["__str__", "artifact", "git_sha", "ci_status", "created_at"]
    list_filter = ["service", "ci_status"]
    search_fields = ["version", "git_sha", "artifact"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Releases are immutable once created; only the CI status may still arrive.
        if obj is None:
            return ["created_at"]
        return ["service", "version", "artifact", "git_sha", "notes", "created_at"]


class DeploymentEventInline(admin.TabularInline):
    model = DeploymentEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "kind", "step", "actor_repr", "message", "details")
    readonly_fields = ("created_at", "kind", "step", "actor_repr", "message", "details")
    ordering = ["created_at", "id"]
    verbose_name_plural = "timeline"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MeasurementInline(admin.TabularInline):
    model = Measurement
    extra = 0
    can_delete = False
    fields = ("taken_at", "step", "metric", "value", "error", "threshold", "outcome")
    readonly_fields = ("taken_at", "step", "metric", "value", "error", "threshold", "outcome")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _verb_action(name: str, label: str, call: Callable[..., Deployment]) -> Any:
    def action(modeladmin: DeploymentAdmin, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        done = 0
        for deployment in queryset:
            try:
                call(deployment=deployment, actor=request.user, reason="from the admin")
            except APIException as exc:
                modeladmin.message_user(request, f"#{deployment.pk}: {exc.detail}", level=messages.ERROR)
            else:
                done += 1
        if done:
            modeladmin.message_user(request, f"{label}: {done} deployment(s).", level=messages.SUCCESS)

    action.__name__ = name
    return admin.action(description=f"{label} selected deployments")(action)


@admin.register(Deployment)
class DeploymentAdmin(AuditedModelAdmin):
    list_display = [
        "id",
        "environment",
        "release",
        "kind",
        "strategy",
        badge_column("status"),
        "step",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "strategy", "kind", "environment"]
    list_select_related = ["environment__service", "release", "created_by"]
    search_fields = ["release__version", "reason", "idempotency_key"]
    date_hierarchy = "created_at"
    inlines = [DeploymentEventInline, MeasurementInline]
    actions = [
        _verb_action("pause", "Pause", services.deployment_pause),
        _verb_action("resume", "Resume", services.deployment_resume),
        _verb_action("promote", "Promote (skip current step)", services.deployment_promote),
        _verb_action("promote_full", "Promote fully", services.deployment_promote_full),
        _verb_action("abort", "Abort (traffic back to stable)", services.deployment_abort),
        _verb_action("retry", "Retry", services.deployment_retry),
        _verb_action("rollback", "Roll back to the previous release", services.deployment_rollback),
    ]

    @admin.display(description="progress")
    def step(self, obj: Deployment) -> str:
        spec = obj.current_step_spec
        title = spec["title"] if spec else "done"
        return f"{min(obj.current_step + 1, obj.step_total)}/{obj.step_total} {title}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return role_of(request.user) >= Role.OPERATOR  # through the service, like the API

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = DeploymentStartForm
            kwargs["fields"] = DeploymentStartForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return DeploymentStartForm.Meta.fields if obj is None else super().get_fields(request, obj)

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Deployment, form: Any, change: bool) -> None:
        if change:
            return
        data = form.cleaned_data
        created, _ = services.deployment_create(
            environment=data["environment"],
            release=data["release"],
            config=data["config"],
            reason=data.get("reason", ""),
            actor=request.user,
        )
        obj.pk = created.pk

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_addition(self, request, obj, message)  # audited by the service

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return [f.name for f in Deployment._meta.fields]


from deployments import admin_gates  # noqa: E402, F401  (registers the gates admin)
