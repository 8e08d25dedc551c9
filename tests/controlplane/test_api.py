"""The API's contract: auth, roles, one error format, throttling, pagination, schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from controlplane.api.throttling import MutationRateThrottle, UserRateThrottle
from controlplane.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_unknown_token_is_401_in_the_error_format() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer cp_deadbeef_not-a-real-key")
    response = client.get("/api/v1/audit-log/")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "authentication_failed"
    assert "token" in body["message"].lower()
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_missing_credentials_is_401() -> None:
    response = APIClient().get("/api/v1/audit-log/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_insufficient_role_is_403(api: Any) -> None:
    response = api("operator").get("/api/v1/audit-log/")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_admin_reads_audit_log_and_sees_its_own_token_creation(api: Any) -> None:
    client = api("admin", username="alice")
    response = client.get("/api/v1/audit-log/", {"action": "api_token.create"})
    assert response.status_code == 200
    body = response.json()
    assert body["count"] >= 1
    assert any(e["changes"].get("user") == "alice" for e in body["results"])


def test_malformed_json_is_400_naming_the_parse_error(api: Any) -> None:
    client = api("admin")
    response = client.post("/api/v1/tokens/", data="{not json", content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parse_error"
    assert "JSON" in body["message"]


def test_method_not_allowed_is_405_not_500(api: Any) -> None:
    response = api("admin").post("/api/v1/audit-log/", {"action": "x"}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_throttled_request_is_429_with_retry_after(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min", "mutation": "100/min"})
    client = api("admin")
    codes = [client.get("/api/v1/audit-log/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get("/api/v1/audit-log/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"


def test_default_rate_is_100_per_minute() -> None:
    assert UserRateThrottle().get_rate() == "100/min"
    assert MutationRateThrottle().get_rate() == "60/min"


def test_list_is_paginated_with_bounded_page_size(api: Any) -> None:
    client = api("admin")
    AuditEntry.objects.bulk_create(
        [AuditEntry(actor_repr="system", action=f"test.{i}", source="worker") for i in range(7)]
    )
    response = client.get("/api/v1/audit-log/", {"page_size": 3})
    body = response.json()
    assert len(body["results"]) == 3
    assert body["count"] >= 7
    assert body["next"] is not None


def test_filtering_by_action(api: Any) -> None:
    AuditEntry.objects.create(actor_repr="system", action="deploy.start", source="worker")
    body = api("admin").get("/api/v1/audit-log/", {"action": "deploy.start"}).json()
    assert [e["action"] for e in body["results"]] == ["deploy.start"]


def test_openapi_schema_and_swagger_ui_are_served(api: Any) -> None:
    client = api("viewer")
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/audit-log/" in spec["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_create_token_prints_a_working_key_as_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("create_token", "robot", "--role", "viewer")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/audit-log/").status_code == 403  # authenticated, but a viewer
    call_command("create_token", "robot", "--role", "admin")
    key2 = capsys.readouterr().out.strip().splitlines()[-1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key2}")
    assert client.get("/api/v1/audit-log/").status_code == 200


def test_revoked_and_expired_tokens_are_refused(db: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from controlplane.tokens import token_create, token_revoke
    from tests.conftest import make_user

    user = make_user("bob", "admin")
    token, key = token_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/audit-log/").status_code == 200
    token_revoke(token=token)
    assert client.get("/api/v1/audit-log/").status_code == 401
    token2, key2 = token_create(user=user)
    token2.expires_at = timezone.now() - timedelta(seconds=1)
    token2.save(update_fields=["expires_at"])
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key2}")
    assert client.get("/api/v1/audit-log/").status_code == 401


def test_tokens_are_stored_hashed(db: Any) -> None:
    from controlplane.models import ApiToken
    from controlplane.tokens import token_create
    from tests.conftest import make_user

    _, key = token_create(user=make_user("carol", "viewer"))
    row = ApiToken.objects.get()
    assert key not in (row.key_hash, row.prefix)
    assert key.startswith(f"cp_{row.prefix}_")


def test_invalid_input_names_the_field_and_the_rule(api: Any) -> None:
    response = api("admin").post("/api/v1/tokens/", {"username": "nobody", "ttl_days": 0}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["details"]) == {"username", "ttl_days"}
    assert "greater than or equal to 1" in body["details"]["ttl_days"][0]


def test_token_api_shows_the_key_once_and_revokes(api: Any) -> None:
    admin = api("admin")
    make = admin.post("/api/v1/tokens/", {"username": admin.user.username, "name": "ci"}, format="json")
    assert make.status_code == 201
    key = make.json()["key"]
    assert key.startswith("cp_")
    token_id = make.json()["id"]
    assert admin.get(f"/api/v1/tokens/{token_id}/").json()["key"] is None
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert other.get("/api/v1/tokens/").status_code == 200
    assert admin.post(f"/api/v1/tokens/{token_id}/revoke/").status_code == 200
    assert other.get("/api/v1/tokens/").status_code == 401
