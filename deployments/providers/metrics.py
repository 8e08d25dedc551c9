"""Metrics providers: measure one metric of the instances of a slot/version.

- ``http_probe``: the control plane sends K requests itself (concurrently, bounded) and
  measures ``error_rate`` (5xx or connection error share) and latency percentiles in ms.
- ``prometheus``: an instant PromQL query over ``/api/v1/query``, templated with ``{slot}``,
  ``{version}`` and ``{environment}``.

Every outcome is a MetricValue: a number, no data (``value=None``: analysis says
inconclusive), or an error (could not measure). Providers never raise for a failed
measurement; only their configuration raises (ProviderConfigError).
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from deployments.providers.base import InstanceRef, MetricsProvider, MetricValue, ProviderConfigError
from deployments.providers.config import (
    get_int,
    get_path,
    get_str_map,
    get_url,
    provider_type,
    reject_unknown,
)

MetricsFactory = Callable[[Mapping[str, Any], str], MetricsProvider]

_LATENCY = re.compile(r"latency_p(\d{1,2}(?:\.\d+)?)")
HTTP_PROBE_METRICS = ("error_rate", "success_rate", "latency_mean", "latency_pNN (e.g. latency_p99)")


def supports_http_probe_metric(metric: str) -> bool:
    return metric in ("error_rate", "success_rate", "latency_mean") or bool(_LATENCY.fullmatch(metric))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of non-empty ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclasses.dataclass(frozen=True)
class ProbeRound:
    """What one round of K requests saw."""

    requests: int
    errors: int  # 5xx responses + requests that got no response
    no_response: int
    client_errors: int  # 4xx: not counted as errors, reported so a wrong path is visible
    latencies_ms: tuple[float, ...]  # of requests that got a response
    by_instance: Mapping[str, int]
    finished_at: float  # time.monotonic()

    def value(self, metric: str) -> float | None:
        if metric == "error_rate":
            return self.errors / self.requests
        if metric == "success_rate":
            return 1 - self.errors / self.requests
        if not self.latencies_ms:
            return None
        if metric == "latency_mean":
            return sum(self.latencies_ms) / len(self.latencies_ms)
        match = _LATENCY.fullmatch(metric)
        if match is None:
            raise ValueError(f"not a probe metric: {metric!r}")
        return percentile(self.latencies_ms, float(match.group(1)))

    def details(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "requests": self.requests,
            "errors": self.errors,
            "no_response": self.no_response,
            "client_errors": self.client_errors,
            "latency_p50_ms": round(percentile(lat, 50), 3) if lat else None,
            "latency_p99_ms": round(percentile(lat, 99), 3) if lat else None,
            "by_instance": dict(self.by_instance),
        }


class HttpProbeMetrics:
    """Sends ``requests`` GETs round-robin over the instances, ``concurrency`` at a time.

    Measuring error_rate then latency_p99 of the same instances within ``reuse`` ms uses one
    round of requests, so a step with both metrics costs K requests, not 2K.
    """

    def __init__(
        self,
        *,
        path: str = "/",
        requests_per_round: int = 100,
        concurrency: int = 8,
        timeout_ms: int = 2000,
        reuse_ms: int = 1000,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.requests_per_round = requests_per_round
        self.concurrency = concurrency
        self.timeout_ms = timeout_ms
        self.reuse_ms = reuse_ms
        self.headers = dict(headers or {})
        self._last: tuple[tuple[str, ...], ProbeRound] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environment: str = "") -> HttpProbeMetrics:
        reject_unknown(config, ("path", "requests", "concurrency", "timeout", "reuse", "headers"))
        return cls(
            path=get_path(config, "path", "/"),
            requests_per_round=get_int(config, "requests", 100, minimum=1, maximum=10_000),
            concurrency=get_int(config, "concurrency", 8, minimum=1, maximum=64),
            timeout_ms=get_int(config, "timeout", 2000, minimum=1, maximum=60_000),
            reuse_ms=get_int(config, "reuse", 1000, minimum=0, maximum=60_000),
            headers=get_str_map(config, "headers"),
        )

    def measure(
        self,
        metric: str,
        *,
        query: str | None = None,
        slot: str | None = None,
        version: str | None = None,
        instances: Sequence[InstanceRef] = (),
    ) -> MetricValue:
        if not supports_http_probe_metric(metric):
            return MetricValue(
                None, error=f"http_probe cannot measure {metric!r}; it measures {HTTP_PROBE_METRICS}"
            )
        targets = [
            i
            for i in instances
            if (slot is None or i.slot == slot) and (version is None or i.version in (None, version))
        ]
        if not targets:
            return MetricValue(
                None, details={"reason": "no instances to probe", "slot": slot, "version": version}
            )
        probe = self.round(targets)
        return MetricValue(probe.value(metric), details=probe.details())

    def round(self, targets: Sequence[InstanceRef]) -> ProbeRound:
        key = tuple(sorted(i.address for i in targets))
        with self._lock:
            last = self._last
            if last and last[0] == key and (time.monotonic() - last[1].finished_at) * 1000 <= self.reuse_ms:
                return last[1]
            probe = self._send(targets)
            self._last = (key, probe)
            return probe

    def _send(self, targets: Sequence[InstanceRef]) -> ProbeRound:
        timeout = self.timeout_ms / 1000
        plan = [targets[n % len(targets)] for n in range(self.requests_per_round)]
        local = threading.local()
        sessions: list[requests.Session] = []

        def one(instance: InstanceRef) -> tuple[str, int | None, float | None]:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()  # keep-alive per worker thread
                sessions.append(session)
            started = time.perf_counter()
            try:
                resp = session.get(
                    instance.address.rstrip("/") + self.path,
                    timeout=(timeout, timeout),
                    headers=self.headers,
                    allow_redirects=False,
                )
                resp.content  # noqa: B018 - the latency includes reading the body
            except requests.RequestException:
                return instance.name, None, None
            return instance.name, resp.status_code, (time.perf_counter() - started) * 1000

        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(plan)), thread_name_prefix="probe"
        ) as pool:
            results = list(pool.map(one, plan))
        for session in sessions:
            session.close()
        errors = no_response = client_errors = 0
        latencies: list[float] = []
        by_instance: dict[str, int] = {}
        for name, status, latency in results:
            by_instance[name] = by_instance.get(name, 0) + 1
            if status is None:
                errors += 1
                no_response += 1
                continue
            if latency is not None:
                latencies.append(latency)
            if status >= 500:
                errors += 1
            elif status >= 400:
                client_errors += 1
        return ProbeRound(
            requests=len(results),
            errors=errors,
            no_response=no_response,
            client_errors=client_errors,
            latencies_ms=tuple(latencies),
            by_instance=by_instance,
            finished_at=time.monotonic(),
        )


class PrometheusMetrics:
    """Instant PromQL queries against a Prometheus server's HTTP API."""

    def __init__(
        self,
        *,
        address: str,
        queries: Mapping[str, str] | None = None,
        timeout_ms: int = 5000,
        headers: Mapping[str, str] | None = None,
        environment: str = "",
    ) -> None:
        self.address = address.rstrip("/")
        self.queries = dict(queries or {})
        self.timeout_ms = timeout_ms
        self.headers = dict(headers or {})
        self.environment = environment
        self._session = requests.Session()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], environment: str = "") -> PrometheusMetrics:
        reject_unknown(config, ("address", "queries", "timeout", "headers"))
        queries = config.get("queries") or {}
        if not isinstance(queries, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in queries.items()
        ):
            raise ProviderConfigError("queries", "must map metric name -> non-empty PromQL string")
        return cls(
            address=get_url(config, "address"),
            queries=queries,
            timeout_ms=get_int(config, "timeout", 5000, minimum=1, maximum=120_000),
            headers=get_str_map(config, "headers"),
            environment=environment,
        )

    def render(self, query: str, *, slot: str | None, version: str | None) -> str:
        """Fill ``{slot}``, ``{version}``, ``{environment}``; PromQL's own braces are left alone."""
        values = {"slot": slot or "", "version": version or "", "environment": self.environment}
        return re.sub(r"\{(slot|version|environment)\}", lambda m: _promql_escape(values[m.group(1)]), query)

    def measure(
        self,
        metric: str,
        *,
        query: str | None = None,
        slot: str | None = None,
        version: str | None = None,
        instances: Sequence[InstanceRef] = (),
    ) -> MetricValue:
        template = query or self.queries.get(metric)
        if not template:
            return MetricValue(
                None, error=f"no PromQL query for metric {metric!r} (set it in the metric or config)"
            )
        promql = self.render(template, slot=slot, version=version)
        details: dict[str, Any] = {"query": promql}
        timeout = self.timeout_ms / 1000
        try:
            resp = self._session.get(
                f"{self.address}/api/v1/query",
                params={"query": promql},
                headers=self.headers,
                timeout=(timeout, timeout),
            )
        except requests.Timeout:
            return MetricValue(
                None, error=f"prometheus timed out after {self.timeout_ms} ms", details=details
            )
        except requests.RequestException as exc:
            return MetricValue(None, error=f"prometheus unreachable: {type(exc).__name__}", details=details)
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return MetricValue(
                None, error=f"prometheus answered HTTP {resp.status_code} without JSON", details=details
            )
        if resp.status_code != 200 or body.get("status") != "success":
            reason = body.get("error") or f"HTTP {resp.status_code}"
            return MetricValue(
                None,
                error=f"prometheus query failed ({body.get('errorType', 'error')}): {reason}",
                details=details,
            )
        return _value_from_data(body.get("data"), details)


def _value_from_data(data: Any, details: dict[str, Any]) -> MetricValue:
    if not isinstance(data, dict):
        return MetricValue(None, error="prometheus response has no data", details=details)
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar":
            return MetricValue(_sample(result), details=details)
        if kind == "vector":
            if not isinstance(result, list):
                raise ValueError("vector result is not a list")
            details["series"] = len(result)
            if not result:
                return MetricValue(None, details=details)  # no data: inconclusive, never a pass
            if len(result) > 1:
                labels = [series.get("metric", {}) for series in result[:3]]
                return MetricValue(
                    None,
                    error=f"query returned {len(result)} series (e.g. {labels}); aggregate them (sum)",
                    details=details,
                )
            details["labels"] = result[0].get("metric", {})
            return MetricValue(_sample(result[0].get("value")), details=details)
    except (TypeError, ValueError, AttributeError) as exc:
        return MetricValue(None, error=f"unexpected prometheus result: {exc}", details=details)
    return MetricValue(
        None, error=f"unsupported result type {kind!r} (use an instant vector or scalar)", details=details
    )


def _sample(pair: Any) -> float:
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError(f"sample is not [time, value]: {pair!r}")
    return float(pair[1])  # Prometheus sends "NaN", "+Inf" as strings; float() reads them


def _promql_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS_PROVIDERS: dict[str, MetricsFactory] = {
    "http_probe": HttpProbeMetrics.from_config,
    "prometheus": PrometheusMetrics.from_config,
}


def build_metrics_provider(config: Mapping[str, Any], *, environment: str = "") -> MetricsProvider:
    """The metrics provider for ``config`` (``{"type": "http_probe" | "prometheus", ...}``).

    ``environment`` ("service/env") fills ``{environment}`` in PromQL templates.
    """
    factory = provider_type(config, METRICS_PROVIDERS, "metrics")
    return factory(config, environment)
