"""``/health`` in the seed's shape, and ``/health/live``."""

from __future__ import annotations

import os
import resource
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

PROCESS_STARTED = time.monotonic()
PIPELINE_MAX_AGE = timedelta(minutes=2)

Check = Callable[[], dict[str, Any]]


def check_database() -> dict[str, Any]:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": "ok", "vendor": connection.vendor, "latency_ms": _ms(started)}


def check_cache() -> dict[str, Any]:
    started = time.monotonic()
    key = f"health:{os.getpid()}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        return {"status": "error", "message": "cache did not return the value just written"}
    return {"status": "ok", "latency_ms": _ms(started)}


def check_broker() -> dict[str, Any]:
    from controlplane.celery import app

    started = time.monotonic()
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        transport = conn.transport_cls
    return {"status": "ok", "transport": str(transport), "latency_ms": _ms(started)}


def check_workers() -> dict[str, Any]:
    from controlplane.models import Heartbeat

    now = timezone.now()
    alive = list(
        Heartbeat.objects.filter(
            name__startswith="worker:", last_seen__gte=now - settings.HEALTH_WORKER_MAX_AGE
        ).values_list("name", flat=True)
    )
    pipeline = Heartbeat.objects.filter(name="pipeline").values_list("last_seen", flat=True).first()
    result: dict[str, Any] = {
        "status": "ok" if alive else "error",
        "alive": len(alive),
        "workers": sorted(n.split(":", 1)[1] for n in alive),
        "scheduler_last_seen": pipeline.isoformat() if pipeline else None,
        "scheduler_ok": bool(pipeline and now - pipeline <= PIPELINE_MAX_AGE),
    }
    if not alive:
        result["message"] = f"no Celery worker heartbeat within the last {settings.HEALTH_WORKER_MAX_AGE}"
    return result


def check_disk() -> dict[str, Any]:
    usage = shutil.disk_usage(settings.HEALTH_DISK_PATH)
    percent = round(usage.used / usage.total * 100, 1)
    return {
        "status": "error" if percent > settings.HEALTH_DISK_MAX_PERCENT else "ok",
        "usage": {"percent": percent, "free_bytes": usage.free, "total_bytes": usage.total},
    }


def check_memory() -> dict[str, Any]:
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    meminfo = _meminfo()
    out: dict[str, Any] = {"status": "ok", "process_max_rss": f"{rss_kib // 1024}MB"}
    if meminfo:
        available, total = meminfo.get("MemAvailable", 0), meminfo.get("MemTotal", 0)
        out["system_available"] = f"{available // 1024}MB"
        out["system_total"] = f"{total // 1024}MB"
        if total and available / total < 0.05:
            out["status"] = "error"
            out["message"] = "less than 5% of system memory available"
    return out


CHECKS: dict[str, Check] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "workers": check_workers,
    "disk": check_disk,
    "memory": check_memory,
}


def run_checks() -> tuple[bool, dict[str, Any]]:
    """Run every check; healthy unless a critical check is not ok."""
    results: dict[str, Any] = {}
    healthy = True
    for name, check in CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # a failing dependency is the answer, not an error
            results[name] = {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:300]}
        results[name]["critical"] = name in settings.HEALTH_CRITICAL_CHECKS
        if results[name]["status"] != "ok" and results[name]["critical"]:
            healthy = False
    return healthy, results


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    healthy, checks = run_checks()
    degraded = any(c["status"] != "ok" for c in checks.values())
    body = {
        "status": "unhealthy" if not healthy else "degraded" if degraded else "healthy",
        "uptime": round(time.monotonic() - PROCESS_STARTED, 3),
        "timestamp": int(time.time() * 1000),
        "checks": checks,
    }
    return JsonResponse(body, status=200 if healthy else 503)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No dependency is touched."""
    return JsonResponse({"status": "alive", "uptime": round(time.monotonic() - PROCESS_STARTED, 3)})


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _meminfo() -> dict[str, int]:
    try:
        with open("/proc/meminfo") as fh:
            return {line.split(":")[0]: int(line.split()[1]) for line in fh if line.split()[1].isdigit()}
    except OSError:
        return {}
