"""/metrics readers, beat tasks and the operators' admin."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.celery import app
from controlplane.schedule import BEAT_SCHEDULE
from incidents import services, tasks
from incidents.models import DeadlineBreach, Incident, IncidentRoleAssignment
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_metrics_expose_open_incidents_breaches_and_time_to_phase(policies: Any) -> None:
    t0 = timezone.now() - timedelta(hours=2)
    services.incident_declare(title="open", severity=policies["P1"])
    done = services.incident_declare(title="done", severity=policies["P2"], now=t0)
    services.incident_transition(incident=done, to="resolved", now=t0 + timedelta(minutes=45))
    services.deadlines_check(now=t0 + timedelta(minutes=50))
    text = Client().get("/metrics").content.decode()
    assert 'controlplane_incidents_open{severity="P1"} 1.0' in text
    assert 'controlplane_incidents_open{severity="P2"} 0.0' in text
    assert 'controlplane_incident_deadline_breaches_total{phase="mitigate",severity="P2"} 1.0' in text
    assert (
        'controlplane_incident_time_to_phase_seconds_bucket{le="1800.0",phase="resolve",severity="P2"} 0.0'
        in text
    )
    assert (
        'controlplane_incident_time_to_phase_seconds_bucket{le="3600.0",phase="resolve",severity="P2"} 1.0'
        in text
    )
    assert 'controlplane_incident_time_to_phase_seconds_sum{phase="resolve",severity="P2"} 2700.0' in text
    assert "controlplane_metrics_scrape_errors 0.0" in text


def test_beat_runs_the_incident_tasks_with_expiries() -> None:
    app.loader.import_default_modules()
    for name in (
        "incidents-check-deadlines",
        "incidents-sweep-notifications",
        "incidents-remind-action-items",
    ):
        entry = BEAT_SCHEDULE[name]
        assert entry["task"] in app.tasks and entry["options"]["expire_seconds"] < entry["schedule"]


def test_deadline_task_records_a_breach_once(policies: Any) -> None:
    services.incident_declare(title="x", severity=policies["P1"], now=timezone.now() - timedelta(minutes=6))
    assert tasks.check_deadlines() == 1
    assert tasks.check_deadlines() == 0
    assert DeadlineBreach.objects.get().phase == "acknowledge"


def _admin_client() -> tuple[Client, Any]:
    user = make_user("boss", "admin")
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client, user


def test_admin_shows_badges_and_countdowns_and_the_timeline(policies: Any) -> None:
    incident = services.incident_declare(title="Payments down", severity=policies["P1"])
    services.incident_add_note(incident=incident, message="looking at the LB")
    client, _ = _admin_client()
    page = client.get("/admin/incidents/incident/").content.decode()
    assert "Payments down" in page and '<span class="cp-badge cp-badge--crit">P1</span>' in page
    assert "acknowledge in 0:04:" in page
    detail = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert "looking at the LB" in detail
    for path in ("severitypolicy", "notification", "postmortem", "actionitem", "alert"):
        assert client.get(f"/admin/incidents/{path}/").status_code == 200


def test_admin_actions_acknowledge_escalate_resolve(policies: Any) -> None:
    incident = services.incident_declare(title="x", severity=policies["P3"])
    client, user = _admin_client()
    url = "/admin/incidents/incident/"
    for act in ("acknowledge", "escalate", "resolve"):
        resp = client.post(url, {"action": act, "_selected_action": [incident.pk]})
        assert resp.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.severity.code == "P2"
    assert IncidentRoleAssignment.objects.get(incident=incident).user == user
    # An illegal move is reported, not raised.
    resp = client.post(url, {"action": "resolve", "_selected_action": [incident.pk]}, follow=True)
    assert "allowed: closed, investigating" in resp.content.decode()
    assert Incident.objects.get(pk=incident.pk).status == "resolved"


def test_admin_edits_go_to_the_timeline(policies: Any) -> None:
    incident = services.incident_declare(title="Payments down", severity=policies["P1"])
    client, _ = _admin_client()
    resp = client.post(
        f"/admin/incidents/incident/{incident.pk}/change/",
        {
            "title": "Payments down in EU",
            "description": "",
            "impact_summary": "EU card payments fail",
            **{
                f"{p}-{k}": v
                for p in ("role_assignments", "breaches", "deployment_links", "timeline")
                for k, v in (("TOTAL_FORMS", "0"), ("INITIAL_FORMS", "0"))
            },
        },
    )
    assert resp.status_code == 302, resp.content.decode()[:2000]
    incident.refresh_from_db()
    assert incident.title == "Payments down in EU"
    update = incident.timeline.get(kind="update")
    assert update.details["changes"]["impact_summary"] == ["", "EU card payments fail"]
