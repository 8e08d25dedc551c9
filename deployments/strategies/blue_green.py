"""Blue-green: deploy to the idle slot, verify (and analyze), switch all traffic at once."""

from __future__ import annotations

from deployments.strategies import steps as s
from deployments.strategies.canary import slots_for
from deployments.strategies.config import BlueGreenConfig
from deployments.strategies.steps import EnvState, Step


def plan(config: BlueGreenConfig, state: EnvState) -> list[Step]:
    _, target = slots_for(state, default_live=config.active_slot)
    names = state.in_slot(target)
    out: list[Step] = [s.deploy(names, target), s.verify_health(names, target)]
    if config.pre_promotion is not None:
        a = config.pre_promotion
        out.append(s.analyze(a.metrics, a.duration_ms, slot=target, phase="pre-promotion"))
    if config.approval is not None:
        ap = config.approval
        out.append(s.approval(ap.role, ap.timeout_ms, ap.on_timeout))
    if not config.auto_promotion_enabled:
        out.append(s.pause(None, reason="autoPromotionEnabled is false"))
    elif config.auto_promotion_ms:
        out.append(s.pause(config.auto_promotion_ms, reason="autoPromotionSeconds"))
    out.append(s.switch_traffic(target))
    if config.post_promotion is not None:
        a = config.post_promotion
        out.append(s.analyze(a.metrics, a.duration_ms, slot=target, phase="post-promotion"))
    out.append(s.finalize(live_slot=target, scale_down_delay_ms=config.scale_down_delay_ms))
    return out
