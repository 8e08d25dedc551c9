"""The deployment status table and the one function that moves a deployment along it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from deployments.exceptions import IllegalTransition
from deployments.models import Deployment, DeploymentEvent

S = Deployment.Status

ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.RUNNING, S.FAILED, S.ABORTED}),
    S.RUNNING: frozenset({S.PAUSED, S.SUCCEEDED, S.FAILED, S.ABORTED, S.ROLLED_BACK}),
    S.PAUSED: frozenset({S.RUNNING, S.FAILED, S.ABORTED, S.ROLLED_BACK}),
    S.FAILED: frozenset({S.RUNNING}),  # retry
    S.ABORTED: frozenset({S.RUNNING}),  # retry
    # a rollback deployment of it succeeded; or a required post-deployment check failed
    S.SUCCEEDED: frozenset({S.ROLLED_BACK, S.NEEDS_ATTENTION}),
    S.NEEDS_ATTENTION: frozenset({S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset(),
}
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.ABORTED, S.ROLLED_BACK, S.NEEDS_ATTENTION})


def can_transition(current: str, target: str) -> bool:
    return target in ALLOWED.get(current, frozenset())


def transition(
    deployment: Deployment,
    target: str,
    *,
    reason: str = "",
    actor: Any = None,
    now: datetime | None = None,
    details: dict[str, Any] | None = None,
) -> DeploymentEvent:
    """Move ``deployment`` to ``target`` (or raise), save the changed fields and append the event.

    The caller holds the row lock; ``now`` is the engine's clock.
    """
    current = deployment.status
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    now = now or timezone.now()
    deployment.status = target
    deployment.status_reason = reason
    fields = ["status", "status_reason"]
    if target == S.RUNNING and deployment.started_at is None:
        deployment.started_at = now
        fields.append("started_at")
    if target in TERMINAL:
        deployment.finished_at = now
        deployment.next_check_at = None
        fields += ["finished_at", "next_check_at"]
    elif target == S.PAUSED:
        deployment.next_check_at = None
        fields.append("next_check_at")
    elif target == S.RUNNING:
        deployment.finished_at = None
        deployment.next_check_at = now
        fields += ["finished_at", "next_check_at"]
    deployment.save(update_fields=fields)
    return record_event(
        deployment,
        DeploymentEvent.Kind.TRANSITION,
        f"{current} -> {target}" + (f": {reason}" if reason else ""),
        actor=actor,
        now=now,
        details={"from": current, "to": target, **(details or {})},
    )


def record_event(
    deployment: Deployment,
    kind: str,
    message: str,
    *,
    actor: Any = None,
    now: datetime | None = None,
    step: int | None = None,
    details: dict[str, Any] | None = None,
) -> DeploymentEvent:
    """Append one row to the deployment's timeline."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return DeploymentEvent.objects.create(
        deployment=deployment,
        created_at=now or timezone.now(),
        kind=kind,
        step=step,
        actor=actor,
        actor_repr=actor.get_username() if actor is not None else "system",
        message=message,
        details=details or {},
    )
