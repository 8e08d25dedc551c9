"""``cpctl`` against a live server, a real worker and real local instances."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane import cli
from controlplane.tokens import token_create
from deployments.tasks import reconcile_deployments
from tests.conftest import make_user
from tests.deployments.conftest import stage_factory  # noqa: F401

BLUE_GREEN = {
    "deployment": {
        "strategy": "blue-green",
        "environments": {
            "blue": {"url": "https://noodle-blue.example.com", "active": True},
            "green": {"url": "https://noodle-green.example.com", "active": False},
        },
    }
}


@pytest.fixture
def reconciler() -> Iterator[None]:
    """Stands in for beat: the real reconcile task, every 0.3 s, feeding the real worker."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.3):
            reconcile_deployments()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=5)


@pytest.fixture
def cpctl(live_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    _, key = token_create(user=make_user("pipeline", "operator"), name="ci")
    monkeypatch.setenv("CPCTL_TOKEN", key)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["--url", live_server.url, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.mark.worker
def test_deploy_and_watch_exits_zero_when_the_rollout_succeeds(
    cpctl: Any,
    stage_factory: Any,  # noqa: F811
    celery_worker_factory: Any,
    reconciler: None,
    tmp_path: Path,
) -> None:
    stage = stage_factory(blue=1, green=1)
    celery_worker_factory(concurrency=1)
    strategy = tmp_path / "blue-green.json"
    strategy.write_text(json.dumps(BLUE_GREEN))
    code, out, err = cpctl(
        "deploy",
        "noodle/production",
        "1.1.0",
        "--strategy-file",
        str(strategy),
        "--wait",
        "--timeout",
        "120s",
        "--interval",
        "0.5s",
    )
    assert code == 0, out + err
    assert "succeeded" in out
    deployment_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("id: "))
    code, out, _ = cpctl("status", deployment_id)
    assert code == 0 and "status: succeeded" in out
    stage.refresh()
    assert stage.env.current_release == stage.v2


def test_status_watch_times_out_with_exit_3_and_abort_ends_it(
    cpctl: Any,
    stage_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    stage_factory(blue=1, green=1)
    strategy = tmp_path / "canary.json"
    strategy.write_text(json.dumps({"strategy": "canary", "steps": [{"setWeight": 10}, {"pause": {}}]}))
    code, out, err = cpctl("deploy", "noodle/production", "1.1.0", "--strategy-file", str(strategy))
    assert code == 0, err
    deployment_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("id: "))
    # No worker runs here: the deployment cannot finish, so watching must time out.
    code, _, err = cpctl("status", deployment_id, "--watch", "--timeout", "1s", "--interval", "0.2s")
    assert code == 3
    assert "timed out" in err
    code, out, err = cpctl("abort", deployment_id, "--reason", "pipeline cancelled")
    assert code == 0, err
    code, out, _ = cpctl("status", deployment_id)
    assert code == 1
    assert "aborted" in out or "rolled_back" in out


def test_bad_input_and_unknown_ids_exit_2_with_the_api_message(
    cpctl: Any,
    stage_factory: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    stage_factory(blue=1, green=1)
    strategy = tmp_path / "bad.json"
    strategy.write_text(json.dumps({"strategy": "canary", "steps": [{"percentage": 150}]}))
    code, _, err = cpctl("deploy", "noodle/production", "1.1.0", "--strategy-file", str(strategy))
    assert code == 2
    assert "percentage" in err and "HTTP 400" in err
    code, _, err = cpctl("status", "999999")
    assert code == 2 and "HTTP 404" in err


def test_missing_token_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("CPCTL_TOKEN", raising=False)
    assert cli.main(["status", "1"]) == 2
    assert "CPCTL_TOKEN" in capsys.readouterr().err


def test_durations_parse() -> None:
    assert cli.parse_duration("30m") == 1800
    assert cli.parse_duration("1.5s") == 1.5
    assert cli.parse_duration("250ms") == 0.25
    with pytest.raises(Exception, match="invalid duration"):
        cli.parse_duration("soon")
