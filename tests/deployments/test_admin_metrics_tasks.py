"""Admin verbs and timeline, /metrics readers, the reconciler's claim and the beat entry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.models import AuditEntry
from controlplane.schedule import BEAT_SCHEDULE
from deployments.models import Deployment, Measurement
from deployments.selectors import CLAIM_LEASE, claim_due_deployments
from tests.conftest import make_user
from tests.deployments.conftest import Clock, create, drive

pytestmark = pytest.mark.django_db
S = Deployment.Status

PAUSING = {"strategy": "canary", "steps": [{"setWeight": 10}, {"pause": {}}]}


@pytest.fixture
def operator_browser() -> Client:
    client = Client()
    client.force_login(make_user("otto", "operator"))
    return client


def test_admin_shows_the_timeline_inline_and_runs_verbs(
    stage_factory: Any, clock: Clock, operator_browser: Client
) -> None:
    stage = stage_factory()
    d = drive(create(stage, PAUSING, clock), clock)
    page = operator_browser.get(f"/admin/deployments/deployment/{d.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "timeline" in html.lower() and "Shift 10% of traffic to the canary" in html
    response = operator_browser.post(
        "/admin/deployments/deployment/", {"action": "abort", "_selected_action": [d.pk]}, follow=True
    )
    assert response.status_code == 200
    d.refresh_from_db()
    assert d.status == S.ABORTED and "from the admin" in d.status_reason
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}
    assert AuditEntry.objects.filter(action="deployment.abort", actor_repr="otto").exists()
    assert AuditEntry.objects.filter(action="deployment.admin_action.abort").exists()
    env_page = operator_browser.get(f"/admin/deployments/environment/{stage.env.pk}/change/")
    assert env_page.status_code == 200 and "g1" in env_page.content.decode()


def test_admin_verb_refused_by_state_is_reported_not_raised(
    stage_factory: Any, clock: Clock, operator_browser: Client
) -> None:
    stage = stage_factory()
    d = create(stage, PAUSING, clock)
    response = operator_browser.post(
        "/admin/deployments/deployment/", {"action": "resume", "_selected_action": [d.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "only a paused deployment can be resumed" in response.content.decode()


def test_metrics_report_status_strategy_duration_rollbacks_and_verdicts(
    stage_factory: Any, clock: Clock, client: Client
) -> None:
    stage = stage_factory()
    for name in ("g1", "g2"):
        stage.apps[name].fail_rate = 1.0
    config = {
        "strategy": "canary",
        "steps": [{"percentage": 10, "duration": 60000, "metrics": {"error_rate": {"threshold": 0.01}}}],
    }
    failed = drive(create(stage, config, clock), clock)
    assert failed.status == S.ROLLED_BACK
    for name in ("g1", "g2"):
        stage.apps[name].fail_rate = 0.0
    ok = drive(create(stage, {"strategy": "blue-green"}, clock), clock)
    assert ok.status == S.SUCCEEDED
    text = client.get("/metrics").content.decode()
    assert 'controlplane_deployments{status="rolled_back",strategy="canary"} 1.0' in text
    assert 'controlplane_deployments{status="succeeded",strategy="blue-green"} 1.0' in text
    assert 'controlplane_deployment_rollbacks_total{kind="automatic"} 1.0' in text
    assert 'controlplane_analysis_measurements_total{metric="error_rate",outcome="failed"} 1.0' in text
    assert 'controlplane_deployment_duration_seconds_count{strategy="canary"} 1.0' in text
    # The failed canary ended at its first measurement, 12 s (a fifth of the hold) after the start.
    assert 'controlplane_deployment_duration_seconds_bucket{le="30.0",strategy="canary"} 1.0' in text
    assert 'controlplane_deployment_duration_seconds_sum{strategy="canary"} 12.0' in text
    assert Measurement.objects.count() == 1
    # Time to recover: only the automatic rollback has one; measured in one advance, so < 1 s.
    assert 'controlplane_deployment_time_to_recover_seconds_count{strategy="canary"} 1.0' in text
    assert 'controlplane_deployment_time_to_recover_seconds_bucket{le="1.0",strategy="canary"} 1.0' in text
    assert 'time_to_recover_seconds_count{strategy="blue-green"}' not in text
    assert "controlplane_metrics_scrape_errors 0.0" in text


def test_reconciler_claims_due_deployments_once_per_lease(stage_factory: Any, clock: Clock) -> None:
    stage = stage_factory()
    now = timezone.now()
    due = create(stage, PAUSING, clock)
    Deployment.objects.filter(pk=due.pk).update(status=S.RUNNING, next_check_at=now - timedelta(seconds=1))
    other = stage_factory(slug="ramen")
    later = create(other, PAUSING, clock)
    Deployment.objects.filter(pk=later.pk).update(status=S.RUNNING, next_check_at=now + timedelta(minutes=5))
    assert claim_due_deployments(now=now) == [due.pk]
    assert claim_due_deployments(now=now) == []  # claimed: its message is on its way
    assert claim_due_deployments(now=now + CLAIM_LEASE) == [due.pk]  # lost message: enqueued again
    Deployment.objects.filter(pk=due.pk).update(status=S.PAUSED)
    assert claim_due_deployments(now=now + timedelta(hours=1)) == [later.pk]


def test_reconcile_runs_on_beat_with_an_expiry() -> None:
    entry = BEAT_SCHEDULE["deployments-reconcile"]
    assert entry["task"] == "deployments.reconcile_deployments"
    assert entry["schedule"] <= 10
    assert entry["options"]["expire_seconds"] <= entry["schedule"]
