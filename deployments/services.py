"""Every write to deployments: create, the operator verbs and rollback.

Services validate, change state in one transaction under the deployment's row lock,
append timeline events, audit, and enqueue the engine in ``transaction.on_commit``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from controlplane.api.errors import Conflict
from controlplane.audit import audit_record
from deployments import engine, strategies
from deployments.exceptions import IllegalTransition
from deployments.models import Deployment, DeploymentEvent, Environment, Instance, Release
from deployments.providers.base import InstanceRef, ProviderError
from deployments.strategies.config import unwrap
from deployments.transitions import record_event, transition

log = logging.getLogger(__name__)
S = Deployment.Status
E = DeploymentEvent.Kind


def enqueue_advance(deployment_id: int) -> None:
    """Ask a worker to advance the deployment once the transaction commits.

    A broker outage must not fail the request: the reconciler picks the deployment up
    from ``next_check_at`` when the broker is back.
    """

    def send() -> None:
        from deployments.tasks import advance_deployment

        try:
            advance_deployment.delay(deployment_id)
        except Exception:  # the broker is down; the reconciler will find it
            log.warning("could not enqueue advance of deployment %s; the reconciler will", deployment_id)

    transaction.on_commit(send)


def request_fingerprint(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def active_deployment(environment: Environment) -> Deployment | None:
    return (
        Deployment.objects.filter(environment=environment, status__in=Deployment.ACTIVE_STATUSES)
        .select_related("release")
        .first()
    )


def _conflict_active(environment: Environment) -> Conflict:
    active = active_deployment(environment)
    if active is None:  # it finished between our insert and this read
        return Conflict(f"{environment} changed concurrently; try again", code="deployment_active")
    return Conflict(
        f"{environment} already has an active deployment: "
        f"#{active.pk} ({active.release.version}, {active.status})",
        code="deployment_active",
        details={"active_deployment": active.pk, "status": active.status, "release": active.release.version},
    )


def env_state(environment: Environment) -> strategies.EnvState:
    instances = Instance.objects.filter(environment=environment).select_related("release")
    refs = [
        InstanceRef(
            name=i.name,
            address=i.address,
            slot=i.slot or None,
            version=i.release.version if i.release else None,
        )
        for i in instances
    ]
    return strategies.EnvState(instances=refs, live_slot=environment.live_slot or None)


def _slots(plan: list[dict[str, Any]], environment: Environment) -> tuple[str, str]:
    """(stable, target) of a slot-based plan, ("", "") for in-place rolling."""
    for step in plan:
        if step["kind"] in ("deploy", "verify_health") and step.get("slot"):
            target = str(step["slot"])
            return ("green" if target == "blue" else "blue"), target
    return "", ""


def deployment_create(
    *,
    environment: Environment,
    release: Release,
    config: Any,
    actor: Any = None,
    reason: str = "",
    idempotency_key: str = "",
    now: datetime | None = None,
) -> tuple[Deployment, bool]:
    """Validate the strategy config, plan it, and create a pending deployment (or return the
    one created earlier under the same ``idempotency_key``). Returns ``(deployment, created)``."""
    now = now or timezone.now()
    block = unwrap(config)
    fingerprint = request_fingerprint(
        {"environment": environment.pk, "release": release.pk, "deployment": block, "reason": reason}
    )
    if idempotency_key:
        existing = _replay(idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    try:
        parsed = strategies.parse_strategy_config(block)
    except strategies.ConfigError as exc:
        raise ValidationError(exc.errors) from None
    if release.service_id != environment.service_id:
        raise ValidationError(
            {"release": [f"belongs to service {release.service.slug}, not {environment.service.slug}"]}
        )
    if environment.frozen:
        raise Conflict(
            f"{environment} is frozen ({environment.freeze_reason or 'deploy freeze'}); "
            "only rollbacks may start",
            code="environment_frozen",
        )
    _refuse_if_incident_freeze(environment)
    missing = [name for name in ("router", "deployer") if not getattr(environment, name)]
    if missing:
        # No silent default: a forgotten router must not turn a rollout into a no-op.
        raise ValidationError({"environment": [f"has no {' or '.join(missing)} configured"]})
    try:
        plan = strategies.plan(parsed, env_state(environment))
    except strategies.PlanError as exc:
        raise ValidationError({exc.field: [exc.rule]}) from None
    return _create(
        environment=environment,
        release=release,
        config=block,
        strategy=strategies.strategy_name(parsed),
        plan=plan,
        actor=actor,
        reason=reason,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        now=now,
    )


def _refuse_if_incident_freeze(environment: Environment) -> None:
    from incidents.selectors import environment_frozen_by_incident

    incident = environment_frozen_by_incident(environment)
    if incident is not None:
        raise Conflict(
            f"{environment} is frozen by incident #{incident.pk} ({incident.severity.code}: "
            f"{incident.title}); only rollbacks may start",
            code="environment_frozen",
            details={"incident": incident.pk, "severity": incident.severity.code},
        )


def _replay(key: str, fingerprint: str) -> Deployment | None:
    existing = Deployment.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.request_fingerprint != fingerprint:
        raise Conflict(
            "Idempotency-Key was already used for a different request",
            code="idempotency_key_reused",
            details={"deployment": existing.pk},
        )
    return existing


def _create(
    *,
    environment: Environment,
    release: Release,
    config: Any,
    strategy: str,
    plan: list[dict[str, Any]],
    actor: Any,
    reason: str,
    idempotency_key: str,
    fingerprint: str,
    now: datetime,
    kind: str = Deployment.Kind.DEPLOY,
    rollback_of: Deployment | None = None,
) -> tuple[Deployment, bool]:
    stable, target = _slots(plan, environment)
    user = actor if getattr(actor, "is_authenticated", False) else None
    try:
        with transaction.atomic():
            deployment = Deployment.objects.create(
                environment=environment,
                release=release,
                previous_release=environment.current_release,
                kind=kind,
                rollback_of=rollback_of,
                strategy=strategy,
                config=config,
                plan=plan,
                stable_slot=stable,
                target_slot=target,
                status=S.PENDING,
                next_check_at=now,
                created_by=user,
                reason=reason,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                created_at=now,
            )
            if kind == Deployment.Kind.DEPLOY:
                from deployments.checklists import checklist_instantiate

                checklist_instantiate(deployment=deployment)
    except IntegrityError as exc:
        if idempotency_key and "idempotency" in str(exc):
            replay = _replay(idempotency_key, fingerprint)
            if replay is not None:
                return replay, False
        raise _conflict_active(environment) from None
    what = "rollback" if kind == Deployment.Kind.ROLLBACK else "deployment"
    record_event(
        deployment,
        E.OPERATOR,
        f"{what} of {release.version} ({strategy}, {len(plan)} steps) requested"
        + (f": {reason}" if reason else ""),
        actor=user,
        now=now,
        details={"reason": reason, "idempotency_key": idempotency_key},
    )
    audit_record(
        action=f"deployment.{'rollback' if kind == Deployment.Kind.ROLLBACK else 'create'}",
        obj=deployment,
        changes={
            "environment": str(environment),
            "release": release.version,
            "strategy": strategy,
            "reason": reason,
        },
        actor=user,
    )
    enqueue_advance(deployment.pk)
    return deployment, True


# --- operator verbs ----------------------------------------------------------------------------


def _lock_active(deployment: Deployment, verb: str) -> Deployment:
    """Lock the row and refuse (409) unless the deployment is still active."""
    d = _lock(deployment)
    if not d.is_active:
        raise Conflict(
            f"only an active deployment can be {verb} (this one is {d.status})", code="illegal_transition"
        )
    return d


def _lock(deployment: Deployment) -> Deployment:
    return (
        Deployment.objects.select_for_update(of=("self",))
        .select_related("environment__service", "release")
        .get(pk=deployment.pk)
    )


def _operator(d: Deployment, verb: str, actor: Any, reason: str, now: datetime, **details: Any) -> None:
    who = actor if getattr(actor, "is_authenticated", False) else None
    record_event(
        d,
        E.OPERATOR,
        f"{verb} by {who.get_username() if who else 'system'}" + (f": {reason}" if reason else ""),
        actor=who,
        now=now,
        step=d.current_step,
        details={"verb": verb, "reason": reason, **details},
    )
    audit_record(action=f"deployment.{verb}", obj=d, changes={"reason": reason, **details}, actor=who)


def _move(d: Deployment, target: str, *, reason: str, actor: Any, now: datetime) -> None:
    try:
        transition(d, target, reason=reason, actor=actor, now=now)
    except IllegalTransition as exc:
        raise Conflict(str(exc), code="illegal_transition", details={"status": d.status}) from None


def deployment_pause(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock(deployment)
        if d.status != S.RUNNING:
            raise Conflict(
                f"only a running deployment can be paused (this one is {d.status})", code="illegal_transition"
            )
        _operator(d, "pause", actor, reason, now)
        _move(
            d, S.PAUSED, reason=f"paused by operator{': ' + reason if reason else ''}", actor=actor, now=now
        )
    return d


def deployment_resume(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    """Continue a paused deployment; an indefinite pause step counts as done, an inconclusive
    analysis is measured again."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock(deployment)
        if d.status != S.PAUSED:
            raise Conflict(
                f"only a paused deployment can be resumed (this one is {d.status})", code="illegal_transition"
            )
        step = d.current_step_spec or {}
        if step.get("kind") == "pause" and step.get("duration_ms") is None:
            d.step_state = {**d.step_state, "promoted": True}
        elif step.get("kind") == "analyze" and "outcomes" in d.step_state:
            d.step_state = {}
        d.save(update_fields=["step_state"])
        _operator(d, "resume", actor, reason, now)
        _move(d, S.RUNNING, reason="resumed by operator", actor=actor, now=now)
        enqueue_advance(d.pk)
    return d


def deployment_promote(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    """Skip the current pause or analysis step."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock_active(deployment, "promoted")
        step = d.current_step_spec
        if step is None or step["kind"] not in ("pause", "analyze"):
            kind = step["kind"] if step else "none"
            raise Conflict(
                f"nothing to promote: the current step is '{kind}', not a pause or an analysis",
                code="nothing_to_promote",
                details={"current_step": d.current_step, "kind": kind},
            )
        _operator(d, "promote", actor, reason, now, skipped=step["title"])
        record_event(
            d,
            E.STEP_COMPLETED,
            f"{step['title']} (skipped: promoted)",
            actor=actor,
            now=now,
            step=d.current_step,
        )
        d.current_step += 1
        d.step_state = {}
        d.save(update_fields=["current_step", "step_state"])
        if d.status == S.PAUSED:
            _move(d, S.RUNNING, reason="promoted by operator", actor=actor, now=now)
        else:
            d.next_check_at = now
            d.save(update_fields=["next_check_at"])
        enqueue_advance(d.pk)
    return d


SKIPPED_BY_FULL_PROMOTION = ("pause", "analyze")


def deployment_promote_full(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    """Skip every remaining pause, analysis and intermediate weight: go straight to 100%."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock_active(deployment, "promoted")
        done, rest = d.plan[: d.current_step], d.plan[d.current_step :]
        kept = [
            s
            for s in rest
            if s["kind"] not in SKIPPED_BY_FULL_PROMOTION
            and not (s["kind"] == "set_weight" and s["weight"] < 100)
        ]
        skipped = [s["title"] for s in rest if s not in kept]
        current = d.current_step_spec
        if current is not None and current in kept and d.step_state:
            pass  # the current step keeps its progress
        else:
            d.step_state = {}
        d.plan = done + kept
        d.save(update_fields=["plan", "step_state"])
        _operator(d, "promote-full", actor, reason, now, skipped=skipped)
        if d.status == S.PAUSED:
            _move(d, S.RUNNING, reason="fully promoted by operator", actor=actor, now=now)
        else:
            d.next_check_at = now
            d.save(update_fields=["next_check_at"])
        enqueue_advance(d.pk)
    return d


def deployment_abort(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    """Return all traffic to the stable release and end the deployment ``aborted``."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock_active(deployment, "aborted")
        _operator(d, "abort", actor, reason, now)
        note = ""
        if d.status != S.PENDING:
            ctx = engine.Context(d, now, None)
            try:
                engine.restore_stable_traffic(ctx, why="abort: all traffic back to stable")
            except ProviderError as exc:
                note = f"; restoring traffic FAILED: {exc}"
                record_event(
                    d, E.ERROR, f"abort could not restore traffic: {exc}", now=now, step=d.current_step
                )
        _move(
            d,
            S.ABORTED,
            reason=f"aborted by operator{': ' + reason if reason else ''}{note}",
            actor=actor,
            now=now,
        )
    return d


def deployment_retry(
    *, deployment: Deployment, actor: Any = None, reason: str = "", now: datetime | None = None
) -> Deployment:
    """Run a failed or aborted deployment again from its first step (every step is idempotent),
    or re-run the current step of a paused one."""
    now = now or timezone.now()
    with transaction.atomic():
        d = _lock(deployment)
        if d.status not in (S.FAILED, S.ABORTED, S.PAUSED):
            raise Conflict(
                f"only a failed, aborted or paused deployment can be retried (this one is {d.status})",
                code="illegal_transition",
            )
        if d.status != S.PAUSED:
            d.current_step = 0
        d.step_state = {}
        d.save(update_fields=["current_step", "step_state"])
        _operator(d, "retry", actor, reason, now)
        try:
            with transaction.atomic():
                _move(d, S.RUNNING, reason="retried by operator", actor=actor, now=now)
        except IntegrityError:
            raise _conflict_active(d.environment) from None
        enqueue_advance(d.pk)
    return d


def deployment_rollback(
    *,
    deployment: Deployment,
    actor: Any = None,
    reason: str = "",
    idempotency_key: str = "",
    now: datetime | None = None,
) -> Deployment:
    """A new deployment of the release that was live before ``deployment``.

    While the previous slot still runs that release (and ``scaleDownDelaySeconds`` has not
    passed), the rollback only verifies that slot and switches traffic back: no deploy.
    """
    now = now or timezone.now()
    d = Deployment.objects.select_related("environment__service", "release", "previous_release").get(
        pk=deployment.pk
    )
    if d.is_active:
        raise Conflict(
            f"deployment #{d.pk} is still {d.status}; abort it to return traffic to stable",
            code="deployment_active",
            details={"active_deployment": d.pk},
        )
    if d.previous_release is None:
        raise Conflict(
            f"deployment #{d.pk} has no previous release to roll back to", code="no_previous_release"
        )
    env = d.environment
    if env.current_release_id != d.release_id:
        raise Conflict(
            f"{env} no longer runs {d.release.version}; roll back its latest deployment instead",
            code="not_latest",
        )
    fingerprint = request_fingerprint({"rollback_of": d.pk, "reason": reason})
    if idempotency_key:
        existing = _replay(idempotency_key, fingerprint)
        if existing is not None:
            return existing
    parsed = strategies.parse_strategy_config(d.config)
    state = env_state(env)
    warm = d.stable_slot or None
    if warm is not None:
        previous = d.previous_release.version
        on_slot = [i for i in state.instances if i.slot == warm]
        warm_ok = bool(on_slot) and all(i.version == previous for i in on_slot)
        if not warm_ok or (d.warm_until is not None and now > d.warm_until):
            warm = None
    try:
        plan = strategies.rollback_plan(parsed, state, warm_slot=warm)
    except strategies.PlanError as exc:
        raise ValidationError({exc.field: [exc.rule]}) from None
    created, _ = _create(
        environment=env,
        release=d.previous_release,
        config=d.config,
        strategy=d.strategy,
        plan=plan,
        actor=actor,
        reason=reason or f"rollback of #{d.pk}",
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        now=now,
        kind=Deployment.Kind.ROLLBACK,
        rollback_of=d,
    )
    record_event(
        d,
        E.OPERATOR,
        f"rollback requested: deployment #{created.pk} "
        f"({'fast: warm slot ' + warm if warm else 'full redeploy'})",
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        now=now,
        details={"rollback": created.pk, "fast": warm is not None, "reason": reason},
    )
    return created


VERBS = {
    "pause": deployment_pause,
    "resume": deployment_resume,
    "promote": deployment_promote,
    "promote-full": deployment_promote_full,
    "abort": deployment_abort,
    "retry": deployment_retry,
}
