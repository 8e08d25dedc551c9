"""Deployers against real subprocesses and a real local deploy agent."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.demo.instance_app import InstanceApp
from deployments.providers.base import InstanceRef, ProviderConfigError, ProviderError, ReleaseRef
from deployments.providers.deployers import CommandDeployer, WebhookDeployer, build_deployer
from tests.conftest import free_port, wait_for

INSTANCE = InstanceRef("web-1", "http://127.0.0.1:9001", slot="green", version="1.0.0")
RELEASE = ReleaseRef(version="1.1.0", artifact="registry/noodle:1.1.0", git_sha="abc123")
FACTS = {"DEPLOYMENT_ID": "42", "ENVIRONMENT": "noodle/production"}

RECORD = """
import json, os, sys
with open(os.environ["OUT"], "w") as f:
    json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, f)
"""


def test_command_substitutes_argv_and_passes_facts_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    deployer = build_deployer(
        {
            "type": "command",
            "argv": [sys.executable, "-c", RECORD, "{instance}", "{address}", "{version}", "{artifact}",
                     "{slot}", "--sha={git_sha}", "; touch pwned", '{"json": true}', "$HOME"],
            "env": {"OUT": str(out)},
            "timeout": 20000,
        }
    )  # fmt: skip
    deployer.deploy(INSTANCE, RELEASE, facts=FACTS)
    seen = json.loads(out.read_text())
    assert seen["argv"] == [
        "web-1", "http://127.0.0.1:9001", "1.1.0", "registry/noodle:1.1.0", "green",
        "--sha=abc123", "; touch pwned", '{"json": true}', "$HOME",
    ]  # fmt: skip
    assert not (tmp_path / "pwned").exists()
    env = seen["env"]
    assert env["DEPLOYMENT_ID"] == "42" and env["ENVIRONMENT"] == "noodle/production"
    assert (
        env["RELEASE_VERSION"] == "1.1.0"
        and env["INSTANCE_NAME"] == "web-1"
        and env["INSTANCE_SLOT"] == "green"
    )
    assert env["PATH"] == os.environ["PATH"]
    # the control plane's own secrets are not handed to deploy scripts
    assert "DATABASE_URL" in os.environ and "DATABASE_URL" not in env
    assert (
        isinstance(deployer, CommandDeployer)
        and deployer.last_result
        and deployer.last_result.returncode == 0
    )


def test_command_nonzero_exit_raises_with_the_stderr_tail() -> None:
    script = (
        "import sys\n"
        "for n in range(5000): print('noise', n, file=sys.stderr)\n"
        "print('disk full', file=sys.stderr)\n"
        "sys.exit(3)"
    )
    deployer = build_deployer({"type": "command", "argv": [sys.executable, "-c", script]})
    with pytest.raises(ProviderError) as exc:
        deployer.deploy(INSTANCE, RELEASE, facts=FACTS)
    message = str(exc.value)
    assert message.startswith("deploy command exited with status 3: ...")
    assert message.endswith("disk full")
    assert len(message) < 2200  # a tail, not the whole output


def test_command_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The test's own script uses sh to start a grandchild quickly; the deployer never adds a shell.
    script = 'sleep 60 & echo $! > "$1"; wait'
    deployer = build_deployer(
        {"type": "command", "argv": ["sh", "-c", script, "sh", str(pidfile)], "timeout": 1000}
    )
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timed out after 1000 ms and was killed"):
        deployer.deploy(INSTANCE, RELEASE, facts=FACTS)
    assert time.monotonic() - started < 10
    child = int(pidfile.read_text())
    wait_for(lambda: not _alive(child), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of the (dead) command is reaped by init; a zombie counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_command_that_does_not_exist_is_a_provider_error() -> None:
    deployer = build_deployer({"type": "command", "argv": ["/nonexistent/deploy-tool", "{version}"]})
    with pytest.raises(ProviderError, match="could not start: /nonexistent/deploy-tool"):
        deployer.deploy(INSTANCE, RELEASE, facts=FACTS)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"type": "command"}, "argv"),
        ({"type": "command", "argv": "deploy.sh {version}"}, "argv"),
        ({"type": "command", "argv": []}, "argv"),
        ({"type": "command", "argv": ["deploy", 3]}, "argv.1"),
        ({"type": "command", "argv": ["deploy", "{secret}"]}, "argv.1"),
        ({"type": "command", "argv": [""]}, "argv.0"),
        ({"type": "command", "argv": ["x"], "timeout": "5m"}, "timeout"),
        ({"type": "command", "argv": ["x"], "env": {"lower": "x"}}, "env.lower"),
        ({"type": "command", "argv": ["x"], "env": {"A": 1}}, "env.A"),
        ({"type": "command", "argv": ["x"], "cwd": "relative/dir"}, "cwd"),
        ({"type": "command", "argv": ["x"], "inherit_env": "PATH"}, "inherit_env"),
        ({"type": "command", "argv": ["x"], "shell": True}, "shell"),
        ({"type": "webhook"}, "url"),
        ({"type": "webhook", "url": "ftp://agent/deploy"}, "url"),
        ({"type": "webhook", "url": "{address}/deploy/{token}"}, "url"),
        ({"type": "webhook", "url": "http://agent", "secret_env": "not a name"}, "secret_env"),
        ({"type": "ssh"}, "type"),
    ],
)
def test_invalid_deployer_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ProviderConfigError) as exc:
        build_deployer(config)
    assert exc.value.field == field


# -- webhook -----------------------------------------------------------------------------------


def test_webhook_posts_the_release_to_the_instance_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_AGENT_KEY", "s3cret")
    with InstanceApp(version="1.0.0") as agent:
        instance = InstanceRef("web-1", agent.url, slot="green")
        deployer = build_deployer(
            {"type": "webhook", "url": "{address}/deploy", "timeout": 5000, "secret_env": "DEPLOY_AGENT_KEY",
             "headers": {"X-Team": "noodle"}}
        )  # fmt: skip
        deployer.deploy(instance, RELEASE, facts=FACTS)
        assert agent.version == "1.1.0"
        request = agent.deploys[0]
    assert request["body"] == {
        "instance": {"name": "web-1", "address": agent.url, "slot": "green"},
        "release": {"version": "1.1.0", "artifact": "registry/noodle:1.1.0", "git_sha": "abc123"},
        "facts": FACTS,
    }
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["x-team"] == "noodle"
    assert headers["idempotency-key"] == "42:web-1:1.1.0"
    body = json.dumps(request["body"], sort_keys=True).encode()
    assert headers["x-signature-256"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


def test_webhook_non_2xx_is_refused() -> None:
    with InstanceApp(deploy_status=409) as agent:
        deployer = WebhookDeployer(url=f"{agent.url}/deploy")
        with pytest.raises(ProviderError, match="answered HTTP 409"):
            deployer.deploy(INSTANCE, RELEASE, facts=FACTS)
        assert agent.version == "1.0.0"


def test_webhook_unreachable_or_slow_agent_is_an_error() -> None:
    with pytest.raises(ProviderError, match="unreachable"):
        WebhookDeployer(url=f"http://127.0.0.1:{free_port()}/deploy").deploy(INSTANCE, RELEASE, facts=FACTS)
    with InstanceApp(latency_ms=2000) as slow:  # /deploy/slow is served by the app path: slow
        started = time.monotonic()
        with pytest.raises(ProviderError, match="timed out after 200 ms"):
            WebhookDeployer(url=f"{slow.url}/slow", timeout_ms=200).deploy(INSTANCE, RELEASE, facts=FACTS)
        assert time.monotonic() - started < 1.5


def test_webhook_missing_signing_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOY_AGENT_KEY", raising=False)
    deployer = build_deployer(
        {"type": "webhook", "url": "http://127.0.0.1:1/deploy", "secret_env": "DEPLOY_AGENT_KEY"}
    )
    with pytest.raises(ProviderError, match=r"\$DEPLOY_AGENT_KEY is not set"):
        deployer.deploy(INSTANCE, RELEASE, facts=FACTS)
