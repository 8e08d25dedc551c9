"""Reliability with real processes: killed workers, a Redis outage, racing workers.

Each test runs real Celery workers against the test database; the clock is real here,
so rollouts use short pauses.
"""

from __future__ import annotations

import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from controlplane.models import Heartbeat
from deployments import services
from deployments.models import Deployment, DeploymentEvent, Environment
from deployments.tasks import advance_deployment, reconcile_deployments
from tests.conftest import wait_for
from tests.deployments.conftest import Stage, build_stage, events

pytestmark = pytest.mark.worker
S = Deployment.Status
E = DeploymentEvent.Kind

# A deploy agent stand-in: idempotent per (deployment, instance, version), like a real agent
# must be (the engine re-runs a deploy whose outcome a crash left unrecorded); logs every
# call and every effect, and is slow enough to be killed in the middle.
DEPLOY_SCRIPT = textwrap.dedent(
    """
    import fcntl, json, os, sys, time, urllib.request
    instance, address, version, log, delay = sys.argv[1:6]
    key = f"{os.environ['DEPLOYMENT_ID']}:{instance}:{version}"
    with open(log + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(log, "a") as f:
            f.write(f"begin {instance}\\n")
        done = open(log).read().splitlines()
        if f"effect {key}" in done:
            with open(log, "a") as f:
                f.write(f"skip {key}\\n")
            sys.exit(0)
        time.sleep(float(delay))
        body = json.dumps({"release": {"version": version}}).encode()
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(address + "/deploy", data=body, headers=headers)
        urllib.request.urlopen(req, timeout=5).read()
        with open(log, "a") as f:
            f.write(f"effect {key}\\n")
    """
)


@pytest.fixture
def reliable_stage(transactional_db: Any, tmp_path: Path) -> Iterator[tuple[Stage, Path]]:
    stage = build_stage(health={"path": "/health", "timeout": 2000, "interval": 200, "healthyThreshold": 1})
    script = tmp_path / "deploy.py"
    script.write_text(DEPLOY_SCRIPT)
    log = tmp_path / "deploys.log"
    log.touch()
    Environment.objects.filter(pk=stage.env.pk).update(
        deployer={
            "type": "command",
            "argv": [sys.executable, str(script), "{instance}", "{address}", "{version}", str(log), "1.5"],
            "timeout": 30000,
        }
    )
    stage.refresh()
    yield stage, log
    for app in stage.apps.values():
        app.stop()


def start(stage: Stage, config: dict[str, Any]) -> Deployment:
    with transaction.atomic():  # enqueues on commit, as the API does
        deployment, _ = services.deployment_create(environment=stage.env, release=stage.v2, config=config)
    return deployment


def assert_each_step_once_in_order(d: Deployment) -> None:
    log = [(e.kind, e.step) for e in events(d) if e.kind in (E.STEP_STARTED, E.STEP_COMPLETED)]
    expected = []
    for i in range(len(d.plan)):
        expected += [(E.STEP_STARTED, i), (E.STEP_COMPLETED, i)]
    assert log == expected


def effects(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("effect ")]


def unlocked(pk: int) -> bool:
    with transaction.atomic():
        return Deployment.objects.select_for_update(skip_locked=True).filter(pk=pk).exists()


def workers_ready(n: int) -> bool:
    return Heartbeat.objects.filter(name__startswith="worker:test-").count() >= n


def settled(pk: int) -> Deployment | None:
    d = Deployment.objects.get(pk=pk)
    return d if d.status not in Deployment.ACTIVE_STATUSES else None


def at_step(pk: int, kind: str) -> bool:
    d = Deployment.objects.get(pk=pk)
    return d.current_step_spec is not None and d.current_step_spec["kind"] == kind


CONFIG = {"strategy": "canary", "steps": [{"setWeight": 50}, {"setWeight": 100}]}


def test_killed_worker_mid_rollout_is_finished_by_another_without_double_or_skip(
    reliable_stage: tuple[Stage, Path], celery_worker_factory: Any
) -> None:
    stage, log = reliable_stage
    first = celery_worker_factory()
    wait_for(lambda: workers_ready(1), timeout=60)
    d = start(stage, CONFIG)
    wait_for(lambda: "begin g1" in log.read_text(), timeout=60)
    first.kill(signal.SIGKILL)  # mid-deploy: the step's transaction dies with the worker
    assert Deployment.objects.get(pk=d.pk).current_step == 0
    celery_worker_factory()
    wait_for(lambda: unlocked(d.pk), timeout=30)
    # The killed message is not redelivered before the visibility timeout; beat's next tick
    # finds the deployment from next_check_at, which the dead transaction never moved.
    assert reconcile_deployments() == 1
    d = wait_for(lambda: settled(d.pk), timeout=90)
    assert d.status == S.SUCCEEDED, d.status_reason
    assert_each_step_once_in_order(d)
    key = f"{d.pk}:%s:1.1.0"
    assert sorted(effects(log)) == [f"effect {key % 'g1'}", f"effect {key % 'g2'}"]
    assert stage.apps["g1"].version == stage.apps["g2"].version == "1.1.0"
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 0, "green": 100}


@pytest.fixture
def app_on(private_redis: Any) -> Iterator[Any]:
    """Point this process's Celery producer at the private Redis (and back afterwards)."""
    from controlplane.celery import app as celery_app

    app: Any = celery_app
    conf: Any = app.conf
    old = (conf.broker_url, conf.broker_write_url, conf.broker_read_url)

    def reset() -> None:
        app._pool = None  # dropped, not closed: code elsewhere may still hold a producer from it
        app.amqp._producer_pool = None

    conf.broker_url = conf.broker_write_url = conf.broker_read_url = private_redis.url
    reset()
    yield private_redis
    conf.broker_url, conf.broker_write_url, conf.broker_read_url = old
    reset()


def test_rollout_resumes_after_a_redis_outage_and_nothing_is_lost(
    reliable_stage: tuple[Stage, Path], celery_worker_factory: Any, app_on: Any, api: Any
) -> None:
    stage, log = reliable_stage
    Environment.objects.filter(pk=stage.env.pk).update(
        deployer={**stage.env.deployer, "argv": [*stage.env.deployer["argv"][:-1], "0"]}
    )
    stage.refresh()
    redis = app_on
    celery_worker_factory(broker_url=redis.url)
    wait_for(lambda: workers_ready(1), timeout=60)
    config = {
        "strategy": "canary",
        "steps": [{"setWeight": 50}, {"pause": {"duration": 2000}}, {"setWeight": 100}],
    }
    d = start(stage, config)
    wait_for(lambda: at_step(d.pk, "pause"), timeout=60)
    redis.stop()
    operator = api("operator")
    # The broker is down: operator actions still work (their enqueue fails quietly) ...
    assert operator.post(f"/api/v1/deployments/{d.pk}/pause/", {"reason": "outage"}).status_code == 200
    assert operator.post(f"/api/v1/deployments/{d.pk}/resume/", {}).status_code == 200
    time.sleep(2.5)  # the pause elapses while nobody can be told
    assert Deployment.objects.get(pk=d.pk).status == S.RUNNING
    redis.start()  # same port, empty: every queued message is gone
    # ... and beat's next tick re-enqueues from next_check_at.
    wait_for(lambda: reconcile_deployments() == 0 or settled(d.pk), timeout=60, interval=1.0)
    d = wait_for(lambda: settled(d.pk), timeout=90)
    assert d.status == S.SUCCEEDED, d.status_reason
    assert_each_step_once_in_order(d)
    assert len(effects(log)) == 2


def test_two_workers_racing_on_one_deployment_exactly_one_advances(
    reliable_stage: tuple[Stage, Path], celery_worker_factory: Any
) -> None:
    stage, log = reliable_stage
    celery_worker_factory()
    celery_worker_factory()
    wait_for(lambda: workers_ready(2), timeout=60)
    with transaction.atomic():
        d, _ = services.deployment_create(environment=stage.env, release=stage.v2, config=CONFIG)
        # A duplicate message, as a redelivery or an overlapping reconcile tick would produce.
        transaction.on_commit(lambda: advance_deployment.delay(d.pk))
    d = wait_for(lambda: settled(d.pk), timeout=90)
    assert d.status == S.SUCCEEDED, d.status_reason
    assert_each_step_once_in_order(d)
    calls = [line for line in log.read_text().splitlines() if line.startswith("begin ")]
    assert calls == ["begin g1", "begin g2"]  # nobody deployed twice, nobody skipped the lock
    assert len(effects(log)) == 2
