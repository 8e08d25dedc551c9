"""Approval steps: a rollout waits for a person holding a role, with a timeout that acts.

While it waits the deployment stays ``running`` with ``next_check_at`` at the deadline, so the
reconciler applies the timeout even if nobody ever looks (an Argo pause can wait forever).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied, ValidationError

from controlplane.api.errors import Conflict
from controlplane.audit import audit_record
from controlplane.roles import Role, has_role
from deployments.models import Approval, Deployment, DeploymentEvent
from deployments.transitions import record_event

A = Approval.Status
E = DeploymentEvent.Kind


@dataclasses.dataclass(frozen=True)
class Decision:
    status: str  # "approved" | "pending" | "abort"
    message: str = ""
    until: datetime | None = None


def poll(d: Deployment, step: dict[str, Any], *, now: datetime) -> Decision:
    """For the engine: request the approval on first call, then report the decision or the timeout."""
    approval = None
    if "approval_id" in d.step_state:
        approval = Approval.objects.filter(pk=d.step_state["approval_id"]).first()
    if approval is None:
        approval = Approval.objects.create(
            deployment=d,
            step=d.current_step,
            role=step["role"],
            on_timeout=step["on_timeout"],
            requested_at=now,
            expires_at=now + timedelta(milliseconds=int(step["timeout_ms"])),
        )
        d.step_state = {**d.step_state, "approval_id": approval.pk}
        record_event(
            d,
            E.STEP_PROGRESS,
            f"approval requested from a {approval.role}; {approval.on_timeout} at "
            f"{approval.expires_at.isoformat() if approval.expires_at else 'never'}",
            now=now,
            step=d.current_step,
            details={"approval": approval.pk, "role": approval.role, "on_timeout": approval.on_timeout},
        )
    if approval.status == A.APPROVED:
        return Decision("approved", f"approved by {_who(approval)}: {approval.reason}".rstrip(": "))
    if approval.status == A.REJECTED:
        return Decision("abort", f"rejected by {_who(approval)}: {approval.reason}".rstrip(": "))
    if approval.status == A.TIMED_OUT:
        verb = "approved" if approval.on_timeout == "promote" else "abort"
        return Decision(verb, f"approval timed out ({approval.on_timeout})")
    if approval.expires_at is not None and now >= approval.expires_at:
        approval.status = A.TIMED_OUT
        approval.decided_at = now
        approval.reason = f"no decision within {int(step['timeout_ms']) / 1000:g}s"
        approval.save(update_fields=["status", "decided_at", "reason"])
        message = f"approval timed out after {int(step['timeout_ms']) / 1000:g}s: {approval.on_timeout}"
        record_event(
            d,
            E.OPERATOR,
            message,
            now=now,
            step=d.current_step,
            details={"approval": approval.pk, "decision": "timed_out", "on_timeout": approval.on_timeout},
        )
        return Decision("approved" if approval.on_timeout == "promote" else "abort", message)
    return Decision("pending", until=approval.expires_at)


def _who(approval: Approval) -> str:
    return approval.decided_by.get_username() if approval.decided_by else "system"


def approval_decide(
    *,
    deployment: Deployment,
    actor: Any,
    approve: bool,
    reason: str = "",
    now: datetime | None = None,
) -> Approval:
    """Approve or reject the approval the deployment is waiting for (role and self-approval checked)."""
    from deployments.services import enqueue_advance

    now = now or timezone.now()
    verb = "approve" if approve else "reject"
    if not approve and not reason.strip():
        raise ValidationError({"reason": ["a reason is required to reject"]})
    with transaction.atomic():
        d = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment__service", "release")
            .get(pk=deployment.pk)
        )
        step = d.current_step_spec
        approval = (
            Approval.objects.select_for_update().filter(pk=d.step_state.get("approval_id")).first()
            if d.is_active and step is not None and step["kind"] == "approval"
            else None
        )
        if approval is None or approval.status != A.PENDING:
            raise Conflict(
                f"deployment #{d.pk} is not waiting for an approval (status {d.status})",
                code="no_pending_approval",
                details={"status": d.status, "current_step": d.current_step},
            )
        if not has_role(actor, Role.parse(approval.role)):
            raise PermissionDenied(f"this approval needs the {approval.role} role")
        if d.environment.forbid_self_approval and d.created_by_id is not None and d.created_by_id == actor.pk:
            raise PermissionDenied(f"{d.environment} forbids approving your own deployment")
        approval.status = A.APPROVED if approve else A.REJECTED
        approval.decided_by = actor
        approval.decided_at = now
        approval.reason = reason
        approval.save(update_fields=["status", "decided_by", "decided_at", "reason"])
        record_event(
            d,
            E.OPERATOR,
            f"{'approved' if approve else 'rejected'} by {actor.get_username()}"
            + (f": {reason}" if reason else ""),
            actor=actor,
            now=now,
            step=d.current_step,
            details={"verb": verb, "approval": approval.pk, "reason": reason, "role": approval.role},
        )
        audit_record(
            action=f"deployment.{verb}",
            obj=d,
            changes={"reason": reason, "approval": approval.pk},
            actor=actor,
        )
        if d.status == Deployment.Status.RUNNING:
            d.next_check_at = now
            d.save(update_fields=["next_check_at"])
            enqueue_advance(d.pk)
    return approval
