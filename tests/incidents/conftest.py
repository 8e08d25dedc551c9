"""Fixtures for the incidents tests: seeded policies, local HTTP receivers, Alertmanager payloads."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from incidents.models import SeverityPolicy
from tests.deployments.conftest import clock, stage_factory  # noqa: F401  (shared fixtures)


def seed_policies() -> dict[str, SeverityPolicy]:
    """The data migration's seed (transactional tests flush it, so re-apply it)."""
    from django.apps import apps

    for name in ("0002_seed_severity_policies", "0003_deployments_tie_in"):
        importlib.import_module(f"incidents.migrations.{name}").seed(apps, None)
    return {p.code: p for p in SeverityPolicy.objects.all()}


@pytest.fixture
def policies(db: Any) -> dict[str, SeverityPolicy]:
    return seed_policies()


class Receiver:
    """A loopback HTTP server recording every request; answers from a script of status codes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []
        self.default_status = 200
        self.default_body = b"ok"
        self.extra_headers: dict[str, str] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "raw": raw,
                        "json": json.loads(raw) if raw else None,
                    }
                )
                code = receiver.script.pop(0) if receiver.script else receiver.default_status
                self.send_response(code)
                for k, v in receiver.extra_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(receiver.default_body)))
                self.end_headers()
                self.wfile.write(receiver.default_body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def channels(settings: Any, receiver: Receiver) -> Receiver:
    """All three channels pointed at one local receiver (distinct paths)."""
    settings.SLACK_WEBHOOK_URL = receiver.url("/slack/services/T000/B000/XXXX")
    settings.PAGERDUTY_EVENTS_URL = receiver.url("/v2/enqueue")
    settings.PAGERDUTY_ROUTING_KEY = "R0123456789abcdef0123456789abcd"
    settings.INCIDENT_WEBHOOK_URL = receiver.url("/hook")
    settings.INCIDENT_WEBHOOK_SECRET = "s3cret-hmac-key"
    settings.NOTIFICATION_BACKOFF_SECONDS = 2.0
    return receiver


def am_alert(
    fp: str, *, status: str = "firing", severity: str = "critical", name: str = "HighErrorRate", **labels: str
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, "instance": f"web-{fp}:9100", **labels},
        "annotations": {"summary": f"{name} on web-{fp}", "description": "error rate above 1%"},
        "startsAt": "2026-12-04T15:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-04T15:10:00.5Z",
        "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
        "fingerprint": fp,
    }


def am_payload(
    alerts: list[dict[str, Any]],
    *,
    group_key: str = '{}/{severity="critical"}:{alertname="HighErrorRate"}',
    status: str | None = None,
) -> dict[str, Any]:
    """A version 4 webhook body exactly as Alertmanager sends it."""
    first = alerts[0]["labels"]
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status or ("firing" if any(a["status"] == "firing" for a in alerts) else "resolved"),
        "receiver": "controlplane",
        "groupLabels": {"alertname": first["alertname"]},
        "commonLabels": {"alertname": first["alertname"], "severity": first["severity"]},
        "commonAnnotations": {"summary": "Error rate above 1%"},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": alerts,
    }


@pytest.fixture
def am_token(settings: Any) -> str:
    settings.ALERTMANAGER_TOKEN = "am-integration-token-123"
    return settings.ALERTMANAGER_TOKEN


@pytest.fixture
def post_alerts(am_token: str) -> Callable[[dict[str, Any]], Any]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {am_token}")

    def post(payload: Any) -> Any:
        return client.post("/api/v1/integrations/alertmanager/", payload, format="json")

    return post
