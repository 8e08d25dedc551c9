from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat import models as beat_models

from controlplane.admin_audit import AuditedModelAdmin, reregister
from controlplane.models import ApiToken, AuditEntry, Heartbeat, MaintenanceRun
from controlplane.roles import Role, role_of
from controlplane.tokens import token_create, token_revoke

reregister(User, UserAdmin)
reregister(Group, GroupAdmin)
reregister(beat_models.PeriodicTask, beat_admin.PeriodicTaskAdmin)
reregister(beat_models.CrontabSchedule, beat_admin.CrontabScheduleAdmin)
reregister(beat_models.IntervalSchedule, beat_admin.IntervalScheduleAdmin)
reregister(beat_models.ClockedSchedule, beat_admin.ClockedScheduleAdmin)
reregister(beat_models.SolarSchedule, admin.ModelAdmin)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_repr", "action", "object_type", "object_id", "source", "source_ip"]
    list_filter = ["source", "object_type"]
    search_fields = ["actor_repr", "action", "object_id", "object_repr", "request_id"]
    date_hierarchy = "created_at"

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return role_of(request.user) >= Role.ADMIN


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_seen"]


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    fields = ["user", "name", "expires_at", "prefix", "created_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]
    actions = ["revoke"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            return
        token, key = token_create(user=obj.user, name=obj.name)
        if obj.expires_at:
            token.expires_at = obj.expires_at
            token.save(update_fields=["expires_at"])
        obj.pk = token.pk
        obj.prefix = token.prefix
        self.message_user(
            request, f"Token created. Copy the key now, it is not shown again: {key}", messages.WARNING
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for token in queryset:
            token_revoke(token=token)


@admin.register(MaintenanceRun)
class MaintenanceRunAdmin(ReadOnlyAdmin):
    """Last run of each maintenance job; the jobs themselves are paused under Periodic tasks."""

    list_display = ["job", "status", "rows", "duration_seconds", "finished_at", "message"]
    list_filter = ["status"]
