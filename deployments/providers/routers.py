"""Routers: make the load balancer serve a TrafficTable. ``build_router`` dispatches on ``type``.

Other modules register their router here: ``ROUTERS["nginx"] = NginxRouter.from_config``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

from deployments.providers.base import (
    SLOTS,
    InstanceRef,
    ProviderConfigError,
    ProviderError,
    Router,
    TrafficTable,
)
from deployments.providers.config import provider_type, reject_unknown

RouterFactory = Callable[[Mapping[str, Any], Sequence[InstanceRef]], Router]


def table_from_dict(data: Any, field: str = "applied") -> TrafficTable:
    """The inverse of ``TrafficTable.as_dict`` (for tables kept in JSON)."""
    if not isinstance(data, Mapping):
        raise ProviderConfigError(field, "must be an object with weights and drained")
    weights = data.get("weights") or {}
    drained = data.get("drained") or []
    if not isinstance(weights, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in weights.items()
    ):
        raise ProviderConfigError(f"{field}.weights", "must map slot -> integer percent")
    if not isinstance(drained, list) or not all(isinstance(n, str) for n in drained):
        raise ProviderConfigError(f"{field}.drained", "must be a list of instance names")
    try:
        return TrafficTable(weights=dict(weights), drained=frozenset(drained))
    except ValueError as exc:
        raise ProviderConfigError(f"{field}.weights", str(exc)) from None


def check_table(table: TrafficTable, instances: Sequence[InstanceRef]) -> None:
    """Refuse tables naming unknown slots or instances (a typo must not drain everything)."""
    unknown_slots = sorted(set(table.weights) - set(SLOTS))
    if unknown_slots:
        raise ProviderError(f"unknown slot(s) in traffic table: {unknown_slots}")
    if instances:
        weighted = [slot for slot, weight in table.weights.items() if weight > 0]
        for slot in weighted:
            if not any(i.slot == slot for i in instances):
                raise ProviderError(f"slot {slot!r} gets traffic but has no instances")
        unknown = sorted(table.drained - {i.name for i in instances})
        if unknown:
            raise ProviderError(f"cannot drain unknown instance(s): {unknown}")


class StaticRouter:
    """Records the table instead of driving a load balancer (to test the engine alone).

    ``apply`` keeps the table in memory (``history``) and in ``config["applied"]`` when the
    config is a dict, so a caller that saves the config gets ``observe`` right after a rebuild.
    ``{"fail": "apply"}`` / ``{"fail": "observe"}`` make that call raise ProviderError.
    """

    def __init__(self, config: Mapping[str, Any], instances: Sequence[InstanceRef] = ()) -> None:
        reject_unknown(config, ("applied", "fail"))
        fail = config.get("fail")
        if fail not in (None, "apply", "observe"):
            raise ProviderConfigError("fail", 'must be "apply" or "observe"')
        self.config = config
        self.instances = list(instances)
        self.fail = fail
        self.table: TrafficTable | None = (
            table_from_dict(config["applied"]) if config.get("applied") is not None else None
        )
        self.history: list[TrafficTable] = []

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instances: Sequence[InstanceRef]) -> StaticRouter:
        return cls(config, instances)

    def apply(self, table: TrafficTable) -> None:
        if self.fail == "apply":
            raise ProviderError("static router configured to fail on apply")
        check_table(table, self.instances)
        self.table = table
        self.history.append(table)
        if isinstance(self.config, MutableMapping):
            self.config["applied"] = table.as_dict()

    def observe(self) -> TrafficTable:
        if self.fail == "observe":
            raise ProviderError("static router configured to fail on observe")
        # Nothing applied yet: an empty table (no slot weighting, nothing drained).
        return self.table if self.table is not None else TrafficTable(weights={})


ROUTERS: dict[str, RouterFactory] = {"static": StaticRouter.from_config}


def build_router(config: Mapping[str, Any], instances: Sequence[InstanceRef]) -> Router:
    """The router described by ``config`` (``{"type": "static" | ..., ...}``) for ``instances``."""
    factory = provider_type(config, ROUTERS, "router")
    return factory(config, instances)
