"""Zero downtime through nginx: requests sent/failed per scenario, canary share per step, time to recover.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_traffic_bench python -m benchmarks.zero_downtime

The demo fleet (``deployments/demo/fleet.py``: 2 blue + 2 green instance processes behind a
private nginx, the ``command`` deployer restarting them) serves a load generator (4 threads, a
new connection per request) while the engine runs each scenario on the real clock
(``engine.run`` whenever ``next_check_at`` is due, as the reconciler would). Baseline: the same
load for the same time with no deployment. "failed" = connection errors and 5xx from a healthy
version; the `bad` release's own 500s (served while it is the canary) are counted apart.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.deployments_seed import setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=4.0, help="seconds per canary step")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--only", default="", help="run the scenarios whose name contains this")
    args = parser.parse_args()
    setup_django()

    from django.utils import timezone

    from deployments import engine, services
    from deployments.demo.fleet import DemoFleet, free_port
    from deployments.models import Deployment, Environment, Instance, Release, Service
    from tests.support.loadgen import LoadGenerator, LoadResult

    hold_ms = int(args.hold * 1000)

    def fresh() -> tuple[DemoFleet, Environment]:
        Deployment.objects.all().delete()
        Instance.objects.all().delete()
        Environment.objects.all().delete()
        Release.objects.all().delete()
        Service.objects.all().delete()
        fleet = DemoFleet(Path(tempfile.mkdtemp(prefix="cp-zd-bench-")), port=free_port())
        return fleet, fleet.start()

    def run(d: Deployment) -> Deployment:
        while True:
            engine.run(d.pk)
            d.refresh_from_db()
            if d.status not in (Deployment.Status.PENDING, Deployment.Status.RUNNING):
                return d
            wait = (d.next_check_at - timezone.now()).total_seconds() if d.next_check_at else 0.05
            time.sleep(min(max(wait, 0.01), 0.25))

    def failed(result: LoadResult) -> tuple[int, int]:
        bad = sum(1 for _, status, v in result.log if status >= 500 and v == "bad")
        other = sum(1 for _, status, v in result.log if status == 0 or (status >= 500 and v != "bad"))
        return other, bad

    scenarios: dict[str, dict[str, Any]] = {
        "blue-green": {"release": "1.1.0", "config": {"strategy": "blue-green"}},
        "canary 10/50/100": {
            "release": "1.1.0",
            "config": {
                "strategy": "canary",
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": hold_ms}},
                    {"setWeight": 50},
                    {"pause": {"duration": hold_ms}},
                    {"setWeight": 100},
                    {"pause": {"duration": hold_ms}},
                ],
            },
        },
        "rolling, batches of 1": {"release": "1.1.0", "config": {"strategy": "rolling", "batchSize": 1}},
        "canary of bad (rolled back)": {
            "release": "bad",
            "config": {
                "strategy": "canary",
                "steps": [
                    {"percentage": 10, "duration": 10000, "metrics": {"error_rate": {"threshold": 0.05}}},
                    {"percentage": 50, "duration": 10000, "metrics": {"error_rate": {"threshold": 0.05}}},
                ],
            },
        },
    }
    rows: list[tuple[str, str, float, int, int, int, float]] = []
    accuracy: list[tuple[int, float, int]] = []
    ttr: float | None = None
    durations: list[float] = []
    for name, spec in scenarios.items():
        if args.only not in name:
            continue
        fleet, env = fresh()
        try:
            load = LoadGenerator(fleet.url or "", threads=args.threads).start()
            offset = time.time() - time.monotonic()
            started = time.monotonic()
            release = Release.objects.get(service=env.service, version=spec["release"])
            d, _ = services.deployment_create(environment=env, release=release, config=spec["config"])
            d = run(d)
            time.sleep(0.5)
            result = load.stop()
            seconds = time.monotonic() - started
            durations.append(seconds)
            other, bad = failed(result)
            rows.append((name, d.status, seconds, result.sent, other, bad, result.rate))
            if d.status == Deployment.Status.FAILED:
                print(f"{name}: {d.status_reason}")
            if d.time_to_recover is not None:
                ttr = d.time_to_recover
            if name.startswith("canary 10"):
                shifts = [
                    (e.details["weights"].get("green", 0), e.created_at.timestamp() - offset)
                    for e in d.events.filter(kind="traffic").order_by("id")
                ]
                ends = [t for _, t in shifts[1:]] + [time.monotonic()]
                for (weight, begin), end in zip(shifts, ends, strict=True):
                    window = [
                        v for t, status, v in result.log if begin + 0.3 <= t <= end and 0 < status < 500
                    ]
                    share = sum(1 for v in window if v == "1.1.0") / len(window) if window else 0.0
                    accuracy.append((weight, share, len(window)))
        finally:
            fleet.stop()

    # Baseline: the same load, as long as the average scenario, with nothing deploying.
    fleet, env = fresh()
    try:
        base_seconds = statistics.mean(durations)
        result = LoadGenerator(fleet.url or "", threads=args.threads).run(duration=base_seconds)
        other, bad = failed(result)
        rows.insert(
            0, ("baseline (no deployment)", "-", result.seconds, result.sent, other, bad, result.rate)
        )
    finally:
        fleet.stop()

    print(f"\nRequests through nginx (load: {args.threads} threads, new connection per request)\n")
    print(
        f"{'scenario':30} {'outcome':12} {'seconds':>8} {'sent':>7} {'failed':>7} {'bad 5xx':>8} {'req/s':>7}"
    )
    for name, status, seconds, sent, other, bad, rate in rows:
        print(f"{name:30} {status:12} {seconds:8.1f} {sent:7d} {other:7d} {bad:8d} {rate:7.0f}")
    print("\nCanary share of responses at each configured weight (after a 0.3 s settle)\n")
    print(f"{'configured %':>12} {'observed %':>11} {'responses':>10}")
    for weight, share, n in accuracy:
        print(f"{weight:12d} {share * 100:11.1f} {n:10d}")
    print("\nTime to recover (bad canary: first failing measurement -> 100% on stable)")
    print(f"  recorded: {ttr if ttr is not None else 'n/a'} s; goal <= analysis interval (2 s) + 2 s")


if __name__ == "__main__":
    main()
