"""Pre- and post-deployment checklists: instantiate from templates, evaluate, check, gate.

The pre gate: a deployment with a pre checklist stays ``pending`` until every required item
has passed (the engine re-evaluates automatic items every ``RECHECK``; a manual check wakes
it at once). ``deployment_start`` answers 409 listing the blocking items; an admin may
``deployment_override_gate`` with a written reason. Post items are evaluated by the worker
after the rollout succeeded (``due_at``); a failed required automatic item marks the
deployment ``needs_attention`` or, when the template says so, rolls it back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.exceptions import PermissionDenied, ValidationError

from controlplane.api.errors import Conflict
from controlplane.audit import audit_record
from controlplane.roles import Role, has_role
from deployments import evaluators
from deployments.models import (
    ChecklistItem,
    ChecklistTemplate,
    Deployment,
    DeploymentEvent,
    Environment,
    Phase,
)
from deployments.transitions import record_event, transition

log = logging.getLogger(__name__)
S = Deployment.Status
E = DeploymentEvent.Kind
I = ChecklistItem.State  # noqa: E741

# How often a blocked pending deployment re-evaluates its automatic pre items.
RECHECK = timedelta(seconds=30)


def template_for(environment: Environment, phase: str) -> ChecklistTemplate | None:
    """The environment's own active template for ``phase``, else the active default."""
    templates = {
        t.environment_id: t
        for t in ChecklistTemplate.objects.filter(
            Q(environment=environment) | Q(environment__isnull=True), phase=phase
        )
    }
    own = templates.get(environment.pk)
    if own is not None:
        return own if own.active else None
    default = templates.get(None)
    return default if default is not None and default.active else None


def checklist_instantiate(*, deployment: Deployment) -> int:
    """Copy the environment's pre and post templates onto a new deployment; returns the item count."""
    rows: list[ChecklistItem] = []
    for phase in (Phase.PRE, Phase.POST):
        template = template_for(deployment.environment, phase)
        if template is None:
            continue
        rows += [
            ChecklistItem(
                deployment=deployment,
                phase=phase,
                position=item.position,
                title=item.title,
                evaluator=item.evaluator,
                params=item.params,
                required=item.required,
            )
            for item in template.items.all()
        ]
    ChecklistItem.objects.bulk_create(rows)
    return len(rows)


def _set_state(
    item: ChecklistItem, state: str, *, message: str, evidence: Any, now: datetime, actor: Any = None
) -> None:
    changed = item.state != state
    item.state = state
    item.evidence = {"message": message, "at": now.isoformat(), **dict(evidence or {})}
    item.checked_at = now
    item.checked_by = actor
    item.save(update_fields=["state", "evidence", "checked_at", "checked_by"])
    if changed:
        record_event(
            item.deployment,
            E.OPERATOR if actor else E.ANALYSIS,
            f"{item.phase} checklist: '{item.title}' {state}: {message}",
            actor=actor,
            now=now,
            details={"checklist_item": item.pk, "state": state, "evaluator": item.evaluator},
        )


def evaluate_item(item: ChecklistItem, *, now: datetime) -> bool:
    """Run an automatic item's evaluator and store the verdict with its evidence."""
    verdict = evaluators.evaluate(item.evaluator, item.deployment, item.params, now=now)
    _set_state(
        item,
        I.PASSED if verdict.ok else I.FAILED,
        message=verdict.message,
        evidence=verdict.evidence,
        now=now,
    )
    return verdict.ok


def blocking_items(deployment: Deployment, *, now: datetime, evaluate: bool = True) -> list[ChecklistItem]:
    """Required pre items that have not passed, after evaluating the automatic ones not yet passed."""
    items = list(ChecklistItem.objects.filter(deployment=deployment, phase=Phase.PRE).exclude(state=I.PASSED))
    for item in items:
        item.deployment = deployment
        if evaluate and item.automatic:
            evaluate_item(item, now=now)
    return [i for i in items if i.required and i.state != I.PASSED]


def describe(items: list[ChecklistItem]) -> list[dict[str, Any]]:
    return [
        {
            "id": i.pk,
            "title": i.title,
            "state": i.state,
            "evaluator": i.evaluator or None,
            "why": (i.evidence or {}).get("message")
            or ("not checked yet" if not i.evaluator else "not evaluated yet"),
        }
        for i in items
    ]


def pre_gate_wait(deployment: Deployment, *, now: datetime) -> datetime | None:
    """For the engine: None when the deployment may start, else when to look again."""
    if deployment.kind == Deployment.Kind.ROLLBACK:
        return None
    if not ChecklistItem.objects.filter(deployment=deployment, phase=Phase.PRE).exists():
        return None
    blocking = blocking_items(deployment, now=now)
    if not blocking:
        return None
    if deployment.step_state.get("gate_blocked") != [i.pk for i in blocking]:
        deployment.step_state = {**deployment.step_state, "gate_blocked": [i.pk for i in blocking]}
        deployment.save(update_fields=["step_state"])
        record_event(
            deployment,
            E.STEP_PROGRESS,
            f"waiting for the pre-deployment checklist: {len(blocking)} required item(s) not passed",
            now=now,
            details={"blocking": describe(blocking)},
        )
    return now + RECHECK


def _lock(deployment: Deployment) -> Deployment:
    return (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("environment__service", "release")
        .get(pk=deployment.pk)
    )


def _start(d: Deployment, *, actor: Any, now: datetime, reason: str) -> None:
    from deployments.services import enqueue_advance

    d.step_state = {}
    d.save(update_fields=["step_state"])
    transition(d, S.RUNNING, reason=reason, actor=actor, now=now)
    enqueue_advance(d.pk)


def deployment_start(*, deployment: Deployment, actor: Any = None, now: datetime | None = None) -> Deployment:
    """Start a pending deployment now, or answer 409 naming each required item that blocks it."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock(deployment)
        if d.status != S.PENDING:
            raise Conflict(
                f"only a pending deployment can be started (this one is {d.status})",
                code="illegal_transition",
                details={"status": d.status},
            )
        blocking = blocking_items(d, now=now) if d.kind == Deployment.Kind.DEPLOY else []
        if not blocking:  # else the verdicts just stored are committed, then 409
            _start(d, actor=actor, now=now, reason="pre-deployment checklist passed; started")
            audit_record(action="deployment.start", obj=d, changes={}, actor=actor)
            return d
    raise Conflict(
        f"{len(blocking)} required pre-deployment item(s) have not passed",
        code="checklist_blocking",
        details={"blocking_items": describe(blocking)},
    )


def deployment_override_gate(
    *, deployment: Deployment, actor: Any, reason: str, now: datetime | None = None
) -> Deployment:
    """Admins only: start a pending deployment despite its checklist, with a written reason."""
    now = now or timezone.now()
    if not has_role(actor, Role.ADMIN):
        raise PermissionDenied("only an admin may override the pre-deployment checklist")
    if not reason.strip():
        raise ValidationError({"reason": ["a written reason is required to override the checklist"]})
    with transaction.atomic():
        d = _lock(deployment)
        if d.status != S.PENDING:
            raise Conflict(
                f"only a pending deployment can be started (this one is {d.status})",
                code="illegal_transition",
                details={"status": d.status},
            )
        blocking = blocking_items(d, now=now, evaluate=False)
        overridden = describe(blocking)
        record_event(
            d,
            E.OPERATOR,
            f"pre-deployment checklist overridden by {actor.get_username()}: {reason}",
            actor=actor,
            now=now,
            details={"verb": "override", "reason": reason, "overridden_items": overridden},
        )
        audit_record(
            action="deployment.override_gate",
            obj=d,
            changes={"reason": reason, "items": overridden},
            actor=actor,
        )
        _start(d, actor=actor, now=now, reason=f"checklist overridden: {reason}")
    return d


def checklist_item_check(
    *, item: ChecklistItem, actor: Any, passed: bool = True, note: str = "", now: datetime | None = None
) -> ChecklistItem:
    """A person checks (or fails) a manual item, with an optional note; wakes a waiting deployment."""
    from deployments.services import enqueue_advance

    now = now or timezone.now()
    with transaction.atomic():
        d = _lock(item.deployment)
        item = ChecklistItem.objects.select_for_update().get(pk=item.pk)
        item.deployment = d
        if item.automatic:
            raise Conflict(
                f"'{item.title}' is automatic ({item.evaluator}); it is evaluated, not checked",
                code="automatic_item",
            )
        if item.phase == Phase.PRE and d.status != S.PENDING:
            raise Conflict(
                f"the pre-deployment checklist is closed: the deployment is {d.status}",
                code="checklist_closed",
            )
        item.note = note
        item.save(update_fields=["note"])
        who = actor if getattr(actor, "is_authenticated", False) else None
        _set_state(
            item,
            I.PASSED if passed else I.FAILED,
            message=f"checked by {who.get_username() if who else 'system'}" + (f": {note}" if note else ""),
            evidence={},
            now=now,
            actor=who,
        )
        audit_record(
            action="checklist_item.check",
            obj=item,
            changes={"state": item.state, "note": note, "deployment": d.pk},
            actor=who,
        )
        if d.status == S.PENDING:
            d.next_check_at = now
            d.save(update_fields=["next_check_at"])
            enqueue_advance(d.pk)
    return item


# --- post-deployment checklist -----------------------------------------------------------------


def post_checklist_schedule(*, deployment: Deployment, now: datetime) -> None:
    """For the engine when a rollout succeeded: make the automatic post items due (metrics items
    after their ``windowMs``) and wake the evaluator once the transaction commits."""
    items = list(
        ChecklistItem.objects.filter(deployment=deployment, phase=Phase.POST, state=I.PENDING).exclude(
            evaluator=""
        )
    )
    if not items:
        return
    for item in items:
        window = int((item.params or {}).get("windowMs", 0) or 0)
        item.due_at = now + timedelta(milliseconds=window)
    ChecklistItem.objects.bulk_update(items, ["due_at"])
    ids = [i.pk for i in items if i.due_at is not None and i.due_at <= now]
    if not ids:
        return  # windows still open: the sweeper evaluates them when they end

    def send() -> None:
        from deployments.tasks import evaluate_checklist_items

        try:
            evaluate_checklist_items.delay(ids)
        except Exception:  # the sweeper finds them by due_at
            log.warning("could not enqueue post-checklist evaluation of deployment %s", deployment.pk)

    transaction.on_commit(send)


# How long a claimed post item is left alone before the sweeper enqueues it again.
CLAIM_LEASE = timedelta(seconds=60)


def claim_due_items(*, now: datetime, limit: int = 500) -> list[int]:
    """Ids of due automatic post items; their ``due_at`` moves by the lease so the next sweep
    does not enqueue them again while their message waits."""
    with transaction.atomic():
        ids = list(
            ChecklistItem.objects.filter(phase=Phase.POST, state=I.PENDING, due_at__lte=now)
            .exclude(evaluator="")
            .order_by("due_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        ChecklistItem.objects.filter(pk__in=ids).update(due_at=now + CLAIM_LEASE)
    return ids


def post_item_evaluate(*, item_id: int, now: datetime | None = None) -> ChecklistItem | None:
    """Evaluate one due post item under its deployment's lock; act on a required failure."""
    now = now or timezone.now()
    with transaction.atomic():
        item = (
            ChecklistItem.objects.select_for_update(skip_locked=True)
            .filter(pk=item_id, state=I.PENDING)
            .first()
        )
        if item is None:
            return None
        d = _lock(item.deployment)
        item.deployment = d
        ok = evaluate_item(item, now=now)
        if ok or not item.required or d.status != S.SUCCEEDED:
            return item
        template = template_for(d.environment, Phase.POST)
        action = template.on_failure if template else ChecklistTemplate.OnFailure.NEEDS_ATTENTION
        reason = f"post-deployment check failed: {item.title} ({(item.evidence or {}).get('message', '')})"
        transition(d, S.NEEDS_ATTENTION, reason=reason, now=now, details={"checklist_item": item.pk})
    if action == ChecklistTemplate.OnFailure.ROLLBACK:
        from deployments.services import deployment_rollback

        try:
            deployment_rollback(deployment=d, reason=reason, now=now)
        except Conflict as exc:
            record_event(
                d, E.ERROR, f"automatic rollback after a failed post check refused: {exc.detail}", now=now
            )
    return item
