"""Starting a deployment from the admin: the API's checks, the service, operators only."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from controlplane.models import AuditEntry
from deployments.models import Deployment
from tests.conftest import make_user

CANARY = {"strategy": "canary", "steps": [{"setWeight": 20}, {"pause": {}}]}


def _form(stage: Any, config: Any = CANARY) -> dict[str, Any]:
    return {"environment": stage.env.pk, "release": stage.v2.pk, "config": json.dumps(config), "reason": "r"}


def test_operator_starts_a_canary_through_the_service(stage_factory: Any) -> None:
    stage = stage_factory(blue=1, green=1)
    client = Client()
    client.force_login(make_user("op", "operator"))
    response = client.post("/admin/deployments/deployment/add/", _form(stage))
    assert response.status_code == 302, response.content.decode()[:2000]
    d = Deployment.objects.get()
    assert (d.status, d.strategy, d.created_by.username, d.reason) == ("pending", "canary", "op", "r")  # type: ignore[union-attr]
    assert d.events.get().message.startswith("deployment of 1.1.0 (canary")
    assert AuditEntry.objects.filter(action="deployment.create", object_id=str(d.pk)).count() == 1

    again = client.post("/admin/deployments/deployment/add/", _form(stage))
    assert again.status_code == 200 and f"deployment #{d.pk} is still active" in again.content.decode()
    assert Deployment.objects.count() == 1


def test_bad_config_and_frozen_environment_are_form_errors(stage_factory: Any) -> None:
    stage = stage_factory(blue=1, green=1)
    client = Client()
    client.force_login(make_user("op", "operator"))
    bad = client.post(
        "/admin/deployments/deployment/add/", _form(stage, {"strategy": "canary", "steps": "x"})
    )
    assert bad.status_code == 200 and "errorlist" in bad.content.decode()
    stage.env.frozen = True
    stage.env.save()
    frozen = client.post("/admin/deployments/deployment/add/", _form(stage))
    assert frozen.status_code == 200 and "is frozen" in frozen.content.decode()
    assert not Deployment.objects.exists()


def test_viewers_cannot_start_deployments_or_declare_incidents(db: Any) -> None:
    client = Client()
    client.force_login(make_user("watcher", "viewer"))
    assert client.get("/admin/deployments/deployment/add/").status_code == 403
    assert client.get("/admin/incidents/incident/add/").status_code == 403
