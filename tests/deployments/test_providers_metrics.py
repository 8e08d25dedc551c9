"""Metrics providers against real local instances and a real Prometheus server."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.analysis import Outcome, classify, metric_spec_from_config
from deployments.demo.instance_app import InstanceApp
from deployments.providers.base import InstanceRef, ProviderConfigError
from deployments.providers.metrics import (
    HttpProbeMetrics,
    PrometheusMetrics,
    build_metrics_provider,
    percentile,
)
from tests.conftest import free_port, wait_for


def refs(*apps: InstanceApp, slot: str, version: str | None = None) -> list[InstanceRef]:
    return [InstanceRef(f"{slot}-{n}", app.url, slot=slot, version=version) for n, app in enumerate(apps)]


# -- http_probe --------------------------------------------------------------------------------


def test_http_probe_measures_error_rate_and_p99_of_the_slot() -> None:
    provider = build_metrics_provider({"type": "http_probe", "requests": 40, "concurrency": 4})
    with (
        InstanceApp(version="1.0.0") as stable,
        InstanceApp(version="1.1.0", fail_rate=0.25, latency_ms=40) as canary_a,
        InstanceApp(version="1.1.0", fail_rate=0.25, latency_ms=40) as canary_b,
    ):
        instances = refs(stable, slot="blue") + refs(canary_a, canary_b, slot="green")
        error_rate = provider.measure(
            "error_rate", query=None, slot="green", version=None, instances=instances
        )
        p99 = provider.measure("latency_p99", query=None, slot="green", version=None, instances=instances)
        stable_rate = provider.measure(
            "error_rate", query=None, slot="blue", version=None, instances=instances
        )
        assert stable.requests_served == 40
        # error_rate and latency_p99 came from the same round of 40 requests
        assert canary_a.requests_served + canary_b.requests_served == 40
    assert error_rate.value == 0.25
    assert error_rate.details["by_instance"] == {"green-0": 20, "green-1": 20}
    assert p99.value is not None and p99.value >= 40
    assert stable_rate.value == 0.0
    assert classify(metric_spec_from_config("error_rate", {"threshold": 0.01}), error_rate) is Outcome.FAILED
    assert (
        classify(metric_spec_from_config("error_rate", {"threshold": 0.01}), stable_rate)
        is Outcome.SUCCESSFUL
    )


def test_http_probe_requests_are_concurrent_but_bounded() -> None:
    provider = HttpProbeMetrics(requests_per_round=24, concurrency=3, reuse_ms=0)
    with InstanceApp(latency_ms=50) as app:
        value = provider.measure("latency_p50", instances=refs(app, slot="blue"))
        assert app.requests_served == 24
        assert 2 <= app.max_in_flight <= 3
    assert value.value is not None and value.value >= 50


def test_http_probe_counts_refused_connections_as_errors_without_latency() -> None:
    provider = build_metrics_provider({"type": "http_probe", "requests": 6, "timeout": 500})
    gone = [InstanceRef("gone", f"http://127.0.0.1:{free_port()}", slot="green")]
    error_rate = provider.measure("error_rate", query=None, slot="green", version=None, instances=gone)
    latency = provider.measure("latency_p99", query=None, slot="green", version=None, instances=gone)
    assert error_rate.value == 1.0 and error_rate.details["no_response"] == 6
    assert latency.value is None and latency.error is None  # no data -> inconclusive, not a pass


def test_http_probe_without_instances_or_with_unknown_metric() -> None:
    provider = build_metrics_provider({"type": "http_probe"})
    none = provider.measure("error_rate", query=None, slot="green", version=None, instances=[])
    assert none.value is None and none.error is None
    unknown = provider.measure("cpu", query=None, slot=None, version=None, instances=[])
    assert unknown.error and "cannot measure 'cpu'" in unknown.error


def test_http_probe_filters_by_version_and_reports_client_errors() -> None:
    provider = HttpProbeMetrics(path="/nope", requests_per_round=4, reuse_ms=0)
    with InstanceApp(version="1.0.0") as old, InstanceApp(version="1.1.0") as new:
        instances = [
            InstanceRef("old", old.url, version="1.0.0"),
            InstanceRef("new", new.url, version="1.1.0"),
        ]
        value = provider.measure("error_rate", version="1.1.0", instances=instances)
        assert old.requests_served == 0 and new.requests_served == 4
    assert value.value == 0.0  # /nope is served by the app (200); a 4xx would be reported apart


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == 50
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"type": "datadog"}, "type"),
        ({"type": "http_probe", "requests": 0}, "requests"),
        ({"type": "http_probe", "concurrency": 1000}, "concurrency"),
        ({"type": "http_probe", "path": "health"}, "path"),
        ({"type": "http_probe", "headers": {"X Bad": "1"}}, "headers.X Bad"),
        ({"type": "prometheus"}, "address"),
        ({"type": "prometheus", "address": "prometheus:9090"}, "address"),
        ({"type": "prometheus", "address": "http://p:9090", "queries": {"error_rate": ""}}, "queries"),
        ({"type": "prometheus", "address": "http://p:9090", "query": "up"}, "query"),
    ],
)
def test_invalid_metrics_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ProviderConfigError) as exc:
        build_metrics_provider(config)
    assert exc.value.field == field


# -- prometheus (the real server from Debian's package) ----------------------------------------

ERROR_RATE = (
    'sum(app_http_requests_total{code=~"5..",slot="{slot}",version="{version}"})'
    ' / sum(app_http_requests_total{slot="{slot}",version="{version}"})'
)


class PrometheusServer:
    def __init__(self, tmp: Path, targets: list[str]) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: instances\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.log = (tmp / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._ready, timeout=30)

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            assert self.proc.poll() is None, "prometheus exited; see prometheus.log"
            return False

    def query(self, promql: str) -> list[Any]:
        body = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        return list(body["data"]["result"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def prometheus_setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, InstanceApp]]:
    if shutil.which("prometheus") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus binary missing (Debian package prometheus)")
        pytest.skip("prometheus binary missing (Debian package prometheus)")
    blue = InstanceApp(version="1.0.0", slot="blue").start()
    green = InstanceApp(version="1.1.0", slot="green", fail_rate=0.5).start()
    for _ in range(10):
        requests.get(blue.url, timeout=5)
    for _ in range(40):
        requests.get(green.url, timeout=5)
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{blue.port}", f"127.0.0.1:{green.port}"]
    )
    try:
        # Wait until a scrape saw all the requests.
        wait_for(lambda: server.query('sum(app_http_requests_total{slot="green"}) == 40'), timeout=30)
        wait_for(lambda: server.query('sum(app_http_requests_total{slot="blue"}) == 10'), timeout=30)
        yield server, green
    finally:
        server.stop()
        blue.stop()
        green.stop()


def test_prometheus_error_rate_templated_with_slot_and_version(
    prometheus_setup: tuple[PrometheusServer, InstanceApp],
) -> None:
    server, _ = prometheus_setup
    provider = build_metrics_provider(
        {"type": "prometheus", "address": server.url, "queries": {"error_rate": ERROR_RATE}},
        environment="noodle/production",
    )
    green = provider.measure("error_rate", query=None, slot="green", version="1.1.0", instances=[])
    blue = provider.measure("error_rate", query=None, slot="blue", version="1.0.0", instances=[])
    assert green.error is None and green.value == 0.5
    assert 'slot="green",version="1.1.0"' in green.details["query"]
    assert blue.value == 0.0


def test_prometheus_empty_result_is_no_data(prometheus_setup: tuple[PrometheusServer, InstanceApp]) -> None:
    server, _ = prometheus_setup
    provider = PrometheusMetrics(address=server.url, queries={"error_rate": ERROR_RATE})
    value = provider.measure("error_rate", slot="green", version="9.9.9")
    assert (value.value, value.error, value.details["series"]) == (None, None, 0)
    assert classify(metric_spec_from_config("error_rate", {"threshold": 0.01}), value) is Outcome.INCONCLUSIVE


def test_prometheus_scalar_results_and_the_environment_template(
    prometheus_setup: tuple[PrometheusServer, InstanceApp],
) -> None:
    server, _ = prometheus_setup
    provider = PrometheusMetrics(address=server.url, environment='noodle/"prod"')
    count = provider.measure("n", query='scalar(sum(app_http_requests_total{slot="{slot}"}))', slot="green")
    assert count.value == 40.0
    nan = provider.measure("n", query='scalar(sum(app_http_requests_total{slot="none"}))', slot="green")
    assert nan.value is not None and math.isnan(nan.value)
    env = provider.measure("n", query='count(label_replace(vector(1), "env", "{environment}", "", ""))')
    assert env.value == 1.0
    assert 'noodle/\\"prod\\"' in env.details["query"]  # escaped inside the PromQL string


def test_prometheus_errors_are_measurement_errors(
    prometheus_setup: tuple[PrometheusServer, InstanceApp],
) -> None:
    server, _ = prometheus_setup
    provider = PrometheusMetrics(address=server.url)
    bad = provider.measure("x", query="sum(")
    assert bad.error and "bad_data" in bad.error
    several = provider.measure("x", query="app_info")
    assert several.error and "2 series" in several.error
    matrix = provider.measure("x", query="app_info[5m]")
    assert matrix.error and "matrix" in matrix.error
    missing = provider.measure("error_rate")
    assert missing.error and "no PromQL query" in missing.error
    down = PrometheusMetrics(address=f"http://127.0.0.1:{free_port()}").measure("x", query="up")
    assert down.error and "unreachable" in down.error
    assert classify(metric_spec_from_config("x", {"threshold": 1}), down) is Outcome.ERROR


def test_prometheus_non_json_answer_is_an_error() -> None:
    with InstanceApp() as not_prometheus:  # answers 200 text/plain to /api/v1/query
        value = PrometheusMetrics(address=not_prometheus.url).measure("x", query="up")
    assert value.error and "without JSON" in value.error
