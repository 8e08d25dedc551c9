"""10,000 running deployments: one reconcile tick, queries per advance, worker throughput and RSS.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_engine_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/2 python -m benchmarks.rollout_engine [--n 10000]

1. Reconcile tick: ``reconcile_deployments()`` claims every due deployment in one UPDATE and
   enqueues them in chunks of 100. Baseline: the bare ``SELECT id ... WHERE due`` it is built on.
2. Queries per advance: ``engine.run()`` of one deployment through a traffic step into a
   timed pause (static router), counted for 1 and for many deployments (must not grow).
   Baseline: the least any advance must do, lock the row and update it, in one transaction.
3. A real ``celery worker`` (prefork, 2 processes) and ``celery beat`` drain the tick; we time
   it and sample the resident memory of both process trees (goal: < 1 GB together).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.deployments_seed import ROOT, seed, setup_django


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, from /proc."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        pids += [int(c) for c in children]
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    os.environ["CELERY_TASK_DEFAULT_QUEUE"] = queue
    setup_django()

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from controlplane.celery import app
    from deployments import engine
    from deployments.models import Deployment
    from deployments.tasks import reconcile_deployments

    now = timezone.now()
    t0 = time.perf_counter()
    ids = seed(args.n, due_at=now)
    print(f"seeded {args.n} running deployments in {time.perf_counter() - t0:.1f} s")
    rows: list[tuple[str, str, str]] = []

    # -- 1. one reconcile tick ------------------------------------------------------------------
    with connection.cursor() as cursor:
        t0 = time.perf_counter()
        cursor.execute(
            "SELECT id FROM deployments_deployment"
            " WHERE status IN ('pending','running') AND next_check_at <= %s",
            [timezone.now()],
        )
        baseline_n = len(cursor.fetchall())
        select_s = time.perf_counter() - t0
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        claimed = reconcile_deployments()
        tick_s = time.perf_counter() - t0
    assert claimed == baseline_n == args.n, (claimed, baseline_n)
    rows.append(("reconcile tick (claim + enqueue)", f"{tick_s * 1000:.0f} ms", f"{len(ctx)} statement(s)"))
    rows.append(("  baseline: bare SELECT of due ids", f"{select_s * 1000:.0f} ms", "1 query"))
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        messages = channel.client.llen(queue)
    rows.append(("  messages enqueued", str(messages), f"{args.n // max(messages, 1)} ids each"))

    # -- 2. queries per advance (in this process, static router) -------------------------------
    counts = []
    times = []
    sample = ids[:200]
    for pk in sample:
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            engine.run(pk, now=lambda: now)
            times.append(time.perf_counter() - t0)
        counts.append(len(ctx))
    d = Deployment.objects.get(pk=sample[0])
    assert d.current_step == 1 and d.next_check_at is not None, (d.status, d.current_step)
    base_times = []
    base_counts = []
    for pk in ids[200:400]:
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            with transaction.atomic():
                row = Deployment.objects.select_for_update(skip_locked=True).filter(pk=pk).first()
                if row is not None:
                    Deployment.objects.filter(pk=pk).update(next_check_at=row.next_check_at)
            base_times.append(time.perf_counter() - t0)
        base_counts.append(len(ctx))
    rows.append(
        (
            "advance (traffic step + into pause)",
            f"{statistics.median(times) * 1000:.2f} ms",
            f"{min(counts)}..{max(counts)} statements (2 transactions, BEGIN/COMMIT included)",
        )
    )
    base_ms = statistics.median(base_times) * 1000
    rows.append(("  baseline: lock + update one row", f"{base_ms:.2f} ms", f"{max(base_counts)} statements"))

    # -- 3. a real worker and beat drain the tick ---------------------------------------------
    env = dict(os.environ, CELERY_TASK_DEFAULT_QUEUE=queue, LOG_LEVEL="WARNING")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "-Q", queue, "--concurrency",
         str(args.concurrency), "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "beat", "--loglevel", "WARNING",
         "--schedule", f"/tmp/{queue}-beat"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    remaining = args.n - len(sample)
    peak = 0.0
    t0 = time.perf_counter()
    try:
        while True:
            left = Deployment.objects.filter(current_step=0, status="running").count()
            peak = max(peak, rss_mb(worker.pid) + rss_mb(beat.pid))
            if left == 0 or time.perf_counter() - t0 > 600:
                break
            time.sleep(0.5)
        drain_s = time.perf_counter() - t0
    finally:
        for proc in (worker, beat):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (worker, beat):
            proc.wait(timeout=30)
    done = remaining - left
    rows.append(
        (
            f"worker x{args.concurrency} drains {remaining} advances",
            f"{drain_s:.1f} s (incl. boot)",
            f"{done / drain_s:.0f} advances/s",
        )
    )
    rows.append(("peak RSS worker + beat", f"{peak:.0f} MB", "goal < 1024 MB"))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>22}  detail")
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value:>22}  {detail}")


if __name__ == "__main__":
    main()
