"""Roles are enforced on every API endpoint: anonymous 401, viewers never mutate."""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# Endpoints that authenticate by their own scheme (e.g. an integration token).
OWN_AUTH = {"/api/v1/integrations/alertmanager/"}


def _endpoints(client: APIClient) -> list[tuple[str, str]]:
    spec = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    out = []
    for path, ops in spec["paths"].items():
        # Environments are addressed as "service/env"; every other parameter takes "1".
        concrete = re.sub(r"\{ref\}", "svc/env", path)
        concrete = re.sub(r"\{[^}]+\}", "1", concrete)
        for method in ops:
            if method in ("get", "post", "put", "patch", "delete"):
                out.append((method, concrete if path not in OWN_AUTH else path))
    return out


def test_every_endpoint_refuses_anonymous_requests(api: Any) -> None:
    endpoints = _endpoints(api("viewer"))
    assert endpoints, "the schema lists no endpoints"
    anonymous = APIClient()
    for method, path in endpoints:
        if path in OWN_AUTH:
            continue
        response = getattr(anonymous, method)(path, {}, format="json")
        assert response.status_code == 401, (method, path, response.status_code)


def test_viewers_cannot_mutate_anything(api: Any) -> None:
    viewer = api("viewer")
    for method, path in _endpoints(viewer):
        if method == "get" or path in OWN_AUTH:
            continue
        response = getattr(viewer, method)(path, {}, format="json")
        assert response.status_code == 403, (method, path, response.status_code)
