"""Pure planners: property tests over configs and environment shapes (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.providers.base import InstanceRef
from deployments.strategies import EnvState, PlanError, parse_strategy_config, plan, rollback_plan
from deployments.strategies.rolling import batch_size

OLD, NEW = "1.0.0", "1.1.0"


def env(blue: int, green: int, live: str | None, loose: int = 0) -> EnvState:
    instances = [InstanceRef(f"b{i}", f"http://b{i}", "blue", OLD) for i in range(blue)]
    instances += [InstanceRef(f"g{i}", f"http://g{i}", "green", OLD) for i in range(green)]
    instances += [InstanceRef(f"n{i}", f"http://n{i}", None, OLD) for i in range(loose)]
    return EnvState(instances=instances, live_slot=live)


class Sim:
    """Replays a plan against a model of the load balancer and the instances."""

    def __init__(self, state: EnvState) -> None:
        self.slots = {i.name: i.slot for i in state.instances}
        self.version = {i.name: OLD for i in state.instances}
        live = state.live_slot or "blue"
        has_slots = any(self.slots.values())
        self.weights: dict[str, int] = (
            {live: 100, ("green" if live == "blue" else "blue"): 0} if has_slots else {}
        )
        self.drained: set[str] = set()
        self.max_drained = 0
        self.canary_weights: list[int] = []

    def serving(self) -> set[str]:
        names = set(self.slots)
        if self.weights:
            names = {n for n in names if self.weights.get(self.slots[n] or "", 0) > 0}
        return names - self.drained

    def run(
        self, steps: list[dict[str, Any]], stable: str | None, target: str | None, *, must_serve: bool = True
    ) -> None:
        for step in steps:
            kind = step["kind"]
            if kind == "deploy":
                for name in step["instances"]:
                    assert name not in self.serving(), f"deploy to {name} while it serves traffic"
                    self.version[name] = NEW
            elif kind == "set_weight":
                assert stable and target
                self.weights = {stable: 100 - step["weight"], target: step["weight"]}
                self.canary_weights.append(step["weight"])
            elif kind == "switch_traffic":
                other = "green" if step["slot"] == "blue" else "blue"
                self.weights = {step["slot"]: 100, other: 0}
            elif kind == "drain":
                self.drained |= set(step["instances"])
            elif kind == "undrain":
                self.drained -= set(step["instances"])
            self.max_drained = max(self.max_drained, len(self.drained))
            if must_serve:
                assert self.serving(), f"nothing serves after {step['title']}"

    def serving_versions(self) -> set[str]:
        return {self.version[n] for n in self.serving()}


def _targets(steps: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    for s in steps:
        if s["kind"] == "deploy" and s.get("slot"):
            return ("green" if s["slot"] == "blue" else "blue"), s["slot"]
    return None, None


weights = st.lists(st.integers(0, 100), min_size=1, max_size=6).map(sorted)
canary_extras: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.sampled_from(
        [
            {"pause": {"duration": 1000}},
            {"pause": {}},
            {"analysis": {"metrics": {"error_rate": {"threshold": 0.01}}}},
        ]
    ),
    max_size=3,
)
slots_shape = st.tuples(st.integers(1, 5), st.integers(1, 5), st.sampled_from(["blue", "green", None]))


@st.composite
def canary_configs(draw: st.DrawFn) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for w in draw(weights):
        if draw(st.booleans()):
            steps.append({"setWeight": w})
        else:
            steps.append({"percentage": w, "duration": draw(st.sampled_from([0, 60000]))})
        steps += draw(canary_extras)
    return {"strategy": "canary", "steps": steps}


@settings(max_examples=150, deadline=None)
@given(config=canary_configs(), shape=slots_shape)
def test_canary_weights_never_decrease_and_end_with_all_traffic_on_the_new_release(
    config: dict[str, Any], shape: tuple[int, int, str | None]
) -> None:
    state = env(*shape)
    steps = plan(parse_strategy_config(config), state)
    stable, target = _targets(steps)
    sim = Sim(state)
    sim.run(steps, stable, target)
    assert sim.canary_weights == sorted(sim.canary_weights)
    assert sim.canary_weights[-1] == 100
    assert sim.serving_versions() == {NEW}
    assert steps[-1]["kind"] == "finalize" and steps[-1]["live_slot"] == target


@settings(max_examples=100, deadline=None)
@given(
    shape=slots_shape,
    auto=st.sampled_from([{}, {"autoPromotionSeconds": 30}, {"autoPromotionEnabled": False}]),
    analysis=st.booleans(),
)
def test_blue_green_switches_once_to_a_verified_slot(
    shape: tuple[int, int, str | None], auto: dict[str, Any], analysis: bool
) -> None:
    config: dict[str, Any] = {"strategy": "blue-green", **auto}
    if analysis:
        config["prePromotionAnalysis"] = {"metrics": {"error_rate": {"threshold": 0.01}}}
    state = env(*shape)
    steps = plan(parse_strategy_config(config), state)
    kinds = [s["kind"] for s in steps]
    assert kinds.count("switch_traffic") == 1
    assert kinds.index("verify_health") < kinds.index("switch_traffic")
    if analysis:
        assert kinds.index("analyze") < kinds.index("switch_traffic")
    if auto.get("autoPromotionEnabled") is False:
        assert steps[kinds.index("pause")]["duration_ms"] is None  # waits for a human to promote
    elif auto:
        assert steps[kinds.index("pause")]["duration_ms"] == 30000
    sim = Sim(state)
    sim.run(steps, *_targets(steps))
    assert sim.serving_versions() == {NEW}


rolling_limits: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.fixed_dictionaries({"batchSize": st.integers(1, 12)}),
    st.fixed_dictionaries({"maxUnavailable": st.integers(1, 12)}),
    st.fixed_dictionaries({"maxUnavailable": st.integers(1, 100).map(lambda p: f"{p}%")}),
    st.fixed_dictionaries({"batchSize": st.integers(1, 12), "maxUnavailable": st.integers(1, 12)}),
    st.just({}),
)


@settings(max_examples=200, deadline=None)
@given(limits=rolling_limits, n=st.integers(1, 30), interval=st.sampled_from([0, 60000]))
def test_rolling_never_takes_more_than_the_batch_out_of_service(
    limits: dict[str, Any], n: int, interval: int
) -> None:
    config = parse_strategy_config({"strategy": "rolling", "batchInterval": interval, **limits})
    state = env(0, 0, None, loose=n)
    steps = plan(config, state)
    limit = (
        min(v for v in (limits.get("batchSize"), limits.get("maxUnavailable")) if isinstance(v, int))
        if any(isinstance(v, int) for v in limits.values())
        else None
    )
    sim = Sim(state)
    sim.run(steps, None, None, must_serve=n > batch_size(config, n))  # type: ignore[arg-type]
    assert sim.max_drained <= batch_size(config, n)  # type: ignore[arg-type]
    if limit is not None:
        assert sim.max_drained <= limit
    assert sim.drained == set()
    assert sim.serving_versions() == {NEW}
    assert sorted(n for s in steps if s["kind"] == "deploy" for n in s["instances"]) == sorted(sim.version)
    if interval and n > batch_size(config, n):  # type: ignore[arg-type]
        assert any(s["kind"] == "pause" for s in steps)


def test_rolling_updates_only_the_live_slot_when_slots_are_used() -> None:
    steps = plan(parse_strategy_config({"strategy": "rolling", "batchSize": 1}), env(2, 3, "green"))
    deployed = [n for s in steps if s["kind"] == "deploy" for n in s["instances"]]
    assert deployed == ["g0", "g1", "g2"]


def test_seed_canary_plan_reads_like_the_guide() -> None:
    from tests.deployments.test_strategy_config import SEED_CANARY

    steps = plan(parse_strategy_config(SEED_CANARY["deployment"]), env(2, 2, "blue"))
    assert [s["title"] for s in steps] == [
        "Deploy to slot green",
        "Verify health of slot green",
        "Shift 10% of traffic to the canary",
        "Analyze error_rate, latency_p99 (canary)",
        "Shift 50% of traffic to the canary",
        "Pause 600s",
        "Shift 100% of traffic to the canary",
        "Finalize",
    ]


def test_slot_strategies_need_instances_in_the_target_slot() -> None:
    with pytest.raises(PlanError) as info:
        plan(parse_strategy_config({"strategy": "blue-green"}), env(2, 0, "blue"))
    assert info.value.field == "environment"
    assert "green" in info.value.rule


def test_fast_rollback_only_verifies_the_warm_slot_and_switches() -> None:
    config = parse_strategy_config({"strategy": "canary", "steps": [{"setWeight": 50}]})
    steps = rollback_plan(config, env(2, 2, "green"), warm_slot="blue")
    assert [s["kind"] for s in steps] == ["verify_health", "switch_traffic", "finalize"]
    slow = rollback_plan(config, env(2, 2, "green"), warm_slot=None)
    assert [s["kind"] for s in slow] == ["deploy", "verify_health", "switch_traffic", "finalize"]
