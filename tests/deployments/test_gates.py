"""Gates: the pre-deployment checklist blocks the start, approvals time out as configured,
post checks mark a deployment, roles are enforced, and the incident freeze refuses new rollouts."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from controlplane.models import AuditEntry
from deployments import checklists, engine, services
from deployments.models import (
    Approval,
    ChecklistItem,
    ChecklistTemplate,
    ChecklistTemplateItem,
    Deployment,
    Environment,
)
from incidents import services as incident_services
from incidents.models import DeploymentLink
from tests.conftest import make_user, wait_for
from tests.deployments.conftest import Clock, Stage, create, drive, events
from tests.incidents.conftest import seed_policies

pytestmark = pytest.mark.django_db
S = Deployment.Status


def approval_canary(**approval: Any) -> dict[str, Any]:
    return {
        "strategy": "canary",
        "steps": [
            {"setWeight": 20},
            {"approval": {"role": "operator", "timeout": 1800000, "onTimeout": "abort", **approval}},
            {"setWeight": 100},
        ],
    }


def pre_template(env: Environment) -> ChecklistTemplate:
    t = ChecklistTemplate.objects.create(environment=env, phase="pre", name="Pre")
    ChecklistTemplateItem.objects.create(template=t, position=0, title="Code reviewed and approved")
    ChecklistTemplateItem.objects.create(
        template=t, position=1, title="Documentation updated", required=False
    )
    ChecklistTemplateItem.objects.create(
        template=t, position=2, title="All tests passing", evaluator="ci_passed"
    )
    return t


def seed_templates() -> None:
    """The data migration's seed (transactional tests flush it, so re-apply it; idempotent)."""
    from django.apps import apps

    importlib.import_module("deployments.migrations.0003_seed_checklists").seed(apps, None)


def test_the_seeded_defaults_are_the_guides_lists_verbatim_and_off() -> None:
    seed_templates()
    pre = ChecklistTemplate.objects.get(environment=None, phase="pre")
    post = ChecklistTemplate.objects.get(environment=None, phase="post")
    assert [i.title for i in pre.items.all()] == [
        "All tests passing",
        "Code reviewed and approved",
        "Environment variables configured",
        "Secrets properly stored",
        "Database migrations run",
        "Backups verified",
        "Monitoring and alerting configured",
        "Documentation updated",
        "Rollback plan documented",
        "Team notified of deployment",
    ]
    assert [i.title for i in post.items.all()] == [
        "Health checks passing",
        "Metrics normal",
        "No errors in logs",
        "Performance baseline met",
        "Alert rules tested",
        "Documentation updated",
        "Post-mortem if issues occurred",
    ]
    assert not pre.active and not post.active


def test_an_active_default_template_is_instantiated_on_every_new_deployment(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    seed_templates()
    ChecklistTemplate.objects.filter(environment=None).update(active=True)
    d = create(stage, approval_canary(), clock)
    assert d.checklist_items.filter(phase="pre").count() == 10
    assert d.checklist_items.filter(phase="post").count() == 7
    assert d.checklist_items.get(title="Backups verified").evaluator == "backup_verified"


def test_a_required_item_blocks_the_start_with_409_until_checked(
    stage_factory: Callable[..., Stage], clock: Clock, api: Any
) -> None:
    stage = stage_factory(blue=1, green=1)
    pre_template(stage.env)
    stage.v2.ci_status = "passed"
    stage.v2.save()
    d = create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock)
    # The worker evaluates the automatic item and keeps the deployment pending.
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.status == S.PENDING and d.next_check_at == clock.now + checklists.RECHECK
    operator = api("operator")
    resp = operator.post(f"/api/v1/deployments/{d.pk}/start/")
    assert resp.status_code == 409, resp.json()
    body = resp.json()
    assert body["code"] == "checklist_blocking"
    blocking = body["details"]["blocking_items"]
    assert [b["title"] for b in blocking] == [
        "Code reviewed and approved"
    ]  # optional + passed ones don't block
    assert blocking[0]["why"] == "not checked yet"
    listing = operator.get(f"/api/v1/deployments/{d.pk}/checklists/").json()
    ci = next(i for i in listing["pre"] if i["title"] == "All tests passing")
    assert ci["state"] == "passed" and ci["kind"] == "automatic"
    assert ci["evidence"]["ci_status"] == "passed"
    assert listing["blocking"] == [blocking[0]["id"]]

    check = operator.post(
        f"/api/v1/deployments/{d.pk}/checklists/items/{blocking[0]['id']}/check/",
        {"note": "PR #42 approved by two reviewers"},
        format="json",
    )
    assert check.status_code == 200, check.json()
    assert check.json()["state"] == "passed"
    assert check.json()["checked_by"] == operator.user.username
    assert check.json()["note"] == "PR #42 approved by two reviewers"
    resp = operator.post(f"/api/v1/deployments/{d.pk}/start/")
    assert resp.status_code == 200, resp.json()
    assert resp.json()["status"] == "running"
    assert drive(d, clock).status == S.SUCCEEDED


def test_checking_the_last_item_lets_the_worker_start_it(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    pre_template(stage.env)
    d = create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock)
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.status == S.PENDING
    user = make_user("reviewer", "operator")
    for item in d.checklist_items.filter(phase="pre", evaluator=""):
        checklists.checklist_item_check(item=item, actor=user, now=clock.now)
    stage.v2.ci_status = "passed"
    stage.v2.save()
    assert drive(d, clock).status == S.SUCCEEDED
    msgs = [e.message for e in events(d)]
    assert any("waiting for the pre-deployment checklist" in m for m in msgs)
    assert any("'Code reviewed and approved' passed: checked by reviewer" in m for m in msgs)


def test_an_admin_may_override_the_checklist_with_a_reason_others_may_not(
    stage_factory: Callable[..., Stage], clock: Clock, api: Any
) -> None:
    stage = stage_factory(blue=1, green=1)
    pre_template(stage.env)
    d = create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock)
    url = f"/api/v1/deployments/{d.pk}/override/"
    assert api("operator").post(url, {"reason": "hotfix"}, format="json").status_code == 403
    admin = api("admin")
    assert admin.post(url, {"reason": ""}, format="json").status_code == 400
    resp = admin.post(url, {"reason": "hotfix for the P1, reviewed on the call"}, format="json")
    assert resp.status_code == 200, resp.json()
    assert resp.json()["status"] == "running"
    event = d.events.get(details__verb="override")
    assert event.actor_repr == admin.user.username
    assert "hotfix for the P1" in event.message
    assert {i["title"] for i in event.details["overridden_items"]} == {
        "Code reviewed and approved",
        "All tests passing",
    }
    assert AuditEntry.objects.filter(action="deployment.override_gate").exists()


def test_a_viewer_cannot_check_items_approve_or_start(
    stage_factory: Callable[..., Stage], clock: Clock, api: Any
) -> None:
    stage = stage_factory(blue=1, green=1)
    pre_template(stage.env)
    d = create(stage, approval_canary(), clock)
    item = d.checklist_items.filter(evaluator="").first()
    assert item is not None
    viewer = api("viewer")
    assert viewer.get(f"/api/v1/deployments/{d.pk}/checklists/").status_code == 200
    assert viewer.post(f"/api/v1/deployments/{d.pk}/checklists/items/{item.pk}/check/").status_code == 403
    for verb in ("approve", "reject", "start"):
        assert viewer.post(f"/api/v1/deployments/{d.pk}/{verb}/", {"reason": "x"}).status_code == 403
    item.refresh_from_db()
    assert item.state == "pending"


def _until_approval(d: Deployment, clock: Clock) -> Deployment:
    for _ in range(50):
        engine.run(d.pk, now=clock)
        d.refresh_from_db()
        spec = d.current_step_spec
        if spec and spec["kind"] == "approval" and "approval_id" in d.step_state:
            return d
        clock.now = max(clock.now, d.next_check_at or clock.now)
    raise AssertionError("never reached the approval step")


def test_an_approval_times_out_into_an_abort_with_the_clock_moved(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    d = _until_approval(create(stage, approval_canary(onTimeout="abort"), clock), clock)
    approval = Approval.objects.get(deployment=d)
    assert approval.expires_at == clock.now + timedelta(minutes=30)
    assert d.next_check_at == approval.expires_at  # the reconciler wakes it at the deadline
    clock.advance(minutes=29)
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.status == S.RUNNING
    clock.advance(minutes=1)
    engine.run(d.pk, now=clock)
    d.refresh_from_db()
    assert d.status == S.ABORTED
    assert "approval timed out" in d.status_reason
    assert Approval.objects.get(pk=approval.pk).status == "timed_out"
    stage.env.refresh_from_db()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}


def test_an_approval_configured_to_promote_proceeds_on_timeout(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    d = _until_approval(create(stage, approval_canary(onTimeout="promote", timeout="10m"), clock), clock)
    clock.advance(minutes=10)
    assert drive(d, clock).status == S.SUCCEEDED
    assert Approval.objects.get(deployment=d).status == "timed_out"
    assert d.events.filter(message__contains="approval timed out after 600s: promote").exists()


def test_approve_and_reject_record_who_when_why_and_enforce_self_approval(
    stage_factory: Callable[..., Stage], clock: Clock, api: Any
) -> None:
    stage = stage_factory(blue=1, green=1)
    stage.env.forbid_self_approval = True
    stage.env.save()
    author = api("operator", username="author")
    resp = author.post(
        "/api/v1/deployments/",
        {"environment": str(stage.env), "release": "1.1.0", "deployment": approval_canary()},
        format="json",
    )
    assert resp.status_code == 201, resp.json()
    d = _until_approval(Deployment.objects.get(pk=resp.json()["id"]), clock)
    denied = author.post(f"/api/v1/deployments/{d.pk}/approve/", {"reason": "lgtm"}, format="json")
    assert denied.status_code == 403 and "own deployment" in denied.json()["message"]
    reviewer = api("operator", username="reviewer")
    ok = reviewer.post(f"/api/v1/deployments/{d.pk}/approve/", {"reason": "canary looks fine"}, format="json")
    assert ok.status_code == 200, ok.json()
    again = reviewer.post(f"/api/v1/deployments/{d.pk}/approve/", {"reason": "again"}, format="json")
    assert again.status_code == 409
    approval = Approval.objects.get(deployment=d)
    assert approval.status == "approved" and approval.decided_by is not None
    assert approval.decided_by.username == "reviewer"
    assert approval.reason == "canary looks fine"
    assert d.events.filter(actor_repr="reviewer", message="approved by reviewer: canary looks fine").exists()
    assert drive(d, clock).status == S.SUCCEEDED

    # Rejection aborts and needs a reason; an admin-only approval refuses operators.
    stage.env.refresh_from_db()
    d2 = _until_approval(create(stage, approval_canary(role="admin"), clock, release=stage.v1), clock)
    url = f"/api/v1/deployments/{d2.pk}/reject/"
    assert reviewer.post(url, {"reason": "no"}, format="json").status_code == 403
    admin = api("admin")
    assert admin.post(url, {"reason": ""}, format="json").status_code == 400
    assert admin.post(url, {"reason": "error budget spent"}, format="json").status_code == 200
    assert drive(d2, clock).status == S.ABORTED
    d2.refresh_from_db()
    assert "rejected by" in d2.status_reason and "error budget spent" in d2.status_reason


@pytest.mark.parametrize(
    ("approval", "field"),
    [
        ({"role": "boss"}, "deployment.steps[1].approval.role"),
        ({"timeout": 0}, "deployment.steps[1].approval.timeout"),
        ({"onTimeout": "retry"}, "deployment.steps[1].approval.onTimeout"),
        ({"when": "now"}, "deployment.steps[1].approval.when"),
    ],
)
def test_a_bad_approval_step_is_a_400_naming_field_and_rule(
    stage_factory: Callable[..., Stage], api: Any, approval: dict[str, Any], field: str
) -> None:
    stage = stage_factory(blue=1, green=1)
    resp = api("operator").post(
        "/api/v1/deployments/",
        {"environment": str(stage.env), "release": "1.1.0", "deployment": approval_canary(**approval)},
        format="json",
    )
    assert resp.status_code == 400
    assert field in resp.json()["details"]


def test_blue_green_takes_an_approval_before_switching(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    config = {
        "strategy": "blue-green",
        "approval": {"role": "operator", "timeout": 60000, "onTimeout": "abort"},
    }
    d = create(stage, config, clock)
    kinds = [s["kind"] for s in d.plan]
    assert kinds.index("approval") < kinds.index("switch_traffic")
    assert drive(d, clock).status == S.ABORTED
    stage.env.refresh_from_db()
    assert stage.env.traffic["weights"]["blue"] == 100


def test_a_failed_required_post_check_marks_the_deployment_needs_attention(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    t = ChecklistTemplate.objects.create(environment=stage.env, phase="post", name="Post")
    ChecklistTemplateItem.objects.create(
        template=t, title="Health checks passing", evaluator="instances_healthy"
    )
    d = create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock)
    assert drive(d, clock).status == S.SUCCEEDED
    item = d.checklist_items.get(phase="post")
    assert item.due_at == d.finished_at
    stage.apps["b1"].healthy = False  # the old slot now answers /health with 503
    checklists.post_item_evaluate(item_id=item.pk, now=clock.now)
    d.refresh_from_db()
    item.refresh_from_db()
    assert item.state == "failed" and "b1: HTTP 503" in item.evidence["message"]
    assert d.status == S.NEEDS_ATTENTION
    assert "Health checks passing" in d.status_reason


def test_a_post_template_can_roll_back_instead(stage_factory: Callable[..., Stage], clock: Clock) -> None:
    stage = stage_factory(blue=1, green=1)
    t = ChecklistTemplate.objects.create(
        environment=stage.env, phase="post", name="Post", on_failure="rollback"
    )
    ChecklistTemplateItem.objects.create(
        template=t,
        title="Metrics normal",
        evaluator="metrics_normal",
        params={"metrics": {"error_rate": {"threshold": 0.01}}, "windowMs": 300000},
    )
    d = create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock)
    assert drive(d, clock).status == S.SUCCEEDED
    item = d.checklist_items.get(phase="post")
    assert checklists.claim_due_items(now=clock.now) == []  # the window is still open
    stage.apps["g1"].fail_rate = 0.5  # the new live slot serves errors
    clock.advance(minutes=5)
    assert checklists.claim_due_items(now=clock.now) == [item.pk]
    checklists.post_item_evaluate(item_id=item.pk, now=clock.now)
    d.refresh_from_db()
    assert d.status == S.NEEDS_ATTENTION
    rollback = Deployment.objects.get(rollback_of=d)
    assert rollback.release == stage.v1
    assert drive(rollback, clock).status == S.SUCCEEDED
    d.refresh_from_db()
    assert d.status == S.ROLLED_BACK


def test_an_open_p1_refuses_new_deployments_with_409_but_not_rollbacks(
    stage_factory: Callable[..., Stage], clock: Clock, api: Any
) -> None:
    stage = stage_factory(blue=1, green=1)
    done = drive(create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock), clock)
    policies = seed_policies()
    p1 = incident_services.incident_declare(title="checkout down", severity=policies["P1"])
    incident_services.incident_add_environment(incident=p1, environment=stage.env)
    client = api("operator")
    resp = client.post(
        "/api/v1/deployments/",
        {"environment": str(stage.env), "release": "1.0.0", "deployment": {"strategy": "rolling"}},
        format="json",
    )
    assert resp.status_code == 409
    assert resp.json()["code"] == "environment_frozen"
    assert f"incident #{p1.pk}" in resp.json()["message"]
    assert resp.json()["details"]["incident"] == p1.pk
    rollback = client.post(f"/api/v1/deployments/{done.pk}/rollback/", {"reason": "P1"}, format="json")
    assert rollback.status_code == 201, rollback.json()


def test_an_automatic_rollback_opens_an_incident_linked_to_the_deployment(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    seed_policies()
    stage = stage_factory(blue=1, green=1)
    stage.apps["g1"].fail_rate = 0.5
    config = {
        "strategy": "canary",
        "steps": [{"percentage": 20, "duration": 60000, "metrics": {"error_rate": {"threshold": 0.01}}}],
    }
    d = drive(create(stage, config, clock), clock)
    assert d.status == S.ROLLED_BACK
    link = DeploymentLink.objects.get(deployment=d)
    assert link.relation == "caused" and link.incident.severity.code == "P2"


def test_the_admin_shows_checklist_items_and_approvals(
    stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    stage = stage_factory(blue=1, green=1)
    pre_template(stage.env)
    d = create(stage, approval_canary(), clock)
    user = make_user("root", "admin")
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    page = client.get(f"/admin/deployments/deployment/{d.pk}/change/").content.decode()
    assert "Code reviewed and approved" in page and "release CI status passed" in page
    template_page = client.get(
        f"/admin/deployments/checklisttemplate/{stage.env.checklist_templates.get().pk}/change/"
    )
    assert template_page.status_code == 200
    resp = client.post(
        "/admin/deployments/deployment/",
        {"action": "start_deployments", "_selected_action": [d.pk]},
        follow=True,
    )
    assert "required pre-deployment item" in resp.content.decode()
    assert services.active_deployment(stage.env) == d
    assert ChecklistItem.objects.filter(deployment=d, state="pending").count() == 2


def test_the_worker_evaluates_post_checks_after_the_rollout(
    celery_worker_factory: Any, stage_factory: Callable[..., Stage], clock: Clock
) -> None:
    celery_worker_factory()
    stage = stage_factory(blue=1, green=1)
    t = ChecklistTemplate.objects.create(environment=stage.env, phase="post", name="Post")
    ChecklistTemplateItem.objects.create(
        template=t, title="Health checks passing", evaluator="instances_healthy"
    )
    ChecklistTemplateItem.objects.create(template=t, title="No errors in logs")  # manual: never evaluated
    stage.apps["b1"].healthy = False  # the old slot is not probed by the rollout, only by the post check
    d = drive(create(stage, {"strategy": "canary", "steps": [{"setWeight": 100}]}, clock), clock)
    assert d.status == S.SUCCEEDED

    def marked() -> bool:
        d.refresh_from_db()
        return d.status == S.NEEDS_ATTENTION

    wait_for(marked, timeout=30)
    auto = d.checklist_items.get(evaluator="instances_healthy")
    assert auto.state == "failed" and auto.evidence["probes"]["b1"]["status_code"] == 503
    assert d.checklist_items.get(evaluator="").state == "pending"
