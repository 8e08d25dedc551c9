"""The demo fleet: real instance processes behind a private nginx; `bad` is rolled back by analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from deployments.demo.fleet import DemoFleet, free_port
from deployments.models import Deployment, Release
from tests.deployments.conftest import Clock, drive
from tests.support.nginx import require_nginx

pytestmark = pytest.mark.django_db
S = Deployment.Status


def test_demo_fleet_serves_through_nginx_and_rolls_bad_back(tmp_path: Path, clock: Clock) -> None:
    require_nginx()
    fleet = DemoFleet(tmp_path, port=free_port())
    try:
        env = fleet.start()
        assert env.router["type"] == "nginx" and fleet.url
        assert env.instances.count() == 4
        assert {requests.get(f"{fleet.url}/", timeout=5).text.strip() for _ in range(10)} == {"1.0.0"}

        from deployments import services

        config = {
            "strategy": "canary",
            "steps": [{"percentage": 25, "duration": 10000, "metrics": {"error_rate": {"threshold": 0.05}}}],
        }
        bad = Release.objects.get(service=env.service, version="bad")
        d, _ = services.deployment_create(environment=env, release=bad, config=config, now=clock.now)
        d = drive(d, clock)
        assert d.status == S.ROLLED_BACK, d.status_reason
        assert d.time_to_recover is not None
        assert {requests.get(f"{fleet.url}/", timeout=5).text.strip() for _ in range(20)} == {"1.0.0"}
        pids = list((tmp_path / "demo" / "pids").glob("*.pid"))
        assert len(pids) == 4
    finally:
        fleet.stop()
    assert not list((tmp_path / "demo" / "pids").glob("*.pid"))  # every instance stopped


def test_demo_fleet_without_nginx_uses_the_static_router(tmp_path: Path, settings: Any) -> None:
    fleet = DemoFleet(tmp_path, port=free_port(), use_nginx=False)
    try:
        env = fleet.start()
        assert env.router["type"] == "static"
        versions = {
            i.name: requests.get(f"{i.address}/health", timeout=5).json()["version"]
            for i in env.instances.all()
        }
        assert versions == {"blue-1": "1.0.0", "blue-2": "1.0.0", "green-1": "1.0.0", "green-2": "1.0.0"}
        assert set(Release.objects.filter(service=env.service).values_list("version", flat=True)) == {
            "1.0.0",
            "1.1.0",
            "bad",
        }
    finally:
        fleet.stop()


def test_demo_fleet_command_sets_up_prints_and_stops(tmp_path: Path, settings: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.DATA_DIR = tmp_path
    out = StringIO()
    call_command("demo_fleet", "--once", "--no-nginx", stdout=out)
    assert "demo fleet: environment demo/production with 4 instances, static router" in out.getvalue()
    assert "blue-1" in out.getvalue() and "green-2" in out.getvalue()
    assert not list((tmp_path / "demo" / "pids").glob("*.pid"))
