"""Traffic through a real nginx while the nginx router changes weights.

Prints three tables:
1. requests sent / failed with no weight change (baseline) vs during back-to-back weight
   changes (each one: render, nginx -t, atomic rename, reload, wait for old workers, verify),
   for clients opening a connection per request and for keep-alive clients;
2. the time one weight change takes (apply latency);
3. observed vs configured canary share at 10 / 50 / 90 % over N requests each.

Run from the repository root: ``python benchmarks/traffic.py [--seconds 10] [--requests 2000]``.
Needs nginx (``apt-get install nginx-light``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.providers.base import TrafficTable
from tests.support.loadgen import LoadGenerator, LoadResult
from tests.support.nginx import NginxFleet


def row(*cells: object, widths: tuple[int, ...] = (34, 10, 10, 10, 10, 10)) -> str:
    return "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=False))
    )


def load_while(
    fleet: NginxFleet, seconds: float, threads: int, change: bool, keepalive: bool = False
) -> tuple[LoadResult, list[float]]:
    router = fleet.router()
    router.apply(TrafficTable({"blue": 50, "green": 50}))
    load = LoadGenerator(fleet.nginx.url, threads=threads, keepalive=keepalive).start()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < deadline:
            if change:
                canary = (10, 50, 90, 0)[i % 4]
                started = time.perf_counter()
                router.apply(TrafficTable({"blue": 100 - canary, "green": canary}))
                latencies.append((time.perf_counter() - started) * 1000)
                i += 1
            else:
                time.sleep(0.05)
    finally:
        result = load.stop()
    return result, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--requests", type=int, default=2000, help="requests per accuracy step")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    with NginxFleet(blue=2, green=1) as fleet:
        phases: list[tuple[str, LoadResult, int]] = []
        latencies: list[float] = []
        for keepalive in (False, True):
            clients = "keep-alive" if keepalive else "new conn."
            base, _ = load_while(fleet, args.seconds, args.threads, change=False, keepalive=keepalive)
            phases.append((f"baseline, {clients}", base, 0))
            changing, took = load_while(fleet, args.seconds, args.threads, change=True, keepalive=keepalive)
            phases.append((f"weight changes, {clients}", changing, len(took)))
            latencies += took

        print(
            f"nginx router: 2 blue + 1 green instances on loopback, {args.threads} client threads, "
            f"{args.seconds:g}s per phase; 'new conn.' = one connection per request, 'keep-alive' = "
            "a reused connection per thread (retried once on a fresh one if nginx closed it idle)\n"
        )
        print(row("phase", "sent", "failed", "retried", "req/s", "changes"))
        for name, result, changes in phases:
            print(row(name, result.sent, result.failed, result.retried, f"{result.rate:.0f}", changes))
            if result.errors:
                print("  errors:", result.errors[:5])
        print()
        print(row("apply() latency (ms)", "p50", "p90", "max", "n"))
        ordered = sorted(latencies)
        p90 = ordered[int(0.9 * (len(ordered) - 1))] if ordered else 0.0
        print(
            row(
                "render+test+swap+reload+verify",
                f"{statistics.median(ordered):.0f}",
                f"{p90:.0f}",
                f"{max(ordered):.0f}",
                len(ordered),
            )
        )

        print()
        print(row("canary weight (configured)", "requests", "failed", "observed", "error (pp)"))
        worst = 0.0
        for canary in (10, 50, 90):
            fleet.router().apply(TrafficTable({"blue": 100 - canary, "green": canary}))
            result = LoadGenerator(fleet.nginx.url, threads=args.threads).run(count=args.requests)
            share = 100 * result.share("2.0.0")
            worst = max(worst, abs(share - canary))
            print(row(f"{canary}%", result.sent, result.failed, f"{share:.2f}%", f"{share - canary:+.2f}"))
    failed = sum(result.failed for _, result, _ in phases)
    print(f"\nfailed requests: {failed} (must be 0); worst share error: {worst:.2f} pp (limit 3)")
    return 0 if failed == 0 and worst <= 3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
