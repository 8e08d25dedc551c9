"""Zero downtime, end to end: real nginx in front of real instance processes, under load.

Each scenario runs the rollout engine in-process (``engine.run`` in a loop, the engine's clock
moved to ``next_check_at`` instead of waited for, with a short real pause so the load sees each
traffic table) while a load generator sends requests through nginx the whole time. The
``command`` deployer restarts instance processes on the new version
(``deployments/demo/restart_instance.py``). For each scenario: no failed request (connection errors,
or 5xx from a version that is not the failing one), the expected version everywhere at the end,
and the timeline.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deployments import engine, services
from deployments.demo import restart_instance
from deployments.models import Deployment, DeploymentEvent, Environment, Instance, Release, Service
from deployments.providers.base import InstanceRef, TrafficTable
from deployments.providers.nginx import render_upstream
from tests.deployments.conftest import Clock
from tests.support.loadgen import LoadGenerator, LoadResult
from tests.support.nginx import NginxServer, _free_port, require_nginx

S = Deployment.Status
E = DeploymentEvent.Kind
V1, V2, BAD = "1.0.0", "2.0.0", "2.0.0-bad"
MAX_REAL_PAUSE = 0.25  # seconds of real time per engine wait, so the load sees every table


@dataclasses.dataclass
class Fleet:
    env: Environment
    nginx: NginxServer
    state_dir: Path
    releases: dict[str, Release]
    urls: dict[str, str]

    def versions(self) -> dict[str, str]:
        return {
            name: requests.get(f"{url}/health", timeout=5).json()["version"]
            for name, url in self.urls.items()
        }

    def load(self) -> LoadGenerator:
        return LoadGenerator(self.nginx.url, threads=3).start()


def failures(result: LoadResult, *, failing: str = BAD) -> list[tuple[float, int, str]]:
    """Connection errors, and 5xx from any version but the one meant to fail."""
    return [e for e in result.log if e[1] == 0 or (e[1] >= 500 and e[2] != failing)]


@pytest.fixture
def fleet_factory(db: Any) -> Iterator[Callable[..., Fleet]]:
    require_nginx()
    made: list[Fleet] = []

    def make(*, blue: int = 2, green: int = 2, latency_ms: float = 0) -> Fleet:
        state_dir = Path(tempfile.mkdtemp(prefix="cp-zd-"))
        nginx = NginxServer(upstream_name="app")
        service = Service.objects.create(slug="noodle", name="Noodle")
        releases = {
            v: Release.objects.create(service=service, version=v, artifact=f"registry/noodle:{v}")
            for v in (V1, V2, BAD)
        }
        urls: dict[str, str] = {}
        refs: list[InstanceRef] = []
        fleet = Fleet(env=None, nginx=nginx, state_dir=state_dir, releases=releases, urls=urls)  # type: ignore[arg-type]
        made.append(fleet)
        for slot, count in (("blue", blue), ("green", green)):
            for n in range(1, count + 1):
                name = f"{slot}-{n}"
                urls[name] = restart_instance.start(
                    state_dir, name, _free_port(), slot, V1, latency_ms=latency_ms
                )
                refs.append(InstanceRef(name=name, address=urls[name], slot=slot, version=V1))
        initial = TrafficTable({"blue": 100, "green": 0})
        nginx.start(render_upstream("app", initial, refs))
        deployer = {
            "type": "command",
            "argv": [
                sys.executable,
                "-m",
                "deployments.demo.restart_instance",
                "--state-dir",
                str(state_dir),
                "--instance",
                "{instance}",
                "--address",
                "{address}",
                "--slot",
                "{slot}",
                "--version",
                "{version}",
                "--failing",
                BAD,
                "--latency-ms",
                str(latency_ms),
            ],
            "cwd": str(restart_instance.ROOT),
            "timeout": 30000,
        }
        env = Environment.objects.create(
            service=service,
            slug="production",
            router=nginx.router_config(),
            deployer=deployer,
            health_check={"path": "/health", "timeout": 2000, "healthyThreshold": 1, "interval": 500},
            metrics={"type": "http_probe", "requests": 20, "concurrency": 4},
            live_slot="blue",
            traffic=initial.as_dict(),
            current_release=releases[V1],
        )
        for ref in refs:
            Instance.objects.create(
                environment=env, name=ref.name, address=ref.address, slot=ref.slot or "", release=releases[V1]
            )
        fleet.env = env
        return fleet

    yield make
    for fleet in made:
        fleet.nginx.stop()
        restart_instance.stop_all(fleet.state_dir)


def drive(
    d: Deployment, clock: Clock, *, until: tuple[str, ...] = (S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.ABORTED)
) -> Deployment:
    """The reconciler's loop, in-process: run, then move the clock to ``next_check_at``."""
    for _ in range(400):
        engine.run(d.pk, now=clock)
        d.refresh_from_db()
        if d.status in until or d.status in (S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.ABORTED):
            return d
        target = d.next_check_at if d.next_check_at and d.next_check_at > clock.now else None
        gap = (target - clock.now).total_seconds() if target else 0.1
        time.sleep(min(gap, MAX_REAL_PAUSE))  # real time for nginx's old workers and the load
        if target:
            clock.now = target
        else:
            clock.advance(seconds=0.1)
    raise AssertionError(f"deployment did not settle: {d.status} at step {d.current_step}")


def create(fleet: Fleet, config: dict[str, Any], clock: Clock, version: str = V2) -> Deployment:
    d, _ = services.deployment_create(
        environment=fleet.env, release=fleet.releases[version], config=config, now=clock.now
    )
    return d


def traffic(d: Deployment) -> list[dict[str, Any]]:
    return [e.details for e in d.events.filter(kind=E.TRAFFIC).order_by("id")]


def settle(load: LoadGenerator, seconds: float = 0.8) -> LoadResult:
    """Keep the load on a moment after the end, then stop it."""
    time.sleep(seconds)
    return load.stop()


def served_after(result: LoadResult, since: float, grace: float = 0.3) -> set[str]:
    """Versions of responses completed after ``since`` (+ grace: the log has completion times,
    and a request accepted just before the switch may finish on the old version)."""
    return {v for t, status, v in result.log if t >= since + grace and status}


def test_blue_green_switch_under_load(fleet_factory: Callable[..., Fleet], clock: Clock) -> None:
    fleet = fleet_factory()
    load = fleet.load()
    d = drive(create(fleet, {"strategy": "blue-green"}, clock), clock)
    ended = time.monotonic()
    result = settle(load)

    assert d.status == S.SUCCEEDED, d.status_reason
    assert result.sent > 100 and failures(result) == [], result.errors
    assert served_after(result, ended) == {V2}
    assert fleet.versions() == {"blue-1": V1, "blue-2": V1, "green-1": V2, "green-2": V2}
    assert [t["weights"] for t in traffic(d)] == [{"green": 100, "blue": 0}]
    fleet.env.refresh_from_db()
    assert fleet.env.live_slot == "green"


def test_canary_10_50_100_under_load(fleet_factory: Callable[..., Fleet], clock: Clock) -> None:
    fleet = fleet_factory()
    config = {
        "strategy": "canary",
        "steps": [
            {"setWeight": 10},
            {"pause": {"duration": "2s"}},
            {"setWeight": 50},
            {"pause": {"duration": "2s"}},
            {"setWeight": 100},
        ],
    }
    load = fleet.load()
    d = drive(create(fleet, config, clock), clock)
    ended = time.monotonic()
    result = settle(load)

    assert d.status == S.SUCCEEDED, d.status_reason
    assert failures(result) == [], result.errors
    assert result.versions[V1] > 0 and result.versions[V2] > 0
    assert served_after(result, ended) == {V2}
    assert [t["weights"]["green"] for t in traffic(d)] == [10, 50, 100]
    assert fleet.versions()["green-1"] == V2 and fleet.versions()["green-2"] == V2


def test_rolling_batches_of_two_wait_for_the_drain(fleet_factory: Callable[..., Fleet], clock: Clock) -> None:
    # Slow requests: some are always in flight when a batch is drained.
    fleet = fleet_factory(blue=4, green=0, latency_ms=500)
    load = LoadGenerator(fleet.nginx.url, threads=8).start()
    d = drive(create(fleet, {"strategy": "rolling", "batchSize": 2}, clock), clock)
    ended = time.monotonic()
    result = settle(load)

    assert d.status == S.SUCCEEDED, d.status_reason
    assert failures(result) == [], result.errors
    assert served_after(result, ended) == {V2}
    assert set(fleet.versions().values()) == {V2}
    drained = [t["drained"] for t in traffic(d)]
    assert drained == [["blue-1", "blue-2"], [], ["blue-3", "blue-4"], []]
    # Each batch is restarted only once the router said nothing can still reach it.
    kinds = [(e.kind, e.message) for e in d.events.order_by("id")]
    deploys = [i for i, (k, m) in enumerate(kinds) if k == E.STEP_PROGRESS and m.startswith("deployed ")]
    drains = [i for i, (k, m) in enumerate(kinds) if k == E.TRAFFIC and m.startswith("drain ")]
    waits = [i for i, (k, m) in enumerate(kinds) if k == E.STEP_PROGRESS and m.startswith("waiting for ")]
    assert len(deploys) == 4 and drains[0] < deploys[0] < deploys[1] < drains[1] < deploys[2]
    # The engine waited for nginx's old workers to finish in-flight requests before restarting.
    assert waits, "no drain was pending: the load had nothing in flight"
    for w in waits:
        batch = kinds[w][1].removeprefix("waiting for ").removesuffix(" to drain")
        first = batch.split(", ")[0]
        drained_at = next(i for i in drains if kinds[i][1] == f"drain {batch}")
        deployed_at = next(i for i in deploys if kinds[i][1] == f"deployed {V2} to {first}")
        assert drained_at < w < deployed_at


def test_failing_canary_is_rolled_back_automatically(
    fleet_factory: Callable[..., Fleet], clock: Clock, client: Any
) -> None:
    fleet = fleet_factory()
    config = {
        "strategy": "canary",
        "steps": [
            {"percentage": 10, "duration": "10s", "metrics": {"error_rate": {"threshold": 0.05}}},
            {"percentage": 50, "duration": "10s", "metrics": {"error_rate": {"threshold": 0.05}}},
        ],
    }
    load = fleet.load()
    d = drive(create(fleet, config, clock, version=BAD), clock)
    ended = time.monotonic()
    result = settle(load)

    assert d.status == S.ROLLED_BACK, d.status_reason
    assert failures(result) == [], result.errors  # only the bad canary's own 500s
    assert served_after(result, ended) == {V1}
    assert [t["weights"] for t in traffic(d)] == [{"blue": 90, "green": 10}, {"blue": 100, "green": 0}]
    assert d.events.filter(kind=E.ANALYSIS, message__startswith="analysis failed").exists()
    # Time to recover: first failing measurement -> 100% on stable, within one interval (2 s) + 2 s.
    assert d.time_to_recover is not None and 0 <= d.time_to_recover <= 2 + 2
    first_fail = d.measurements.filter(outcome="failed").earliest("taken_at")
    assert d.plan[first_fail.step]["kind"] == "analyze" and first_fail.value == 1.0  # at 10%
    text = client.get("/metrics").content.decode()
    assert 'controlplane_deployment_time_to_recover_seconds_count{strategy="canary"} 1.0' in text
    assert (
        f'controlplane_deployment_time_to_recover_seconds_sum{{strategy="canary"}} {d.time_to_recover}'
        in text
    )
    fleet.env.refresh_from_db()
    assert fleet.env.current_release == fleet.releases[V1] and fleet.env.live_slot == "blue"


def test_manual_abort_returns_traffic_to_stable(fleet_factory: Callable[..., Fleet], clock: Clock) -> None:
    fleet = fleet_factory()
    config = {"strategy": "canary", "steps": [{"setWeight": 50}, {"pause": {}}]}
    load = fleet.load()
    d = drive(create(fleet, config, clock), clock, until=(S.PAUSED,))
    assert d.status == S.PAUSED
    time.sleep(0.3)  # the load sees the 50% canary
    services.deployment_abort(deployment=d, reason="looks wrong", now=clock.now)
    ended = time.monotonic()
    result = settle(load)

    d.refresh_from_db()
    assert d.status == S.ABORTED
    assert failures(result) == [], result.errors
    assert result.versions[V2] > 0
    assert served_after(result, ended) == {V1}
    assert [t["weights"] for t in traffic(d)] == [{"blue": 50, "green": 50}, {"blue": 100, "green": 0}]
    assert d.events.filter(kind=E.OPERATOR, message__icontains="abort").exists()


def test_rollback_after_blue_green_switches_back(fleet_factory: Callable[..., Fleet], clock: Clock) -> None:
    fleet = fleet_factory()
    load = fleet.load()
    d = drive(create(fleet, {"strategy": "blue-green"}, clock), clock)
    assert d.status == S.SUCCEEDED
    time.sleep(0.3)
    rollback = services.deployment_rollback(deployment=d, reason="bad numbers", now=clock.now)
    rollback = drive(rollback, clock)
    ended = time.monotonic()
    result = settle(load)

    d.refresh_from_db()
    assert rollback.status == S.SUCCEEDED, rollback.status_reason
    assert d.status == S.ROLLED_BACK
    assert failures(result) == [], result.errors
    assert result.versions[V2] > 0
    assert served_after(result, ended) == {V1}
    assert fleet.versions() == {"blue-1": V1, "blue-2": V1, "green-1": V2, "green-2": V2}
    assert [t["weights"] for t in traffic(rollback)] == [{"blue": 100, "green": 0}]
    fleet.env.refresh_from_db()
    assert fleet.env.live_slot == "blue" and fleet.env.current_release == fleet.releases[V1]
