"""The rollout engine: ``advance()`` executes the current step of one deployment, once.

Every call does at most one unit of provider I/O (one deploy, one round of probes, one
traffic change, one round of measurements) inside the caller's transaction, which holds
the deployment's row lock.  The outcome is recorded as events, and the deployment either
moves to the next step or stores ``next_check_at``.  Nothing here sleeps: time is data.
A crash rolls the transaction back, so the step is simply executed again; every step is
written to be idempotent (traffic tables are absolute, deploys skip instances already done).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deployments.exceptions import StepFailed
from deployments.models import Deployment, DeploymentEvent, Environment, Instance, Measurement
from deployments.provider_set import ProviderSet
from deployments.providers.base import InstanceRef, MetricValue, ProviderError, ReleaseRef, TrafficTable
from deployments.strategies.config import analysis_defaults
from deployments.transitions import record_event, transition

log = logging.getLogger(__name__)
S = Deployment.Status
E = DeploymentEvent.Kind

DEFAULT_HEALTH_INTERVAL_MS = 2000
DEFAULT_HEALTHY_THRESHOLD = 1
DEFAULT_PROGRESS_DEADLINE_MS = 600_000
MAX_STEPS_PER_RUN = 200
DRAIN_RECHECK_MS = 250


@dataclasses.dataclass(frozen=True)
class Result:
    """What ``advance`` did: ``again`` means the next step may run right away."""

    action: str  # "started" | "progress" | "completed" | "waiting" | "paused" | "finished" | "idle"
    again: bool = False


@dataclasses.dataclass(frozen=True)
class _Done:
    message: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class _Wait:
    until: datetime | None  # None: immediately (more work in this step)
    message: str = ""


@dataclasses.dataclass(frozen=True)
class _Pause:
    reason: str


@dataclasses.dataclass(frozen=True)
class _RollBack:
    reason: str
    details: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class _Abort:
    reason: str


_Outcome = _Done | _Wait | _Pause | _RollBack | _Abort


class Context:
    """Everything one step needs: the deployment, its environment and instances, providers, now."""

    def __init__(self, deployment: Deployment, now: datetime, providers: ProviderSet | None) -> None:
        self.deployment = deployment
        self.env: Environment = deployment.environment
        self.now = now
        self._providers = providers

    @functools.cached_property
    def instances(self) -> dict[str, Instance]:
        """Loaded on first use: steps that only wait never read them."""
        return {i.name: i for i in Instance.objects.filter(environment=self.env).select_related("release")}

    @functools.cached_property
    def providers(self) -> ProviderSet:
        return self._providers or provider_set_for(self.env, self.instances.values())

    def ref(self, instance: Instance) -> InstanceRef:
        return InstanceRef(
            name=instance.name,
            address=instance.address,
            slot=instance.slot or None,
            version=instance.release.version if instance.release else None,
        )

    def refs(self, names: list[str]) -> list[InstanceRef]:
        return [self.ref(self.instances[n]) for n in names if n in self.instances]

    @property
    def release_ref(self) -> ReleaseRef:
        r = self.deployment.release
        return ReleaseRef(version=r.version, artifact=r.artifact, git_sha=r.git_sha)

    def apply_traffic(self, table: TrafficTable, *, step: int | None, why: str) -> None:
        self.providers.router.apply(table)
        self.env.traffic = table.as_dict()
        self.env.save(update_fields=["traffic"])
        record_event(self.deployment, E.TRAFFIC, why, now=self.now, step=step, details=table.as_dict())

    def shift_traffic(self, table: TrafficTable, *, step: int | None, why: str) -> None:
        """A weight change or switch, between the ``before/after_traffic_shift`` hooks."""
        self.fire_hooks("before_traffic_shift", step=step, weights=table.weights)
        self.apply_traffic(table, step=step, why=why)
        self.fire_hooks("after_traffic_shift", step=step, weights=table.weights)

    def fire_hooks(self, point: str, *, step: int | None, weights: Mapping[str, int] | None = None) -> None:
        """Run the environment's hooks for ``point``; a blocking failure fails the step."""
        from deployments import hooks

        if not self.env.hooks or point not in self.env.hooks:
            return
        d = self.deployment
        if weights is None:
            weights = self.env.traffic.get("weights", {}) if isinstance(self.env.traffic, dict) else {}
        facts = hooks.Facts(
            deployment_id=d.pk,
            environment=str(self.env),
            service=self.env.service.slug,
            release=d.release.version,
            step=step,
            weights=dict(weights),
        )
        try:
            runs = hooks.run_hooks(self.env.hooks, point, facts)
        except ProviderError as exc:  # HookFailed, or a hooks config that no longer validates
            if point in hooks.NON_BLOCKING:
                record_event(d, E.ERROR, f"{point} hooks not run: {exc}", now=self.now, step=step)
                return
            raise StepFailed(str(exc)) from None
        for r in runs:
            if r.error is None:
                record_event(d, E.STEP_PROGRESS, f"hook {r.label} ok", now=self.now, step=step)
            else:
                message = f"hook {r.label} failed after {r.attempts} attempt(s), not blocking: {r.error}"
                record_event(d, E.ERROR, message, now=self.now, step=step)


def provider_set_for(
    env: Environment, instances: Any, overrides: Mapping[str, Any] | None = None
) -> ProviderSet:
    refs = [
        InstanceRef(
            name=i.name,
            address=i.address,
            slot=i.slot or None,
            version=i.release.version if i.release_id and i.release else None,
        )
        for i in instances
    ]
    return ProviderSet(
        router_config=env.router,
        deployer_config=env.deployer,
        health_config=env.health_check,
        metrics_config=env.metrics,
        instances=refs,
        overrides=overrides,
    )


def advance(
    deployment: Deployment, *, now: datetime | None = None, providers: ProviderSet | None = None
) -> Result:
    """Execute the current step of a locked deployment once and record what happened."""
    now = now or timezone.now()
    d = deployment
    if d.status == S.PENDING:
        from deployments.checklists import pre_gate_wait

        if (gate_until := pre_gate_wait(d, now=now)) is not None:
            d.next_check_at = gate_until
            d.save(update_fields=["next_check_at"])
            return Result("waiting")
        transition(d, S.RUNNING, reason="rollout started", now=now)
        return Result("started", again=True)
    if d.status != S.RUNNING:
        return Result("idle")
    step = d.current_step_spec
    if step is None:  # a plan always ends with finalize; this is a plan edited to nothing
        transition(d, S.SUCCEEDED, reason="no steps left", now=now)
        return Result("finished")
    ctx = Context(d, now, providers)
    index = d.current_step
    if "started_at" not in d.step_state:
        d.step_state = {"started_at": now.isoformat()}
        record_event(d, E.STEP_STARTED, step["title"], now=now, step=index, details={"kind": step["kind"]})
    try:
        if index == 0 and not d.step_state.get("pre_hooks"):
            ctx.fire_hooks("rollback" if d.kind == Deployment.Kind.ROLLBACK else "pre_rollout", step=index)
            d.step_state["pre_hooks"] = True
        outcome = HANDLERS[step["kind"]](ctx, step)
    except (ProviderError, StepFailed) as exc:
        reason = f"step {index + 1} ({step['title']}) failed: {exc}"
        record_event(d, E.ERROR, reason, now=now, step=index)
        restore_stable_traffic(ctx, why="traffic back to stable after a failed step")
        d.save(update_fields=["step_state"])
        transition(d, S.FAILED, reason=reason, now=now)
        _open_incident(d, reason, now)
        return Result("finished")
    if isinstance(outcome, _Done):
        record_event(
            d,
            E.STEP_COMPLETED,
            outcome.message or step["title"],
            now=now,
            step=index,
            details=dict(outcome.details),
        )
        if step["kind"] == "finalize":
            _succeed(ctx)
            return Result("finished")
        d.current_step = index + 1
        d.step_state = {}
        d.next_check_at = now
        d.save(update_fields=["current_step", "step_state", "next_check_at"])
        return Result("completed", again=True)
    if isinstance(outcome, _Wait):
        d.next_check_at = outcome.until or now
        d.save(update_fields=["step_state", "next_check_at"])
        if outcome.message:
            record_event(d, E.STEP_PROGRESS, outcome.message, now=now, step=index)
        return Result("progress", again=True) if outcome.until is None else Result("waiting")
    if isinstance(outcome, _Abort):
        d.save(update_fields=["step_state"])
        restore_stable_traffic(ctx, why="traffic back to stable: " + outcome.reason)
        transition(d, S.ABORTED, reason=outcome.reason, now=now)
        return Result("finished")
    if isinstance(outcome, _Pause):
        d.save(update_fields=["step_state"])
        transition(d, S.PAUSED, reason=outcome.reason, now=now)
        return Result("paused")
    # Analysis failed: the canary never becomes stable; traffic goes back and the deployment ends rolled back.
    d.save(update_fields=["step_state"])
    applying = time.monotonic()
    restore_stable_traffic(ctx, why="automatic rollback: traffic back to stable")
    _record_time_to_recover(ctx, time.monotonic() - applying)
    transition(d, S.ROLLED_BACK, reason=outcome.reason, now=now, details=dict(outcome.details))
    _open_incident(d, outcome.reason, now)
    return Result("finished")


def _open_incident(d: Deployment, reason: str, now: datetime) -> None:
    """An automatic failure or rollback opens an incident per the incidents policy, atomically
    with the transition; an incidents error is logged and never undoes the rollback."""
    from incidents.services import incident_open_for_deployment

    try:
        with transaction.atomic():
            incident_open_for_deployment(deployment=d, reason=reason, now=now)
    except Exception:
        log.exception("could not open an incident for deployment %s", d.pk)


def restore_stable_traffic(ctx: Context, *, why: str) -> None:
    """All traffic to the stable slot, nothing drained (abort, failure and rollback all end here)."""
    d = ctx.deployment
    if d.stable_slot:
        weights = {d.stable_slot: 100}
        if d.target_slot:
            weights[d.target_slot] = 0
    else:
        weights = _rolling_weights(ctx)
    ctx.apply_traffic(TrafficTable(weights=weights), step=None, why=why)
    Instance.objects.filter(environment=ctx.env, state=Instance.State.DRAINING).update(
        state=Instance.State.IN_SERVICE
    )
    ctx.fire_hooks("rollback", step=None, weights=weights)  # logged, never blocks


def _record_time_to_recover(ctx: Context, applying_seconds: float) -> None:
    """From the first failing measurement to the moment the router confirmed 100% on stable.

    The measurement's time is the engine's clock (``taken_at``), plus the real time the router
    took to apply and verify the stable table (nginx waits for its old workers).
    """
    d = ctx.deployment
    first = (
        Measurement.objects.filter(
            deployment=d, outcome__in=[Measurement.Outcome.FAILED, Measurement.Outcome.ERROR]
        )
        .order_by("taken_at", "id")
        .values_list("taken_at", flat=True)
        .first()
    )
    if first is None:
        return
    d.time_to_recover = round(max((ctx.now - first).total_seconds(), 0.0) + applying_seconds, 3)
    d.save(update_fields=["time_to_recover"])


# --- step handlers ---------------------------------------------------------------------------


def _deploy(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    done: list[str] = d.step_state.setdefault("deployed", [])
    todo = [n for n in step["instances"] if n not in done and n in ctx.instances]
    if not todo:
        return _Done(f"Deployed {d.release.version} to {', '.join(step['instances'])}")
    name = todo[0]
    instance = ctx.instances[name]
    facts = {
        "DEPLOYMENT_ID": str(d.pk),
        "ENVIRONMENT": str(ctx.env),
        "SERVICE": ctx.env.service.slug,
        "RELEASE_VERSION": d.release.version,
        "RELEASE_ARTIFACT": d.release.artifact,
        "INSTANCE": name,
        "SLOT": instance.slot,
    }
    ctx.providers.deployer.deploy(ctx.ref(instance), ctx.release_ref, facts=facts)
    instance.release = d.release
    instance.state = Instance.State.UPDATING
    instance.save(update_fields=["release", "state"])
    done.append(name)
    # One instance per transaction: a crash repeats at most the deploy that was in flight.
    return _Wait(None, f"deployed {d.release.version} to {name}")


def _health_override(d: Deployment) -> dict[str, Any]:
    hc = d.config.get("healthCheck") if isinstance(d.config, dict) else None
    return dict(hc) if isinstance(hc, dict) else {}


def _verify_health(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    override = _health_override(d)
    checker = ctx.providers.health_checker(override)
    threshold = int(getattr(checker, "healthy_threshold", DEFAULT_HEALTHY_THRESHOLD))
    interval = int(getattr(checker, "interval_ms", DEFAULT_HEALTH_INTERVAL_MS))
    deadline = DEFAULT_PROGRESS_DEADLINE_MS
    streaks: dict[str, int] = d.step_state.setdefault("streaks", {})
    last_error: dict[str, str] = d.step_state.setdefault("errors", {})
    pending = [n for n in step["instances"] if streaks.get(n, 0) < threshold and n in ctx.instances]
    for name in pending:
        result = checker.probe(ctx.ref(ctx.instances[name]))
        if result.ok:
            streaks[name] = streaks.get(name, 0) + 1
            last_error.pop(name, None)
        else:
            streaks[name] = 0
            last_error[name] = result.error or f"HTTP {result.status_code}"
    unhealthy = [n for n in step["instances"] if streaks.get(n, 0) < threshold and n in ctx.instances]
    if not unhealthy:
        Instance.objects.filter(environment=ctx.env, name__in=step["instances"]).update(
            state=Instance.State.IN_SERVICE
        )
        return _Done(f"{len(step['instances'])} instance(s) healthy", {"streaks": streaks})
    started = _started(d)
    if ctx.now - started > timedelta(milliseconds=deadline):
        details = ", ".join(f"{n}: {last_error.get(n, 'not yet healthy')}" for n in unhealthy)
        Instance.objects.filter(environment=ctx.env, name__in=unhealthy).update(
            state=Instance.State.UNHEALTHY
        )
        raise StepFailed(f"not healthy within {deadline / 1000:g}s ({details})")
    return _Wait(ctx.now + timedelta(milliseconds=interval))


def _set_weight(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    weight = int(step["weight"])
    table = TrafficTable(weights={d.stable_slot: 100 - weight, d.target_slot: weight})
    ctx.shift_traffic(table, step=d.current_step, why=f"{weight}% of traffic to {d.target_slot}")
    return _Done(f"{weight}% of traffic on {d.release.version}")


def _switch(ctx: Context, step: dict[str, Any]) -> _Outcome:
    slot = step["slot"]
    other = "green" if slot == "blue" else "blue"
    ctx.shift_traffic(
        TrafficTable(weights={slot: 100, other: 0}),
        step=ctx.deployment.current_step,
        why=f"all traffic to {slot}",
    )
    return _Done(f"all traffic on slot {slot}")


def _drained(ctx: Context) -> set[str]:
    return set(ctx.env.traffic.get("drained", [])) if isinstance(ctx.env.traffic, dict) else set()


def _rolling_weights(ctx: Context) -> dict[str, int]:
    """Rolling updates in place: the live slot keeps all traffic (the idle one, if any, none)."""
    live = ctx.env.live_slot
    if not live:
        return {}
    return {live: 100, ("green" if live == "blue" else "blue"): 0}


def _drain(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    drained = _drained(ctx) | set(step["instances"])
    table = TrafficTable(weights=_rolling_weights(ctx), drained=frozenset(drained))
    if not d.step_state.get("applied"):
        ctx.apply_traffic(table, step=d.current_step, why=f"drain {', '.join(step['instances'])}")
        Instance.objects.filter(environment=ctx.env, name__in=step["instances"]).update(
            state=Instance.State.DRAINING
        )
        d.step_state["applied"] = True
    # The next step restarts these instances: wait until nothing can still be proxied to them
    # (nginx workers of the previous config, ALB deregistration delay), re-checking, never sleeping.
    pending_of = getattr(ctx.providers.router, "drain_pending", None)
    pending = sorted(set(pending_of(table)) & set(step["instances"])) if pending_of else []
    if not pending:
        return _Done()
    if ctx.now - _started(d) > timedelta(milliseconds=DEFAULT_PROGRESS_DEADLINE_MS):
        raise StepFailed(
            f"still draining after {DEFAULT_PROGRESS_DEADLINE_MS / 1000:g}s: {', '.join(pending)}"
        )
    first = not d.step_state.get("waited")
    d.step_state["waited"] = True
    message = f"waiting for {', '.join(pending)} to drain" if first else ""
    return _Wait(ctx.now + timedelta(milliseconds=DRAIN_RECHECK_MS), message)


def _undrain(ctx: Context, step: dict[str, Any]) -> _Outcome:
    drained = _drained(ctx) - set(step["instances"])
    table = TrafficTable(weights=_rolling_weights(ctx), drained=frozenset(drained))
    ctx.apply_traffic(table, step=ctx.deployment.current_step, why=f"return {', '.join(step['instances'])}")
    Instance.objects.filter(environment=ctx.env, name__in=step["instances"]).update(
        state=Instance.State.IN_SERVICE
    )
    return _Done()


def _pause(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    if d.step_state.get("promoted"):
        return _Done("promoted")
    if step["duration_ms"] is None:
        return _Pause(step.get("reason") or "waiting to be promoted")
    until = _started(d) + timedelta(milliseconds=int(step["duration_ms"]))
    if ctx.now >= until:
        return _Done(f"paused {int(step['duration_ms']) / 1000:g}s")
    return _Wait(until)


def _analyze(ctx: Context, step: dict[str, Any]) -> _Outcome:
    from deployments import analysis

    d = ctx.deployment
    started = _started(d)
    taken: dict[str, list[str]] = d.step_state.setdefault("outcomes", {})
    last_at: dict[str, str] = d.step_state.setdefault("last_at", {})
    duration_ms = int(step.get("duration_ms") or 0)
    hold_until = started + timedelta(milliseconds=duration_ms)
    defaults = analysis_defaults(duration_ms)
    phases: dict[str, analysis.Phase] = {}
    wake: list[datetime] = []
    for name, cfg in step["metrics"].items():
        spec = analysis.metric_spec_from_config(name, cfg, defaults=defaults)
        outcomes = [analysis.Outcome(o) for o in taken.get(name, [])]
        previous = parse_datetime(last_at[name]) if name in last_at else None
        due = analysis.next_measurement_at(spec, started, outcomes, last_at=previous)
        if due is not None and due <= ctx.now:
            value = _measure(ctx, name, cfg, step)
            outcome = analysis.classify(spec, value)
            outcomes.append(outcome)
            taken[name] = [o.value for o in outcomes]
            last_at[name] = ctx.now.isoformat()
            _record_measurement(ctx, step, name, cfg, value, outcome.value)
            due = analysis.next_measurement_at(spec, started, outcomes, last_at=ctx.now)
        # An open-ended metric (interval, no count) is judged when the step's hold ends.
        terminated = spec.effective_count is None and ctx.now >= hold_until
        phases[name] = analysis.evaluate(spec, outcomes, terminated=terminated)
        if phases[name] is analysis.Phase.RUNNING and due is not None:
            wake.append(due)
    verdicts = {n: p.value for n, p in phases.items()}
    overall = analysis.combine(list(phases.values()))
    if overall in (analysis.Phase.FAILED, analysis.Phase.ERROR):
        bad = [n for n, p in phases.items() if p in (analysis.Phase.FAILED, analysis.Phase.ERROR)]
        failing = [
            {**m, "value": m["value"], "taken_at": m["taken_at"].isoformat()}
            for m in Measurement.objects.filter(deployment=d, step=d.current_step, metric__in=bad)
            .exclude(outcome=Measurement.Outcome.SUCCESSFUL)
            .values("metric", "value", "error", "outcome", "threshold", "taken_at")
        ]
        reason = "analysis " + overall.value + ": " + ", ".join(f"{n} {phases[n].value}" for n in bad)
        details = {"verdicts": verdicts, "failing_measurements": failing}
        record_event(d, E.ANALYSIS, reason, now=ctx.now, step=d.current_step, details=details)
        return _RollBack(reason, details)
    if overall is analysis.Phase.INCONCLUSIVE:
        names = ", ".join(n for n, p in phases.items() if p is analysis.Phase.INCONCLUSIVE)
        reason = f"analysis inconclusive: {names} (promote to continue, resume to measure again, or abort)"
        record_event(d, E.ANALYSIS, reason, now=ctx.now, step=d.current_step, details={"verdicts": verdicts})
        return _Pause(reason)
    if overall is analysis.Phase.SUCCESSFUL and ctx.now >= hold_until:
        record_event(
            d,
            E.ANALYSIS,
            "analysis successful",
            now=ctx.now,
            step=d.current_step,
            details={"verdicts": verdicts},
        )
        return _Done("analysis successful", {"verdicts": verdicts})
    if ctx.now < hold_until:
        wake.append(hold_until)
    return _Wait(max(min(wake), ctx.now) if wake else hold_until)


def _record_measurement(
    ctx: Context, step: dict[str, Any], name: str, cfg: Mapping[str, Any], value: MetricValue, outcome: str
) -> None:
    d = ctx.deployment
    Measurement.objects.create(
        deployment=d,
        step=d.current_step,
        metric=name,
        slot=step.get("slot") or "",
        version=d.release.version,
        value=value.value,
        error=value.error or "",
        threshold=dict(cfg),
        outcome=outcome,
        details=dict(value.details),
        taken_at=ctx.now,
    )
    shown = (
        f"error: {value.error}"
        if value.error is not None
        else ("no data" if value.value is None else f"{value.value:g}")
    )
    record_event(
        d,
        E.MEASUREMENT,
        f"{name} = {shown} ({outcome})",
        now=ctx.now,
        step=d.current_step,
        details={
            "metric": name,
            "value": value.value,
            "error": value.error,
            "outcome": outcome,
            "threshold": dict(cfg),
        },
    )


def _measure(ctx: Context, name: str, cfg: Mapping[str, Any], step: dict[str, Any]) -> MetricValue:
    slot = step.get("slot")
    refs = (
        [ctx.ref(i) for i in ctx.instances.values() if (i.slot or None) == slot]
        if slot
        else [ctx.ref(i) for i in ctx.instances.values()]
    )
    try:
        return ctx.providers.metrics.measure(
            name, query=cfg.get("query"), slot=slot, version=ctx.deployment.release.version, instances=refs
        )
    except ProviderError as exc:
        return MetricValue(value=None, error=str(exc) or type(exc).__name__)


def _approval(ctx: Context, step: dict[str, Any]) -> _Outcome:
    from deployments import approvals

    decision = approvals.poll(ctx.deployment, step, now=ctx.now)
    if decision.status == "approved":
        return _Done(decision.message)
    if decision.status == "abort":
        return _Abort(decision.message)
    return _Wait(decision.until)


def _finalize(ctx: Context, step: dict[str, Any]) -> _Outcome:
    d = ctx.deployment
    env = ctx.env
    if not d.step_state.get("post_hooks"):
        ctx.fire_hooks("post_rollout", step=d.current_step)
        d.step_state["post_hooks"] = True
    env.current_release = d.release
    if step.get("live_slot"):
        env.live_slot = step["live_slot"]
    env.save(update_fields=["current_release", "live_slot"])
    delay = step.get("scale_down_delay_ms")
    if delay is not None and d.stable_slot:
        d.warm_until = ctx.now + timedelta(milliseconds=int(delay))
        d.save(update_fields=["warm_until"])
    return _Done(f"{d.release.version} is live on {env}")


def _succeed(ctx: Context) -> None:
    d = ctx.deployment
    d.save(update_fields=["step_state"])
    transition(d, S.SUCCEEDED, reason=f"{d.release.version} is live on {ctx.env}", now=ctx.now)
    if d.kind == Deployment.Kind.DEPLOY:
        from deployments.checklists import post_checklist_schedule

        post_checklist_schedule(deployment=d, now=ctx.now)
    if d.kind == Deployment.Kind.ROLLBACK and d.rollback_of_id:
        original = Deployment.objects.select_for_update().get(pk=d.rollback_of_id)
        if original.status in (S.SUCCEEDED, S.NEEDS_ATTENTION):
            transition(original, S.ROLLED_BACK, reason=f"rolled back by deployment #{d.pk}", now=ctx.now)


HANDLERS: dict[str, Callable[[Context, dict[str, Any]], _Outcome]] = {
    "deploy": _deploy,
    "verify_health": _verify_health,
    "set_weight": _set_weight,
    "switch_traffic": _switch,
    "drain": _drain,
    "undrain": _undrain,
    "pause": _pause,
    "approval": _approval,
    "analyze": _analyze,
    "finalize": _finalize,
}


def _started(d: Deployment) -> datetime:
    value = parse_datetime(str(d.step_state.get("started_at", "")))
    return value or timezone.now()


def run(
    deployment_id: int, *, now: Callable[[], datetime] = timezone.now, max_steps: int = MAX_STEPS_PER_RUN
) -> int:
    """Advance one deployment until it waits; each step in its own transaction under the row lock.

    Returns how many times it advanced (0 when another worker holds the row).
    """
    count = 0
    for _ in range(max_steps):
        with transaction.atomic():
            d = (
                Deployment.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("environment__service", "release")
                .filter(pk=deployment_id)
                .first()
            )
            if d is None:
                return count
            result = advance(d, now=now())
        count += 1
        if not result.again:
            break
    return count
