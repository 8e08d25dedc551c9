"""Models of the incidents app: policies, incidents, timeline, alerts, outbox, post-mortems."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class SeverityPolicy(models.Model):
    """How one severity (P1/P2/P3) is run: phase deadlines, post-mortem rule, who is notified.

    Phase deadlines are measured from the incident's declaration (time-to-phase targets);
    the post-mortem deadline is measured from resolution.
    """

    class Channel(models.TextChoices):
        SLACK = "slack", "Slack"
        PAGERDUTY = "pagerduty", "PagerDuty"
        WEBHOOK = "webhook", "Generic webhook"

    code = models.CharField(max_length=8, unique=True, help_text="P1, P2, P3 ...")
    rank = models.PositiveSmallIntegerField(unique=True, help_text="1 is the most severe.")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    acknowledge_within = models.DurationField(
        default=timedelta(minutes=5), help_text="Declare: a commander takes the incident."
    )
    assess_within = models.DurationField(
        default=timedelta(minutes=10), help_text="Assess impact: status investigating."
    )
    mitigate_within = models.DurationField(default=timedelta(minutes=30))
    resolve_within = models.DurationField(default=timedelta(hours=1))
    postmortem_within = models.DurationField(
        default=timedelta(days=7), help_text="Post-mortem published, counted from resolution."
    )
    postmortem_required = models.BooleanField(default=True)
    channels = models.JSONField(
        default=list, blank=True, help_text='Notification channels that fire, e.g. ["slack", "pagerduty"].'
    )
    alert_severities = models.JSONField(
        default=list,
        blank=True,
        help_text='Alertmanager "severity" label values mapped to this policy, e.g. ["critical"].',
    )
    auto_resolve = models.BooleanField(
        default=False, help_text="Resolve an alert-sourced incident when all its alerts resolved."
    )
    open_on_deployment_failure = models.BooleanField(
        default=False,
        help_text="Open an incident of this severity when a deployment is aborted or rolled back "
        "automatically.",
    )
    freezes_deployments = models.BooleanField(
        default=False,
        help_text="While open, freeze new deployments on the affected environments (rollbacks still run).",
    )

    class Meta:
        ordering = ["rank"]
        verbose_name_plural = "severity policies"

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    def phase_deadlines(self) -> dict[str, timedelta]:
        return {
            Incident.Phase.ACKNOWLEDGE: self.acknowledge_within,
            Incident.Phase.ASSESS: self.assess_within,
            Incident.Phase.MITIGATE: self.mitigate_within,
            Incident.Phase.RESOLVE: self.resolve_within,
        }


class Incident(models.Model):
    """Something is wrong in production and people are working on it."""

    class Status(models.TextChoices):
        DECLARED = "declared", "Declared"
        INVESTIGATING = "investigating", "Investigating"
        MITIGATED = "mitigated", "Mitigated"
        RESOLVED = "resolved", "Resolved"
        CLOSED = "closed", "Closed"

    class Source(models.TextChoices):
        MANUAL = "manual", "Manual"
        ALERT = "alert", "Alert"
        DEPLOYMENT = "deployment", "Deployment"

    class Phase(models.TextChoices):
        ACKNOWLEDGE = "acknowledge", "Acknowledge (commander assigned)"
        ASSESS = "assess", "Assess impact"
        MITIGATE = "mitigate", "Mitigate"
        RESOLVE = "resolve", "Resolve"
        POSTMORTEM = "postmortem", "Post-mortem published"

    OPEN_STATUSES = (Status.DECLARED, Status.INVESTIGATING, Status.MITIGATED)

    title = models.CharField(max_length=300)
    severity = models.ForeignKey(SeverityPolicy, on_delete=models.PROTECT, related_name="incidents")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DECLARED)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    description = models.TextField(blank=True)
    impact_summary = models.TextField(blank=True)
    declared_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    investigating_at = models.DateTimeField(null=True, blank=True)
    mitigated_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    environments = models.ManyToManyField(
        "deployments.Environment", blank=True, related_name="incidents", help_text="Affected environments."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-declared_at"]
        indexes = [
            models.Index(
                fields=["status"],
                name="incident_open_idx",
                condition=Q(status__in=["declared", "investigating", "mitigated"]),
            ),
            models.Index(fields=["declared_at"], name="incident_declared_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} [{self.severity.code}] {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def pagerduty_dedup_key(self) -> str:
        """Stable for the incident's whole life, so trigger, acknowledge and resolve correlate."""
        return f"controlplane-incident-{self.pk}"

    def phase_met_at(self, phase: str) -> datetime | None:
        return {
            self.Phase.ACKNOWLEDGE: self.acknowledged_at,
            self.Phase.ASSESS: self.investigating_at,
            self.Phase.MITIGATE: self.mitigated_at,
            self.Phase.RESOLVE: self.resolved_at,
        }.get(phase)  # type: ignore[call-overload]

    def phase_deadlines(self) -> dict[str, datetime]:
        """Absolute deadline of each phase (post-mortem only once resolved)."""
        out = {phase: self.declared_at + within for phase, within in self.severity.phase_deadlines().items()}
        if self.resolved_at and self.severity.postmortem_required:
            out[self.Phase.POSTMORTEM] = self.resolved_at + self.severity.postmortem_within
        return out

    def next_deadline(self) -> tuple[str, datetime] | None:
        """The earliest phase deadline not yet met, for countdowns."""
        if not self.is_open:
            return None
        pending = [
            (deadline, phase)
            for phase, deadline in self.phase_deadlines().items()
            if phase != self.Phase.POSTMORTEM and self.phase_met_at(phase) is None
        ]
        if not pending:
            return None
        deadline, phase = min(pending)
        return phase, deadline


class DeploymentLink(models.Model):
    """A deployment tied to an incident, and how: it caused it, fixed it, is suspected, or was dismissed."""

    class Relation(models.TextChoices):
        CAUSED = "caused", "Caused"
        FIXED = "fixed", "Fixed"
        SUSPECT = "suspect", "Suspect"
        DISMISSED = "dismissed", "Dismissed"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="deployment_links")
    deployment = models.ForeignKey(
        "deployments.Deployment", on_delete=models.CASCADE, related_name="incident_links"
    )
    relation = models.CharField(max_length=10, choices=Relation.choices)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "deployment"], name="one_link_per_deployment")
        ]

    def __str__(self) -> str:
        return f"deployment #{self.deployment_id} {self.relation}"


class IncidentRoleAssignment(models.Model):
    """Who held a role on an incident and when; the open row (ended_at null) is the current holder."""

    class Role(models.TextChoices):
        COMMANDER = "commander", "Incident commander"
        COMMUNICATIONS = "communications", "Communications lead"
        SCRIBE = "scribe", "Scribe"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.CharField(max_length=16, choices=Role.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assigned_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["assigned_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "role"], condition=Q(ended_at__isnull=True), name="one_holder_per_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.user}"


class TimelineEventQuerySet(models.QuerySet["TimelineEvent"]):
    def delete(self) -> Any:
        raise TypeError("The incident timeline is append-only.")


class TimelineEvent(models.Model):
    """Append-only record of everything that happened on an incident; only ``pinned`` may change."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status change"
        SEVERITY = "severity", "Severity change"
        ROLE = "role", "Role change"
        NOTE = "note", "Note"
        ALERT_FIRED = "alert_fired", "Alert fired"
        ALERT_RESOLVED = "alert_resolved", "Alert resolved"
        DEPLOYMENT = "deployment", "Deployment"
        NOTIFICATION_SENT = "notification_sent", "Notification sent"
        NOTIFICATION_FAILED = "notification_failed", "Notification failed"
        DEADLINE_BREACHED = "deadline_breached", "Deadline breached"
        POSTMORTEM = "postmortem", "Post-mortem"
        UPDATE = "update", "Update"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    pinned = models.BooleanField(default=False)

    objects = TimelineEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["incident", "created_at"], name="timeline_incident_idx")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:80]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and set(kwargs.get("update_fields") or ()) != {"pinned"}:
            raise TypeError("Timeline events are append-only; only 'pinned' may change.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("The incident timeline is append-only.")


class DeadlineBreach(models.Model):
    """A phase deadline that passed unmet; one row per incident and phase, ever."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="breaches")
    phase = models.CharField(max_length=16, choices=Incident.Phase.choices)
    severity_code = models.CharField(max_length=8)
    deadline_at = models.DateTimeField()
    detected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["detected_at"]
        constraints = [models.UniqueConstraint(fields=["incident", "phase"], name="one_breach_per_phase")]

    def __str__(self) -> str:
        return f"{self.incident_id} {self.phase} breached"


class AlertGroup(models.Model):
    """One Alertmanager group (``groupKey``) and the incident its alerts belong to."""

    group_key = models.CharField(max_length=1000, unique=True)
    receiver = models.CharField(max_length=200, blank=True)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="alert_groups", null=True)
    group_labels = models.JSONField(default=dict, blank=True)
    external_url = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.group_key[:100]


class Alert(models.Model):
    """One alert (by fingerprint) of an incident, with its latest state (``last_seen_at``: last change)."""

    class Status(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="alerts")
    group = models.ForeignKey(AlertGroup, on_delete=models.CASCADE, related_name="alerts")
    fingerprint = models.CharField(max_length=128)
    status = models.CharField(max_length=10, choices=Status.choices)
    name = models.CharField(max_length=300, blank=True)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    generator_url = models.CharField(max_length=2000, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["first_seen_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "fingerprint"], name="one_alert_per_fingerprint")
        ]

    def __str__(self) -> str:
        return f"{self.name or self.fingerprint} ({self.status})"


class Notification(models.Model):
    """Outbox row: one message to one channel, written in the caller's transaction, sent by Celery."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    channel = models.CharField(max_length=16, choices=SeverityPolicy.Channel.choices)
    event = models.CharField(max_length=64)
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    body = models.JSONField(help_text="What is sent, without credentials (added at send time).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due_idx",
                condition=Q(status__in=["pending", "sending"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} ({self.status})"


class PostMortem(models.Model):
    """A blameless post-mortem with the SRE book's sections."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        PUBLISHED = "published", "Published"

    SECTIONS = (
        "summary",
        "impact",
        "root_causes",
        "trigger",
        "resolution",
        "detection",
        "went_well",
        "went_wrong",
        "got_lucky",
    )

    incident = models.OneToOneField(Incident, on_delete=models.CASCADE, related_name="postmortem")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    summary = models.TextField(blank=True)
    impact = models.TextField(blank=True)
    root_causes = models.TextField(blank=True)
    trigger = models.TextField(blank=True)
    resolution = models.TextField(blank=True)
    detection = models.TextField(blank=True)
    went_well = models.TextField(blank=True, help_text="Lessons learned: what went well.")
    went_wrong = models.TextField(blank=True, help_text="Lessons learned: what went wrong.")
    got_lucky = models.TextField(blank=True, help_text="Lessons learned: where we got lucky.")
    timeline = models.JSONField(default=list, blank=True, help_text="Generated from the incident's events.")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Post-mortem of incident #{self.incident_id}"

    @property
    def is_overdue(self) -> bool:
        return (
            self.status != self.Status.PUBLISHED and self.due_at is not None and self.due_at < timezone.now()
        )


class ActionItem(models.Model):
    """Follow-up work from a post-mortem, tracked to done."""

    class Kind(models.TextChoices):
        MITIGATE = "mitigate", "Mitigate"
        PREVENT = "prevent", "Prevent"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"
        WONT_DO = "wont_do", "Won't do"

    postmortem = models.ForeignKey(PostMortem, on_delete=models.CASCADE, related_name="action_items")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    due_date = models.DateField(null=True, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PREVENT)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    link = models.URLField(blank=True, help_text="External ticket.")
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_date", "pk"]

    def __str__(self) -> str:
        return self.title

    @property
    def is_overdue(self) -> bool:
        return (
            self.status in (self.Status.OPEN, self.Status.IN_PROGRESS)
            and self.due_date is not None
            and self.due_date < timezone.localdate()
        )
