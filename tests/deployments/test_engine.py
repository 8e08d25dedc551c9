"""The engine against real local instances (HTTP servers on loopback), with a moved clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deployments import engine
from deployments.models import Deployment, DeploymentEvent, Measurement
from tests.deployments.conftest import Clock, create, drive, events
from tests.deployments.test_strategy_config import SEED_BLUE_GREEN, SEED_CANARY, SEED_ROLLING

pytestmark = pytest.mark.django_db
S = Deployment.Status
E = DeploymentEvent.Kind


def step_log(d: Deployment) -> list[tuple[str, int | None]]:
    return [(e.kind, e.step) for e in events(d) if e.kind in (E.STEP_STARTED, E.STEP_COMPLETED)]


def assert_each_step_once_in_order(d: Deployment) -> None:
    expected = []
    for i in range(len(d.plan)):
        expected += [(E.STEP_STARTED, i), (E.STEP_COMPLETED, i)]
    assert step_log(d) == expected


def test_seed_canary_rolls_out_with_analysis_and_never_sleeps(stage_factory: Any, clock: Clock) -> None:
    stage = stage_factory()
    d = create(stage, SEED_CANARY, clock)
    started = time.monotonic()
    d = drive(d, clock)
    assert time.monotonic() - started < 30  # 15 minutes of rollout, moved rather than waited
    assert d.status == S.SUCCEEDED, d.status_reason
    assert_each_step_once_in_order(d)
    stage.refresh()
    assert stage.env.traffic == {"weights": {"blue": 0, "green": 100}, "drained": []}
    assert (stage.env.live_slot, stage.env.current_release) == ("green", stage.v2)
    for name in ("g1", "g2"):
        assert stage.apps[name].version == "1.1.0"
        assert len(stage.apps[name].deploys) == 1
    assert all(not stage.apps[n].deploys for n in ("b1", "b2"))
    weights = [e.details["weights"]["green"] for e in events(d, E.TRAFFIC)]
    assert weights == [10, 50, 100]
    measured = Measurement.objects.filter(deployment=d)
    assert {m.metric for m in measured} == {"error_rate", "latency_p99"}
    assert measured.count() == 10 and all(m.outcome == "successful" for m in measured)
    assert measured.filter(metric="error_rate").first().threshold == {"threshold": 0.01}  # type: ignore[union-attr]
    assert d.finished_at is not None and (d.finished_at - d.started_at).total_seconds() >= 900  # type: ignore[operator]


def test_failing_canary_rolls_back_automatically_with_the_failing_measurements(
    stage_factory: Any, clock: Clock
) -> None:
    stage = stage_factory()
    for name in ("g1", "g2"):
        stage.apps[name].fail_rate = 1.0  # healthy on /health, 5xx for the application
    d = drive(create(stage, SEED_CANARY, clock), clock)
    assert d.status == S.ROLLED_BACK
    assert "error_rate failed" in d.status_reason
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}
    assert stage.env.live_slot == "blue" and stage.env.current_release == stage.v1
    verdict = events(d, E.ANALYSIS)[-1]
    failing = verdict.details["failing_measurements"]
    assert failing and failing[0]["metric"] == "error_rate" and failing[0]["value"] == 1.0
    assert failing[0]["threshold"] == {"threshold": 0.01}
    transition = events(d, E.TRANSITION)[-1]
    assert transition.details["to"] == "rolled_back"
    assert any(m.message.startswith("error_rate = 1 (failed)") for m in events(d, E.MEASUREMENT))


def test_seed_rolling_updates_two_at_a_time_with_the_batch_interval(stage_factory: Any, clock: Clock) -> None:
    stage = stage_factory(blue=0, green=0, loose=5)
    stage.env.live_slot = ""
    stage.env.save()
    d = create(stage, SEED_ROLLING, clock)
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    # First batch done, then the engine stores when the second may start instead of sleeping.
    assert d.plan[d.current_step]["kind"] == "pause"
    assert d.next_check_at is not None and (d.next_check_at - clock.now).total_seconds() == 60
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED, d.status_reason
    drained = [len(e.details["drained"]) for e in events(d, E.TRAFFIC)]
    assert max(drained) == 2 and drained[-1] == 0
    assert all(app.version == "1.1.0" and len(app.deploys) == 1 for app in stage.apps.values())


def test_seed_blue_green_switches_all_traffic_at_once(stage_factory: Any, clock: Clock) -> None:
    stage = stage_factory()
    d = drive(create(stage, SEED_BLUE_GREEN, clock), clock)
    assert d.status == S.SUCCEEDED
    assert [e.details["weights"] for e in events(d, E.TRAFFIC)] == [{"green": 100, "blue": 0}]
    stage.refresh()
    assert stage.env.live_slot == "green"


def test_unhealthy_target_fails_the_deployment_and_keeps_traffic_on_stable(
    stage_factory: Any, clock: Clock
) -> None:
    stage = stage_factory(health={"path": "/health", "interval": 60000, "healthyThreshold": 2})
    stage.apps["g2"].healthy = False
    d = drive(create(stage, SEED_BLUE_GREEN, clock), clock)
    assert d.status == S.FAILED
    assert "not healthy within 600s" in d.status_reason and "g2: HTTP 503" in d.status_reason
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}


def test_inconclusive_analysis_pauses_for_a_human_then_promote_continues(
    stage_factory: Any, clock: Clock
) -> None:
    from deployments import services

    stage = stage_factory()
    for name in ("g1", "g2"):
        stage.apps[name].fail_rate = 0.1
    metric = {"error_rate": {"successCondition": "result < 0.01", "failureCondition": "result > 0.5"}}
    config = {"strategy": "canary", "steps": [{"setWeight": 20}, {"analysis": {"metrics": metric}}]}
    d = drive(create(stage, config, clock), clock)
    assert d.status == S.PAUSED
    assert "inconclusive" in d.status_reason
    services.deployment_promote(deployment=d, reason="checked dashboards", now=clock.now)
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED


def test_redundant_advances_do_not_repeat_effects(stage_factory: Any, clock: Clock) -> None:
    stage = stage_factory()
    d = create(
        stage, {"strategy": "canary", "steps": [{"setWeight": 50}, {"pause": {"duration": 60000}}]}, clock
    )
    for _ in range(5):  # a burst of duplicate messages at the same instant
        engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.plan[d.current_step]["kind"] == "pause"
    assert [len(stage.apps[n].deploys) for n in ("g1", "g2")] == [1, 1]
    assert len(events(d, E.TRAFFIC)) == 1
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED
    assert [len(stage.apps[n].deploys) for n in ("g1", "g2")] == [1, 1]
    assert_each_step_once_in_order(d)
