"""Reads of the incidents app that are more than a one-line queryset."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Q, QuerySet

from incidents.models import DeadlineBreach, Incident, SeverityPolicy

# Time-to-phase: from declaration to the phase's timestamp.
PHASE_FIELDS = {"acknowledge": "acknowledged_at", "mitigate": "mitigated_at", "resolve": "resolved_at"}


def _duration(field: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(field) - F("declared_at"), output_field=DurationField())


def _seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 3) if value is not None else None


def incidents_report(*, since: datetime, until: datetime) -> dict[str, Any]:
    """MTTA, MTTM, MTTR and deadline breaches per severity for incidents declared in [since, until)."""
    incidents: QuerySet[Incident] = Incident.objects.filter(declared_at__gte=since, declared_at__lt=until)
    rows = {
        r["severity__code"]: r
        for r in incidents.values("severity__code").annotate(
            count=Count("pk"),
            open=Count("pk", filter=Q(status__in=Incident.OPEN_STATUSES)),
            mtta=Avg(_duration("acknowledged_at")),
            mttm=Avg(_duration("mitigated_at")),
            mttr=Avg(_duration("resolved_at")),
        )
    }
    breaches: dict[str, dict[str, int]] = {}
    for b in (
        DeadlineBreach.objects.filter(incident__in=incidents)
        .values("incident__severity__code", "phase")
        .annotate(n=Count("pk"))
    ):
        breaches.setdefault(b["incident__severity__code"], {})[b["phase"]] = b["n"]
    out = []
    for policy in SeverityPolicy.objects.order_by("rank"):
        r = rows.get(policy.code, {})
        per_phase = breaches.get(policy.code, {})
        out.append(
            {
                "severity": policy.code,
                "incidents": r.get("count", 0),
                "open": r.get("open", 0),
                "mtta_seconds": _seconds(r.get("mtta")),
                "mttm_seconds": _seconds(r.get("mttm")),
                "mttr_seconds": _seconds(r.get("mttr")),
                "deadline_breaches": sum(per_phase.values()),
                "breaches_by_phase": per_phase,
            }
        )
    return {"since": since, "until": until, "severities": out}


# --- Deployments tie-in ---------------------------------------------------------------

# How far before detection a deployment on an affected environment counts as a suspect.
SUSPECT_WINDOW = timedelta(hours=2)


def environment_frozen_by_incident(environment: Any) -> Incident | None:
    """The open incident freezing deployments on ``environment`` (a P1 by default), or None.

    For the deployments app: refuse new deployments (not rollbacks) while this returns an
    incident, naming it, e.g. ``f"{environment} is frozen by incident #{incident.pk}"``.
    """
    return (
        Incident.objects.filter(
            environments=environment,
            status__in=Incident.OPEN_STATUSES,
            severity__freezes_deployments=True,
        )
        .select_related("severity")
        .order_by("severity__rank", "declared_at")
        .first()
    )


def suspect_deployments(incident: Incident, *, window: timedelta = SUSPECT_WINDOW) -> QuerySet[Any]:
    """Deployments on the incident's environments created before its declaration that were
    created, started or finished within ``window`` before it, minus dismissed ones; newest first."""
    from deployments.models import Deployment

    since = incident.declared_at - window
    dismissed = incident.deployment_links.filter(relation="dismissed").values("deployment_id")
    return (
        Deployment.objects.filter(environment__in=incident.environments.all())
        .filter(Q(started_at__gte=since) | Q(finished_at__gte=since) | Q(created_at__gte=since))
        .filter(created_at__lte=incident.declared_at)
        .exclude(pk__in=dismissed)
        .select_related("environment__service", "release")
        .order_by("-created_at")
    )
