"""Incidents and deployments: affected environments, freeze, suspects, links, auto-open, rollback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from deployments.models import Deployment, Environment, Release, Service
from incidents import selectors, services
from incidents.models import DeploymentLink, Incident, SeverityPolicy
from tests.conftest import make_user
from tests.deployments.conftest import Clock, create, drive

pytestmark = pytest.mark.django_db
T0 = timezone.now().replace(microsecond=0)


@pytest.fixture
def env(db: Any) -> Environment:
    service = Service.objects.create(slug="noodle")
    return Environment.objects.create(service=service, slug="production")


def deployment(env: Environment, version: str, at: Any, status: str = "succeeded") -> Deployment:
    release, _ = Release.objects.get_or_create(service=env.service, version=version)
    return Deployment.objects.create(
        environment=env,
        release=release,
        strategy="rolling",
        config={"strategy": "rolling"},
        status=status,
        created_at=at,
        started_at=at,
        finished_at=at + timedelta(minutes=3),
    )


def test_an_open_p1_on_an_environment_freezes_it_until_resolved(policies: Any, env: Environment) -> None:
    assert selectors.environment_frozen_by_incident(env) is None
    p2 = services.incident_declare(title="slow", severity=policies["P2"])
    services.incident_add_environment(incident=p2, environment=env)
    assert selectors.environment_frozen_by_incident(env) is None  # only freezing severities
    p1 = services.incident_declare(title="down", severity=policies["P1"])
    assert selectors.environment_frozen_by_incident(env) is None  # not on this environment yet
    services.incident_add_environment(incident=p1, environment=env)
    assert selectors.environment_frozen_by_incident(env) == p1
    other = Environment.objects.create(service=env.service, slug="staging")
    assert selectors.environment_frozen_by_incident(other) is None
    services.incident_transition(incident=p1, to="mitigated")
    assert selectors.environment_frozen_by_incident(env) == p1
    services.incident_transition(incident=p1, to="resolved")
    assert selectors.environment_frozen_by_incident(env) is None
    assert p1.timeline.filter(kind="update", message__contains="noodle/production").exists()


def test_suspects_are_deployments_on_affected_environments_shortly_before_detection(
    policies: Any, env: Environment
) -> None:
    recent = deployment(env, "1.4.0", T0 - timedelta(minutes=30))
    running = deployment(env, "1.3.9", T0 - timedelta(hours=2, minutes=30))
    Deployment.objects.filter(pk=running.pk).update(finished_at=T0 - timedelta(minutes=50))
    deployment(env, "1.3.0", T0 - timedelta(hours=5))  # too old
    deployment(env, "1.5.0", T0 + timedelta(minutes=10), status="running")  # after detection: a fix
    elsewhere = Environment.objects.create(service=env.service, slug="staging")
    deployment(elsewhere, "1.4.0", T0 - timedelta(minutes=20))
    incident = services.incident_declare(title="errors", severity=policies["P2"], now=T0)
    assert list(selectors.suspect_deployments(incident)) == []
    services.incident_add_environment(incident=incident, environment=env)
    assert list(selectors.suspect_deployments(incident)) == [recent, running]
    services.incident_link_deployment(
        incident=incident, deployment=running, relation="dismissed", note="config only"
    )
    assert list(selectors.suspect_deployments(incident)) == [recent]


def test_linking_records_the_relation_and_its_changes(policies: Any, env: Environment) -> None:
    d = deployment(env, "1.4.0", T0 - timedelta(minutes=30))
    incident = services.incident_declare(title="errors", severity=policies["P2"])
    services.incident_link_deployment(incident=incident, deployment=d, relation="suspect")
    services.incident_link_deployment(
        incident=incident, deployment=d, relation="caused", note="bad migration"
    )
    link = DeploymentLink.objects.get()
    assert link.relation == "caused" and link.note == "bad migration"
    messages = list(incident.timeline.filter(kind="deployment").values_list("message", flat=True))
    assert messages[0].endswith("marked suspect")
    assert "marked caused (was suspect)" in messages[1]
    with pytest.raises(Exception, match="Unknown relation"):
        services.incident_link_deployment(incident=incident, deployment=d, relation="blamed")


def test_an_automatic_rollback_opens_one_incident_per_policy(policies: Any, env: Environment) -> None:
    d = deployment(env, "1.4.0", T0, status="rolled_back")
    d.status_reason = "analysis failed: error_rate 0.05 > 0.01"
    d.save()
    incident = services.incident_open_for_deployment(deployment=d)
    assert incident is not None
    assert (incident.source, incident.severity.code) == ("deployment", "P2")
    assert list(incident.environments.all()) == [env]
    assert incident.deployment_links.get().relation == "caused"
    assert "error_rate" in incident.description
    assert services.incident_open_for_deployment(deployment=d) == incident  # idempotent
    assert Incident.objects.count() == 1
    SeverityPolicy.objects.update(open_on_deployment_failure=False)
    other = deployment(env, "1.4.1", T0, status="aborted")
    assert services.incident_open_for_deployment(deployment=other) is None


def test_api_declares_on_environments_links_and_lists_suspects(
    policies: Any, env: Environment, api: Any
) -> None:
    d = deployment(env, "1.4.0", timezone.now() - timedelta(minutes=10))
    client = api("operator")
    resp = client.post(
        "/api/v1/incidents/", {"title": "down", "severity": "P1", "environments": ["noodle/production"]}
    )
    assert resp.status_code == 201, resp.json()
    pk = resp.json()["id"]
    assert resp.json()["environments"] == ["noodle/production"]
    suspects = client.get(f"/api/v1/incidents/{pk}/suspect-deployments/").json()
    assert [(s["id"], s["version"], s["environment"]) for s in suspects] == [
        (d.pk, "1.4.0", "noodle/production")
    ]
    resp = client.post(f"/api/v1/incidents/{pk}/deployments/", {"deployment": d.pk, "relation": "caused"})
    assert resp.json()["deployment_links"][0]["relation"] == "caused"
    bad = client.post("/api/v1/incidents/", {"title": "x", "severity": "P1", "environments": ["nope/none"]})
    assert bad.status_code == 400 and not Incident.objects.filter(title="x").exists()
    resp = client.post(
        f"/api/v1/incidents/{pk}/environments/", {"environment": "noodle/production", "affected": False}
    )
    assert resp.json()["environments"] == []


def test_admin_rolls_back_the_deployment_that_caused_it(
    policies: Any,
    stage_factory: Any,
    clock: Clock,
) -> None:
    stage = stage_factory()
    d = drive(create(stage, {"strategy": "blue-green"}, clock), clock)
    assert d.status == Deployment.Status.SUCCEEDED
    incident = services.incident_declare(title="checkout errors", severity=policies["P1"])
    services.incident_add_environment(incident=incident, environment=stage.env)
    services.incident_link_deployment(incident=incident, deployment=d, relation="suspect")
    admin = make_user("boss", "admin")
    admin.is_superuser = True
    admin.save()
    web = Client()
    web.force_login(admin)
    page = web.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert f"#{d.pk} 1.1.0 -&gt; noodle/production" in page
    resp = web.post(
        "/admin/incidents/incident/",
        {"action": "rollback_caused", "_selected_action": [incident.pk]},
        follow=True,
    )
    assert "rollback #" in resp.content.decode()
    rollback = Deployment.objects.get(kind="rollback")
    assert rollback.release == stage.v1 and rollback.rollback_of_id == d.pk
    links = dict(incident.deployment_links.values_list("deployment_id", "relation"))
    assert links == {d.pk: "caused", rollback.pk: "fixed"}
    assert drive(rollback, clock).status == Deployment.Status.SUCCEEDED


def test_admin_relation_edits_go_through_the_service(policies: Any, env: Environment) -> None:
    d = deployment(env, "1.4.0", T0 - timedelta(minutes=30))
    incident = services.incident_declare(title="errors", severity=policies["P2"])
    link = services.incident_link_deployment(incident=incident, deployment=d, relation="suspect")
    admin = make_user("boss", "admin")
    admin.is_superuser = True
    admin.save()
    web = Client()
    web.force_login(admin)
    empty = {
        f"{p}-{k}": "0"
        for p in ("role_assignments", "breaches", "timeline")
        for k in ("TOTAL_FORMS", "INITIAL_FORMS")
    }
    resp = web.post(
        f"/admin/incidents/incident/{incident.pk}/change/",
        {
            "title": "errors",
            "description": "",
            "impact_summary": "",
            **empty,
            "deployment_links-TOTAL_FORMS": "1",
            "deployment_links-INITIAL_FORMS": "1",
            "deployment_links-0-id": str(link.pk),
            "deployment_links-0-incident": str(incident.pk),
            "deployment_links-0-relation": "dismissed",
            "deployment_links-0-note": "config-only change",
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:1500]
    link.refresh_from_db()
    assert (link.relation, link.note) == ("dismissed", "config-only change")
    assert "marked dismissed (was suspect)" in incident.timeline.filter(kind="deployment").last().message  # type: ignore[union-attr]
