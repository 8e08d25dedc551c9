"""The API contract of issue 3, as automation uses it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from controlplane.models import AuditEntry
from deployments.models import Deployment
from tests.deployments.test_strategy_config import SEED_BLUE_GREEN, SEED_CANARY, SEED_ROLLING

pytestmark = pytest.mark.django_db


@pytest.fixture
def noodle(api: Any) -> Any:
    """The contract's setup calls, verbatim."""
    client = api("operator", username="ci-bot")
    assert client.post("/api/v1/services/", {"slug": "noodle", "name": "Noodle"}).status_code == 201
    response = client.post(
        "/api/v1/environments/",
        {
            "service": "noodle",
            "slug": "production",
            "router": {"type": "static"},
            "deployer": {"type": "command", "argv": ["/bin/true", "{instance}"]},
            "health_check": {"path": "/health", "timeout": 5000},
            "metrics": {"type": "http_probe"},
        },
    )
    assert response.status_code == 201, response.json()
    for name, port, slot in (("web-1", 9001, "blue"), ("web-2", 9002, "green")):
        response = client.post(
            "/api/v1/instances/",
            {
                "environment": "noodle/production",
                "name": name,
                "address": f"http://127.0.0.1:{port}",
                "slot": slot,
            },
        )
        assert response.status_code == 201, response.json()
    for version in ("1.0.0", "1.1.0"):
        response = client.post(
            "/api/v1/releases/",
            {"service": "noodle", "version": version, "artifact": f"registry/noodle:{version}"},
        )
        assert response.status_code == 201, response.json()
    return client


def test_environment_is_addressed_as_service_slash_env(noodle: Any) -> None:
    response = noodle.get("/api/v1/environments/noodle/production/")
    assert response.status_code == 200
    body = response.json()
    assert body["ref"] == "noodle/production"
    assert [i["name"] for i in body["instances"]] == ["web-1", "web-2"]
    assert noodle.get("/api/v1/environments/noodle/staging/").status_code == 404
    patched = noodle.patch("/api/v1/environments/noodle/production/", {"frozen": True}, format="json")
    assert patched.status_code == 200 and patched.json()["frozen"] is True


@pytest.mark.parametrize(
    "block", [SEED_CANARY, SEED_BLUE_GREEN, SEED_ROLLING], ids=["canary", "blue-green", "rolling"]
)
def test_post_deployment_accepts_each_seed_block_verbatim(noodle: Any, block: dict[str, Any]) -> None:
    response = noodle.post(
        "/api/v1/deployments/",
        {"environment": "noodle/production", "release": "1.1.0", "deployment": block["deployment"]},
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "pending"
    assert body["strategy"] == block["deployment"]["strategy"]
    assert body["current_step"] == 0
    assert body["config"] == block["deployment"]
    assert body["events"][0]["message"].startswith("deployment of 1.1.0")
    assert body["events"][0]["actor_repr"] == "ci-bot"
    detail = noodle.get(f"/api/v1/deployments/{body['id']}/").json()
    assert {"status", "current_step", "strategy", "events"} <= set(detail)


def test_second_deployment_gets_409_naming_the_active_one(noodle: Any) -> None:
    payload = {
        "environment": "noodle/production",
        "release": "1.1.0",
        "deployment": SEED_CANARY["deployment"],
    }
    first = noodle.post("/api/v1/deployments/", payload).json()
    response = noodle.post("/api/v1/deployments/", payload)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "deployment_active"
    assert f"#{first['id']}" in body["message"]
    assert body["details"]["active_deployment"] == first["id"]


def test_database_constraint_allows_one_active_deployment_per_environment(noodle: Any) -> None:
    from django.db import IntegrityError, transaction

    first = Deployment.objects.get(
        pk=noodle.post(
            "/api/v1/deployments/",
            {
                "environment": "noodle/production",
                "release": "1.1.0",
                "deployment": SEED_ROLLING["deployment"],
            },
        ).json()["id"]
    )
    first.pk = None
    first.idempotency_key = ""
    with pytest.raises(IntegrityError), transaction.atomic():
        first.save()


def test_idempotency_key_returns_the_same_deployment(noodle: Any) -> None:
    payload = {
        "environment": "noodle/production",
        "release": "1.1.0",
        "deployment": SEED_ROLLING["deployment"],
    }
    first = noodle.post("/api/v1/deployments/", payload, HTTP_IDEMPOTENCY_KEY="ci-run-42")
    again = noodle.post("/api/v1/deployments/", payload, HTTP_IDEMPOTENCY_KEY="ci-run-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert Deployment.objects.count() == 1
    assert first.json()["idempotency_key"] == "ci-run-42"
    other = noodle.post(
        "/api/v1/deployments/", {**payload, "release": "1.0.0"}, HTTP_IDEMPOTENCY_KEY="ci-run-42"
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


def test_bad_strategy_config_is_400_naming_field_and_rule(noodle: Any) -> None:
    bad = {"strategy": "canary", "steps": [{"percentage": 10}, {"percentage": 250, "duration": 1000}]}
    response = noodle.post(
        "/api/v1/deployments/", {"environment": "noodle/production", "release": "1.1.0", "deployment": bad}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["details"] == {"deployment.steps[1].percentage": ["must be an integer from 0 to 100"]}
    assert body["message"].startswith("deployment.steps[1].percentage")


def test_unknown_release_environment_and_bad_provider_config_are_400(noodle: Any) -> None:
    block = SEED_ROLLING["deployment"]
    r = noodle.post(
        "/api/v1/deployments/", {"environment": "noodle/production", "release": "9.9", "deployment": block}
    )
    assert r.status_code == 400 and "release" in r.json()["details"]
    r = noodle.post(
        "/api/v1/deployments/", {"environment": "noodle/nope", "release": "1.1.0", "deployment": block}
    )
    assert r.status_code == 400 and "environment" in r.json()["details"]
    r = noodle.post(
        "/api/v1/environments/",
        {"service": "noodle", "slug": "staging", "router": {"type": "carrier-pigeon"}},
    )
    assert r.status_code == 400
    assert "router.type" in r.json()["details"]
    assert "carrier-pigeon" in r.json()["details"]["router.type"][0]


def test_frozen_environment_refuses_deployments_with_409(noodle: Any) -> None:
    noodle.patch("/api/v1/environments/noodle/production/", {"frozen": True, "freeze_reason": "P1 open"})
    r = noodle.post(
        "/api/v1/deployments/",
        {"environment": "noodle/production", "release": "1.1.0", "deployment": SEED_ROLLING["deployment"]},
    )
    assert r.status_code == 409
    assert "P1 open" in r.json()["message"]


def test_releases_are_immutable(noodle: Any) -> None:
    release = noodle.get("/api/v1/releases/", {"service": "noodle", "version": "1.1.0"}).json()["results"][0]
    assert noodle.patch(f"/api/v1/releases/{release['id']}/", {"artifact": "x"}).status_code == 405
    dup = noodle.post("/api/v1/releases/", {"service": "noodle", "version": "1.1.0"})
    assert dup.status_code == 400


def test_viewer_reads_but_cannot_deploy_or_act(noodle: Any, api: Any) -> None:
    created = noodle.post(
        "/api/v1/deployments/",
        {"environment": "noodle/production", "release": "1.1.0", "deployment": SEED_ROLLING["deployment"]},
    ).json()
    viewer = api("viewer")
    assert viewer.get(f"/api/v1/deployments/{created['id']}/").status_code == 200
    assert viewer.post(f"/api/v1/deployments/{created['id']}/abort/", {}).status_code == 403
    r = viewer.post(
        "/api/v1/deployments/",
        {"environment": "noodle/production", "release": "1.1.0", "deployment": SEED_ROLLING["deployment"]},
    )
    assert r.status_code == 403


def test_abort_of_pending_deployment_is_audited_and_in_the_timeline(noodle: Any) -> None:
    created = noodle.post(
        "/api/v1/deployments/",
        {"environment": "noodle/production", "release": "1.1.0", "deployment": SEED_ROLLING["deployment"]},
    ).json()
    r = noodle.post(f"/api/v1/deployments/{created['id']}/abort/", {"reason": "wrong build"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "aborted"
    assert any(
        e["kind"] == "operator" and "abort by ci-bot: wrong build" in e["message"] for e in body["events"]
    )
    entry = AuditEntry.objects.get(action="deployment.abort")
    assert entry.actor_repr == "ci-bot" and entry.changes["reason"] == "wrong build"
    again = noodle.post(f"/api/v1/deployments/{created['id']}/pause/", {})
    assert again.status_code == 409
    assert again.json()["code"] == "illegal_transition"


def test_list_filters_by_status_with_constant_queries(
    noodle: Any, django_assert_max_num_queries: Any, api: Any
) -> None:
    from deployments.models import Environment, Release

    env = Environment.objects.get(slug="production")
    release = Release.objects.get(version="1.1.0")
    Deployment.objects.bulk_create(
        [
            Deployment(environment=env, release=release, strategy="rolling", config={}, status="succeeded")
            for _ in range(30)
        ]
    )
    Deployment.objects.create(
        environment=env, release=release, strategy="canary", config={}, status="running"
    )
    with django_assert_max_num_queries(8):
        r = noodle.get("/api/v1/deployments/", {"status": "running"})
    assert r.status_code == 200
    assert r.json()["count"] == 1 and r.json()["results"][0]["status"] == "running"
    with django_assert_max_num_queries(8):
        r = noodle.get("/api/v1/deployments/", {"status": "succeeded", "page_size": 30})
    assert len(r.json()["results"]) == 30
    assert r.json()["results"][0]["environment"] == "noodle/production"


def test_openapi_schema_documents_the_endpoints_without_warnings(tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in (
        "/api/v1/deployments/{id}/promote-full/",
        "/api/v1/environments/{ref}/",
        "/api/v1/deployments/{id}/rollback/",
    ):
        assert path in text
    assert "Idempotency-Key" in text
