"""Alertmanager intake benchmark: one big delivery, concurrent deliveries, latency under gunicorn.

Usage: DATABASE_URL=postgres://... python benchmarks/alert_intake.py [--requests 400]

Claims checked (printed as a table with a baseline measured in the same run):
  1. one delivery of 1,000 alerts is processed in < 1 s
     (baseline: a bare bulk INSERT of 1,000 alert rows, the floor for any intake);
  2. 20 concurrent deliveries of one group -> exactly one incident, every alert recorded once;
  3. a typical 10-alert delivery under gunicorn at concurrency 8 has p99 < 100 ms
     (baseline: GET /health/live through the same gunicorn at the same concurrency).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")
# Measure what production runs: no per-query debug recording.
os.environ.setdefault("DEBUG", "false")
TOKEN = "bench-" + uuid.uuid4().hex
os.environ["ALERTMANAGER_TOKEN"] = TOKEN

import django  # noqa: E402

django.setup()


from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from incidents.models import Alert, AlertGroup, Incident  # noqa: E402

URL = "/api/v1/integrations/alertmanager/"
# One worker process per core, threads for the rest of the concurrency (gunicorn docs: 2-4 x cores).
GUNICORN_ARGS = os.environ.get("BENCH_GUNICORN_ARGS", "--workers 2 --threads 4 --worker-class gthread")


def alert(fp: str, status: str = "firing") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "BenchAlert", "severity": "critical", "instance": f"host-{fp}:9100"},
        "annotations": {"summary": f"bench {fp}"},
        "startsAt": "2026-12-04T15:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-04T15:05:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fp,
    }


def payload(group: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": group,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {"alertname": "BenchAlert"},
        "commonLabels": {"alertname": "BenchAlert", "severity": "critical"},
        "commonAnnotations": {"summary": "bench"},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def client() -> APIClient:
    c = APIClient()
    c.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return c


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_big_delivery(run: str) -> list[tuple[str, str, str, str]]:
    c = client()
    warm = payload(f"{run}-warm", [alert(f"{run}-w{i}") for i in range(10)])
    c.post(URL, warm, format="json")
    # Baseline: the bare INSERT of 1,000 alert rows for an existing incident.
    group = AlertGroup.objects.get(group_key=f"{run}-warm")
    assert group.incident_id is not None
    rows = [
        Alert(
            incident_id=group.incident_id,
            group=group,
            fingerprint=f"{run}-raw{i}",
            status="firing",
            labels=alert("x")["labels"],
            annotations={},
            name="BenchAlert",
        )
        for i in range(1000)
    ]
    base, _ = timed(lambda: Alert.objects.bulk_create(rows))
    big = payload(f"{run}-big", [alert(f"{run}-b{i}") for i in range(1000)])
    first, resp = timed(lambda: c.post(URL, big, format="json"))
    assert resp.status_code == 200 and resp.json()["new"] == 1000, resp.content
    again, resp2 = timed(lambda: c.post(URL, big, format="json"))
    assert resp2.json()["unchanged"] == 1000
    resolved = payload(f"{run}-big", [alert(f"{run}-b{i}", "resolved") for i in range(1000)])
    res, resp3 = timed(lambda: c.post(URL, resolved, format="json"))
    assert resp3.json()["resolved"] == 1000

    def ok(seconds: float) -> str:
        return "yes" if seconds < 1.0 else "NO"

    return [
        ("baseline: bulk INSERT 1,000 alert rows", f"{base * 1000:.0f} ms", "-", "-"),
        ("1,000-alert delivery, new group", f"{first * 1000:.0f} ms", "< 1000 ms", ok(first)),
        ("same 1,000 again (all unchanged)", f"{again * 1000:.0f} ms", "< 1000 ms", ok(again)),
        ("same 1,000 resolved", f"{res * 1000:.0f} ms", "< 1000 ms", ok(res)),
    ]


def bench_concurrent(run: str) -> list[tuple[str, str, str, str]]:
    group = f"{run}-concurrent"
    bodies = [payload(group, [alert(f"{run}-c{j}") for j in range(i, i + 10)]) for i in range(20)]
    barrier = threading.Barrier(20)
    codes: list[int] = []

    def deliver(body: dict[str, Any]) -> None:
        try:
            barrier.wait()
            codes.append(client().post(URL, body, format="json").status_code)
        finally:
            connection.close()

    def run_all() -> None:
        for t in [_start(deliver, b) for b in bodies]:
            t.join()

    wall, _ = timed(run_all)
    g = AlertGroup.objects.get(group_key=group)
    incidents = Incident.objects.filter(alert_groups=g).count()
    alerts = Alert.objects.filter(group=g).count()
    distinct = Alert.objects.filter(group=g).values("fingerprint").distinct().count()
    ok = "yes" if codes == [200] * 20 and incidents == 1 and alerts == distinct == 29 else "NO"
    return [
        ("20 concurrent deliveries, one group", f"{wall * 1000:.0f} ms wall", "-", "-"),
        (
            "  incidents / alert rows / distinct fps",
            f"{incidents} / {alerts} / {distinct}",
            "1 / 29 / 29",
            ok,
        ),
    ]


def _start(fn: Any, arg: Any) -> threading.Thread:
    t = threading.Thread(target=fn, args=(arg,))
    t.start()
    return t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(root: int) -> float:
    """User+system CPU of a process and its children (gunicorn master and workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [root]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{root}/task/{root}/children").read_text().split()]
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_gunicorn(run: str, requests: int) -> list[tuple[str, str, str, str]]:
    port = free_port()
    env = dict(os.environ, ALLOWED_HOSTS="127.0.0.1,localhost")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "controlplane.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "4",
            "--threads",
            "2",
            "--worker-class",
            "gthread",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/health/live", timeout=1).read()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def get_live(_: int) -> float:
            t = time.perf_counter()
            urllib.request.urlopen(f"{base_url}/health/live", timeout=10).read()  # noqa: S310
            return time.perf_counter() - t

        def post_alerts(i: int) -> float:
            group = f"{run}-g{i % 40}"
            # Nine steady alerts and one that flaps, so most deliveries change something.
            alerts = [alert(f"{group}-{j}") for j in range(9)]
            alerts.append(alert(f"{group}-flap", "resolved" if (i // 40) % 2 else "firing"))
            data = json.dumps(payload(group, alerts)).encode()
            req = urllib.request.Request(  # noqa: S310
                f"{base_url}{URL}",
                data=data,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            )
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                resp.read()
                assert resp.status == 200
            return time.perf_counter() - t

        rows = []
        with ThreadPoolExecutor(1) as single:
            seq = list(single.map(post_alerts, range(40, 140)))
        rows.append(
            (
                "gunicorn c=1: 10-alert delivery",
                f"p50 {pct(seq, 0.5) * 1000:.1f} / p99 {pct(seq, 0.99) * 1000:.1f} ms",
                "-",
                "-",
            )
        )
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(get_live, range(40)))  # warm every worker
            list(pool.map(post_alerts, range(40)))  # first delivery of each group opens its incident
            live = list(pool.map(get_live, range(requests)))
            t0, cpu0 = time.perf_counter(), cpu_seconds(proc.pid)
            lat = list(pool.map(post_alerts, range(140, 140 + requests)))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        for name, values in (("baseline: GET /health/live", live), ("10-alert delivery", lat)):
            p50, p99 = pct(values, 0.5) * 1000, pct(values, 0.99) * 1000
            target = "p99 < 100 ms" if name == "10-alert delivery" else "-"
            ok = ("yes" if p99 < 100 else "NO") if target != "-" else "-"
            rows.append((f"gunicorn c=8: {name}", f"p50 {p50:.1f} / p99 {p99:.1f} ms", target, ok))
        rows.append(("  10-alert deliveries per second", f"{requests / wall:.0f}/s", "-", "-"))
        # Server CPU per delivery does not depend on what else the machine runs.
        rows.append(("  gunicorn CPU per delivery", f"{cpu / requests * 1000:.1f} ms", "-", "-"))
        rows.append(("  mean", f"{statistics.mean(lat) * 1000:.1f} ms", "-", "-"))
        return rows
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    load_before = f"{os.getloadavg()[0]:.2f}"
    run = f"bench-{timezone.now():%H%M%S}-{uuid.uuid4().hex[:4]}"
    rows = bench_big_delivery(run) + bench_concurrent(run) + bench_gunicorn(run, args.requests)
    # Leave the database as found: the benchmark's incidents (and their timelines/alerts) go.
    Incident.objects.filter(alert_groups__group_key__startswith=run).delete()
    AlertGroup.objects.filter(group_key__startswith=run).delete()
    widths = [max(len(r[i]) for r in [*rows, ("measure", "result", "target", "ok")]) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(
        f"gunicorn {GUNICORN_ARGS}; load average before/after: {load_before} / {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(line.format("measure", "result", "target", "ok"))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))


if __name__ == "__main__":
    main()
