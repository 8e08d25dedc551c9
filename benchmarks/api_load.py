"""Mixed read/write API load under gunicorn on PostgreSQL at a fixed arrival rate.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cp_bench_api \\
    REDIS_URL=redis://127.0.0.1:6379/12 python -m benchmarks.api_load [--rate 200 --seconds 30]

Open loop: requests are *scheduled* at the given rate and latency is measured from
the scheduled time, so a slow server cannot hide its queueing (no coordinated
omission). The workload: list and detail of deployments and incidents, declare an
incident, add a timeline note, an Alertmanager delivery of 10 alerts. Baseline,
same run, same server, same rate: ``/bare/deployments/``, a plain Django view
returning a page of deployments (benchmarks/list_urls.py). Goal: p99 < 100 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.list_settings"
os.environ.setdefault("ALERTMANAGER_TOKEN", "bench-alertmanager-token")

from benchmarks.deployments_seed import seed, setup_django
from benchmarks.harness import gunicorn, pct

Op = tuple[str, str, str, Callable[[int], Any] | None]  # name, method, url template, body factory


def alert_payload(i: int) -> dict[str, Any]:
    group = f"bench-{i % 50}"
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighErrorRate",
                "severity": "warning",
                "instance": f"web-{k}",
                "group": group,
            },
            "annotations": {"summary": "error rate above 1%"},
            "startsAt": "2026-12-04T15:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": f"{group}-{k}",
        }
        for k in range(10)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{group="{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "controlplane",
        "groupLabels": {"group": group},
        "commonLabels": {"alertname": "HighErrorRate", "severity": "warning"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def run_load(
    base: str,
    ops: list[tuple[Op, int]],
    headers: dict[str, dict[str, str]],
    rate: float,
    seconds: float,
    ids: Any,
) -> dict[str, list[float]]:
    """Send ``rate`` requests/s for ``seconds``; returns latencies (ms) per op name, errors under 'ERR:'."""
    weighted = [op for op, weight in ops for _ in range(weight)]
    rng = random.Random(7)
    schedule = [(i / rate, rng.choice(weighted)) for i in range(int(rate * seconds))]
    results: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    local = threading.local()
    counter = itertools.count()
    start = time.perf_counter() + 0.5

    def fire(item: tuple[float, Op]) -> None:
        offset, (name, method, template, body) = item
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        n = next(counter)
        url = base + template.format(dep=ids["dep"](n), inc=ids["inc"](n))
        delay = start + offset - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            response = session.request(
                method, url, json=body(n) if body else None, headers=headers[name], timeout=30
            )
            ok = response.status_code < 400
            status = str(response.status_code)
        except requests.RequestException as exc:
            ok, status = False, type(exc).__name__
        elapsed = (time.perf_counter() - (start + offset)) * 1000
        with lock:
            results[name if ok else f"ERR:{name}:{status}"].append(elapsed)

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(fire, schedule))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from controlplane.roles import Role, set_role
    from controlplane.tokens import token_create
    from incidents import services as incident_services
    from incidents.models import Incident, SeverityPolicy

    dep_ids = seed(args.deployments, due_at=timezone.now())
    Incident.objects.all().delete()
    p3 = SeverityPolicy.objects.get(code="P3")
    inc_ids = [incident_services.incident_declare(title=f"bench {i}", severity=p3).pk for i in range(200)]
    user, _ = get_user_model().objects.get_or_create(username="bench-operator")
    set_role(user, Role.OPERATOR)
    _, key = token_create(user=user, name="bench")
    auth = {"Authorization": f"Bearer {key}"}
    am = {"Authorization": f"Bearer {os.environ['ALERTMANAGER_TOKEN']}"}

    ops: list[tuple[Op, int]] = [
        (("list deployments", "GET", "/api/v1/deployments/?status=running", None), 25),
        (("deployment detail", "GET", "/api/v1/deployments/{dep}/", None), 15),
        (("list incidents", "GET", "/api/v1/incidents/", None), 20),
        (("incident detail", "GET", "/api/v1/incidents/{inc}/", None), 15),
        (
            (
                "declare incident",
                "POST",
                "/api/v1/incidents/",
                lambda n: {"title": f"load {n}", "severity": "P3"},
            ),
            5,
        ),
        (("add note", "POST", "/api/v1/incidents/{inc}/timeline/", lambda n: {"message": f"note {n}"}), 15),
        (("alertmanager delivery", "POST", "/api/v1/integrations/alertmanager/", alert_payload), 5),
    ]
    headers = {op[0]: (am if "alertmanager" in op[0] else auth) for op, _ in ops}
    bare: list[tuple[Op, int]] = [
        (("bare Django view (baseline)", "GET", "/bare/deployments/?status=running", None), 1)
    ]
    headers["bare Django view (baseline)"] = {}
    ids = {"dep": lambda n: dep_ids[n % len(dep_ids)], "inc": lambda n: inc_ids[n % len(inc_ids)]}

    with gunicorn(workers=args.workers, threads=8) as base:
        run_load(base, ops, headers, args.rate, 3, ids)  # warm-up
        baseline = run_load(base, bare, headers, args.rate, args.seconds, ids)
        mixed = run_load(base, ops, headers, args.rate, args.seconds, ids)

    load1 = os.getloadavg()[0]
    print(
        f"{args.rate:.0f} req/s for {args.seconds:.0f} s, open loop (latency from scheduled time); "
        f"gunicorn {args.workers} workers x 8 threads; PostgreSQL; 1-min load average {load1:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'operation':<32} {'n':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8}")

    def row(name: str, values: list[float], failed: int) -> None:
        p50, p99 = statistics.median(values), pct(values, 0.99)
        print(f"{name:<32} {len(values):>6} {failed:>6} {p50:>8.1f} {p99:>8.1f}")

    for results in (baseline, mixed):
        for name in sorted(k for k in results if not k.startswith("ERR:")):
            row(name, results[name], sum(len(v) for k, v in results.items() if k.startswith(f"ERR:{name}:")))
    all_ok = [v for k, vs in mixed.items() if not k.startswith("ERR:") for v in vs]
    errors = {k: len(v) for k, v in mixed.items() if k.startswith("ERR:")}
    base_ok = baseline["bare Django view (baseline)"]
    row("ALL mixed", all_ok, sum(errors.values()))
    print(f"p99 ratio mixed / bare view: {pct(all_ok, 0.99) / pct(base_ok, 0.99):.2f}")
    if errors:
        print("errors:", errors)


if __name__ == "__main__":
    main()
