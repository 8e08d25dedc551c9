"""How long an http_probe measurement takes, and how faithful its p99 is.

Two local instances answer every request after a fixed latency. For several concurrency
bounds we time one round of K requests and compare the reported p50/p99 with the latency the
server imposes (the difference is the probe's own overhead: connection, threads, Python).
Baseline: concurrency 1 (the requests one after another), measured in the same run.

    python -m benchmarks.http_probe [--requests 100] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.demo.instance_app import InstanceApp
from deployments.providers.base import InstanceRef
from deployments.providers.metrics import HttpProbeMetrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with InstanceApp(latency_ms=args.latency_ms) as a, InstanceApp(latency_ms=args.latency_ms) as b:
        instances = [InstanceRef("a", a.url, slot="green"), InstanceRef("b", b.url, slot="green")]
        print(f"K={args.requests} requests per round, server latency {args.latency_ms:.0f} ms, 2 instances")
        print(
            f"{'concurrency':>11} {'round ms (median)':>18} {'vs baseline':>12} {'p50 ms':>8} {'p99 ms':>8}"
        )
        baseline = None
        for concurrency in (1, 4, 8, 16, 32):
            provider = HttpProbeMetrics(requests_per_round=args.requests, concurrency=concurrency, reuse_ms=0)
            timings, p50s, p99s = [], [], []
            for _ in range(args.repeat):
                started = time.perf_counter()
                p99 = provider.measure("latency_p99", instances=instances)
                timings.append((time.perf_counter() - started) * 1000)
                p99s.append(p99.value or 0.0)
                p50s.append(p99.details["latency_p50_ms"] or 0.0)
            median = statistics.median(timings)
            baseline = baseline or median
            print(
                f"{concurrency:>11} {median:>18.1f} {baseline / median:>11.1f}x "
                f"{statistics.median(p50s):>8.1f} {statistics.median(p99s):>8.1f}"
            )


if __name__ == "__main__":
    main()
