"""Pure planners: strategy config + environment state -> list of steps. No ORM, no I/O."""

from __future__ import annotations

from deployments.strategies import blue_green, canary, rolling
from deployments.strategies import steps as s
from deployments.strategies.config import (
    BlueGreenConfig,
    CanaryConfig,
    ConfigError,
    RollingConfig,
    StrategyConfig,
    parse_strategy_config,
)
from deployments.strategies.steps import EnvState, PlanError, Step

__all__ = [
    "ConfigError",
    "EnvState",
    "PlanError",
    "Step",
    "StrategyConfig",
    "parse_strategy_config",
    "plan",
    "rollback_plan",
    "strategy_name",
]


def strategy_name(config: StrategyConfig) -> str:
    if isinstance(config, CanaryConfig):
        return "canary"
    if isinstance(config, BlueGreenConfig):
        return "blue-green"
    return "rolling"


def plan(config: StrategyConfig, state: EnvState) -> list[Step]:
    if isinstance(config, CanaryConfig):
        return canary.plan(config, state)
    if isinstance(config, BlueGreenConfig):
        return blue_green.plan(config, state)
    return rolling.plan(config, state)


def rollback_plan(config: StrategyConfig, state: EnvState, *, warm_slot: str | None) -> list[Step]:
    """A rollback without pauses or analysis; with a warm slot, only verify it and switch back."""
    if warm_slot is not None:
        names = state.in_slot(warm_slot)
        return [
            s.verify_health(names, warm_slot),
            s.switch_traffic(warm_slot),
            s.finalize(live_slot=warm_slot),
        ]
    if isinstance(config, RollingConfig):
        return rolling.plan(
            RollingConfig(config.batch_size, 0, None, config.max_unavailable, config.health_check), state
        )
    _, target = canary.slots_for(state)
    names = state.in_slot(target)
    return [
        s.deploy(names, target),
        s.verify_health(names, target),
        s.switch_traffic(target),
        s.finalize(live_slot=target),
    ]
