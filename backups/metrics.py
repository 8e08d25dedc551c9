"""Backup metrics read from the catalog at scrape time (one truth for every process)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

from backups.models import Backup, BackupPolicy, Verification
from controlplane.metrics import db_metrics


@db_metrics
def backup_metrics() -> Iterable[Metric]:
    last_success = GaugeMetricFamily(
        "controlplane_backup_last_success_timestamp_seconds",
        "When the newest succeeded backup of the policy finished (0 if never).",
        labels=["policy"],
    )
    duration = GaugeMetricFamily(
        "controlplane_backup_last_duration_seconds",
        "Duration of the newest succeeded backup.",
        labels=["policy"],
    )
    size = GaugeMetricFamily(
        "controlplane_backup_last_size_bytes",
        "Stored (compressed) size of the newest succeeded backup.",
        labels=["policy"],
    )
    drill_ok = GaugeMetricFamily(
        "controlplane_backup_restore_drill_success",
        "1 if the policy's latest restore drill passed, 0 if it failed (absent if never drilled).",
        labels=["policy"],
    )
    drill_at = GaugeMetricFamily(
        "controlplane_backup_restore_drill_last_timestamp_seconds",
        "When the latest restore drill finished.",
        labels=["policy"],
    )
    drill_seconds = GaugeMetricFamily(
        "controlplane_backup_restore_drill_time_to_restore_seconds",
        "Time to restore measured by the latest restore drill.",
        labels=["policy"],
    )
    for policy in BackupPolicy.objects.filter(enabled=True):
        newest = (
            Backup.objects.filter(policy=policy, status=Backup.Status.SUCCEEDED)
            .exclude(trigger=Backup.Trigger.SAFETY)
            .order_by("-finished_at")
            .only("finished_at", "duration_seconds", "stored_bytes")
            .first()
        )
        last_success.add_metric(
            [policy.name], newest.finished_at.timestamp() if newest and newest.finished_at else 0
        )
        if newest is not None:
            duration.add_metric([policy.name], newest.duration_seconds or 0)
            size.add_metric([policy.name], newest.stored_bytes or 0)
        drill = (
            Verification.objects.filter(backup__policy=policy, kind=Verification.Kind.DRILL)
            .exclude(status=Verification.Status.RUNNING)
            .order_by("-finished_at")
            .first()
        )
        if drill is not None and drill.finished_at is not None:
            drill_ok.add_metric([policy.name], 1 if drill.status == Verification.Status.PASSED else 0)
            drill_at.add_metric([policy.name], drill.finished_at.timestamp())
            drill_seconds.add_metric([policy.name], float(drill.details.get("time_to_restore_seconds") or 0))
    by_status = GaugeMetricFamily(
        "controlplane_backups", "Backups in the catalog by policy and status.", labels=["policy", "status"]
    )
    for row in Backup.objects.values("policy__name", "status").annotate(n=Count("id")).order_by():
        by_status.add_metric([row["policy__name"], row["status"]], row["n"])
    yield from (last_success, duration, size, drill_ok, drill_at, drill_seconds, by_status)
