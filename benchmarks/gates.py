"""What the pre-deployment gate costs the engine, and what each evaluator costs.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_gates_bench python -m benchmarks.gates [--rounds 50]

1. ``engine.advance`` of a pending deployment that stays pending: with no checklist (baseline:
   the gate is one EXISTS query) and with the guide's 10-item pre checklist (7 manual items
   pending, the automatic ones cheap), in queries and milliseconds per call.
2. Each evaluator against real parts: rows in PostgreSQL, promtool as a subprocess, HTTP
   health probes of two loopback servers. Baseline: ``ci_passed`` (one attribute read).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.deployments_seed import setup_django


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    setup_django()

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from deployments import engine, evaluators
    from deployments.demo.instance_app import InstanceApp
    from deployments.models import (
        ChecklistItem,
        ChecklistTemplate,
        Deployment,
        Environment,
        Instance,
        Release,
        Service,
    )

    tag = uuid.uuid4().hex[:6]
    service = Service.objects.create(slug=f"bench-{tag}")
    apps = [InstanceApp().start(), InstanceApp().start()]
    rows: list[tuple[str, str, str]] = []
    deployments = {}
    for label in ("no checklist (starts)", "seed pre checklist (blocked)"):
        env = Environment.objects.create(
            service=service,
            slug=label.split(" (")[0].replace(" ", "-"),
            router={"type": "static"},
            deployer={"type": "webhook", "url": "{address}/deploy"},
            health_check={"path": "/health", "timeout": 2000},
        )
        release = Release.objects.get_or_create(service=service, version="1.0.0", ci_status="passed")[0]
        for i, app in enumerate(apps):
            Instance.objects.create(environment=env, name=f"i{i}", address=app.url, slot="")
        d = Deployment.objects.create(
            environment=env, release=release, strategy="rolling", config={"strategy": "rolling"}, plan=[]
        )
        if label.startswith("seed"):
            default = ChecklistTemplate.objects.get(environment=None, phase="pre")
            ChecklistItem.objects.bulk_create(
                ChecklistItem(
                    deployment=d,
                    phase="pre",
                    position=i.position,
                    title=i.title,
                    # the costly evaluators are measured below; here the gate's own overhead
                    evaluator="ci_passed" if i.evaluator else "",
                    required=i.required,
                )
                for i in default.items.all()
            )
        deployments[label] = d

    for label, d in deployments.items():

        def one(d: Deployment = d) -> None:
            with transaction.atomic():
                locked = (
                    Deployment.objects.select_for_update()
                    .select_related("environment", "release")
                    .get(pk=d.pk)
                )
                engine.advance(locked, now=timezone.now())
                transaction.set_rollback(True)  # keep it pending for the next round

        with CaptureQueriesContext(connection) as ctx:
            one()
        median, worst = timed(one, args.rounds)
        rows.append(
            (
                f"advance, pending, {label}",
                f"{len(ctx.captured_queries)} queries",
                f"{median:.2f} ms (max {worst:.2f})",
            )
        )

    d = deployments["no checklist (starts)"]
    d.refresh_from_db()
    now = timezone.now()
    for name in (
        "ci_passed",
        "no_open_incident",
        "backup_verified",
        "instances_healthy",
        "alert_rules_loaded",
    ):
        with CaptureQueriesContext(connection) as ctx:
            verdict = evaluators.evaluate(name, d, {}, now=now)
        rounds = max(3, args.rounds // (10 if name == "alert_rules_loaded" else 1))

        def call(name: str = name) -> None:
            evaluators.evaluate(name, d, {}, now=now)

        median, worst = timed(call, rounds)
        rows.append(
            (
                f"evaluator {name} ({'pass' if verdict.ok else 'fail'})",
                f"{len(ctx.captured_queries)} queries",
                f"{median:.2f} ms (max {worst:.2f})",
            )
        )
    for app in apps:
        app.stop()
    Deployment.objects.filter(environment__service=service).delete()
    Instance.objects.filter(environment__service=service).delete()
    Environment.objects.filter(service=service).delete()
    Release.objects.filter(service=service).delete()
    service.delete()

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'queries':>11}  time per call")
    for what, queries, ms in rows:
        print(f"{what:<{width}}  {queries:>11}  {ms}")


if __name__ == "__main__":
    main()
