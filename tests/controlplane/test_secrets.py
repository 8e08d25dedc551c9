"""Configured secrets never appear in API responses, admin pages or log lines.

The secrets are really used in this test (notifications delivered to a local
receiver, a backup uploaded to the S3 server with the credentials), then every
GET endpoint, every admin list and change page and every log line is searched.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client

from backups.models import BackupPolicy
from incidents import notifications
from incidents.models import Notification
from tests.backups.conftest import bucket, moto, s3_policy, small_parts, source_db, source_env  # noqa: F401
from tests.backups.test_pipeline import run_now
from tests.conftest import make_user
from tests.incidents.conftest import Receiver, channels, policies, receiver  # noqa: F401

SECRET_KEY = "sentinel-secret-key-Zq8v1Lm0pR4tY7wE2uI9oA3sD6fG5hJ"
AWS_KEY_ID = "AKIASENTINEL0000KEY"
AWS_SECRET = "sentinel/aws/SECRET+access+KEY0000000000"


def _texts_from_api(client: Any) -> list[str]:
    spec = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    texts = []
    for path, ops in spec["paths"].items():
        if "get" not in ops or "{" in path:
            continue
        listing = client.get(path)
        texts.append(listing.content.decode() + str(listing.headers))
        body = listing.json() if listing.status_code == 200 else None
        results = body.get("results") if isinstance(body, dict) else body
        if isinstance(results, list):
            for detail_path in [p for p in spec["paths"] if p.startswith(path) and p.count("{") == 1]:
                for obj in results[:3]:
                    key = obj.get("id") or obj.get("slug") or obj.get("ref")
                    if key is not None and "get" in spec["paths"][detail_path]:
                        url = re.sub(r"\{[^}]+\}", str(key), detail_path)
                        texts.append(client.get(url).content.decode())
    return texts


def _texts_from_admin() -> list[str]:
    root = make_user("secret-auditor", "admin")
    root.is_superuser = True
    root.save()
    client = Client()
    client.force_login(root)
    texts = [client.get("/admin/").content.decode()]
    for model in admin.site._registry:
        meta = model._meta
        base = f"/admin/{meta.app_label}/{meta.model_name}/"
        texts.append(client.get(base).content.decode())
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            texts.append(client.get(f"{base}{obj.pk}/change/").content.decode())
    return texts


@pytest.mark.django_db
def test_configured_secrets_never_appear_in_api_admin_pages_or_logs(
    channels: Receiver,  # noqa: F811
    policies: Any,  # noqa: F811
    s3_policy: BackupPolicy,  # noqa: F811
    api: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.SECRET_KEY = SECRET_KEY
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    caplog.set_level(logging.DEBUG)
    secrets = {
        "SECRET_KEY": SECRET_KEY,
        "Slack webhook path": "T000/B000/XXXX",
        "PagerDuty routing key": settings.PAGERDUTY_ROUTING_KEY,
        "webhook HMAC secret": settings.INCIDENT_WEBHOOK_SECRET,
        "AWS access key id": AWS_KEY_ID,
        "AWS secret key": AWS_SECRET,
    }

    operator = api("operator")
    declared = operator.post("/api/v1/incidents/", {"title": "DB down", "severity": "P1"}, format="json")
    assert declared.status_code == 201, declared.content
    for pk in Notification.objects.values_list("pk", flat=True):
        notifications.notification_deliver(notification_id=pk)
    backup = run_now(s3_policy)
    assert backup.status == "succeeded", backup.error if hasattr(backup, "error") else backup
    # The secrets were really used: the receiver saw the routing key; S3 took the upload.
    assert any(settings.PAGERDUTY_ROUTING_KEY in r["raw"].decode() for r in channels.requests)

    texts = [declared.content.decode()]
    texts += _texts_from_api(api("admin"))
    texts += _texts_from_admin()
    texts.append(caplog.text)
    assert len(texts) > 40, "expected many pages and responses to be searched"
    for name, value in secrets.items():
        leaks = [t[max(0, t.find(value) - 80) : t.find(value) + 80] for t in texts if value in t]
        assert not leaks, f"{name} leaked: {leaks[:2]}"
