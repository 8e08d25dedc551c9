"""The step vocabulary shared by the planners and the engine (plain JSON-able dicts)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from deployments.providers.base import SLOTS, InstanceRef

Step = dict[str, Any]

KINDS = (
    "deploy",  # put the release on instances
    "verify_health",  # wait until instances pass the health check
    "set_weight",  # canary slot gets `weight` percent, the stable slot the rest
    "pause",  # wait `duration_ms`, or until promoted when None
    "approval",  # wait for a person with `role` to approve; after `timeout_ms` act per `on_timeout`
    "analyze",  # measure `metrics` on the target while holding for `duration_ms`
    "switch_traffic",  # all traffic to `slot`
    "drain",  # take instances out of the load balancer
    "undrain",  # put them back
    "finalize",  # record the new state of the environment
)


class PlanError(Exception):
    """The environment cannot run this strategy (e.g. no instances in the target slot)."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


@dataclasses.dataclass(frozen=True)
class EnvState:
    """What a planner may know about the environment."""

    instances: Sequence[InstanceRef]
    live_slot: str | None = None

    def in_slot(self, slot: str | None) -> list[str]:
        return sorted(i.name for i in self.instances if (i.slot or None) == slot)


def other_slot(slot: str) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def deploy(instances: Sequence[str], slot: str | None = None) -> Step:
    return {
        "kind": "deploy",
        "instances": list(instances),
        "slot": slot,
        "title": f"Deploy to {_who(instances, slot)}",
    }


def verify_health(instances: Sequence[str], slot: str | None = None) -> Step:
    return {
        "kind": "verify_health",
        "instances": list(instances),
        "slot": slot,
        "title": f"Verify health of {_who(instances, slot)}",
    }


def set_weight(weight: int) -> Step:
    return {"kind": "set_weight", "weight": weight, "title": f"Shift {weight}% of traffic to the canary"}


def pause(duration_ms: int | None, *, reason: str = "") -> Step:
    title = f"Pause {duration_ms / 1000:g}s" if duration_ms is not None else "Pause until promoted"
    return {"kind": "pause", "duration_ms": duration_ms, "reason": reason, "title": title}


def approval(role: str, timeout_ms: int, on_timeout: str) -> Step:
    return {
        "kind": "approval",
        "role": role,
        "timeout_ms": timeout_ms,
        "on_timeout": on_timeout,
        "title": f"Approval by {role} ({on_timeout} after {timeout_ms / 1000:g}s)",
    }


def analyze(
    metrics: Mapping[str, Mapping[str, Any]], duration_ms: int, *, slot: str | None, phase: str
) -> Step:
    return {
        "kind": "analyze",
        "metrics": {k: dict(v) for k, v in metrics.items()},
        "duration_ms": duration_ms,
        "slot": slot,
        "phase": phase,
        "title": f"Analyze {', '.join(metrics)} ({phase})",
    }


def switch_traffic(slot: str) -> Step:
    return {"kind": "switch_traffic", "slot": slot, "title": f"Switch all traffic to {slot}"}


def drain(instances: Sequence[str]) -> Step:
    return {"kind": "drain", "instances": list(instances), "title": f"Drain {', '.join(instances)}"}


def undrain(instances: Sequence[str]) -> Step:
    return {
        "kind": "undrain",
        "instances": list(instances),
        "title": f"Return {', '.join(instances)} to service",
    }


def finalize(*, live_slot: str | None, scale_down_delay_ms: int | None = None) -> Step:
    return {
        "kind": "finalize",
        "live_slot": live_slot,
        "scale_down_delay_ms": scale_down_delay_ms,
        "title": "Finalize",
    }


def _who(instances: Sequence[str], slot: str | None) -> str:
    return f"slot {slot}" if slot else ", ".join(instances)
