"""Admin for gates: checklist templates, each deployment's checklist and approvals, and the
start / override / approve / reject actions (the reason comes from the action bar's field)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.exceptions import APIException

from controlplane.admin_audit import AuditedModelAdmin
from deployments import approvals, checklists
from deployments.admin import DeploymentAdmin
from deployments.models import Approval, ChecklistItem, ChecklistTemplate, ChecklistTemplateItem, Deployment


class ReasonActionForm(ActionForm):
    reason = forms.CharField(required=False, max_length=2000, help_text="Why (recorded in the timeline).")


class ChecklistTemplateItemInline(admin.TabularInline):
    model = ChecklistTemplateItem
    extra = 1
    fields = ["position", "title", "evaluator", "params", "required"]


@admin.register(ChecklistTemplate)
class ChecklistTemplateAdmin(AuditedModelAdmin):
    list_display = ["name", "phase", "environment", "active", "on_failure", "item_count"]
    list_filter = ["phase", "active"]
    list_select_related = ["environment__service"]
    inlines = [ChecklistTemplateItemInline]

    @admin.display(description="items")
    def item_count(self, obj: ChecklistTemplate) -> int:
        return obj.items.count()


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ChecklistItemInline(_ReadOnlyInline):
    model = ChecklistItem
    fields = (
        "phase",
        "title",
        "evaluator",
        "required",
        "state",
        "checked_by",
        "checked_at",
        "note",
        "evidence",
    )
    readonly_fields = fields
    verbose_name_plural = "checklists"


class ApprovalInline(_ReadOnlyInline):
    model = Approval
    fields = (
        "step",
        "role",
        "status",
        "requested_at",
        "expires_at",
        "on_timeout",
        "decided_by",
        "decided_at",
        "reason",
    )
    readonly_fields = fields


def _action(name: str, label: str, call: Callable[[Deployment, Any, str], Any]) -> Any:
    def action(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Deployment]) -> None:
        reason = str(request.POST.get("reason", "")).strip()
        done = 0
        for deployment in queryset:
            try:
                call(deployment, request.user, reason)
            except APIException as exc:
                modeladmin.message_user(request, f"#{deployment.pk}: {exc.detail}", level=messages.ERROR)
            else:
                done += 1
        if done:
            modeladmin.message_user(request, f"{label}: {done} deployment(s).", level=messages.SUCCESS)

    action.__name__ = name
    return admin.action(description=f"{label} selected deployments")(action)


GATE_ACTIONS = [
    _action(
        "start_deployments",
        "Start (pre-deployment checklist must pass)",
        lambda d, u, r: checklists.deployment_start(deployment=d, actor=u),
    ),
    _action(
        "override_checklist",
        "Override the checklist and start (admin, reason required)",
        lambda d, u, r: checklists.deployment_override_gate(deployment=d, actor=u, reason=r),
    ),
    _action(
        "approve_deployments",
        "Approve the waiting approval step",
        lambda d, u, r: approvals.approval_decide(deployment=d, actor=u, approve=True, reason=r),
    ),
    _action(
        "reject_deployments",
        "Reject the waiting approval step (reason required)",
        lambda d, u, r: approvals.approval_decide(deployment=d, actor=u, approve=False, reason=r),
    ),
]

DeploymentAdmin.inlines = [*DeploymentAdmin.inlines, ChecklistItemInline, ApprovalInline]
DeploymentAdmin.actions = [*(DeploymentAdmin.actions or []), *GATE_ACTIONS]
DeploymentAdmin.action_form = ReasonActionForm


@admin.register(ChecklistItem)
class ChecklistItemAdmin(AuditedModelAdmin):
    """Manual items are checked here (or through the API); automatic ones only show evidence."""

    list_display = [
        "title",
        "deployment",
        "phase",
        "evaluator",
        "required",
        "state",
        "checked_by",
        "checked_at",
    ]
    list_filter = ["phase", "state", "evaluator"]
    list_select_related = ["deployment__environment__service", "deployment__release", "checked_by"]
    action_form = ReasonActionForm
    actions = ["check_items"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in ChecklistItem._meta.fields]

    @admin.action(description="Check selected manual items (the reason field is the note)")
    def check_items(self, request: HttpRequest, queryset: QuerySet[ChecklistItem]) -> None:
        note = str(request.POST.get("reason", "")).strip()
        for item in queryset:
            try:
                checklists.checklist_item_check(item=item, actor=request.user, note=note)
            except APIException as exc:
                self.message_user(request, f"{item.title}: {exc.detail}", level=messages.ERROR)
