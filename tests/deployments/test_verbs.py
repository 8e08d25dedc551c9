"""Operator verbs through the API: each role-checked, audited and in the timeline."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.models import AuditEntry
from deployments import engine
from deployments.models import Deployment, DeploymentEvent
from tests.deployments.conftest import Clock, Stage, create, drive, events

pytestmark = pytest.mark.django_db
S = Deployment.Status
E = DeploymentEvent.Kind

CANARY = {
    "strategy": "canary",
    "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "10m"}}],
}


def verb(client: Any, d: Deployment, name: str, reason: str = "") -> dict[str, Any]:
    response = client.post(f"/api/v1/deployments/{d.pk}/{name}/", {"reason": reason})
    assert response.status_code in (200, 201), response.json()
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def operator(api: Any) -> Any:
    return api("operator", username="olga")


def paused_at_untimed_pause(stage: Stage, clock: Clock) -> Deployment:
    d = drive(create(stage, CANARY, clock), clock)
    assert d.status == S.PAUSED and d.plan[d.current_step]["kind"] == "pause"
    return d


def test_untimed_pause_waits_for_promote(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = paused_at_untimed_pause(stage, clock)
    assert d.status_reason == "waiting to be promoted"
    body = verb(operator, d, "promote", "metrics look fine")
    assert body["status"] == "running"
    assert any(e["message"] == "promote by olga: metrics look fine" for e in body["events"])
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED
    assert AuditEntry.objects.filter(action="deployment.promote", actor_repr="olga").exists()


def test_pause_stops_the_engine_and_resume_continues(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = create(
        stage, {"strategy": "canary", "steps": [{"setWeight": 10}, {"pause": {"duration": 60000}}]}, clock
    )
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert verb(operator, d, "pause", "investigating")["status"] == "paused"
    clock.advance(minutes=5)
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.status == S.PAUSED and d.plan[d.current_step]["kind"] == "pause"
    assert verb(operator, d, "resume")["status"] == "running"
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED


def test_promote_full_skips_every_remaining_pause_and_weight(
    stage_factory: Any, clock: Clock, operator: Any
) -> None:
    stage = stage_factory()
    d = paused_at_untimed_pause(stage, clock)
    body = verb(operator, d, "promote-full")
    assert [s["kind"] for s in body["plan"][body["current_step"] :]] == ["set_weight", "finalize"]
    d = drive(d, clock)
    assert d.status == S.SUCCEEDED
    assert [e.details["weights"]["green"] for e in events(d, E.TRAFFIC)] == [10, 100]


def test_abort_returns_all_traffic_to_stable(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = paused_at_untimed_pause(stage, clock)
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 90, "green": 10}
    body = verb(operator, d, "abort", "bad canary")
    assert body["status"] == "aborted"
    assert body["status_reason"] == "aborted by operator: bad canary"
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}
    assert stage.env.current_release == stage.v1
    assert operator.post(f"/api/v1/deployments/{d.pk}/resume/", {}).status_code == 409


def test_retry_runs_an_aborted_deployment_again(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = paused_at_untimed_pause(stage, clock)
    verb(operator, d, "abort")
    assert verb(operator, d, "retry")["status"] == "running"
    d = drive(d, clock)
    assert d.status == S.PAUSED  # at the untimed pause again
    verb(operator, d, "promote")
    assert drive(d, clock).status == S.SUCCEEDED


def test_retry_is_409_while_another_deployment_is_active(
    stage_factory: Any, clock: Clock, operator: Any
) -> None:
    stage = stage_factory()
    d = paused_at_untimed_pause(stage, clock)
    verb(operator, d, "abort")
    other = create(stage, CANARY, clock)
    response = operator.post(f"/api/v1/deployments/{d.pk}/retry/", {})
    assert response.status_code == 409
    assert response.json()["details"]["active_deployment"] == other.pk


def test_rollback_is_fast_while_the_old_slot_is_warm(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = drive(create(stage, {"strategy": "blue-green"}, clock), clock)
    assert d.status == S.SUCCEEDED
    body = verb(operator, d, "rollback", "regression in checkout")
    assert body["kind"] == "rollback" and body["release"] == "1.0.0"
    assert [s["kind"] for s in body["plan"]] == ["verify_health", "switch_traffic", "finalize"]
    rollback = drive(Deployment.objects.get(pk=body["id"]), clock)
    assert rollback.status == S.SUCCEEDED
    stage.refresh()
    assert (stage.env.live_slot, stage.env.current_release) == ("blue", stage.v1)
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}
    assert all(not stage.apps[n].deploys for n in ("b1", "b2"))  # nothing redeployed
    d.refresh_from_db()
    assert d.status == S.ROLLED_BACK
    assert AuditEntry.objects.filter(action="deployment.rollback").exists()


def test_rollback_redeploys_once_the_scale_down_delay_passed(
    stage_factory: Any, clock: Clock, operator: Any
) -> None:
    stage = stage_factory()
    d = drive(create(stage, {"strategy": "blue-green", "scaleDownDelaySeconds": 30}, clock), clock)
    d.warm_until = clock.now.replace(year=2000)
    d.save()
    body = verb(operator, d, "rollback")
    assert [s["kind"] for s in body["plan"]] == ["deploy", "verify_health", "switch_traffic", "finalize"]
    assert drive(Deployment.objects.get(pk=body["id"]), clock).status == S.SUCCEEDED
    assert [a.version for n, a in stage.apps.items() if n.startswith("b")] == ["1.0.0", "1.0.0"]
    assert all(len(stage.apps[n].deploys) == 1 for n in ("b1", "b2"))


def test_rollback_is_allowed_on_a_frozen_environment(stage_factory: Any, clock: Clock, operator: Any) -> None:
    stage = stage_factory()
    d = drive(create(stage, {"strategy": "blue-green"}, clock), clock)
    type(stage.env).objects.filter(pk=stage.env.pk).update(frozen=True)
    assert verb(operator, d, "rollback")["status"] == "pending"


def test_promote_is_409_when_the_current_step_is_not_a_pause(
    stage_factory: Any, clock: Clock, operator: Any
) -> None:
    stage = stage_factory()
    d = create(stage, CANARY, clock)
    response = operator.post(f"/api/v1/deployments/{d.pk}/promote/", {})
    assert response.status_code == 409
    assert response.json()["code"] == "nothing_to_promote"
