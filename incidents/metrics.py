"""Incident metrics read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Count, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from controlplane.metrics import db_metrics
from incidents.models import DeadlineBreach, Incident, Notification, SeverityPolicy
from incidents.selectors import PHASE_FIELDS, _duration

BUCKETS = (60, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


@db_metrics
def incident_metrics() -> Iterable[Metric]:
    codes = list(SeverityPolicy.objects.order_by("rank").values_list("code", flat=True))
    open_counts = dict(
        Incident.objects.filter(status__in=Incident.OPEN_STATUSES)
        .values_list("severity__code")
        .annotate(n=Count("pk"))
        .values_list("severity__code", "n")
    )
    gauge = GaugeMetricFamily(
        "controlplane_incidents_open", "Open incidents by severity.", labels=["severity"]
    )
    for code in codes:
        gauge.add_metric([code], open_counts.get(code, 0))
    yield gauge

    breaches = CounterMetricFamily(
        "controlplane_incident_deadline_breaches",
        "Phase deadlines breached, by severity at detection and phase.",
        labels=["severity", "phase"],
    )
    for row in DeadlineBreach.objects.values("severity_code", "phase").annotate(n=Count("pk")):
        breaches.add_metric([row["severity_code"], row["phase"]], row["n"])
    yield breaches

    hist = HistogramMetricFamily(
        "controlplane_incident_time_to_phase_seconds",
        "Seconds from declaration to acknowledge / mitigate / resolve.",
        labels=["severity", "phase"],
    )
    for phase, field in PHASE_FIELDS.items():
        rows = (
            Incident.objects.filter(**{f"{field}__isnull": False})
            .annotate(d=_duration(field))
            .values("severity__code")
            .annotate(
                n=Count("pk"),
                total=Sum("d"),
                **{f"le{b}": Count("pk", filter=Q(d__lte=timedelta(seconds=b))) for b in BUCKETS},
            )
        )
        for r in rows:
            buckets = [(str(float(b)), r[f"le{b}"]) for b in BUCKETS] + [("+Inf", r["n"])]
            total = r["total"].total_seconds() if r["total"] else 0.0
            hist.add_metric([r["severity__code"], phase], buckets, total)
    yield hist

    outbox = GaugeMetricFamily(
        "controlplane_incident_notifications",
        "Outbox rows by channel and status.",
        labels=["channel", "status"],
    )
    for row in Notification.objects.values("channel", "status").annotate(n=Count("pk")):
        outbox.add_metric([row["channel"], row["status"]], row["n"])
    yield outbox
