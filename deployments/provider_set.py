"""The providers one deployment talks to, built lazily from its environment's configuration."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from deployments.providers.base import (
    Deployer,
    HealthChecker,
    InstanceRef,
    MetricsProvider,
    ProviderConfigError,
    Router,
)


class ProviderSet:
    """Router, deployer, health checker and metrics provider of one environment.

    Each is built on first use, so a strategy that never measures needs no metrics config.
    Tests may pass ready-made providers instead.
    """

    def __init__(
        self,
        *,
        router_config: Mapping[str, Any],
        deployer_config: Mapping[str, Any],
        health_config: Mapping[str, Any],
        metrics_config: Mapping[str, Any],
        instances: Sequence[InstanceRef],
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._configs = {
            "router": dict(router_config),
            "deployer": dict(deployer_config),
            "health": dict(health_config),
            "metrics": dict(metrics_config),
        }
        self._instances = list(instances)
        self._overrides = dict(overrides or {})

    @functools.cached_property
    def router(self) -> Router:
        if "router" in self._overrides:
            return self._overrides["router"]
        from deployments.providers.routers import build_router

        return build_router(self._configs["router"], self._instances)

    @functools.cached_property
    def deployer(self) -> Deployer:
        if "deployer" in self._overrides:
            return self._overrides["deployer"]
        from deployments.providers.deployers import build_deployer

        return build_deployer(self._configs["deployer"])

    def health_checker(self, override: Mapping[str, Any] | None = None) -> HealthChecker:
        if "health" in self._overrides:
            return self._overrides["health"]
        from deployments.providers.health import build_health_checker

        return build_health_checker({**self._configs["health"], **(override or {})})

    @functools.cached_property
    def metrics(self) -> MetricsProvider:
        if "metrics" in self._overrides:
            return self._overrides["metrics"]
        if not self._configs["metrics"]:
            raise ProviderConfigError("the environment has no metrics configuration; analysis needs one")
        from deployments.providers.metrics import build_metrics_provider

        return build_metrics_provider(self._configs["metrics"])


def validate_environment_config(
    *,
    router: Mapping[str, Any] | None,
    deployer: Mapping[str, Any] | None,
    health_check: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
) -> dict[str, list[str]]:
    """Ask each provider builder to validate its config (no I/O); return field -> errors."""
    import importlib

    errors: dict[str, list[str]] = {}
    checks = [
        ("router", router, "routers", "build_router"),
        ("deployer", deployer, "deployers", "build_deployer"),
        ("health_check", health_check, "health", "build_health_checker"),
        ("metrics", metrics, "metrics", "build_metrics_provider"),
    ]
    for field, config, module, builder in checks:
        if not config:
            continue
        try:
            build = getattr(importlib.import_module(f"deployments.providers.{module}"), builder)
        except ModuleNotFoundError:  # pragma: no cover - a provider module not installed
            continue
        try:
            build(dict(config), []) if field == "router" else build(dict(config))
        except ProviderConfigError as exc:
            errors[f"{field}.{exc.field}" if exc.field else field] = [exc.rule or str(exc)]
    return errors
