"""HTTP health checks of instances: GET ``address + path`` within a timeout; 2xx is healthy.

One probe is one call; "healthy after N consecutive successes" is counted by the engine across
calls (it never sleeps), with :func:`consecutive_successes` / :func:`is_healthy` over the results.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from deployments.providers.base import InstanceRef, ProbeResult
from deployments.providers.config import get_int, get_path, reject_unknown, require_mapping

_ALIASES = {"healthy_threshold": "healthyThreshold", "unhealthy_threshold": "unhealthyThreshold"}


class HttpHealthChecker:
    """Probes one instance per call; thresholds and interval are for the caller's bookkeeping."""

    def __init__(
        self,
        *,
        path: str = "/health",
        timeout_ms: int = 5000,
        interval_ms: int = 5000,
        healthy_threshold: int = 2,
        unhealthy_threshold: int = 3,
    ) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        self.interval_ms = interval_ms
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self._session = requests.Session()

    def url_for(self, instance: InstanceRef) -> str:
        return instance.address.rstrip("/") + self.path

    def probe(self, instance: InstanceRef) -> ProbeResult:
        started = time.perf_counter()
        timeout = self.timeout_ms / 1000
        try:
            resp = self._session.get(
                self.url_for(instance), timeout=(timeout, timeout), allow_redirects=False
            )
            resp.close()
        except requests.Timeout:
            return ProbeResult(ok=False, error=f"timed out after {self.timeout_ms} ms")
        except requests.RequestException as exc:
            return ProbeResult(ok=False, error=f"{type(exc).__name__}: {_short(exc)}")
        latency = (time.perf_counter() - started) * 1000
        ok = 200 <= resp.status_code < 300
        return ProbeResult(
            ok=ok,
            status_code=resp.status_code,
            latency_ms=round(latency, 3),
            error=None if ok else f"HTTP {resp.status_code}",
        )


def build_health_checker(config: Mapping[str, Any] | None) -> HttpHealthChecker:
    """The checker for an environment's (or a rolling step's) ``healthCheck`` JSON.

    Accepts the seed's ``{"path": "/health", "timeout": 5000}`` plus ``interval`` (ms),
    ``healthyThreshold`` and ``unhealthyThreshold`` (snake_case spellings too).
    """
    config = require_mapping(config or {}, "health_check")
    config = {_ALIASES.get(k, k): v for k, v in config.items() if k != "type"}
    reject_unknown(config, ("path", "timeout", "interval", "healthyThreshold", "unhealthyThreshold"))
    return HttpHealthChecker(
        path=get_path(config, "path", "/health"),
        timeout_ms=get_int(config, "timeout", 5000, minimum=1, maximum=300_000),
        interval_ms=get_int(config, "interval", 5000, minimum=1, maximum=3_600_000),
        healthy_threshold=get_int(config, "healthyThreshold", 2, minimum=1, maximum=100),
        unhealthy_threshold=get_int(config, "unhealthyThreshold", 3, minimum=1, maximum=100),
    )


def consecutive_successes(results: Sequence[ProbeResult | bool]) -> int:
    """How many of the most recent results (oldest first) succeeded in a row."""
    count = 0
    for result in reversed(results):
        if not (result.ok if isinstance(result, ProbeResult) else result):
            break
        count += 1
    return count


def consecutive_failures(results: Sequence[ProbeResult | bool]) -> int:
    """How many of the most recent results failed in a row."""
    count = 0
    for result in reversed(results):
        if result.ok if isinstance(result, ProbeResult) else result:
            break
        count += 1
    return count


def is_healthy(results: Sequence[ProbeResult | bool], threshold: int) -> bool:
    """True once the last ``threshold`` probes all succeeded."""
    return consecutive_successes(results) >= threshold


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."
