"""Notification outbox: render per channel, enqueue in the caller's transaction, deliver with retries.

Channels and their wire formats:

- ``slack``: Slack incoming webhook, ``{"text", "blocks"}`` (text is the notification fallback).
- ``pagerduty``: Events API v2 (``POST /v2/enqueue``) with ``routing_key``, ``event_action``
  (trigger / acknowledge / resolve) and a stable ``dedup_key``; 202 means accepted.
- ``webhook``: our JSON body, signed: ``X-Controlplane-Signature: sha256=<hex>`` where the hex is
  HMAC-SHA256(secret, ``"<X-Controlplane-Timestamp>.<raw body>"``).

URLs and keys are read from settings (the environment) at send time and never stored in a row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from incidents.models import Incident, Notification, SeverityPolicy, TimelineEvent

log = logging.getLogger(__name__)

Channel = SeverityPolicy.Channel
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
SENDING_LEASE = timedelta(minutes=5)
# Enqueued rows are the worker's for this long before the sweeper re-enqueues them.
SWEEP_GRACE = timedelta(seconds=30)


def configured_channels() -> list[str]:
    """Channels whose endpoint (and key) are present in the environment."""
    out = []
    if settings.SLACK_WEBHOOK_URL:
        out.append(Channel.SLACK.value)
    if settings.PAGERDUTY_ROUTING_KEY and settings.PAGERDUTY_EVENTS_URL:
        out.append(Channel.PAGERDUTY.value)
    if settings.INCIDENT_WEBHOOK_URL and settings.INCIDENT_WEBHOOK_SECRET:
        out.append(Channel.WEBHOOK.value)
    return out


def render(
    *,
    channel: str,
    event: str,
    summary: str,
    severity: str,
    details: dict[str, Any],
    dedup_key: str,
    pagerduty_action: str,
    url: str,
    at: datetime,
) -> dict[str, Any]:
    """The request body for one channel, without credentials."""
    if channel == Channel.SLACK:
        icon = {"critical": ":red_circle:", "error": ":large_orange_circle:"}.get(severity, ":warning:")
        text = f"{icon} {summary}"
        fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(details.items())[:10]]
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary[:2900]}*"}},
        ]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        context = f"`{event}` · severity {severity}"
        if url:
            context += f" · <{url}|open>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
        return {"text": text[:3000], "blocks": blocks}
    if channel == Channel.PAGERDUTY:
        body: dict[str, Any] = {"event_action": pagerduty_action, "dedup_key": dedup_key[:255]}
        if pagerduty_action == "trigger":
            body["payload"] = {
                "summary": summary[:1024],
                "source": "controlplane",
                "severity": severity if severity in PAGERDUTY_SEVERITIES else "error",
                "timestamp": at.isoformat(),
                "component": str(details.get("component", ""))[:255] or None,
                "class": event,
                "custom_details": details,
            }
            body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
            body["client"] = "controlplane"
            if url:
                body["client_url"] = url
                body["links"] = [{"href": url, "text": "Incident"}]
        return body
    if channel == Channel.WEBHOOK:
        return {
            "event": event,
            "summary": summary,
            "severity": severity,
            "dedup_key": dedup_key,
            "details": details,
            "url": url,
            "occurred_at": at.isoformat(),
        }
    raise ValueError(f"unknown channel {channel!r}")


def notification_enqueue(
    *,
    channel: str,
    event: str,
    summary: str,
    severity: str = "warning",
    details: dict[str, Any] | None = None,
    dedup_key: str = "",
    pagerduty_action: str = "trigger",
    incident: Incident | None = None,
    url: str = "",
    now: datetime | None = None,
) -> Notification:
    """Write one outbox row in the current transaction; delivery starts after commit.

    ``severity`` is one of critical / error / warning / info.  Safe to call from any app.
    """
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    if pagerduty_action not in PAGERDUTY_ACTIONS:
        raise ValueError(f"unknown PagerDuty action {pagerduty_action!r}")
    now = now or timezone.now()
    body = render(
        channel=channel,
        event=event,
        summary=summary,
        severity=severity,
        details=details or {},
        dedup_key=dedup_key or f"controlplane-{event}",
        pagerduty_action=pagerduty_action,
        url=url,
        at=now,
    )
    row = Notification.objects.create(
        channel=channel, event=event, incident=incident, body=body, next_attempt_at=now, created_at=now
    )
    transaction.on_commit(lambda: enqueue_delivery(row.pk))
    return row


def notify(
    *,
    event: str,
    summary: str,
    severity: str = "warning",
    details: dict[str, Any] | None = None,
    channels: list[str] | None = None,
    dedup_key: str = "",
    pagerduty_action: str = "trigger",
    incident: Incident | None = None,
    url: str = "",
    now: datetime | None = None,
) -> list[Notification]:
    """Fan one message out to ``channels`` (default: every configured one) that are configured."""
    wanted = configured_channels() if channels is None else channels
    available = set(configured_channels())
    return [
        notification_enqueue(
            channel=channel,
            event=event,
            summary=summary,
            severity=severity,
            details=details,
            dedup_key=dedup_key,
            pagerduty_action=pagerduty_action,
            incident=incident,
            url=url,
            now=now,
        )
        for channel in wanted
        if channel in available
    ]


def enqueue_delivery(notification_id: int, *, countdown: float = 0) -> None:
    """Hand a row to Celery; a broker outage is logged, and the sweeper sends the row later."""
    from incidents.tasks import deliver_notification

    try:
        if countdown:
            deliver_notification.apply_async((notification_id,), countdown=countdown)
        else:
            deliver_notification.delay(notification_id)
    except Exception:  # the broker is down: the row stays pending for the sweeper
        log.warning("notification %s not enqueued; the sweeper will retry", notification_id, exc_info=True)


@dataclasses.dataclass
class SendResult:
    status_code: int | None
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


def send(channel: str, body: dict[str, Any]) -> SendResult:
    """One HTTP attempt; credentials are added here from settings."""
    headers = {"Content-Type": "application/json", "User-Agent": "controlplane-incidents/1"}
    if channel == Channel.SLACK:
        url, payload = settings.SLACK_WEBHOOK_URL, body
    elif channel == Channel.PAGERDUTY:
        url, payload = settings.PAGERDUTY_EVENTS_URL, {"routing_key": settings.PAGERDUTY_ROUTING_KEY, **body}
    elif channel == Channel.WEBHOOK:
        url, payload = settings.INCIDENT_WEBHOOK_URL, body
    else:
        return SendResult(None, f"unknown channel {channel}")
    if not url:
        return SendResult(None, f"{channel} is not configured")
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    if channel == Channel.WEBHOOK:
        ts = str(int(time.time()))
        headers["X-Controlplane-Timestamp"] = ts
        headers["X-Controlplane-Signature"] = "sha256=" + sign(settings.INCIDENT_WEBHOOK_SECRET, ts, raw)
    try:
        resp = requests.post(url, data=raw, headers=headers, timeout=settings.NOTIFICATION_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return SendResult(None, f"{type(exc).__name__}: {exc}"[:500])
    retry_after = None
    if resp.headers.get("Retry-After", "").isdigit():
        retry_after = float(resp.headers["Retry-After"])
    error = "" if 200 <= resp.status_code < 300 else resp.text[:500]
    return SendResult(resp.status_code, error, retry_after)


def sign(secret: str, timestamp: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Exponential: base * 2**(attempts-1), capped; a server's Retry-After wins when longer."""
    delay = min(
        settings.NOTIFICATION_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0),
        settings.NOTIFICATION_BACKOFF_MAX_SECONDS,
    )
    return max(delay, retry_after or 0)


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> Notification | None:
    """Claim a due row (conditional UPDATE), send once, record the outcome; None if not claimable."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        Q(status=Notification.Status.PENDING) | Q(status=Notification.Status.SENDING, locked_until__lt=now),
        pk=notification_id,
        next_attempt_at__lte=now + timedelta(seconds=1),  # a countdown may land a tick early
    ).update(status=Notification.Status.SENDING, attempts=F("attempts") + 1, locked_until=now + SENDING_LEASE)
    if claimed != 1:
        return None
    row = Notification.objects.select_related("incident").get(pk=notification_id)
    result = send(row.channel, row.body)
    row.last_status_code = result.status_code
    row.last_error = result.error
    row.locked_until = None
    fields = ["status", "last_status_code", "last_error", "locked_until", "next_attempt_at", "delivered_at"]
    retry_in: float | None = None
    if result.ok:
        row.status = Notification.Status.DELIVERED
        row.delivered_at = timezone.now()
    elif result.retryable and row.attempts < settings.NOTIFICATION_MAX_ATTEMPTS:
        retry_in = backoff(row.attempts, result.retry_after)
        row.status = Notification.Status.PENDING
        row.next_attempt_at = now + timedelta(seconds=retry_in)
    else:
        row.status = Notification.Status.FAILED
    with transaction.atomic():
        row.save(update_fields=fields)
        if row.incident_id and row.status in (Notification.Status.DELIVERED, Notification.Status.FAILED):
            from incidents.services import timeline_record

            delivered = row.status == Notification.Status.DELIVERED
            timeline_record(
                incident=row.incident,  # type: ignore[arg-type]
                kind=TimelineEvent.Kind.NOTIFICATION_SENT
                if delivered
                else TimelineEvent.Kind.NOTIFICATION_FAILED,
                message=f"{row.get_channel_display()} notification {row.event} "
                + ("sent" if delivered else f"failed after {row.attempts} attempt(s)"),
                details={"notification": row.pk, "status_code": result.status_code, "error": result.error},
            )
    if retry_in is not None:
        transaction.on_commit(lambda: enqueue_delivery(row.pk, countdown=retry_in))
    return row


def notifications_sweep(*, now: datetime | None = None) -> int:
    """Re-enqueue rows a lost message, a dead broker or a killed worker left behind."""
    now = now or timezone.now()
    ids = list(
        Notification.objects.filter(
            Q(status=Notification.Status.PENDING, next_attempt_at__lte=now - SWEEP_GRACE)
            | Q(status=Notification.Status.SENDING, locked_until__lt=now)
        ).values_list("pk", flat=True)[:1000]
    )
    for pk in ids:
        enqueue_delivery(pk)
    return len(ids)
