"""Seed a benchmark database with N running canary deployments (one per environment).

Shared by ``benchmarks.rollout_engine`` and ``benchmarks.deployments_list``. Needs
``DATABASE_URL`` pointing at a scratch database (it is migrated and the deployments
tables are emptied).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")


def setup_django() -> None:
    import django

    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a scratch PostgreSQL database, e.g. .../cp_engine_bench")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


PLAN = [
    {"kind": "set_weight", "weight": 10, "title": "Shift 10% of traffic to the canary"},
    {"kind": "pause", "duration_ms": 600_000, "reason": "", "title": "Pause 600s"},
    {"kind": "set_weight", "weight": 100, "title": "Shift 100% of traffic to the canary"},
    {"kind": "finalize", "live_slot": "green", "scale_down_delay_ms": None, "title": "Finalize"},
]
CONFIG = {"strategy": "canary", "steps": [{"setWeight": 10}, {"pause": {"duration": 600000}}]}


def seed(n: int, *, due_at: datetime) -> list[int]:
    """N environments (2 instances each, static router) with one running deployment each."""
    from django.db import connection

    from deployments.models import Deployment, Environment, Instance, Release, Service

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE deployments_measurement, deployments_deploymentevent, deployments_deployment, "
            "deployments_instance, deployments_environment, deployments_release, deployments_service CASCADE"
        )
    service = Service.objects.create(slug="bench", name="Bench")
    v1 = Release.objects.create(service=service, version="1.0.0")
    v2 = Release.objects.create(service=service, version="1.1.0")
    envs = Environment.objects.bulk_create(
        [
            Environment(
                service=service,
                slug=f"env-{i}",
                router={"type": "static"},
                deployer={"type": "command", "argv": ["/bin/true"]},
                live_slot="blue",
                current_release=v1,
                traffic={"weights": {"blue": 100, "green": 0}, "drained": []},
            )
            for i in range(n)
        ],
        batch_size=2000,
    )
    Instance.objects.bulk_create(
        [
            Instance(
                environment=e, name=f"{slot}-1", address=f"http://10.0.0.{k}:8000", slot=slot, release=v1
            )
            for e in envs
            for k, slot in enumerate(("blue", "green"), start=1)
        ],
        batch_size=4000,
    )
    created = Deployment.objects.bulk_create(
        [
            Deployment(
                environment=e,
                release=v2,
                previous_release=v1,
                strategy="canary",
                config=CONFIG,
                plan=PLAN,
                stable_slot="blue",
                target_slot="green",
                status=Deployment.Status.RUNNING,
                started_at=due_at - timedelta(minutes=1),
                next_check_at=due_at,
                reason="benchmark",
            )
            for e in envs
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return [d.pk for d in created]
