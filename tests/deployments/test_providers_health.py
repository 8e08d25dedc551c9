"""The HTTP health checker against real local instances."""

from __future__ import annotations

import time

import pytest

from deployments.demo.instance_app import InstanceApp
from deployments.providers.base import InstanceRef, ProbeResult, ProviderConfigError
from deployments.providers.health import (
    build_health_checker,
    consecutive_failures,
    consecutive_successes,
    is_healthy,
)
from tests.conftest import free_port

SEED = {"path": "/health", "timeout": 5000}


def test_seed_health_check_probes_address_plus_path() -> None:
    checker = build_health_checker(SEED)
    with InstanceApp(version="1.1.0") as app:
        result = checker.probe(InstanceRef("web-1", app.url + "/"))
        assert app.health_checks == 1
        app.healthy = False
        unhealthy = checker.probe(InstanceRef("web-1", app.url))
    assert result.ok and result.status_code == 200 and result.latency_ms is not None
    assert (unhealthy.ok, unhealthy.status_code, unhealthy.error) == (False, 503, "HTTP 503")


def test_timeout_and_refused_connections_are_unhealthy() -> None:
    checker = build_health_checker({"path": "/health", "timeout": 100})
    with InstanceApp(latency_ms=1000) as slow:
        started = time.monotonic()
        result = checker.probe(InstanceRef("slow", slow.url))
        elapsed = time.monotonic() - started
    assert not result.ok and result.error == "timed out after 100 ms"
    assert elapsed < 0.9
    refused = checker.probe(InstanceRef("gone", f"http://127.0.0.1:{free_port()}"))
    assert not refused.ok and refused.status_code is None and "ConnectionError" in (refused.error or "")


def test_redirects_are_not_followed_or_healthy() -> None:
    # A 3xx (e.g. a login page) is not a healthy instance.
    with InstanceApp() as app:
        result = build_health_checker({"path": "/redirect"}).probe(InstanceRef("a", app.url))
        assert app.health_checks == 0
    assert (result.ok, result.status_code) == (False, 302)


def test_thresholds_and_consecutive_successes() -> None:
    checker = build_health_checker(
        {**SEED, "interval": 2000, "healthyThreshold": 3, "unhealthy_threshold": 2}
    )
    assert (checker.interval_ms, checker.healthy_threshold, checker.unhealthy_threshold) == (2000, 3, 2)
    assert build_health_checker(None).path == "/health"
    ok, bad = ProbeResult(ok=True), ProbeResult(ok=False)
    assert consecutive_successes([ok, bad, ok, ok]) == 2
    assert consecutive_successes([]) == 0
    assert consecutive_successes([True, True, False]) == 0
    assert consecutive_failures([ok, bad, bad]) == 2
    assert not is_healthy([ok, ok, bad, ok, ok], 3)
    assert is_healthy([bad, ok, ok, ok], 3)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"path": "health"}, "path"),
        ({"path": ""}, "path"),
        ({"timeout": "5s"}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"healthyThreshold": 0}, "healthyThreshold"),
        ({"retries": 3}, "retries"),
        ("/health", "health_check"),
    ],
)
def test_invalid_health_config_names_the_field(config: object, field: str) -> None:
    with pytest.raises(ProviderConfigError) as exc:
        build_health_checker(config)  # type: ignore[arg-type]
    assert exc.value.field == field
