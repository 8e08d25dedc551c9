"""The operator dashboard on the admin's landing page: what is rolling out, what is burning,
and how old the last good backup and drill are.

Three queries whatever the data (one per panel), each capped, so the landing page stays cheap
with thousands of deployments, incidents and backups behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

ROLLOUT_LIMIT = 20
INCIDENT_LIMIT = 30
POLICY_LIMIT = 50


def duration_text(seconds: float) -> str:
    """Compact, operator-friendly duration: ``45s``, ``12m 5s``, ``3h 07m``, ``2d 4h``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


@dataclass
class Rollout:
    deployment: Any
    step: int  # 1-based step being run (or the total once done)
    total: int
    title: str
    weight: int | None  # percent of traffic on the new release, when slots are weighted
    percent: int  # of steps done, for the progress bar


@dataclass
class OpenIncident:
    incident: Any
    phase: str
    due_in: str
    overdue: bool


@dataclass
class PolicyRow:
    policy: Any
    backup_at: datetime | None
    backup_age: str
    backup_id: int | None
    drill_at: datetime | None
    drill_age: str
    drill_status: str


def active_rollouts() -> list[Rollout]:
    from deployments.models import Deployment

    rows = (
        Deployment.objects.filter(status__in=Deployment.ACTIVE_STATUSES)
        .select_related("environment__service", "release")
        .only(
            "id",
            "status",
            "strategy",
            "plan",
            "current_step",
            "target_slot",
            "created_at",
            "release__version",
            "environment__slug",
            "environment__traffic",
            "environment__service__slug",
        )
        .order_by("-created_at")[:ROLLOUT_LIMIT]
    )
    out = []
    for d in rows:
        total = len(d.plan)
        spec = d.current_step_spec
        weights = (d.environment.traffic or {}).get("weights") or {}
        weight = weights.get(d.target_slot) if d.target_slot else None
        out.append(
            Rollout(
                deployment=d,
                step=min(d.current_step + 1, total),
                total=total,
                title=spec.get("title", spec.get("kind", "")) if spec else "done",
                weight=int(weight) if weight is not None else None,
                percent=int(100 * d.current_step / total) if total else 100,
            )
        )
    return out


def open_incidents(now: datetime) -> list[OpenIncident]:
    from incidents.models import Incident

    rows = (
        Incident.objects.filter(status__in=Incident.OPEN_STATUSES)
        .select_related("severity")
        .order_by("severity__rank", "declared_at")[:INCIDENT_LIMIT]
    )
    out = []
    for incident in rows:
        nxt = incident.next_deadline()
        if nxt is None:
            out.append(OpenIncident(incident=incident, phase="", due_in="", overdue=False))
            continue
        phase, due = nxt
        left = (due - now).total_seconds()
        out.append(
            OpenIncident(
                incident=incident,
                phase=str(Incident.Phase(phase).label) if phase in Incident.Phase.values else phase,
                due_in=("overdue by " if left < 0 else "in ") + duration_text(left),
                overdue=left < 0,
            )
        )
    return out


def backup_policies(now: datetime) -> list[PolicyRow]:
    from backups.models import Backup, BackupPolicy

    good = Backup.objects.filter(policy=OuterRef("pk"), status=Backup.Status.SUCCEEDED).order_by(
        "-finished_at", "-pk"
    )
    drilled = Backup.objects.filter(policy=OuterRef("pk"), drilled_at__isnull=False).order_by("-drilled_at")
    rows = (
        BackupPolicy.objects.only("id", "name", "enabled")
        .annotate(
            last_backup_at=Subquery(good.values("finished_at")[:1]),
            last_backup_id=Subquery(good.values("pk")[:1]),
            last_drill_at=Subquery(drilled.values("drilled_at")[:1]),
            last_drill_status=Subquery(drilled.values("drill_status")[:1]),
        )
        .order_by("name")[:POLICY_LIMIT]
    )
    out = []
    for p in rows:
        out.append(
            PolicyRow(
                policy=p,
                backup_at=p.last_backup_at,
                backup_age=duration_text((now - p.last_backup_at).total_seconds())
                if p.last_backup_at
                else "",
                backup_id=p.last_backup_id,
                drill_at=p.last_drill_at,
                drill_age=duration_text((now - p.last_drill_at).total_seconds()) if p.last_drill_at else "",
                drill_status=p.last_drill_status or "",
            )
        )
    return out


def dashboard(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    return {
        "rollouts": active_rollouts(),
        "incidents": open_incidents(now),
        "policies": backup_policies(now),
        "now": now,
    }
