"""Fixtures for the deployments suites: an environment with real local instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from deployments import engine, services
from deployments.demo.instance_app import InstanceApp
from deployments.models import Deployment, Environment, Instance, Release, Service


@dataclasses.dataclass
class Stage:
    """A service with an environment whose instances are real HTTP servers on loopback."""

    service: Service
    env: Environment
    v1: Release
    v2: Release
    apps: dict[str, InstanceApp]

    def refresh(self) -> None:
        self.env.refresh_from_db()


def build_stage(
    *,
    blue: int = 2,
    green: int = 2,
    loose: int = 0,
    metrics: dict[str, Any] | None = None,
    health: dict[str, Any] | None = None,
    slug: str = "noodle",
) -> Stage:
    service = Service.objects.create(slug=slug, name=slug.title())
    env = Environment.objects.create(
        service=service,
        slug="production",
        router={"type": "static"},
        deployer={"type": "webhook", "url": "{address}/deploy"},
        health_check=health or {"path": "/health", "timeout": 2000, "healthyThreshold": 1, "interval": 1000},
        metrics=metrics or {"type": "http_probe", "requests": 20, "concurrency": 4},
        live_slot="blue" if blue else "",
    )
    v1 = Release.objects.create(service=service, version="1.0.0", artifact="registry/noodle:1.0.0")
    v2 = Release.objects.create(service=service, version="1.1.0", artifact="registry/noodle:1.1.0")
    env.current_release = v1
    env.save()
    apps: dict[str, InstanceApp] = {}
    layout = [("b", "blue", blue), ("g", "green", green), ("n", "", loose)]
    for prefix, slot, count in layout:
        for i in range(count):
            app = InstanceApp(version="1.0.0", slot=slot).start()
            name = f"{prefix}{i + 1}"
            apps[name] = app
            Instance.objects.create(environment=env, name=name, address=app.url, slot=slot, release=v1)
    return Stage(service=service, env=env, v1=v1, v2=v2, apps=apps)


@pytest.fixture
def stage_factory(db: Any) -> Iterator[Callable[..., Stage]]:
    stages: list[Stage] = []

    def factory(**kwargs: Any) -> Stage:
        stage = build_stage(**kwargs)
        stages.append(stage)
        return stage

    yield factory
    for stage in stages:
        for app in stage.apps.values():
            app.stop()


class Clock:
    """The engine's clock, moved by tests instead of waited for."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def drive(deployment: Deployment, clock: Clock, *, max_rounds: int = 200, tick: float = 1.0) -> Deployment:
    """Run the engine like the reconciler would: advance, then jump the clock to next_check_at."""
    for _ in range(max_rounds):
        engine.run(deployment.pk, now=clock)
        deployment.refresh_from_db()
        if deployment.status not in (Deployment.Status.PENDING, Deployment.Status.RUNNING):
            return deployment
        if deployment.next_check_at and deployment.next_check_at > clock.now:
            clock.now = deployment.next_check_at
        else:
            clock.advance(seconds=tick)
    raise AssertionError(f"deployment did not settle: {deployment.status} at step {deployment.current_step}")


def create(stage: Stage, config: dict[str, Any], clock: Clock, **kwargs: Any) -> Deployment:
    deployment, _ = services.deployment_create(
        environment=stage.env, release=kwargs.pop("release", stage.v2), config=config, now=clock.now, **kwargs
    )
    return deployment


def events(deployment: Deployment, kind: str | None = None) -> list[Any]:
    qs = deployment.events.order_by("id")
    if kind:
        qs = qs.filter(kind=kind)
    return list(qs)
