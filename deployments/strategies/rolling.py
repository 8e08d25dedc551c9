"""Rolling: update the serving instances in place, a batch at a time (drain, deploy, verify, return)."""

from __future__ import annotations

import math

from deployments.strategies import steps as s
from deployments.strategies.config import RollingConfig
from deployments.strategies.steps import EnvState, PlanError, Step


def _resolve(value: int | str | None, total: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return math.floor(total * int(value.rstrip("%")) / 100)
    return value


def batch_size(config: RollingConfig, total: int) -> int:
    """How many instances may be out of service at once (at least one: updates are in place)."""
    limits = [v for v in (config.batch_size, _resolve(config.max_unavailable, total)) if v is not None]
    size = min(limits) if limits else math.floor(total * 0.25)  # Argo's default maxUnavailable: 25%
    return max(1, min(size, total))


def pool(state: EnvState) -> list[str]:
    """The serving instances: those of the live slot, or every instance when slots are not used."""
    if state.live_slot and state.in_slot(state.live_slot):
        return state.in_slot(state.live_slot)
    return sorted(i.name for i in state.instances)


def plan(config: RollingConfig, state: EnvState) -> list[Step]:
    names = pool(state)
    if not names:
        raise PlanError("environment", "has no instances to update")
    size = batch_size(config, len(names))
    batches = [names[i : i + size] for i in range(0, len(names), size)]
    out: list[Step] = []
    for n, batch in enumerate(batches):
        out += [s.drain(batch), s.deploy(batch), s.verify_health(batch), s.undrain(batch)]
        if config.batch_interval_ms and n < len(batches) - 1:
            out.append(s.pause(config.batch_interval_ms, reason="batchInterval"))
    out.append(s.finalize(live_slot=state.live_slot))
    return out
