"""``/metrics``: django-prometheus process metrics plus database-backed collectors.

Values that live in the database are read at scrape time by one collector, so every
web process reports the same truth.  Apps register their readers with
:func:`db_metrics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Reader = Callable[[], Iterable[Metric]]
_READERS: list[Reader] = []


def db_metrics(reader: Reader) -> Reader:
    """Register a function yielding metric families computed from the database."""
    if reader not in _READERS:
        _READERS.append(reader)
    return reader


class DatabaseCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        errors = GaugeMetricFamily(
            "controlplane_metrics_scrape_errors", "Database metric readers that failed this scrape."
        )
        failed = 0
        started = time.monotonic()
        for reader in list(_READERS):
            try:
                yield from reader()
            except DatabaseError:
                failed += 1
                log.exception("metrics reader %s failed", getattr(reader, "__name__", reader))
        errors.add_metric([], failed)
        yield errors
        duration = GaugeMetricFamily(
            "controlplane_metrics_scrape_duration_seconds", "Time spent reading database metrics."
        )
        duration.add_metric([], time.monotonic() - started)
        yield duration

    def describe(self) -> Iterable[Metric]:
        return []


_installed = False


def install_collector(registry: CollectorRegistry = REGISTRY) -> None:
    global _installed
    if not _installed:
        registry.register(DatabaseCollector())
        _installed = True


@db_metrics
def _worker_metrics() -> Iterable[Metric]:
    from controlplane.models import Heartbeat

    now = timezone.now()
    alive = Heartbeat.objects.filter(
        name__startswith="worker:", last_seen__gte=now - settings.HEALTH_WORKER_MAX_AGE
    ).count()
    workers = GaugeMetricFamily(
        "controlplane_celery_workers_alive", "Celery workers with a recent heartbeat."
    )
    workers.add_metric([], alive)
    yield workers
    pipeline = Heartbeat.objects.filter(name="pipeline").values_list("last_seen", flat=True).first()
    beat = GaugeMetricFamily(
        "controlplane_beat_pipeline_last_seen_timestamp_seconds",
        "When the beat-scheduled heartbeat task last ran on a worker (0 if never).",
    )
    beat.add_metric([], pipeline.timestamp() if pipeline else 0)
    yield beat


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition of the default registry (no auth: scrape from the private network)."""
    registry: Any = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


@db_metrics
def _maintenance_metrics() -> Iterable[Metric]:
    from controlplane.models import MaintenanceRun

    rows = GaugeMetricFamily(
        "controlplane_maintenance_last_run_rows",
        "Rows the job's last run deleted or updated (dead rows for vacuum_analyze).",
        labels=["job"],
    )
    duration = GaugeMetricFamily(
        "controlplane_maintenance_last_run_duration_seconds",
        "Duration of the job's last run.",
        labels=["job"],
    )
    finished = GaugeMetricFamily(
        "controlplane_maintenance_last_run_timestamp_seconds",
        "When the job's last run ended.",
        labels=["job"],
    )
    success = GaugeMetricFamily(
        "controlplane_maintenance_last_run_success",
        "1 if the job's last run succeeded or was skipped by design, 0 if it failed.",
        labels=["job"],
    )
    for run in MaintenanceRun.objects.all():
        rows.add_metric([run.job], run.rows)
        duration.add_metric([run.job], run.duration_seconds)
        finished.add_metric([run.job], run.finished_at.timestamp())
        success.add_metric([run.job], 0 if run.status == MaintenanceRun.Status.FAILED else 1)
    yield from (rows, duration, finished, success)


@db_metrics
def _disk_metrics() -> Iterable[Metric]:
    """Free space of the data volume (HEALTH_DISK_PATH): we run no node_exporter."""
    import shutil

    try:
        usage = shutil.disk_usage(settings.HEALTH_DISK_PATH)
    except OSError:
        log.exception("disk usage of %s unavailable", settings.HEALTH_DISK_PATH)
        return
    path = str(settings.HEALTH_DISK_PATH)
    ratio = GaugeMetricFamily(
        "controlplane_disk_free_ratio", "Free fraction of the data volume (0..1).", labels=["path"]
    )
    ratio.add_metric([path], usage.free / usage.total if usage.total else 0.0)
    free = GaugeMetricFamily(
        "controlplane_disk_free_bytes", "Free bytes on the data volume.", labels=["path"]
    )
    free.add_metric([path], usage.free)
    size = GaugeMetricFamily("controlplane_disk_size_bytes", "Size of the data volume.", labels=["path"])
    size.add_metric([path], usage.total)
    yield from (ratio, free, size)
