"""The static router records tables; build_router dispatches through an extensible registry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from deployments.providers.base import InstanceRef, ProviderConfigError, ProviderError, TrafficTable
from deployments.providers.routers import ROUTERS, StaticRouter, build_router

INSTANCES = [
    InstanceRef("web-1", "http://127.0.0.1:9001", slot="blue"),
    InstanceRef("web-2", "http://127.0.0.1:9002", slot="green"),
]


def test_static_router_records_and_observes_the_applied_table() -> None:
    config: dict[str, Any] = {"type": "static"}
    router = build_router(config, INSTANCES)
    assert isinstance(router, StaticRouter)
    assert router.observe() == TrafficTable(weights={})
    router.apply(TrafficTable(weights={"blue": 90, "green": 10}))
    router.apply(TrafficTable(weights={"blue": 0, "green": 100}, drained=frozenset({"web-1"})))
    assert router.observe() == TrafficTable(weights={"blue": 0, "green": 100}, drained=frozenset({"web-1"}))
    assert [t.weights["green"] for t in router.history] == [10, 100]
    # kept in the config too, so a rebuilt router (next advance) observes the same table
    assert config["applied"] == {"weights": {"blue": 0, "green": 100}, "drained": ["web-1"]}
    assert build_router(config, INSTANCES).observe() == router.observe()


def test_static_router_refuses_tables_naming_unknown_slots_or_instances() -> None:
    router = build_router({"type": "static"}, INSTANCES)
    with pytest.raises(ProviderError, match="unknown slot"):
        router.apply(TrafficTable(weights={"purple": 100}))
    with pytest.raises(ProviderError, match="cannot drain unknown"):
        router.apply(TrafficTable(weights={"blue": 100}, drained=frozenset({"web-9"})))
    with pytest.raises(ProviderError, match="no instances"):
        build_router({"type": "static"}, INSTANCES[:1]).apply(TrafficTable(weights={"green": 100}))
    assert router.observe() == TrafficTable(weights={})


def test_static_router_can_be_told_to_fail() -> None:
    with pytest.raises(ProviderError, match="fail on apply"):
        build_router({"type": "static", "fail": "apply"}, INSTANCES).apply(
            TrafficTable(weights={"blue": 100})
        )
    with pytest.raises(ProviderError, match="fail on observe"):
        build_router({"type": "static", "fail": "observe"}, INSTANCES).observe()


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "type"),
        ({"type": "f5"}, "type"),
        ({"type": "static", "weights": {}}, "weights"),
        ({"type": "static", "fail": "always"}, "fail"),
        ({"type": "static", "applied": {"weights": {"blue": 50}}}, "applied.weights"),
        ({"type": "static", "applied": {"weights": {"blue": 100}, "drained": "web-1"}}, "applied.drained"),
    ],
)
def test_invalid_router_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ProviderConfigError) as exc:
        build_router(config, INSTANCES)
    assert exc.value.field == field


class _RecordingRouter:
    def __init__(self, config: Mapping[str, Any], instances: Sequence[InstanceRef]) -> None:
        self.config, self.instances = config, instances

    def apply(self, table: TrafficTable) -> None:
        pass

    def observe(self) -> TrafficTable:
        return TrafficTable(weights={"blue": 100})


@pytest.fixture
def extra_router() -> Iterator[None]:
    ROUTERS["recording"] = _RecordingRouter
    yield
    del ROUTERS["recording"]


@pytest.mark.usefixtures("extra_router")
def test_other_modules_can_register_router_types() -> None:
    router = build_router({"type": "recording", "upstream": "noodle"}, INSTANCES)
    assert isinstance(router, _RecordingRouter)
    assert router.instances == INSTANCES
    assert router.observe().weights == {"blue": 100}
