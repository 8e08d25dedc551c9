"""``GET /api/v1/deployments/?status=running`` over 10,000 rows under gunicorn, concurrency 8.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_engine_bench \\
    REDIS_URL=redis://127.0.0.1:6379/2 python -m benchmarks.deployments_list [--requests 1000]

Baseline, same run and same server: ``/bare/deployments/?status=running``, a plain Django view
returning the same page (same rows, same fields) without DRF, auth, throttling or filters.
Also checks the API's query count does not grow with the page size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import requests

os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.list_settings"

from benchmarks.deployments_seed import seed, setup_django
from benchmarks.harness import gunicorn, pct

BARE = "bare Django view (baseline)"
API = "GET /api/v1/deployments/?status=running"


def load(url: str, headers: dict[str, str], total: int, concurrency: int) -> list[float]:
    local = __import__("threading").local()

    def one(_: int) -> float:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        t0 = time.perf_counter()
        response = session.get(url, headers=headers, timeout=30)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        return elapsed * 1000

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency * 5)))  # warm up connections and workers
        return list(pool.map(one, range(total)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    setup_django()

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from controlplane.roles import Role, set_role
    from controlplane.tokens import token_create

    seed(args.n, due_at=timezone.now())
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    set_role(user, Role.VIEWER)
    _, key = token_create(user=user, name="bench")
    headers = {"Authorization": f"Bearer {key}"}

    client = Client()
    queries = {}
    for size in (10, 50, 200):
        with CaptureQueriesContext(connection) as ctx:
            r = client.get("/api/v1/deployments/", {"status": "running", "page_size": size}, headers=headers)
        assert r.status_code == 200 and r.json()["count"] == args.n, r.content[:200]
        queries[size] = len(ctx)

    with gunicorn(workers=args.workers, threads=4) as base:
        results: dict[tuple[int, str], tuple[list[float], float]] = {}
        for concurrency, total in ((1, max(args.requests // 5, 50)), (args.concurrency, args.requests)):
            for name, url, hdrs in (
                (BARE, f"{base}/bare/deployments/?status=running", {}),
                (API, f"{base}/api/v1/deployments/?status=running", headers),
            ):
                t0 = time.perf_counter()
                latencies = load(url, hdrs, total, concurrency)
                results[(concurrency, name)] = (latencies, total / (time.perf_counter() - t0))

    print(
        f"{args.n} running deployments, page of 50; {args.requests} requests at concurrency "
        f"{args.concurrency} (and a fifth of that at 1); gunicorn {args.workers} workers x 4 threads"
    )
    print(f"{'conc':>4} {'endpoint':<42} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for (concurrency, name), (latencies, rps) in results.items():
        p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
        print(f"{concurrency:>4} {name:<42} {p50:>8.1f} {p99:>8.1f} {rps:>8.0f}")
    for concurrency in (1, args.concurrency):
        bare, api = results[(concurrency, BARE)][0], results[(concurrency, API)][0]
        print(f"concurrency {concurrency}: p99 ratio API / bare view {pct(api, 0.99) / pct(bare, 0.99):.2f}")
    print(
        "API queries by page size (incl. auth, count, page): "
        + ", ".join(f"{k}: {v}" for k, v in queries.items())
    )


if __name__ == "__main__":
    main()
