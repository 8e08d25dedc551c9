"""Every write of the incidents app.  Each service validates, changes state in one transaction,
appends to the timeline, audits and enqueues notifications (outbox rows in the same transaction)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from controlplane.api.errors import Conflict
from controlplane.audit import audit_record
from incidents.models import (
    ActionItem,
    DeadlineBreach,
    DeploymentLink,
    Incident,
    IncidentRoleAssignment,
    PostMortem,
    SeverityPolicy,
    TimelineEvent,
)
from incidents.notifications import notification_enqueue, notify
from incidents.transitions import (
    INCIDENT_TRANSITIONS,
    PHASE_FIELDS,
    POSTMORTEM_TRANSITIONS,
    check_move,
    is_reopen,
)

__all__ = [
    "action_item_create",
    "action_item_update",
    "action_items_remind",
    "deadlines_check",
    "incident_add_environment",
    "incident_add_note",
    "incident_assign_role",
    "incident_declare",
    "incident_escalate",
    "incident_handoff_commander",
    "incident_link_deployment",
    "incident_open_for_deployment",
    "incident_remove_environment",
    "incident_rollback_deployment",
    "incident_set_severity",
    "incident_transition",
    "incident_update",
    "notification_enqueue",
    "notify",
    "postmortem_create",
    "postmortem_transition",
    "postmortem_update",
    "timeline_event_pin",
    "timeline_record",
]

Role = IncidentRoleAssignment.Role
Kind = TimelineEvent.Kind
# PagerDuty / Slack severity of each rank (1 = most severe).
_RANK_SEVERITY = {1: "critical", 2: "error"}


def _actor(actor: Any) -> Any:
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def _actor_name(actor: Any) -> str:
    return actor.get_username() if _actor(actor) is not None else "system"


def incident_url(incident: Incident) -> str:
    base = settings.CONTROLPLANE_PUBLIC_URL.rstrip("/")
    return f"{base}/admin/incidents/incident/{incident.pk}/change/" if base else ""


def timeline_record(
    *,
    incident: Incident,
    kind: str,
    message: str,
    details: dict[str, Any] | None = None,
    actor: Any = None,
    at: datetime | None = None,
    pinned: bool = False,
) -> TimelineEvent:
    """Append one event to an incident's timeline."""
    return TimelineEvent.objects.create(
        incident=incident,
        kind=kind,
        message=message,
        details=details or {},
        actor=_actor(actor),
        created_at=at or timezone.now(),
        pinned=pinned,
    )


def _notify_incident(
    incident: Incident,
    *,
    event: str,
    summary: str,
    pagerduty_action: str = "trigger",
    now: datetime,
    page: bool = True,
) -> None:
    """Notify the policy's channels about an incident; PagerDuty gets the incident's dedup key.

    ``page=False`` leaves PagerDuty out (a trigger after resolution would reopen the page)."""
    channels = [c for c in incident.severity.channels or [] if page or c != SeverityPolicy.Channel.PAGERDUTY]
    if not channels:
        return
    notify(
        event=event,
        summary=summary,
        severity=_RANK_SEVERITY.get(incident.severity.rank, "warning"),
        details={
            "incident": incident.pk,
            "severity": incident.severity.code,
            "status": incident.status,
            "source": incident.source,
            "impact": incident.impact_summary,
        },
        channels=channels,
        dedup_key=incident.pagerduty_dedup_key,
        pagerduty_action=pagerduty_action,
        incident=incident,
        url=incident_url(incident),
        now=now,
    )


# --- Incidents --------------------------------------------------------------------


def incident_declare(
    *,
    title: str,
    severity: SeverityPolicy,
    source: str = Incident.Source.MANUAL,
    description: str = "",
    impact_summary: str = "",
    actor: Any = None,
    now: datetime | None = None,
) -> Incident:
    """Open an incident, record it and page the severity's channels."""
    now = now or timezone.now()
    if not title.strip():
        raise ValidationError({"title": ["This field may not be blank."]})
    with transaction.atomic():
        incident = Incident.objects.create(
            title=title.strip()[:300],
            severity=severity,
            source=source,
            description=description,
            impact_summary=impact_summary,
            declared_at=now,
            created_by=_actor(actor),
        )
        timeline_record(
            incident=incident,
            kind=Kind.STATUS,
            message=f"Incident declared ({severity.code}) by {_actor_name(actor)}",
            details={
                "from": None,
                "to": Incident.Status.DECLARED,
                "severity": severity.code,
                "source": source,
            },
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.declare",
            obj=incident,
            changes={"severity": severity.code, "source": source},
            actor=_actor(actor),
        )
        _notify_incident(
            incident, event="incident.declared", summary=f"[{severity.code}] {incident.title}", now=now
        )
    return incident


def incident_transition(
    *, incident: Incident, to: str, actor: Any = None, note: str = "", now: datetime | None = None
) -> Incident:
    """Move an incident's status along the table; 409 naming the allowed moves otherwise."""
    now = now or timezone.now()
    if to not in Incident.Status.values:
        raise ValidationError(
            {"status": [f"Unknown status {to!r}; one of {', '.join(Incident.Status.values)}."]}
        )
    with transaction.atomic():
        locked = Incident.objects.select_for_update().select_related("severity").get(pk=incident.pk)
        current = locked.status
        check_move(INCIDENT_TRANSITIONS, current, to, what="incident")
        fields = ["status", "updated_at"]
        if is_reopen(current, to):
            locked.reopened_count += 1
            for attr in ("mitigated_at", "resolved_at", "closed_at"):
                setattr(locked, attr, None)
            fields += ["reopened_count", "mitigated_at", "resolved_at", "closed_at"]
        else:
            # Skipped phases take this moment too, so time-to-phase stays defined.
            order = [status for status, _ in PHASE_FIELDS]
            for _status, attr in PHASE_FIELDS[: order.index(to) + 1]:
                if getattr(locked, attr) is None:
                    setattr(locked, attr, now)
                    fields.append(attr)
        locked.status = to
        locked.save(update_fields=fields)
        verb = "reopened" if is_reopen(current, to) else f"moved to {to}"
        timeline_record(
            incident=locked,
            kind=Kind.STATUS,
            message=f"Incident {verb} by {_actor_name(actor)}" + (f": {note}" if note else ""),
            details={"from": current, "to": to, "note": note},
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.transition", obj=locked, changes={"status": [current, to]}, actor=_actor(actor)
        )
        if to == Incident.Status.RESOLVED:
            _notify_incident(
                locked,
                event="incident.resolved",
                summary=f"[{locked.severity.code}] Resolved: {locked.title}",
                pagerduty_action="resolve",
                now=now,
            )
            if (
                locked.severity.postmortem_required
                and not PostMortem.objects.filter(incident=locked).exists()
            ):
                postmortem_create(incident=locked, actor=actor, now=now)
        elif is_reopen(current, to):
            _notify_incident(
                locked,
                event="incident.reopened",
                summary=f"[{locked.severity.code}] Reopened: {locked.title}",
                now=now,
            )
    incident.refresh_from_db()
    return incident


def incident_update(
    *,
    incident: Incident,
    actor: Any = None,
    title: str | None = None,
    description: str | None = None,
    impact_summary: str | None = None,
    now: datetime | None = None,
) -> Incident:
    """Edit the descriptive fields; each change is on the timeline."""
    changes = {
        k: v
        for k, v in (("title", title), ("description", description), ("impact_summary", impact_summary))
        if v is not None and getattr(incident, k) != v
    }
    if not changes:
        return incident
    if "title" in changes and not str(changes["title"]).strip():
        raise ValidationError({"title": ["This field may not be blank."]})
    with transaction.atomic():
        before = {k: getattr(incident, k) for k in changes}
        for k, v in changes.items():
            setattr(incident, k, v)
        incident.save(update_fields=[*changes, "updated_at"])
        timeline_record(
            incident=incident,
            kind=Kind.UPDATE,
            message=f"{', '.join(changes)} updated by {_actor_name(actor)}",
            details={"changes": {k: [before[k], v] for k, v in changes.items()}},
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.update",
            obj=incident,
            changes={k: [before[k], v] for k, v in changes.items()},
            actor=_actor(actor),
        )
    return incident


def incident_set_severity(
    *,
    incident: Incident,
    severity: SeverityPolicy,
    actor: Any = None,
    reason: str = "",
    now: datetime | None = None,
) -> Incident:
    """Change the severity (deadlines follow the new policy); escalations page the new channels."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Incident.objects.select_for_update().select_related("severity").get(pk=incident.pk)
        old = locked.severity
        if old.pk == severity.pk:
            return locked
        locked.severity = severity
        locked.save(update_fields=["severity", "updated_at"])
        escalated = severity.rank < old.rank
        timeline_record(
            incident=locked,
            kind=Kind.SEVERITY,
            message=f"Severity {'escalated' if escalated else 'lowered'} {old.code} -> {severity.code} "
            f"by {_actor_name(actor)}" + (f": {reason}" if reason else ""),
            details={"from": old.code, "to": severity.code, "reason": reason},
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.severity",
            obj=locked,
            changes={"severity": [old.code, severity.code]},
            actor=_actor(actor),
        )
        if escalated and locked.is_open:
            _notify_incident(
                locked,
                event="incident.escalated",
                summary=f"[{severity.code}] Escalated: {locked.title}",
                now=now,
            )
    incident.refresh_from_db()
    return incident


def incident_escalate(*, incident: Incident, actor: Any = None, now: datetime | None = None) -> Incident:
    """Raise the severity one rank (P3 -> P2 -> P1); 409 when already the most severe."""
    higher = SeverityPolicy.objects.filter(rank__lt=incident.severity.rank).order_by("-rank").first()
    if higher is None:
        raise Conflict(f"{incident.severity.code} is already the most severe policy.", code="max_severity")
    return incident_set_severity(incident=incident, severity=higher, actor=actor, reason="escalated", now=now)


def incident_assign_role(
    *,
    incident: Incident,
    role: str,
    user: Any,
    actor: Any = None,
    note: str = "",
    now: datetime | None = None,
) -> IncidentRoleAssignment:
    """Give a role to a user.  A commander already in place is replaced only by a hand-off."""
    now = now or timezone.now()
    if role not in Role.values:
        raise ValidationError({"role": [f"Unknown role {role!r}; one of {', '.join(Role.values)}."]})
    with transaction.atomic():
        locked = Incident.objects.select_for_update().select_related("severity").get(pk=incident.pk)
        current = IncidentRoleAssignment.objects.filter(
            incident=locked, role=role, ended_at__isnull=True
        ).first()
        if current is not None and current.user_id == user.pk:
            return current
        if current is not None and role == Role.COMMANDER:
            raise Conflict(
                f"{current.user.get_username()} is the commander; hand the incident off explicitly.",
                code="commander_handoff_required",
                details={"commander": current.user.get_username()},
            )
        if current is not None:
            current.ended_at = now
            current.save(update_fields=["ended_at"])
        assignment = IncidentRoleAssignment.objects.create(
            incident=locked, role=role, user=user, assigned_by=_actor(actor), assigned_at=now, note=note
        )
        timeline_record(
            incident=locked,
            kind=Kind.ROLE,
            message=f"{Role(role).label}: {user.get_username()}"
            + (f" (was {current.user.get_username()})" if current else "")
            + f", assigned by {_actor_name(actor)}",
            details={
                "role": role,
                "user": user.get_username(),
                "previous": current.user.get_username() if current else None,
                "note": note,
            },
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.assign_role",
            obj=locked,
            changes={"role": role, "user": user.get_username()},
            actor=_actor(actor),
        )
        if role == Role.COMMANDER and locked.acknowledged_at is None:
            locked.acknowledged_at = now
            locked.save(update_fields=["acknowledged_at", "updated_at"])
            _notify_incident(
                locked,
                event="incident.acknowledged",
                summary=f"[{locked.severity.code}] {user.get_username()} is commanding: {locked.title}",
                pagerduty_action="acknowledge",
                now=now,
            )
    incident.refresh_from_db()
    return assignment


def incident_handoff_commander(
    *, incident: Incident, to_user: Any, actor: Any = None, note: str = "", now: datetime | None = None
) -> IncidentRoleAssignment:
    """Explicit hand-off of command: the old commander's term ends, the new one's starts, same instant."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Incident.objects.select_for_update().get(pk=incident.pk)
        current = IncidentRoleAssignment.objects.filter(
            incident=locked, role=Role.COMMANDER, ended_at__isnull=True
        ).first()
        if current is None:
            raise Conflict("The incident has no commander to hand off from; assign one.", code="no_commander")
        if current.user_id == to_user.pk:
            raise Conflict(f"{to_user.get_username()} is already the commander.", code="same_commander")
        current.ended_at = now
        current.save(update_fields=["ended_at"])
        assignment = IncidentRoleAssignment.objects.create(
            incident=locked,
            role=Role.COMMANDER,
            user=to_user,
            assigned_by=_actor(actor),
            assigned_at=now,
            note=note,
        )
        timeline_record(
            incident=locked,
            kind=Kind.ROLE,
            message=f"Command handed off from {current.user.get_username()} to {to_user.get_username()}"
            + (f": {note}" if note else ""),
            details={
                "role": Role.COMMANDER,
                "user": to_user.get_username(),
                "previous": current.user.get_username(),
                "handoff": True,
                "note": note,
            },
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.handoff",
            obj=locked,
            changes={"commander": [current.user.get_username(), to_user.get_username()]},
            actor=_actor(actor),
        )
    return assignment


def incident_add_note(
    *, incident: Incident, message: str, actor: Any = None, pinned: bool = False, now: datetime | None = None
) -> TimelineEvent:
    """A manual note on the timeline."""
    if not message.strip():
        raise ValidationError({"message": ["This field may not be blank."]})
    with transaction.atomic():
        event = timeline_record(
            incident=incident, kind=Kind.NOTE, message=message, actor=actor, at=now, pinned=pinned
        )
        audit_record(action="incident.note", obj=incident, changes={"event": event.pk}, actor=_actor(actor))
    return event


def timeline_event_pin(*, event: TimelineEvent, pinned: bool, actor: Any = None) -> TimelineEvent:
    """Pin or unpin a timeline event (the only change an event allows)."""
    if event.pinned != pinned:
        with transaction.atomic():
            event.pinned = pinned
            event.save(update_fields=["pinned"])
            audit_record(
                action="timeline_event.pin", obj=event, changes={"pinned": pinned}, actor=_actor(actor)
            )
    return event


# --- Deadlines --------------------------------------------------------------------

# A phase met late between two ticks (or while beat was down) is still recorded as breached.
LATE_BREACH_LOOKBACK = timedelta(days=2)


def _candidate_breaches(now: datetime) -> list[tuple[Incident, str, datetime]]:
    out: list[tuple[Incident, str, datetime]] = []
    # Open incidents, and recently resolved ones whose phases may have been met late between ticks.
    recent = Q(status__in=Incident.OPEN_STATUSES) | Q(resolved_at__gte=now - LATE_BREACH_LOOKBACK)
    incidents = list(Incident.objects.filter(recent).select_related("severity"))
    seen = set(
        DeadlineBreach.objects.filter(incident__in=[i.pk for i in incidents]).values_list(
            "incident_id", "phase"
        )
    )
    for incident in incidents:
        for phase, deadline in incident.phase_deadlines().items():
            if phase == Incident.Phase.POSTMORTEM or (incident.pk, phase) in seen or deadline > now:
                continue
            met_at = incident.phase_met_at(phase)
            if (met_at is None and incident.is_open) or (met_at is not None and met_at > deadline):
                out.append((incident, phase, deadline))
    overdue_postmortems = (
        Incident.objects.filter(
            status__in=(Incident.Status.RESOLVED, Incident.Status.CLOSED),
            severity__postmortem_required=True,
            resolved_at__isnull=False,
        )
        .exclude(postmortem__status=PostMortem.Status.PUBLISHED)
        .exclude(breaches__phase=Incident.Phase.POSTMORTEM)
        .select_related("severity")
    )
    for incident in overdue_postmortems:
        assert incident.resolved_at is not None  # noqa: S101  (filtered above)
        deadline = incident.resolved_at + incident.severity.postmortem_within
        if deadline <= now:
            out.append((incident, Incident.Phase.POSTMORTEM, deadline))
    return out


def deadlines_check(*, now: datetime | None = None) -> list[DeadlineBreach]:
    """Record each newly breached phase deadline once (unique row), on the timeline, notified."""
    now = now or timezone.now()
    created: list[DeadlineBreach] = []
    for incident, phase, deadline in _candidate_breaches(now):
        try:
            with transaction.atomic():
                breach = DeadlineBreach.objects.create(
                    incident=incident,
                    phase=phase,
                    severity_code=incident.severity.code,
                    deadline_at=deadline,
                    detected_at=now,
                )
                label = Incident.Phase(phase).label
                timeline_record(
                    incident=incident,
                    kind=Kind.DEADLINE_BREACHED,
                    message=f"Deadline breached: {label} was due {deadline:%Y-%m-%d %H:%M:%S %Z}",
                    details={"phase": phase, "deadline": deadline.isoformat(), "breach": breach.pk},
                    at=now,
                )
                audit_record(action="incident.deadline_breached", obj=incident, changes={"phase": phase})
                _notify_incident(
                    incident,
                    event="incident.deadline_breached",
                    summary=f"[{incident.severity.code}] {label} deadline breached: {incident.title}",
                    now=now,
                    page=incident.is_open,
                )
        except IntegrityError:  # another checker recorded it first
            continue
        created.append(breach)
    return created


# --- Post-mortems and action items -----------------------------------------------


def generate_timeline(incident: Incident) -> list[dict[str, Any]]:
    """The post-mortem's timeline, generated from the incident's events (pinned ones flagged)."""
    return [
        {
            "at": e.created_at.isoformat(),
            "kind": e.kind,
            "message": e.message,
            "pinned": e.pinned,
        }
        for e in incident.timeline.exclude(
            kind__in=[Kind.NOTIFICATION_SENT, Kind.NOTIFICATION_FAILED]
        ).order_by("created_at", "pk")
    ]


def postmortem_create(*, incident: Incident, actor: Any = None, now: datetime | None = None) -> PostMortem:
    """Start the post-mortem of an incident; due per its severity policy from resolution."""
    now = now or timezone.now()
    with transaction.atomic():
        if PostMortem.objects.filter(incident=incident).exists():
            raise Conflict("This incident already has a post-mortem.", code="postmortem_exists")
        start = incident.resolved_at or now
        pm = PostMortem.objects.create(
            incident=incident,
            author=_actor(actor),
            due_at=start + incident.severity.postmortem_within,
            summary=incident.impact_summary,
            timeline=generate_timeline(incident),
            created_at=now,
        )
        timeline_record(
            incident=incident,
            kind=Kind.POSTMORTEM,
            message=f"Post-mortem started, due {pm.due_at:%Y-%m-%d}",
            details={"postmortem": pm.pk},
            at=now,
        )
        audit_record(action="postmortem.create", obj=pm, actor=_actor(actor))
    return pm


def postmortem_update(*, postmortem: PostMortem, actor: Any = None, **sections: str) -> PostMortem:
    """Edit sections while the post-mortem is not published."""
    unknown = set(sections) - set(PostMortem.SECTIONS)
    if unknown:
        raise ValidationError({k: ["Not a post-mortem section."] for k in unknown})
    if postmortem.status == PostMortem.Status.PUBLISHED:
        raise Conflict("A published post-mortem is final.", code="postmortem_published")
    changed = {k: v for k, v in sections.items() if getattr(postmortem, k) != v}
    if changed:
        with transaction.atomic():
            for k, v in changed.items():
                setattr(postmortem, k, v)
            postmortem.save(update_fields=list(changed))
            audit_record(
                action="postmortem.update",
                obj=postmortem,
                changes={"sections": sorted(changed)},
                actor=_actor(actor),
            )
    return postmortem


def postmortem_transition(
    *, postmortem: PostMortem, to: str, actor: Any = None, now: datetime | None = None
) -> PostMortem:
    """draft -> in_review -> published (review may send it back to draft)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = PostMortem.objects.select_for_update().select_related("incident").get(pk=postmortem.pk)
        current = locked.status
        check_move(POSTMORTEM_TRANSITIONS, current, to, what="post-mortem")
        if to == PostMortem.Status.PUBLISHED:
            missing = [
                s for s in ("summary", "impact", "root_causes", "resolution") if not getattr(locked, s)
            ]
            if missing:
                raise ValidationError({s: ["Required to publish."] for s in missing})
            locked.published_at = now
            locked.timeline = generate_timeline(locked.incident)
        locked.status = to
        locked.save(update_fields=["status", "published_at", "timeline"])
        timeline_record(
            incident=locked.incident,
            kind=Kind.POSTMORTEM,
            message=f"Post-mortem moved to {to} by {_actor_name(actor)}",
            details={"postmortem": locked.pk, "from": current, "to": to},
            actor=actor,
            at=now,
        )
        audit_record(
            action="postmortem.transition", obj=locked, changes={"status": [current, to]}, actor=_actor(actor)
        )
    postmortem.refresh_from_db()
    return postmortem


_ACTION_FIELDS = ("title", "owner", "due_date", "kind", "status", "link")


def action_item_create(
    *,
    postmortem: PostMortem,
    title: str,
    owner: Any = None,
    due_date: date | None = None,
    kind: str = ActionItem.Kind.PREVENT,
    link: str = "",
    actor: Any = None,
) -> ActionItem:
    with transaction.atomic():
        item = ActionItem.objects.create(
            postmortem=postmortem, title=title, owner=owner, due_date=due_date, kind=kind, link=link
        )
        audit_record(
            action="action_item.create", obj=item, changes={"title": title, "kind": kind}, actor=_actor(actor)
        )
    return item


def action_item_update(*, item: ActionItem, actor: Any = None, **fields: Any) -> ActionItem:
    unknown = set(fields) - set(_ACTION_FIELDS)
    if unknown:
        raise ValidationError({k: ["Not editable."] for k in unknown})
    changed = {k: v for k, v in fields.items() if getattr(item, k) != v}
    if not changed:
        return item
    with transaction.atomic():
        for k, v in changed.items():
            setattr(item, k, v)
        update = list(changed)
        if "status" in changed:
            done = item.status in (ActionItem.Status.DONE, ActionItem.Status.WONT_DO)
            item.completed_at = timezone.now() if done else None
            update.append("completed_at")
        item.save(update_fields=update)
        audit_record(
            action="action_item.update",
            obj=item,
            changes={k: str(v) for k, v in changed.items()},
            actor=_actor(actor),
        )
    return item


REMINDER_INTERVAL = timedelta(days=1)


def action_items_remind(*, now: datetime | None = None) -> list[ActionItem]:
    """Remind about overdue open action items, at most once a day each (conditional UPDATE claims)."""
    now = now or timezone.now()
    overdue = ActionItem.objects.filter(
        status__in=(ActionItem.Status.OPEN, ActionItem.Status.IN_PROGRESS),
        due_date__lt=timezone.localdate(now),
    ).filter(Q(last_reminded_at__isnull=True) | Q(last_reminded_at__lte=now - REMINDER_INTERVAL))
    reminded = []
    for item in overdue.select_related("owner", "postmortem__incident"):
        with transaction.atomic():
            claimed = (
                ActionItem.objects.filter(pk=item.pk)
                .filter(Q(last_reminded_at__isnull=True) | Q(last_reminded_at__lte=now - REMINDER_INTERVAL))
                .update(last_reminded_at=now)
            )
            if not claimed:
                continue
            incident = item.postmortem.incident
            owner = item.owner.get_username() if item.owner else "nobody"
            notify(
                event="action_item.overdue",
                summary=f"Action item overdue since {item.due_date}: {item.title} (owner {owner})",
                severity="warning",
                details={
                    "incident": incident.pk,
                    "action_item": item.pk,
                    "owner": owner,
                    "due_date": str(item.due_date),
                    "link": item.link,
                },
                channels=[c for c in incident.severity.channels if c != "pagerduty"],
                dedup_key=f"controlplane-action-item-{item.pk}",
                incident=incident,
                now=now,
            )
        reminded.append(item)
    return reminded


# --- Deployments tie-in ---------------------------------------------------------------


def incident_add_environment(
    *, incident: Incident, environment: Any, actor: Any = None, now: datetime | None = None
) -> Incident:
    """Mark an environment affected (a freezing severity then freezes deployments there)."""
    with transaction.atomic():
        if incident.environments.filter(pk=environment.pk).exists():
            return incident
        incident.environments.add(environment)
        timeline_record(
            incident=incident,
            kind=Kind.UPDATE,
            message=f"Affected environment added: {environment}",
            details={"environment": str(environment)},
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.add_environment",
            obj=incident,
            changes={"environment": str(environment)},
            actor=_actor(actor),
        )
    return incident


def incident_remove_environment(*, incident: Incident, environment: Any, actor: Any = None) -> Incident:
    with transaction.atomic():
        if not incident.environments.filter(pk=environment.pk).exists():
            return incident
        incident.environments.remove(environment)
        timeline_record(
            incident=incident,
            kind=Kind.UPDATE,
            message=f"Affected environment removed: {environment}",
            details={"environment": str(environment)},
            actor=actor,
        )
        audit_record(
            action="incident.remove_environment",
            obj=incident,
            changes={"environment": str(environment)},
            actor=_actor(actor),
        )
    return incident


def incident_link_deployment(
    *,
    incident: Incident,
    deployment: Any,
    relation: str,
    actor: Any = None,
    note: str = "",
    now: datetime | None = None,
) -> DeploymentLink:
    """Tie a deployment to an incident (or change how it is tied); on the timeline."""
    now = now or timezone.now()
    if relation not in DeploymentLink.Relation.values:
        raise ValidationError(
            {
                "relation": [
                    f"Unknown relation {relation!r}; one of {', '.join(DeploymentLink.Relation.values)}."
                ]
            }
        )
    with transaction.atomic():
        link = (
            DeploymentLink.objects.select_for_update()
            .filter(incident=incident, deployment=deployment)
            .first()
        )
        previous = link.relation if link else None
        if link is None:
            link = DeploymentLink.objects.create(
                incident=incident,
                deployment=deployment,
                relation=relation,
                note=note,
                created_by=_actor(actor),
                created_at=now,
                updated_at=now,
            )
        elif link.relation != relation or note:
            link.relation, link.note, link.updated_at = relation, note or link.note, now
            link.save(update_fields=["relation", "note", "updated_at"])
        else:
            return link
        timeline_record(
            incident=incident,
            kind=Kind.DEPLOYMENT,
            message=f"Deployment #{deployment.pk} ({deployment.release.version} -> {deployment.environment}) "
            f"marked {relation}" + (f" (was {previous})" if previous else "") + (f": {note}" if note else ""),
            details={"deployment": deployment.pk, "relation": relation, "previous": previous},
            actor=actor,
            at=now,
        )
        audit_record(
            action="incident.link_deployment",
            obj=incident,
            changes={"deployment": deployment.pk, "relation": [previous, relation]},
            actor=_actor(actor),
        )
    return link


def incident_open_for_deployment(
    *, deployment: Any, reason: str = "", now: datetime | None = None
) -> Incident | None:
    """For the rollout engine: a deployment was aborted or rolled back automatically.

    Opens an incident (source ``deployment``) on its environment with the deployment linked as
    ``caused``, using the most severe policy with ``open_on_deployment_failure``; None when no
    policy asks for it.  Idempotent per deployment (a second call returns the same incident).
    """
    from deployments.models import Deployment

    now = now or timezone.now()
    policy = SeverityPolicy.objects.filter(open_on_deployment_failure=True).order_by("rank").first()
    if policy is None:
        return None
    with transaction.atomic():
        d = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment__service", "release")
            .get(pk=deployment.pk)
        )
        existing = (
            DeploymentLink.objects.filter(
                deployment=d,
                relation=DeploymentLink.Relation.CAUSED,
                incident__source=Incident.Source.DEPLOYMENT,
            )
            .select_related("incident")
            .first()
        )
        if existing is not None:
            return existing.incident
        incident = incident_declare(
            title=f"Deployment #{d.pk} of {d.release.version} to {d.environment} "
            f"{d.status.replace('_', ' ')}",
            severity=policy,
            source=Incident.Source.DEPLOYMENT,
            description=reason or d.status_reason,
            now=now,
        )
        incident_add_environment(incident=incident, environment=d.environment, now=now)
        incident_link_deployment(
            incident=incident,
            deployment=d,
            relation=DeploymentLink.Relation.CAUSED,
            note=reason or d.status_reason,
            now=now,
        )
    return incident


def incident_rollback_deployment(*, incident: Incident, deployment: Any, actor: Any = None) -> Any:
    """Roll back a deployment tied to an incident (from the admin): the rollback is linked ``fixed``."""
    from deployments.services import deployment_rollback

    with transaction.atomic():
        rollback = deployment_rollback(
            deployment=deployment, actor=actor, reason=f"rollback for incident #{incident.pk}"
        )
        incident_link_deployment(
            incident=incident, deployment=deployment, relation=DeploymentLink.Relation.CAUSED, actor=actor
        )
        incident_link_deployment(
            incident=incident,
            deployment=rollback,
            relation=DeploymentLink.Relation.FIXED,
            actor=actor,
            note=f"rollback of #{deployment.pk}",
        )
    return rollback
