"""The provider protocols and the plain data they exchange with the engine.

Providers never touch the ORM: the engine hands them these dataclasses, built from
the Environment's JSON configuration and its instances, and records what they return.
Every provider failure is a :class:`ProviderError` whose message is shown to operators.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

SLOTS = ("blue", "green")


class ProviderError(Exception):
    """A provider could not do what was asked; ``str(exc)`` is the operator-facing reason."""


class ProviderConfigError(ProviderError):
    """The provider configuration itself is invalid (detected before any I/O).

    ``field`` names the offending key (dotted, e.g. ``"argv.0"``) and ``rule`` what it must be,
    so the API can render ``{"<config>.<field>": [rule]}`` as a 400.
    """

    def __init__(self, field: str, rule: str | None = None) -> None:
        if rule is None:  # message-only form: ProviderConfigError("...")
            field, rule = "", field
        super().__init__(f"{field}: {rule}" if field else rule)
        self.field = field
        self.rule = rule


@dataclasses.dataclass(frozen=True)
class InstanceRef:
    """One instance as providers see it."""

    name: str
    address: str  # base URL, e.g. "http://127.0.0.1:9001"
    slot: str | None = None  # "blue" | "green" | None (rolling works in place)
    version: str | None = None  # release currently on it, if known


@dataclasses.dataclass(frozen=True)
class ReleaseRef:
    version: str
    artifact: str = ""
    git_sha: str = ""


@dataclasses.dataclass(frozen=True)
class TrafficTable:
    """What the load balancer should do: percent of traffic per slot, and drained instances.

    ``weights`` maps slot -> percent (0..100, summing to 100 over the slots present).
    For rolling deployments (no slots) ``weights`` is ``{}`` and only ``drained`` matters.
    """

    weights: Mapping[str, int]
    drained: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.weights:
            if any(w < 0 or w > 100 for w in self.weights.values()):
                raise ValueError(f"weights must be within 0..100: {dict(self.weights)}")
            if sum(self.weights.values()) != 100:
                raise ValueError(f"weights must sum to 100: {dict(self.weights)}")

    def as_dict(self) -> dict[str, Any]:
        return {"weights": dict(self.weights), "drained": sorted(self.drained)}


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """One HTTP health probe of one instance."""

    ok: bool
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class MetricValue:
    """One measurement: a value, or an error (could not measure), never both.

    ``value is None and error is None`` means the query returned no data, which
    analysis treats as inconclusive, never as a pass.
    """

    value: float | None
    error: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Router(Protocol):
    def apply(self, table: TrafficTable) -> None:
        """Make the load balancer serve ``table``; verify it took effect or raise ProviderError."""

    def observe(self) -> TrafficTable:
        """Read back what is live."""


class Deployer(Protocol):
    def deploy(self, instance: InstanceRef, release: ReleaseRef, *, facts: Mapping[str, str]) -> None:
        """Put ``release`` on ``instance`` (return when accepted; health decides readiness).

        ``facts`` are passed to the deployment mechanism (env vars / JSON), e.g.
        DEPLOYMENT_ID, ENVIRONMENT, RELEASE_VERSION.
        """


class HealthChecker(Protocol):
    def probe(self, instance: InstanceRef) -> ProbeResult: ...


class MetricsProvider(Protocol):
    def measure(
        self,
        metric: str,
        *,
        query: str | None,
        slot: str | None,
        version: str | None,
        instances: Sequence[InstanceRef],
    ) -> MetricValue:
        """Measure ``metric`` (e.g. "error_rate", "latency_p99") for the given slot/version."""
