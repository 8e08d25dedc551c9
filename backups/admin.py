"""Admin of the backups app: policies (through the services), the catalog, drills and restores."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import APIException, ValidationError

from backups import services
from backups.models import Backup, BackupEvent, BackupPolicy, Restore, Verification
from controlplane.admin_audit import AuditedModelAdmin
from controlplane.roles import Role, role_of
from controlplane.templatetags.badges import badge_column


def _message(exc: APIException) -> str:
    return str(exc.detail if isinstance(exc, ValidationError) else exc)


class RestoreForm(forms.ModelForm):
    confirm = forms.CharField(help_text="Type the target database's name exactly.")

    class Meta:
        model = Restore
        fields = ["backup", "target_dsn_env", "target_db_alias", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("backup") is not None and "confirm" in data:
            try:
                services.restore_validate(
                    backup=data["backup"],
                    confirm=data["confirm"],
                    target_dsn_env=data.get("target_dsn_env", ""),
                    target_db_alias=data.get("target_db_alias", ""),
                )
            except APIException as exc:
                raise forms.ValidationError(_message(exc)) from exc
        return data


class BackupPolicyForm(forms.ModelForm):
    s3_endpoint_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = BackupPolicy
        fields = [f.name for f in BackupPolicy._meta.concrete_fields if f.name in services.POLICY_FIELDS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        candidate = BackupPolicy(**{k: v for k, v in data.items() if k in services.POLICY_FIELDS})
        try:
            services.policy_validate(candidate)
        except ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {}
            for field, errors in detail.items():
                self.add_error(field if field in self.fields else None, [str(e) for e in errors])
        return data


@admin.register(BackupPolicy)
class BackupPolicyAdmin(AuditedModelAdmin):
    form = BackupPolicyForm
    list_display = ["name", "enabled", "source_kind", "storage_kind", "schedule", "keep_days", "compression"]
    list_filter = ["enabled", "source_kind", "storage_kind"]
    search_fields = ["name", "description"]
    readonly_fields = ["periodic_task", "drill_periodic_task", "created_at", "updated_at"]
    actions = ["run_now", "drill_now"]

    def save_model(self, request: HttpRequest, obj: BackupPolicy, form: Any, change: bool) -> None:
        # Through the services, so the beat entries follow the policy (audited there).
        fields = {
            name: form.cleaned_data[name] for name in form.cleaned_data if name in services.POLICY_FIELDS
        }
        if change:
            fresh = BackupPolicy.objects.get(pk=obj.pk)
            saved = services.policy_update(policy=fresh, **fields)
        else:
            saved = services.policy_create(**fields)
        obj.pk = saved.pk

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_addition(self, request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_change(self, request, obj, message)

    def delete_model(self, request: HttpRequest, obj: BackupPolicy) -> None:
        services.policy_delete(policy=obj)

    @admin.action(description="Run a backup now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[BackupPolicy]) -> None:
        for policy in queryset:
            backup = services.backup_request(policy=policy)
            self.message_user(request, f"Backup #{backup.pk} of {policy.name} queued.")

    @admin.action(description="Restore-drill the newest backup")
    def drill_now(self, request: HttpRequest, queryset: QuerySet[BackupPolicy]) -> None:
        for policy in queryset:
            backup = services.newest_drillable(policy)
            if backup is None:
                self.message_user(request, f"{policy.name} has no backup to drill.", messages.WARNING)
                continue
            services.verification_request(backup=backup, kind=Verification.Kind.DRILL)
            self.message_user(request, f"Drill of backup #{backup.pk} queued.")


class BackupEventInline(admin.TabularInline):
    model = BackupEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "kind", "from_status", "to_status", "message", "details"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Backup)
class BackupAdmin(AuditedModelAdmin):
    list_display = [
        "id",
        "policy",
        badge_column("status"),
        "trigger",
        "created_at",
        "duration_seconds",
        "stored_bytes",
        badge_column("verify_status", "verified"),
        badge_column("drill_status", "drilled"),
    ]
    list_filter = ["status", "trigger", "verify_status", "drill_status", "policy"]
    date_hierarchy = "created_at"
    inlines = [BackupEventInline]
    actions = ["verify_checksum", "restore_drill"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _queue(self, request: HttpRequest, queryset: QuerySet[Backup], kind: str) -> None:
        for backup in queryset:
            try:
                services.verification_request(backup=backup, kind=kind)
                self.message_user(request, f"{kind} of backup #{backup.pk} queued.")
            except APIException as exc:
                self.message_user(request, f"#{backup.pk}: {_message(exc)}", messages.ERROR)

    @admin.action(description="Verify checksum (read back)")
    def verify_checksum(self, request: HttpRequest, queryset: QuerySet[Backup]) -> None:
        self._queue(request, queryset, Verification.Kind.CHECKSUM)

    @admin.action(description="Restore drill into a scratch database")
    def restore_drill(self, request: HttpRequest, queryset: QuerySet[Backup]) -> None:
        self._queue(request, queryset, Verification.Kind.DRILL)


@admin.register(Verification)
class VerificationAdmin(admin.ModelAdmin):
    list_display = ["id", "backup", "kind", badge_column("status"), "started_at", "seconds", "error"]
    list_filter = ["kind", "status"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Restore)
class RestoreAdmin(AuditedModelAdmin):
    """Adding a restore here runs the same service as the API (admins only)."""

    form = RestoreForm
    list_display = [
        "id",
        "backup",
        "target_name",
        badge_column("status"),
        "requested_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    readonly_fields = ["target_name", "status", "safety_backup", "requested_by", "log", "error"]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return role_of(request.user) >= Role.ADMIN

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return role_of(request.user) >= Role.ADMIN

    def has_add_permission(self, request: HttpRequest) -> bool:
        return role_of(request.user) >= Role.ADMIN

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, fields=[], **kwargs)
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Restore, form: Any, change: bool) -> None:
        data = form.cleaned_data
        restore = services.restore_request(
            backup=data["backup"],
            confirm=data["confirm"],
            target_dsn_env=data.get("target_dsn_env", ""),
            target_db_alias=data.get("target_db_alias", ""),
            reason=data.get("reason", ""),
            requested_by=request.user.get_username(),
        )
        obj.pk = restore.pk

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_addition(self, request, obj, message)  # audited by the service
