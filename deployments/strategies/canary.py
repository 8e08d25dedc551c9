"""Canary: deploy to the idle slot, shift weight step by step with analysis, then promote."""

from __future__ import annotations

from deployments.strategies import steps as s
from deployments.strategies.config import CanaryConfig
from deployments.strategies.steps import EnvState, PlanError, Step


def slots_for(state: EnvState, default_live: str | None = None) -> tuple[str, str]:
    """(stable, target): the live slot keeps serving, the other one receives the release."""
    stable = state.live_slot or default_live or "blue"
    target = s.other_slot(stable)
    if not state.in_slot(target):
        raise PlanError("environment", f"needs instances in slot '{target}' to deploy to (none registered)")
    return stable, target


def plan(config: CanaryConfig, state: EnvState) -> list[Step]:
    _, target = slots_for(state)
    names = state.in_slot(target)
    out: list[Step] = [s.deploy(names, target), s.verify_health(names, target)]
    last_weight = 0
    for step in config.steps:
        if step.kind == "weight" and step.weight is not None:
            out.append(s.set_weight(step.weight))
            last_weight = step.weight
        elif step.kind == "pause":
            out.append(s.pause(step.duration_ms))
        elif step.approval is not None:
            a = step.approval
            out.append(s.approval(a.role, a.timeout_ms, a.on_timeout))
        elif step.analysis is not None:
            out.append(
                s.analyze(step.analysis.metrics, step.analysis.duration_ms, slot=target, phase="canary")
            )
    if last_weight != 100:
        out.append(s.set_weight(100))
    out.append(s.finalize(live_slot=target))
    return out
