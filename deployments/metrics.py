"""Deployment metrics for /metrics, read from the database at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from controlplane.metrics import db_metrics
from deployments.models import Deployment, Measurement

RECOVER_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


@db_metrics
def deployment_metrics() -> Iterable[Metric]:
    by_status = GaugeMetricFamily(
        "controlplane_deployments", "Deployments by status and strategy.", labels=["status", "strategy"]
    )
    counts = {
        (row["status"], row["strategy"]): row["n"]
        for row in Deployment.objects.values("status", "strategy").annotate(n=Count("id")).order_by()
    }
    for status in Deployment.Status.values:
        for strategy in ("canary", "blue-green", "rolling"):
            by_status.add_metric([status, strategy], counts.get((status, strategy), 0))
    yield by_status

    rollbacks = CounterMetricFamily(
        "controlplane_deployment_rollbacks",
        "Rollbacks: automatic (analysis failed) and requested (a rollback deployment).",
        labels=["kind"],
    )
    rollbacks.add_metric(
        ["automatic"],
        Deployment.objects.filter(status=Deployment.Status.ROLLED_BACK, rollbacks__isnull=True).count(),
    )
    rollbacks.add_metric(["requested"], Deployment.objects.filter(kind=Deployment.Kind.ROLLBACK).count())
    yield rollbacks

    # Rollout duration of finished deployments, as a histogram computed in one query.
    elapsed = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    finished = Deployment.objects.filter(finished_at__isnull=False, started_at__isnull=False)
    aggregates: dict[str, object] = {"n": Count("id"), "total": Sum(elapsed)}
    for i, bound in enumerate(DURATION_BUCKETS):
        aggregates[f"le{i}"] = Count("id", filter=_within(bound))
    hist = HistogramMetricFamily(
        "controlplane_deployment_duration_seconds",
        "Time from start to end of finished deployments, by strategy.",
        labels=["strategy"],
    )
    for row in finished.values("strategy").annotate(**aggregates).order_by():
        buckets = [(str(b), row[f"le{i}"]) for i, b in enumerate(DURATION_BUCKETS)]
        buckets.append(("+Inf", row["n"]))
        total = row["total"].total_seconds() if row["total"] else 0.0
        hist.add_metric([row["strategy"]], buckets, total)
    yield hist

    # Automatic rollbacks: first failing measurement -> 100% of traffic on stable.
    recover = HistogramMetricFamily(
        "controlplane_deployment_time_to_recover_seconds",
        "Time from the first failing measurement to all traffic back on stable, by strategy.",
        labels=["strategy"],
    )
    recovered = Deployment.objects.filter(time_to_recover__isnull=False)
    ttr_aggregates: dict[str, object] = {"n": Count("id"), "total": Sum("time_to_recover")}
    for i, bound in enumerate(RECOVER_BUCKETS):
        ttr_aggregates[f"le{i}"] = Count("id", filter=Q(time_to_recover__lte=bound))
    for row in recovered.values("strategy").annotate(**ttr_aggregates).order_by():
        buckets = [(str(b), row[f"le{i}"]) for i, b in enumerate(RECOVER_BUCKETS)]
        buckets.append(("+Inf", row["n"]))
        recover.add_metric([row["strategy"]], buckets, float(row["total"] or 0.0))
    yield recover

    verdicts = CounterMetricFamily(
        "controlplane_analysis_measurements",
        "Analysis measurements by metric and verdict.",
        labels=["metric", "outcome"],
    )
    for row in Measurement.objects.values("metric", "outcome").annotate(n=Count("id")).order_by():
        verdicts.add_metric([row["metric"], row["outcome"]], row["n"])
    yield verdicts


def _within(seconds: float) -> object:
    from datetime import timedelta

    from django.db.models import Q

    return Q(finished_at__lte=F("started_at") + timedelta(seconds=seconds))


@db_metrics
def active_deployment_metrics() -> Iterable[Metric]:
    """Per active deployment: how long it has run and how far past due its next step is."""
    from django.utils import timezone

    now = timezone.now()
    age = GaugeMetricFamily(
        "controlplane_deployment_active_age_seconds",
        "Seconds since the active deployment of the environment started (or was created).",
        labels=["environment", "status"],
    )
    overdue = GaugeMetricFamily(
        "controlplane_deployment_overdue_seconds",
        "Seconds the active deployment's next step is past due (0 when on time): the engine is not "
        "advancing it.",
        labels=["environment", "status"],
    )
    rows = (
        Deployment.objects.filter(status__in=Deployment.ACTIVE_STATUSES)
        .values_list(
            "environment__service__slug",
            "environment__slug",
            "status",
            "created_at",
            "started_at",
            "next_check_at",
        )
        .order_by()
    )
    for service, env, status, created_at, started_at, next_check_at in rows:
        labels = [f"{service}/{env}", status]
        age.add_metric(labels, (now - (started_at or created_at)).total_seconds())
        due = next_check_at if status != Deployment.Status.PAUSED else None
        overdue.add_metric(labels, max(0.0, (now - due).total_seconds()) if due else 0.0)
    yield from (age, overdue)
