"""Every mutation through the API or the admin lands in the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from controlplane.models import AuditEntry
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_api_mutation_records_actor_ip_and_request_id(api: Any) -> None:
    client = api("admin", username="dana")
    response = client.post(
        "/api/v1/tokens/",
        {"username": "dana", "name": "deploy-bot"},
        format="json",
        HTTP_X_REQUEST_ID="req-123",
        REMOTE_ADDR="10.1.2.3",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-123"
    entry = AuditEntry.objects.get(request_id="req-123")
    assert entry.action == "api_token.create"
    assert entry.actor_repr == "dana"
    assert entry.source == "api"
    assert entry.source_ip == "10.1.2.3"
    assert entry.changes == {"user": "dana", "name": "deploy-bot"}


def _admin_client() -> Client:
    user = make_user("root", "admin")
    user.set_password("pw-for-tests-only")
    user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client


def test_admin_change_records_the_changed_fields() -> None:
    client = _admin_client()
    target = make_user("erin", "viewer")
    response = client.post(
        f"/admin/auth/user/{target.pk}/change/",
        {
            "username": "erin",
            "first_name": "Erin",
            "last_name": "",
            "email": "",
            "is_active": "on",
            "is_staff": "on",
            "groups": list(target.groups.values_list("pk", flat=True)),
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
        HTTP_X_REQUEST_ID="admin-req-1",
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(request_id="admin-req-1")
    assert entry.action == "user.update"
    assert entry.source == "admin"
    assert entry.actor_repr == "root"
    assert "first_name" in str(entry.changes)


def test_admin_bulk_action_is_audited() -> None:
    client = _admin_client()
    every = IntervalSchedule.objects.create(every=30, period="seconds")
    task = PeriodicTask.objects.create(name="t1", task="controlplane.pipeline_heartbeat", interval=every)
    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [task.pk]},
        HTTP_X_REQUEST_ID="admin-req-2",
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.enabled is False
    entry = AuditEntry.objects.get(request_id="admin-req-2")
    assert entry.action == "periodictask.admin_action.disable_tasks"
    assert entry.changes == {"ids": [str(task.pk)]}


def test_audit_log_is_read_only_in_the_admin() -> None:
    client = _admin_client()
    AuditEntry.objects.create(actor_repr="system", action="x", source="worker")
    entry = AuditEntry.objects.get(action="x")
    assert client.get("/admin/controlplane/auditentry/").status_code == 200
    page = client.get(f"/admin/controlplane/auditentry/{entry.pk}/change/")
    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert client.get("/admin/controlplane/auditentry/add/").status_code == 403


def test_viewer_sees_no_audit_log_in_the_admin() -> None:
    viewer = make_user("vic", "viewer")
    client = Client()
    client.force_login(viewer)
    assert client.get("/admin/controlplane/auditentry/").status_code == 403
    assert User.objects.filter(username="vic", is_staff=True).exists()
