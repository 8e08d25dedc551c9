"""Lifecycle hooks: a real local HTTP server for webhooks, real commands, the engine with a moved clock."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deployments.hooks import parse_hooks
from deployments.models import Deployment, DeploymentEvent
from deployments.providers.base import ProviderConfigError
from tests.deployments.conftest import Clock, create, drive, events

pytestmark = pytest.mark.django_db
S = Deployment.Status
E = DeploymentEvent.Kind
CANARY = {"strategy": "canary", "steps": [{"setWeight": 20}, {"pause": {"duration": 1000}}]}


class HookServer:
    """Records every POST (path, JSON body, headers); answers ``status[path]`` (default 200)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.status: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.calls.append((self.path, body, dict(self.headers.items())))
                code = outer.status.get(self.path, 200)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def hooks(self, path: str) -> list[str]:
        return [body["hook"] for p, body, _ in self.calls if p == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    server = HookServer()
    yield server
    server.stop()


def recorder(path: Path, **extra: Any) -> dict[str, Any]:
    """A real command hook appending its environment's facts to ``path``."""
    code = (
        "import json, os, sys\n"
        "keys = ['HOOK', 'DEPLOYMENT_ID', 'ENVIRONMENT', 'RELEASE_VERSION', 'STEP', 'WEIGHTS']\n"
        "open(sys.argv[1], 'a').write(json.dumps([os.environ.get(k) for k in keys]) + chr(10))\n"
        "sys.exit(int(os.environ.get('EXIT', '0')))\n"
    )
    return {"type": "command", "argv": [sys.executable, "-c", code, str(path)], "timeout": 10000, **extra}


def test_every_point_runs_in_order_with_the_deployment_facts(
    stage_factory: Any, clock: Clock, hook_server: HookServer, tmp_path: Path
) -> None:
    stage = stage_factory()
    log = tmp_path / "hooks.log"
    webhook = {"type": "webhook", "url": hook_server.url("/hook"), "timeout": 2000}
    stage.env.hooks = {
        "pre_rollout": [webhook],
        "before_traffic_shift": [webhook],
        "after_traffic_shift": [recorder(log), webhook],
        "post_rollout": [webhook],
        "rollback": [webhook],
    }
    stage.env.save()
    d = drive(create(stage, CANARY, clock), clock)

    assert d.status == S.SUCCEEDED, d.status_reason
    assert hook_server.hooks("/hook") == [
        "pre_rollout",
        "before_traffic_shift",
        "after_traffic_shift",  # 20%
        "before_traffic_shift",
        "after_traffic_shift",  # 100%
        "post_rollout",
    ]
    first = hook_server.calls[1][1]["deployment"]
    assert first == {
        "id": d.pk,
        "environment": "noodle/production",
        "service": "noodle",
        "release": "1.1.0",
        "step": first["step"],
        "weights": {"blue": 80, "green": 20},
    }
    assert d.plan[first["step"]]["kind"] == "set_weight"
    assert hook_server.calls[0][2]["Idempotency-Key"].startswith(f"{d.pk}:pre_rollout:")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(h, r, json.loads(w)) for h, _, _, r, _, w in lines] == [
        ("after_traffic_shift", "1.1.0", {"blue": 80, "green": 20}),
        ("after_traffic_shift", "1.1.0", {"blue": 0, "green": 100}),
    ]
    assert lines[0][1] == str(d.pk) and lines[0][2] == "noodle/production"
    assert sum(1 for e in events(d) if e.message.startswith("hook ") and e.message.endswith(" ok")) == 8


def test_a_failing_pre_rollout_hook_is_retried_then_stops_the_rollout(
    stage_factory: Any, clock: Clock, hook_server: HookServer
) -> None:
    stage = stage_factory()
    hook_server.status["/gate"] = 503
    stage.env.hooks = {"pre_rollout": [{"type": "webhook", "url": hook_server.url("/gate"), "retries": 2}]}
    stage.env.save()
    d = drive(create(stage, CANARY, clock), clock)

    assert d.status == S.FAILED
    assert "hook pre_rollout[0] (webhook) failed after 3 attempt(s)" in d.status_reason
    assert "HTTP 503" in d.status_reason
    assert len(hook_server.calls) == 3
    assert all(not app.deploys for app in stage.apps.values())  # nothing was deployed
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}


def test_a_failing_traffic_hook_aborts_and_rollback_hooks_never_block(
    stage_factory: Any, clock: Clock, hook_server: HookServer, tmp_path: Path
) -> None:
    stage = stage_factory()
    hook_server.status["/rollback"] = 500
    log = tmp_path / "hooks.log"
    stage.env.hooks = {
        "after_traffic_shift": [recorder(log, env={"EXIT": "3"})],
        "rollback": [
            {"type": "webhook", "url": hook_server.url("/rollback"), "retries": 1},
            recorder(log),
        ],
    }
    stage.env.save()
    d = drive(create(stage, CANARY, clock), clock)

    assert d.status == S.FAILED
    assert "hook after_traffic_shift[0] (command) failed after 1 attempt(s)" in d.status_reason
    assert "exited with status 3" in d.status_reason
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}  # back on stable
    # The rollback webhook failed twice, was logged, and the next rollback hook still ran.
    assert hook_server.hooks("/rollback") == ["rollback", "rollback"]
    hooks_run = [json.loads(line)[0] for line in log.read_text().splitlines()]
    assert hooks_run == ["after_traffic_shift", "rollback"]
    assert any(
        e.kind == E.ERROR and "rollback[0] (webhook) failed after 2 attempt(s), not blocking" in e.message
        for e in events(d)
    )


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"pre_deploy": []}, "hooks.pre_deploy"),
        ({"pre_rollout": {"type": "webhook"}}, "hooks.pre_rollout"),
        ({"pre_rollout": [{"type": "ftp"}]}, "hooks.pre_rollout.0.type"),
        ({"rollback": [{"type": "command", "argv": "echo hi"}]}, "hooks.rollback.0.argv"),
        (
            {"post_rollout": [{"type": "webhook", "url": "http://x", "retries": 99}]},
            "hooks.post_rollout.0.retries",
        ),
    ],
)
def test_bad_hook_config_is_rejected_by_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ProviderConfigError) as exc:
        parse_hooks(config)
    assert exc.value.field == field


def test_the_api_accepts_hooks_and_rejects_bad_ones_with_400(api: Any) -> None:
    client = api("operator")
    assert client.post("/api/v1/services/", {"slug": "noodle", "name": "Noodle"}).status_code == 201
    base = {
        "service": "noodle",
        "router": {"type": "static"},
        "deployer": {"type": "command", "argv": ["/bin/true"]},
    }
    hooks = {
        "pre_rollout": [
            {"type": "webhook", "url": "https://ci.example.com/hook", "timeout": 5000, "retries": 2}
        ]
    }
    ok = client.post("/api/v1/environments/", {**base, "slug": "production", "hooks": hooks}, format="json")
    assert ok.status_code == 201, ok.json()
    assert ok.json()["hooks"] == hooks
    bad = client.post(
        "/api/v1/environments/", {**base, "slug": "staging", "hooks": {"pre_deploy": []}}, format="json"
    )
    assert bad.status_code == 400
    assert "hooks.pre_deploy" in bad.json()["details"]
    not_object = client.post("/api/v1/environments/", {**base, "slug": "qa", "hooks": []}, format="json")
    assert not_object.status_code == 400 and "hooks" in not_object.json()["details"]
