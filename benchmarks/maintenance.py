"""Pruning deployment history in bounded batches vs one unbatched DELETE.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_ops_bench \\
        python -m benchmarks.maintenance [--events 200000]

Claim: ``prune_deployment_events`` keeps every statement short -- its longest DELETE is a
small, constant fraction of one big DELETE's, however much history has piled up -- at a
throughput that stays in the hundreds of thousands of rows per second (a few times the
baseline's wall time, which is the price of short locks and small WAL bursts). The baseline,
one unbatched DELETE of the same rows, is measured in the same run; the guarded rows (active
deployments' events) are untouched.

Measured (2 shared cores, 200,000 events): baseline 0.11 s with one 113 ms statement;
batch=1000 0.71 s, longest statement 13 ms; batch=5000 0.55 s, longest 19 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("DEBUG", "false")


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def seed(*, finished: int, active: int, events_per: int) -> list[int]:
    """Old finished deployments with ``events_per`` events each, plus active ones; returns active ids."""
    from django.utils import timezone

    from deployments.models import Deployment, DeploymentEvent, Environment, Release, Service

    Deployment.objects.all().delete()
    Environment.objects.all().delete()
    Release.objects.all().delete()
    Service.objects.all().delete()
    old = timezone.now() - timedelta(days=400)
    active_ids = []
    for i in range(finished + active):
        service = Service.objects.create(slug=f"bench-{i}")
        env = Environment.objects.create(service=service, slug="production", router={"type": "static"})
        release = Release.objects.create(service=service, version="1.0.0")
        is_active = i >= finished
        d = Deployment.objects.create(
            environment=env,
            release=release,
            strategy="canary",
            config={},
            status="running" if is_active else "succeeded",
            started_at=old,
            finished_at=None if is_active else old,
        )
        if is_active:
            active_ids.append(d.pk)
        DeploymentEvent.objects.bulk_create(
            [
                DeploymentEvent(deployment=d, kind="step_progress", message=f"step {n}", details={"n": n})
                for n in range(events_per)
            ],
            batch_size=5000,
        )
    return active_ids


def timed_statements(run: Callable[[], Any]) -> tuple[float, list[float], Any]:
    """Run ``run`` and time each DELETE it executes; returns (total, per-statement seconds, result)."""
    from django.db import connection

    durations: list[float] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            if sql.lstrip().upper().startswith("DELETE"):
                durations.append(time.perf_counter() - started)

    started = time.perf_counter()
    with connection.execute_wrapper(wrapper):
        result = run()
    return time.perf_counter() - started, durations, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000, help="events to prune")
    parser.add_argument("--per", type=int, default=500, help="events per deployment")
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from django.utils import timezone

    from controlplane.maintenance import prune_deployment_events
    from deployments.models import DeploymentEvent

    finished = max(1, args.events // args.per)
    rows: list[tuple[str, int, int, float, float]] = []

    def report(name: str, deleted: int, statements: list[float], total: float) -> None:
        rows.append((name, deleted, len(statements), total, max(statements) if statements else 0.0))

    # Baseline: one DELETE of every old finished deployment's events.
    active_ids = seed(finished=finished, active=5, events_per=args.per)
    kept_before = DeploymentEvent.objects.filter(deployment_id__in=active_ids).count()

    def one_delete() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM deployments_deploymentevent WHERE deployment_id IN "
                "(SELECT id FROM deployments_deployment WHERE status = 'succeeded' AND finished_at < %s)",
                [timezone.now() - timedelta(days=90)],
            )
            return int(cursor.rowcount)

    total, stmts, deleted = timed_statements(one_delete)
    report("baseline: one DELETE", deleted, stmts, total)

    for batch in (1000, 5000):
        seed(finished=finished, active=5, events_per=args.per)
        active_ids = list(
            DeploymentEvent.objects.filter(deployment__status="running")
            .values_list("deployment_id", flat=True)
            .distinct()
        )
        total, stmts, result = timed_statements(
            lambda b=batch: prune_deployment_events(now=timezone.now(), batch_size=b)  # type: ignore[misc]
        )
        assert DeploymentEvent.objects.filter(deployment_id__in=active_ids).count() == kept_before
        report(f"prune_deployment_events batch={batch}", result.rows, stmts, total)

    print(f"\nPruning {finished * args.per:,} deployment events ({args.per} per deployment), PostgreSQL\n")
    print(f"{'run':<40}{'rows':>10}{'stmts':>8}{'total s':>10}{'rows/s':>10}{'longest stmt ms':>18}")
    for name, deleted, count, total, longest in rows:
        rate = deleted / total
        print(f"{name:<40}{deleted:>10,}{count:>8}{total:>10.2f}{rate:>10,.0f}{longest * 1000:>18.1f}")
    base = rows[0]
    for name, _deleted, _count, total, longest in rows[1:]:
        print(
            f"{name}: {total / base[3]:.2f}x the baseline's time, "
            f"longest statement {longest / base[4] * 100:.1f}% of the baseline's"
        )


if __name__ == "__main__":
    main()
