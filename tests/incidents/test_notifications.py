"""Notifications: wire formats on local HTTP servers, retries and backoff, real worker, broker outage."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import timedelta
from typing import Any

import kombu.pools
import pytest
from django.utils import timezone

from controlplane.celery import app
from incidents import notifications, services
from incidents.models import Incident, Notification
from tests.conftest import wait_for
from tests.incidents.conftest import Receiver, seed_policies

S = Incident.Status


def deliver_all(now: Any = None) -> list[Notification | None]:
    return [
        notifications.notification_deliver(notification_id=pk, now=now)
        for pk in Notification.objects.order_by("pk").values_list("pk", flat=True)
    ]


def by_path(receiver: Receiver, prefix: str) -> list[dict[str, Any]]:
    return [r for r in receiver.requests if r["path"].startswith(prefix)]


@pytest.mark.django_db
def test_slack_gets_text_and_blocks(policies: Any, channels: Receiver) -> None:
    services.incident_declare(title="Checkout down", severity=policies["P1"], impact_summary="No orders")
    Notification.objects.exclude(channel="slack").delete()
    deliver_all()
    (req,) = by_path(channels, "/slack/services/T000/B000/XXXX")
    assert req["headers"]["Content-Type"] == "application/json"
    body = req["json"]
    assert isinstance(body["text"], str) and "Checkout down" in body["text"]
    assert body["blocks"][0]["type"] == "section" and body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert {b["type"] for b in body["blocks"]} <= {"section", "context", "header", "divider"}
    assert all(len(f["text"]) <= 2000 for b in body["blocks"] for f in b.get("fields", []))
    assert Notification.objects.get().status == "delivered"


@pytest.mark.django_db
def test_pagerduty_triggers_acknowledges_and_resolves_with_one_dedup_key(
    policies: Any, channels: Receiver, settings: Any
) -> None:
    channels.default_status = 202
    channels.default_body = b'{"status":"success","message":"Event processed","dedup_key":"x"}'
    incident = services.incident_declare(title="DB failover", severity=policies["P1"])
    services.incident_assign_role(incident=incident, role="commander", user=_user("ic"))
    services.incident_transition(incident=incident, to=S.RESOLVED)
    Notification.objects.exclude(channel="pagerduty").delete()
    deliver_all()
    events = [r["json"] for r in by_path(channels, "/v2/enqueue")]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {f"controlplane-incident-{incident.pk}"}
    assert all(e["routing_key"] == settings.PAGERDUTY_ROUTING_KEY for e in events)
    trigger = events[0]["payload"]
    assert (
        trigger["severity"] in ("critical", "error", "warning", "info") and trigger["severity"] == "critical"
    )
    assert trigger["source"] and 0 < len(trigger["summary"]) <= 1024
    assert "payload" not in events[1] and "payload" not in events[2]
    # The key is added at send time and never stored.
    assert settings.PAGERDUTY_ROUTING_KEY not in json.dumps(list(Notification.objects.values("body")))


@pytest.mark.django_db
def test_generic_webhook_is_signed_with_hmac_sha256(policies: Any, channels: Receiver, settings: Any) -> None:
    services.incident_declare(title="Queue backlog", severity=policies["P2"])
    Notification.objects.exclude(channel="webhook").delete()
    deliver_all()
    (req,) = by_path(channels, "/hook")
    ts = req["headers"]["X-Controlplane-Timestamp"]
    expected = hmac.new(
        settings.INCIDENT_WEBHOOK_SECRET.encode(), ts.encode() + b"." + req["raw"], hashlib.sha256
    ).hexdigest()
    assert req["headers"]["X-Controlplane-Signature"] == f"sha256={expected}"
    assert req["json"]["event"] == "incident.declared" and req["json"]["severity"] == "error"


@pytest.mark.django_db
def test_429_and_5xx_are_retried_with_exponential_backoff_then_delivered(
    policies: Any, channels: Receiver
) -> None:
    incident = services.incident_declare(title="x", severity=policies["P3"])
    Notification.objects.exclude(channel="slack").delete()
    row = Notification.objects.get()
    channels.script = [500, 429, 503, 200]
    now = timezone.now()
    first = notifications.notification_deliver(notification_id=row.pk, now=now)
    assert first is not None and first.status == "pending" and first.attempts == 1
    assert first.next_attempt_at == now + timedelta(seconds=2)
    # Not due yet: the claim refuses.
    assert (
        notifications.notification_deliver(notification_id=row.pk, now=now + timedelta(seconds=0.5)) is None
    )
    second = notifications.notification_deliver(notification_id=row.pk, now=now + timedelta(seconds=2))
    assert second is not None and second.next_attempt_at == now + timedelta(seconds=2 + 4)
    third = notifications.notification_deliver(notification_id=row.pk, now=now + timedelta(seconds=6))
    assert third is not None and third.next_attempt_at == now + timedelta(seconds=6 + 8)
    done = notifications.notification_deliver(notification_id=row.pk, now=now + timedelta(seconds=14))
    assert done is not None and done.status == "delivered" and done.attempts == 4
    assert len(channels.requests) == 4
    assert incident.timeline.filter(kind="notification_sent").count() == 1


@pytest.mark.django_db
def test_retry_after_is_honoured(policies: Any, channels: Receiver) -> None:
    services.incident_declare(title="x", severity=policies["P3"])
    Notification.objects.exclude(channel="slack").delete()
    channels.script = [429]
    channels.extra_headers = {"Retry-After": "120"}
    now = timezone.now()
    row = notifications.notification_deliver(notification_id=Notification.objects.get().pk, now=now)
    assert row is not None and row.next_attempt_at == now + timedelta(seconds=120)


@pytest.mark.django_db
@pytest.mark.parametrize("code", [400, 403, 404, 410])
def test_other_4xx_give_up_at_once_and_say_so_on_the_timeline(
    policies: Any, channels: Receiver, code: int
) -> None:
    incident = services.incident_declare(title="x", severity=policies["P3"])
    Notification.objects.exclude(channel="slack").delete()
    channels.script = [code]
    row = notifications.notification_deliver(notification_id=Notification.objects.get().pk)
    assert row is not None and row.status == "failed" and row.attempts == 1 and row.last_status_code == code
    failed = incident.timeline.get(kind="notification_failed")
    assert failed.details["status_code"] == code
    assert (
        notifications.notification_deliver(notification_id=row.pk, now=timezone.now() + timedelta(days=1))
        is None
    )


@pytest.mark.django_db
def test_retries_stop_after_the_maximum(policies: Any, channels: Receiver, settings: Any) -> None:
    settings.NOTIFICATION_MAX_ATTEMPTS = 2
    services.incident_declare(title="x", severity=policies["P3"])
    Notification.objects.exclude(channel="slack").delete()
    channels.default_status = 503
    pk = Notification.objects.get().pk
    now = timezone.now()
    notifications.notification_deliver(notification_id=pk, now=now)
    row = notifications.notification_deliver(notification_id=pk, now=now + timedelta(minutes=1))
    assert row is not None and row.status == "failed" and row.attempts == 2


@pytest.mark.django_db
def test_unreachable_endpoint_is_retried(policies: Any, channels: Receiver, settings: Any) -> None:
    services.incident_declare(title="x", severity=policies["P3"])
    Notification.objects.exclude(channel="slack").delete()
    settings.SLACK_WEBHOOK_URL = "http://127.0.0.1:9/"  # discard port: connection refused
    row = notifications.notification_deliver(notification_id=Notification.objects.get().pk)
    assert row is not None and row.status == "pending" and row.last_status_code is None
    assert "ConnectionError" in row.last_error


@pytest.mark.django_db
def test_unconfigured_channels_are_skipped_and_other_apps_can_notify(
    settings: Any, channels: Receiver
) -> None:
    settings.PAGERDUTY_ROUTING_KEY = ""
    rows = services.notify(
        event="backup.failed",
        summary="Backup of main failed",
        severity="error",
        details={"policy": "main"},
        dedup_key="backup-main",
    )
    assert sorted(r.channel for r in rows) == ["slack", "webhook"]
    assert all(r.incident is None for r in rows)
    deliver_all()
    assert Notification.objects.filter(status="delivered").count() == 2


@pytest.mark.django_db
def test_api_output_never_contains_endpoints_or_keys(
    policies: Any, channels: Receiver, settings: Any, api: Any
) -> None:
    incident = services.incident_declare(title="x", severity=policies["P1"])
    client = api("admin")
    texts = [
        client.get(f"/api/v1/incidents/{incident.pk}/").content,
        client.get(f"/api/v1/incidents/{incident.pk}/timeline/").content,
        client.get("/api/v1/severity-policies/").content,
    ]
    for secret in (settings.PAGERDUTY_ROUTING_KEY, settings.INCIDENT_WEBHOOK_SECRET, "/slack/services/T000"):
        assert all(secret.encode() not in t for t in texts)


def _user(name: str) -> Any:
    from tests.conftest import make_user

    return make_user(name, "operator")


def _point_app_at(url: str) -> str:
    """Point this process's Celery producer at another broker; returns the previous URL."""
    conf: Any = app.conf
    old = str(conf.broker_write_url or conf.broker_url)
    os.environ["CELERY_BROKER_URL"] = url  # Celery reads the environment before its config
    conf.broker_url = conf.broker_write_url = conf.broker_read_url = url
    kombu.pools.reset()
    # Drop the cached pools so the next publish connects to ``url``.
    app._pool = None  # type: ignore[attr-defined]
    app.amqp._producer_pool = None  # type: ignore[attr-defined]
    return old


@pytest.mark.worker
def test_nothing_is_lost_when_redis_is_down_at_commit(
    celery_worker_factory: Any, private_redis: Any, receiver: Receiver, settings: Any, monkeypatch: Any
) -> None:
    seed_policies()
    env = {
        "SLACK_WEBHOOK_URL": receiver.url("/slack"),
        "INCIDENT_WEBHOOK_URL": receiver.url("/hook"),
        "INCIDENT_WEBHOOK_SECRET": "k",
        "PAGERDUTY_ROUTING_KEY": "",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
        setattr(settings, k, v)
    old = _point_app_at(private_redis.url)
    try:
        private_redis.stop()
        incident = services.incident_declare(title="Broker down", severity=policies_p1())
        rows = Notification.objects.filter(incident=incident)
        assert rows.count() == 2 and set(rows.values_list("status", flat=True)) == {"pending"}

        private_redis.start()
        _point_app_at(private_redis.url)
        worker = celery_worker_factory(broker_url=private_redis.url)
        # Before the grace period the sweeper leaves rows to their own messages.
        assert notifications.notifications_sweep() == 0
        assert notifications.notifications_sweep(now=timezone.now() + timedelta(seconds=31)) == 2
        try:
            wait_for(lambda: rows.filter(status="delivered").count() == 2, timeout=20)
        except AssertionError:
            raise AssertionError(str(list(rows.values())) + worker.output()) from None
        assert sorted(r["path"] for r in receiver.requests) == ["/hook", "/slack"], worker.output()

        # With the broker up, the commit hook alone delivers.
        second = services.incident_declare(title="Broker back", severity=policies_p1())
        wait_for(
            lambda: Notification.objects.filter(incident=second, status="delivered").count() == 2, timeout=60
        )
        assert incident.timeline.filter(kind="notification_sent").count() == 2
    finally:
        _point_app_at(old)


def policies_p1() -> Any:
    from incidents.models import SeverityPolicy

    return SeverityPolicy.objects.get(code="P1")
