"""Admin of the incidents app: severity badges, deadline countdowns, timeline inline, operator actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from rest_framework.exceptions import ValidationError

from controlplane.admin_audit import AuditedModelAdmin
from controlplane.api.errors import Conflict
from controlplane.roles import Role, role_of
from controlplane.templatetags.badges import badge_column, severity_badge
from incidents import selectors, services
from incidents.admin_forms import IncidentChangeForm, IncidentDeclareForm
from incidents.models import (
    ActionItem,
    Alert,
    DeadlineBreach,
    DeploymentLink,
    Incident,
    IncidentRoleAssignment,
    Notification,
    PostMortem,
    SeverityPolicy,
    TimelineEvent,
)


def _countdown(due: Any) -> str:
    seconds = int((due - timezone.now()).total_seconds())
    sign = "" if seconds >= 0 else "-"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@admin.register(SeverityPolicy)
class SeverityPolicyAdmin(AuditedModelAdmin):
    list_display = [
        "code",
        "rank",
        "name",
        "acknowledge_within",
        "assess_within",
        "mitigate_within",
        "resolve_within",
        "postmortem_within",
        "postmortem_required",
        "channels",
        "auto_resolve",
        "open_on_deployment_failure",
    ]
    ordering = ["rank"]


class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg,unused-ignore]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TimelineInline(ReadOnlyInline):
    model = TimelineEvent
    fields = readonly_fields = ("created_at", "kind", "message", "actor", "pinned")
    ordering = ["created_at", "pk"]


class RoleInline(ReadOnlyInline):
    model = IncidentRoleAssignment
    fields = readonly_fields = ("role", "user", "assigned_at", "ended_at", "assigned_by", "note")


class DeploymentLinkInline(admin.TabularInline):  # type: ignore[type-arg,unused-ignore]
    model = DeploymentLink
    extra = 0
    fields = ("deployment", "relation", "note", "created_at")
    readonly_fields = ("deployment", "created_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # link from the API or the "suspect deployments" list


class BreachInline(ReadOnlyInline):
    model = DeadlineBreach
    fields = readonly_fields = ("phase", "deadline_at", "detected_at")


@admin.register(Incident)
class IncidentAdmin(AuditedModelAdmin):
    list_display = [
        "id",
        "severity_badge",
        "title",
        badge_column("status"),
        "source",
        "commander",
        "next_deadline",
        "declared_at",
    ]
    list_filter = ["status", "severity", "source"]
    search_fields = ["title", "description"]
    list_select_related = ["severity"]
    readonly_fields = [
        "status",
        "source",
        "declared_at",
        "acknowledged_at",
        "investigating_at",
        "mitigated_at",
        "resolved_at",
        "closed_at",
        "reopened_count",
        "created_by",
        "next_deadline",
        "severity",
        "affected_environments",
        "suspects",
    ]
    fields = [
        "title",
        "severity",
        "status",
        "next_deadline",
        "source",
        "description",
        "impact_summary",
        "affected_environments",
        "suspects",
        *readonly_fields[2:10],
    ]
    inlines = [RoleInline, BreachInline, DeploymentLinkInline, TimelineInline]
    actions = ["acknowledge", "escalate", "resolve", "rollback_caused"]
    form = IncidentChangeForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Incident]:
        return super().get_queryset(request).prefetch_related("role_assignments__user")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return role_of(request.user) >= Role.OPERATOR  # declared through the service (pages channels)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = IncidentDeclareForm
            kwargs["fields"] = IncidentDeclareForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return IncidentDeclareForm.Meta.fields
        return [*self.fields[:3], "hand_off_to", "handoff_note", *self.fields[3:]]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else []

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_addition(self, request, obj, message)  # audited by the service

    @admin.display(description="Severity", ordering="severity__rank")
    def severity_badge(self, obj: Incident) -> str:
        return severity_badge(obj.severity.code, obj.severity.rank)

    @admin.display(description="Commander")
    def commander(self, obj: Incident) -> str:
        for a in obj.role_assignments.all():
            if a.role == IncidentRoleAssignment.Role.COMMANDER and a.ended_at is None:
                return a.user.get_username()
        return "-"

    @admin.display(description="Next deadline")
    def next_deadline(self, obj: Incident) -> str:
        nxt = obj.next_deadline()
        if nxt is None:
            return "-"
        phase, due = nxt
        left = _countdown(due)
        css = "cp-overdue" if left.startswith("-") else "cp-due"
        return format_html('<span class="{}">{} in {}</span>', css, phase, left)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # Edits go through the service so they land on the timeline (and in the audit log).
        if not change:
            declared = services.incident_declare(
                title=form.cleaned_data["title"],
                severity=form.cleaned_data["severity"],
                description=form.cleaned_data.get("description", ""),
                impact_summary=form.cleaned_data.get("impact_summary", ""),
                actor=request.user,
            )
            obj.pk = declared.pk
            return
        if form.cleaned_data.get("hand_off_to"):
            try:
                services.incident_handoff_commander(
                    incident=obj,
                    to_user=form.cleaned_data["hand_off_to"],
                    note=form.cleaned_data.get("handoff_note", ""),
                    actor=request.user,
                )
            except Conflict as exc:
                self.message_user(request, str(exc.detail), messages.WARNING)
        if change and obj.pk:
            fields = {
                k: form.cleaned_data[k]
                for k in ("title", "description", "impact_summary")
                if k in form.changed_data
            }
            if fields:
                current = Incident.objects.get(pk=obj.pk)
                services.incident_update(incident=current, actor=request.user, **fields)
            return
        super().save_model(request, obj, form, change)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # The service audited the edit; keep Django's admin history without a second audit entry.
        return admin.ModelAdmin.log_change(self, request, obj, message)

    @admin.display(description="Affected environments")
    def affected_environments(self, obj: Incident) -> str:
        return ", ".join(str(e) for e in obj.environments.select_related("service")) or "-"

    @admin.display(description="Suspect deployments")
    def suspects(self, obj: Incident) -> str:
        rows = [
            f"#{d.pk} {d.release.version} -> {d.environment} ({d.status}, {d.created_at:%Y-%m-%d %H:%M})"
            for d in selectors.suspect_deployments(obj)[:10]
        ]
        return "; ".join(rows) or "-"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Relation edits in the inline go through the service (timeline + audit), not a raw save.
        rest = []
        for formset in formsets:
            if formset.model is not DeploymentLink:
                rest.append(formset)
                continue
            formset.save(commit=False)
            for link, _fields in formset.changed_objects:
                services.incident_link_deployment(
                    incident=form.instance,
                    deployment=link.deployment,
                    relation=link.relation,
                    note=link.note,
                    actor=request.user,
                )
        super().save_related(request, form, rest, change)

    def _each(self, request: HttpRequest, queryset: QuerySet[Incident], fn: Any, verb: str) -> None:
        done = 0
        for incident in queryset.select_related("severity"):
            try:
                fn(incident)
                done += 1
            except Conflict as exc:
                self.message_user(request, f"#{incident.pk}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"{verb} {done} incident(s).")

    @admin.action(description="Acknowledge (take command)")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(
            request,
            queryset,
            lambda i: services.incident_assign_role(
                incident=i, role=IncidentRoleAssignment.Role.COMMANDER, user=request.user, actor=request.user
            ),
            "Acknowledged",
        )

    @admin.action(description="Escalate severity one rank")
    def escalate(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(
            request,
            queryset,
            lambda i: services.incident_escalate(incident=i, actor=request.user),
            "Escalated",
        )

    @admin.action(description="Resolve")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._each(
            request,
            queryset,
            lambda i: services.incident_transition(
                incident=i, to=Incident.Status.RESOLVED, actor=request.user
            ),
            "Resolved",
        )

    @admin.action(description="Roll back deployments linked as caused or suspect")
    def rollback_caused(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        for incident in queryset:
            links = incident.deployment_links.filter(relation__in=["caused", "suspect"]).select_related(
                "deployment__environment__service", "deployment__release"
            )
            for link in links:
                try:
                    rollback = services.incident_rollback_deployment(
                        incident=incident, deployment=link.deployment, actor=request.user
                    )
                except (Conflict, ValidationError) as exc:
                    self.message_user(
                        request, f"#{incident.pk}: deployment #{link.deployment_id}: {exc}", messages.WARNING
                    )
                else:
                    self.message_user(
                        request, f"#{incident.pk}: rollback #{rollback.pk} of #{link.deployment_id} started."
                    )


@admin.register(Notification)
class NotificationAdmin(AuditedModelAdmin):
    list_display = [
        "id",
        "channel",
        "event",
        "incident",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "channel"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(AuditedModelAdmin):
    list_display = ["fingerprint", "name", "status", "incident", "first_seen_at", "resolved_at"]
    list_filter = ["status"]
    search_fields = ["fingerprint", "name"]
    readonly_fields = [f.name for f in Alert._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ActionItemInline(admin.TabularInline):  # type: ignore[type-arg,unused-ignore]
    model = ActionItem
    extra = 0
    fields = ["title", "owner", "due_date", "kind", "status", "link"]


@admin.register(PostMortem)
class PostMortemAdmin(AuditedModelAdmin):
    list_display = ["incident", badge_column("status"), "due_at", "overdue", "published_at"]
    list_filter = ["status"]
    readonly_fields = ["incident", "status", "due_at", "published_at", "timeline", "author"]
    inlines = [ActionItemInline]
    actions = ["send_to_review", "publish"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.status == PostMortem.Status.PUBLISHED:
            return [*self.readonly_fields, *PostMortem.SECTIONS]  # final: shown, not editable
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: PostMortem, form: Any, change: bool) -> None:
        # Section edits through the service (refused once published, audited there).
        sections = {k: form.cleaned_data[k] for k in PostMortem.SECTIONS if k in form.changed_data}
        try:
            services.postmortem_update(
                postmortem=PostMortem.objects.get(pk=obj.pk), actor=request.user, **sections
            )
        except Conflict as exc:
            self.message_user(request, str(exc.detail), messages.ERROR)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return admin.ModelAdmin.log_change(self, request, obj, message)

    def _move(self, request: HttpRequest, queryset: QuerySet[PostMortem], to: str) -> None:
        for pm in queryset:
            try:
                services.postmortem_transition(postmortem=pm, to=to, actor=request.user)
            except (Conflict, ValidationError) as exc:
                self.message_user(request, f"Post-mortem of #{pm.incident_id}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"Post-mortem of #{pm.incident_id} is now {to.replace('_', ' ')}.")

    @admin.action(description="Send to review")
    def send_to_review(self, request: HttpRequest, queryset: QuerySet[PostMortem]) -> None:
        self._move(request, queryset, PostMortem.Status.IN_REVIEW)

    @admin.action(description="Publish")
    def publish(self, request: HttpRequest, queryset: QuerySet[PostMortem]) -> None:
        self._move(request, queryset, PostMortem.Status.PUBLISHED)

    @admin.display(boolean=True, description="Overdue")
    def overdue(self, obj: PostMortem) -> bool:
        return obj.is_overdue

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(ActionItem)
class ActionItemAdmin(AuditedModelAdmin):
    list_display = ["title", "owner", "due_date", "kind", "status", "overdue", "link"]
    list_filter = ["status", "kind"]

    @admin.display(boolean=True, description="Overdue")
    def overdue(self, obj: ActionItem) -> bool:
        return obj.is_overdue
