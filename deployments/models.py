"""Models of the deployments app: what runs where, and every rollout with its timeline."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

SLUG_HELP = "Lowercase letters, digits and dashes; part of the `service/env` address."


class Service(models.Model):
    """The application being deployed."""

    slug = models.SlugField(max_length=63, unique=True, help_text=SLUG_HELP)
    name = models.CharField(max_length=200, blank=True)
    health_check_path = models.CharField(max_length=200, default="/health")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Environment(models.Model):
    """Where a service runs (`service/slug`), with its provider configuration.

    ``live_slot`` and ``traffic`` are the engine's record of what the router was last
    told to serve; ``current_release`` is the release all traffic is on when no
    deployment is active.
    """

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="environments")
    slug = models.SlugField(max_length=63, help_text=SLUG_HELP)
    name = models.CharField(max_length=200, blank=True)
    router = models.JSONField(default=dict, blank=True)
    deployer = models.JSONField(default=dict, blank=True)
    health_check = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    frozen = models.BooleanField(default=False, help_text="Deploy freeze: only rollbacks may start.")
    freeze_reason = models.CharField(max_length=500, blank=True)
    forbid_self_approval = models.BooleanField(
        default=False, help_text="Approval steps cannot be approved by whoever requested the deployment."
    )
    live_slot = models.CharField(max_length=10, blank=True)
    traffic = models.JSONField(default=dict, blank=True)
    current_release = models.ForeignKey(
        "Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hooks = models.JSONField(
        default=dict, blank=True, help_text="Lifecycle hooks by point (see deployments/hooks.py)."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["service__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["service", "slug"], name="environment_unique_slug_per_service")
        ]

    def __str__(self) -> str:
        return f"{self.service.slug}/{self.slug}"


class Instance(models.Model):
    """One running copy of the service: a base URL, a slot and the release on it."""

    class Slot(models.TextChoices):
        BLUE = "blue"
        GREEN = "green"
        NONE = "", "none"

    class State(models.TextChoices):
        IN_SERVICE = "in_service"
        DRAINING = "draining"
        UPDATING = "updating"
        UNHEALTHY = "unhealthy"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="instances")
    name = models.CharField(max_length=100)
    address = models.URLField(max_length=500, help_text="Base URL, e.g. http://10.0.0.5:8000")
    slot = models.CharField(max_length=10, choices=Slot.choices, blank=True, default="")
    release = models.ForeignKey("Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices, default=State.IN_SERVICE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["environment_id", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "name"], name="instance_unique_name_per_environment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slot or 'no slot'})"


class Release(models.Model):
    """An immutable version of a service."""

    class CiStatus(models.TextChoices):
        UNKNOWN = "unknown"
        PENDING = "pending"
        PASSED = "passed"
        FAILED = "failed"

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(max_length=100)
    artifact = models.CharField(max_length=500, blank=True)
    git_sha = models.CharField(max_length=64, blank=True)
    notes = models.TextField(blank=True)
    ci_status = models.CharField(max_length=10, choices=CiStatus.choices, default=CiStatus.UNKNOWN)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "version"], name="release_unique_version_per_service")
        ]

    def __str__(self) -> str:
        return f"{self.service.slug}@{self.version}"


class Deployment(models.Model):
    """One rollout of a release to an environment, driven step by step by the engine."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        PAUSED = "paused"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        ABORTED = "aborted"
        ROLLED_BACK = "rolled_back"
        NEEDS_ATTENTION = "needs_attention"  # succeeded, but a required post-deployment check failed

    class Kind(models.TextChoices):
        DEPLOY = "deploy"
        ROLLBACK = "rollback"

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING, Status.PAUSED)

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="deployments")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    previous_release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DEPLOY)
    rollback_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks"
    )
    strategy = models.CharField(max_length=20)
    config = models.JSONField(help_text="The `deployment` block as submitted.")
    plan = models.JSONField(default=list, help_text="Steps computed at creation by the strategy planner.")
    stable_slot = models.CharField(max_length=10, blank=True)
    target_slot = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.TextField(blank=True)
    current_step = models.PositiveIntegerField(default=0)
    step_state = models.JSONField(default=dict, blank=True, help_text="Progress within the current step.")
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    warm_until = models.DateTimeField(
        null=True, blank=True, help_text="Until when the previous slot is kept for a fast rollback."
    )
    time_to_recover = models.FloatField(
        null=True,
        blank=True,
        help_text="Automatic rollback: seconds from the first failing measurement to all traffic on stable.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status__in=["pending", "running", "paused"]),
                name="deployment_one_active_per_environment",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="deployment_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_check_at"],
                condition=Q(status__in=["pending", "running"]),
                name="deployment_due_idx",
            ),
            models.Index(fields=["status", "-created_at"], name="deployment_status_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.release.version} -> {self.environment}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def step_total(self) -> int:
        return len(self.plan)

    @property
    def current_step_spec(self) -> dict[str, Any] | None:
        if 0 <= self.current_step < len(self.plan):
            step: dict[str, Any] = self.plan[self.current_step]
            return step
        return None


class DeploymentEvent(models.Model):
    """Append-only timeline of a deployment: transitions, steps, measurements, operator actions."""

    class Kind(models.TextChoices):
        TRANSITION = "transition"
        STEP_STARTED = "step_started"
        STEP_COMPLETED = "step_completed"
        STEP_PROGRESS = "step_progress"
        TRAFFIC = "traffic"
        MEASUREMENT = "measurement"
        ANALYSIS = "analysis"
        OPERATOR = "operator"
        ERROR = "error"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    step = models.IntegerField(null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_repr = models.CharField(max_length=150, default="system")
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:80]}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("deployment events are append-only")
        super().save(*args, **kwargs)


class Measurement(models.Model):
    """One metric value taken during analysis, with the threshold it was judged against."""

    class Outcome(models.TextChoices):
        SUCCESSFUL = "successful"
        FAILED = "failed"
        INCONCLUSIVE = "inconclusive"
        ERROR = "error"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="measurements")
    step = models.IntegerField()
    metric = models.CharField(max_length=100)
    slot = models.CharField(max_length=10, blank=True)
    version = models.CharField(max_length=100, blank=True)
    value = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    threshold = models.JSONField(default=dict, blank=True, help_text="The condition the value was judged by.")
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    details = models.JSONField(default=dict, blank=True)
    taken_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["taken_at", "id"]
        indexes = [models.Index(fields=["deployment", "step", "metric"])]

    def __str__(self) -> str:
        return f"{self.metric}={self.value} ({self.outcome})"


# --- gates: checklists and approvals (see docs/gates.md) -------------------------------------


class Phase(models.TextChoices):
    PRE = "pre"
    POST = "post"


class Evaluator(models.TextChoices):
    """Named automatic checks (implemented in ``deployments.evaluators``)."""

    CI_PASSED = "ci_passed", "release CI status passed"
    BACKUP_VERIFIED = "backup_verified", "a restore drill passed on a recent backup"
    INSTANCES_HEALTHY = "instances_healthy", "all instances pass the health check"
    METRICS_NORMAL = "metrics_normal", "analysis metrics within thresholds"
    ALERT_RULES_LOADED = "alert_rules_loaded", "alert rules load (promtool or Prometheus)"
    NO_OPEN_INCIDENT = "no_open_incident", "no open P1/P2 incident on the environment"


class ChecklistTemplate(models.Model):
    """The items a deployment's pre or post checklist is made of.

    A template with no environment is the default for environments that have none of their
    own; only ``active`` templates are instantiated.
    """

    class OnFailure(models.TextChoices):
        NEEDS_ATTENTION = "needs_attention"
        ROLLBACK = "rollback"

    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="checklist_templates"
    )
    phase = models.CharField(max_length=4, choices=Phase.choices)
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    on_failure = models.CharField(
        max_length=16,
        choices=OnFailure.choices,
        default=OnFailure.NEEDS_ATTENTION,
        help_text="Post checklists: what a failed required automatic item does to the deployment.",
    )

    class Meta:
        ordering = ["environment_id", "phase"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "phase"],
                name="checklist_template_one_per_env_phase",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.phase}, {self.environment or 'default'})"


class ChecklistTemplateItem(models.Model):
    """One line of a template: manual (a person checks it) or automatic (a named evaluator)."""

    template = models.ForeignKey(ChecklistTemplate, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=300)
    evaluator = models.CharField(
        max_length=30, choices=Evaluator.choices, blank=True, help_text="Empty: a manual item."
    )
    params = models.JSONField(default=dict, blank=True, help_text="Evaluator parameters, e.g. maxAgeHours.")
    required = models.BooleanField(default=True)

    class Meta:
        ordering = ["template_id", "position", "id"]

    def __str__(self) -> str:
        return self.title


class ChecklistItem(models.Model):
    """A template item instantiated for one deployment, with its state and evidence."""

    class State(models.TextChoices):
        PENDING = "pending"
        PASSED = "passed"
        FAILED = "failed"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="checklist_items")
    phase = models.CharField(max_length=4, choices=Phase.choices)
    position = models.PositiveIntegerField(default=0)
    title = models.CharField(max_length=300)
    evaluator = models.CharField(max_length=30, choices=Evaluator.choices, blank=True)
    params = models.JSONField(default=dict, blank=True)
    required = models.BooleanField(default=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checked_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True, help_text="What the evaluator saw.")
    due_at = models.DateTimeField(
        null=True, blank=True, help_text="Post items: when the worker evaluates it next."
    )

    class Meta:
        ordering = ["deployment_id", "phase", "position", "id"]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(state="pending", phase="post") & ~Q(evaluator=""),
                name="checklist_item_due_idx",
            )
        ]

    def __str__(self) -> str:
        return f"[{self.state}] {self.title}"

    @property
    def automatic(self) -> bool:
        return bool(self.evaluator)


class Approval(models.Model):
    """A request for a human decision at an approval step, and the decision."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        TIMED_OUT = "timed_out"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="approvals")
    step = models.IntegerField()
    role = models.CharField(max_length=10, default="operator")
    on_timeout = models.CharField(max_length=10, default="abort")
    requested_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["requested_at", "id"]

    def __str__(self) -> str:
        return f"approval of #{self.deployment_id} step {self.step}: {self.status}"
