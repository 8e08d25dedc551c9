"""Alertmanager webhook (payload version 4) intake.

One ``groupKey`` is one incident: the group row is inserted with ON CONFLICT DO NOTHING and then
locked, so repeated and concurrent deliveries of a group are serialised and never open a second
incident.  Alerts are deduplicated by ``fingerprint`` (unique per incident).  The payload is
validated completely before anything is written, and everything is written in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from incidents.models import Alert, AlertGroup, Incident, SeverityPolicy, TimelineEvent

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_FRACTION = re.compile(r"(\.\d{6})\d+")
_LIST_IN_TIMELINE = 20


@dataclasses.dataclass(frozen=True)
class ParsedAlert:
    fingerprint: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclasses.dataclass(frozen=True)
class ParsedDelivery:
    group_key: str
    status: str
    receiver: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    external_url: str
    alerts: list[ParsedAlert]


@dataclasses.dataclass
class IntakeResult:
    incident: Incident | None
    created: bool
    new: int = 0
    fired: int = 0
    resolved: int = 0
    unchanged: int = 0
    reopened: bool = False
    auto_resolved: bool = False


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationError({field: ["Must be an object of string values."]})
    return value


def _time(value: Any, field: str) -> datetime | None:
    if value in (None, "", _GO_ZERO_TIME):
        return None
    if not isinstance(value, str):
        raise ValidationError({field: ["Must be an RFC 3339 timestamp."]})
    text = _FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError({field: [f"Not an RFC 3339 timestamp: {value!r}."]}) from None
    if parsed.tzinfo is None:
        raise ValidationError({field: ["Timestamp needs a timezone."]})
    return parsed


def parse_payload(payload: Any) -> ParsedDelivery:
    """Validate a whole webhook payload; raise a 400 naming the field and the rule."""
    if not isinstance(payload, dict):
        raise ValidationError({"non_field_errors": ["Payload must be a JSON object."]})
    if payload.get("version") != "4":
        raise ValidationError({"version": [f'Unsupported version {payload.get("version")!r}; expected "4".']})
    group_key = payload.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise ValidationError({"groupKey": ["Required non-empty string."]})
    if len(group_key) > 1000:
        raise ValidationError({"groupKey": ["At most 1000 characters."]})
    status = payload.get("status")
    if status not in ("firing", "resolved"):
        raise ValidationError({"status": ['Must be "firing" or "resolved".']})
    alerts_in = payload.get("alerts")
    if not isinstance(alerts_in, list) or not alerts_in:
        raise ValidationError({"alerts": ["Required non-empty list."]})
    receiver = payload.get("receiver", "")
    if not isinstance(receiver, str):
        raise ValidationError({"receiver": ["Must be a string."]})
    external_url = payload.get("externalURL", "")
    if not isinstance(external_url, str):
        raise ValidationError({"externalURL": ["Must be a string."]})
    alerts: dict[str, ParsedAlert] = {}
    for i, raw in enumerate(alerts_in):
        where = f"alerts[{i}]"
        if not isinstance(raw, dict):
            raise ValidationError({where: ["Must be an object."]})
        fp = raw.get("fingerprint")
        if not isinstance(fp, str) or not fp or len(fp) > 128:
            raise ValidationError({f"{where}.fingerprint": ["Required string of at most 128 characters."]})
        a_status = raw.get("status")
        if a_status not in ("firing", "resolved"):
            raise ValidationError({f"{where}.status": ['Must be "firing" or "resolved".']})
        labels = _str_map(raw.get("labels"), f"{where}.labels")
        generator = raw.get("generatorURL", "")
        if not isinstance(generator, str):
            raise ValidationError({f"{where}.generatorURL": ["Must be a string."]})
        # A fingerprint repeated within one delivery keeps its last state.
        alerts[fp] = ParsedAlert(
            fingerprint=fp,
            status=a_status,
            labels=labels,
            annotations=_str_map(raw.get("annotations"), f"{where}.annotations"),
            starts_at=_time(raw.get("startsAt"), f"{where}.startsAt"),
            ends_at=_time(raw.get("endsAt"), f"{where}.endsAt"),
            generator_url=generator[:2000],
        )
    return ParsedDelivery(
        group_key=group_key,
        status=status,
        receiver=receiver[:200],
        group_labels=_str_map(payload.get("groupLabels"), "groupLabels"),
        common_labels=_str_map(payload.get("commonLabels"), "commonLabels"),
        common_annotations=_str_map(payload.get("commonAnnotations"), "commonAnnotations"),
        external_url=external_url[:1000],
        alerts=list(alerts.values()),
    )


def severity_for(alerts: list[ParsedAlert], policies: list[SeverityPolicy]) -> SeverityPolicy:
    """The most severe policy any alert's ``severity`` label maps to; unmapped -> the least severe."""
    by_label = {
        str(label).lower(): p for p in sorted(policies, key=lambda p: -p.rank) for label in p.alert_severities
    }
    least = max(policies, key=lambda p: p.rank)
    found = [by_label.get(a.labels.get("severity", "").lower(), least) for a in alerts]
    return min(found, key=lambda p: p.rank) if found else least


def _title(d: ParsedDelivery) -> str:
    name = d.group_labels.get("alertname") or d.common_labels.get("alertname") or "Alert"
    summary = d.common_annotations.get("summary") or d.common_annotations.get("description") or ""
    return f"{name}: {summary}"[:300] if summary else name[:300]


def _names(alerts: list[ParsedAlert]) -> list[str]:
    return [f"{a.name or '?'} {a.fingerprint}" for a in alerts[:_LIST_IN_TIMELINE]]


def alertmanager_ingest(*, payload: Any, now: datetime | None = None) -> IntakeResult:
    """Record one webhook delivery: group -> incident, alerts deduplicated, state changes on the timeline."""
    from incidents.services import (
        incident_declare,
        incident_set_severity,
        incident_transition,
        timeline_record,
    )

    delivery = parse_payload(payload)
    now = now or timezone.now()
    with transaction.atomic():
        group = _lock_group(delivery, now)
        incident = group.incident
        firing = [a for a in delivery.alerts if a.status == "firing"]
        result = IntakeResult(incident=incident, created=False)
        if incident is None or incident.status == Incident.Status.CLOSED:
            if not firing:  # only resolutions for a group we hold nothing open for
                _touch_group(group, delivery, now)
                result.unchanged = len(delivery.alerts)
                return result
            incident = incident_declare(
                title=_title(delivery),
                severity=severity_for(firing, _policies()),
                source=Incident.Source.ALERT,
                description=delivery.common_annotations.get("description", ""),
                now=now,
            )
            group.incident = incident
            result.incident, result.created = incident, True

        # Only what the comparison needs: no model instances, no JSON decoding of labels.
        existing = {
            fp: (pk, status, starts_at)
            for pk, fp, status, starts_at in Alert.objects.filter(incident=incident)
            .order_by()
            .values_list("pk", "fingerprint", "status", "starts_at")
        }
        new_rows: list[Alert] = []
        changed: list[Alert] = []
        seen: list[str] = []
        fired: list[ParsedAlert] = []
        resolved: list[ParsedAlert] = []
        for a in delivery.alerts:
            known = existing.get(a.fingerprint)
            if known is None:
                new_rows.append(
                    Alert(
                        incident=incident,
                        group=group,
                        fingerprint=a.fingerprint,
                        status=a.status,
                        name=a.name[:300],
                        labels=a.labels,
                        annotations=a.annotations,
                        starts_at=a.starts_at,
                        ends_at=a.ends_at,
                        generator_url=a.generator_url,
                        first_seen_at=now,
                        last_seen_at=now,
                        resolved_at=now if a.status == "resolved" else None,
                    )
                )
                (fired if a.status == "firing" else resolved).append(a)
            elif known[1] != a.status or (a.status == "firing" and a.starts_at != known[2]):
                changed.append(
                    Alert(
                        pk=known[0],
                        status=a.status,
                        starts_at=a.starts_at,
                        ends_at=a.ends_at,
                        labels=a.labels,
                        annotations=a.annotations,
                        last_seen_at=now,
                        resolved_at=now if a.status == "resolved" else None,
                    )
                )
                (fired if a.status == "firing" else resolved).append(a)
            else:
                seen.append(a.fingerprint)
        Alert.objects.bulk_create(new_rows, batch_size=1000)
        _update_alerts(changed)
        result.new, result.unchanged = len(new_rows), len(seen)
        result.fired, result.resolved = len(fired), len(resolved)

        if fired:
            timeline_record(
                incident=incident,
                kind=TimelineEvent.Kind.ALERT_FIRED,
                at=now,
                message=f"{len(fired)} alert(s) firing from Alertmanager ({delivery.receiver or 'webhook'})",
                details={"count": len(fired), "alerts": _names(fired), "group_key": delivery.group_key},
            )
        if resolved:
            timeline_record(
                incident=incident,
                kind=TimelineEvent.Kind.ALERT_RESOLVED,
                at=now,
                message=f"{len(resolved)} alert(s) resolved in Alertmanager",
                details={"count": len(resolved), "alerts": _names(resolved), "group_key": delivery.group_key},
            )
        if fired and not result.created:
            wanted = severity_for(fired, _policies())
            if wanted.rank < incident.severity.rank:
                incident = incident_set_severity(
                    incident=incident, severity=wanted, reason="alert severity", now=now
                )
            if incident.status == Incident.Status.RESOLVED:
                incident = incident_transition(
                    incident=incident, to=Incident.Status.INVESTIGATING, note="alerts firing again", now=now
                )
                result.reopened = True
        if (
            resolved
            and incident.severity.auto_resolve
            and incident.is_open
            and not Alert.objects.filter(incident=incident, status=Alert.Status.FIRING).exists()
        ):
            incident = incident_transition(
                incident=incident, to=Incident.Status.RESOLVED, note="all alerts resolved", now=now
            )
            result.auto_resolved = True
        _touch_group(group, delivery, now)
        result.incident = incident
    return result


def _policies() -> list[SeverityPolicy]:
    policies = list(SeverityPolicy.objects.all())
    if not policies:
        raise ValidationError({"non_field_errors": ["No severity policy is configured."]})
    return policies


def _lock_group(d: ParsedDelivery, now: datetime) -> AlertGroup:
    """The group row, locked for this transaction (inserted first if new, ON CONFLICT DO NOTHING)."""
    locked = AlertGroup.objects.select_for_update(of=("self",)).select_related("incident__severity")
    try:
        return locked.get(group_key=d.group_key)
    except AlertGroup.DoesNotExist:
        AlertGroup.objects.bulk_create(
            [AlertGroup(group_key=d.group_key, receiver=d.receiver, created_at=now)], ignore_conflicts=True
        )
        return locked.get(group_key=d.group_key)


_UPDATE_FIELDS = ("status", "starts_at", "ends_at", "labels", "annotations", "last_seen_at", "resolved_at")


def _update_alerts(rows: list[Alert]) -> None:
    """Write changed alerts in one statement (UPDATE ... FROM VALUES on PostgreSQL)."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        Alert.objects.bulk_update(rows, list(_UPDATE_FIELDS), batch_size=200)
        return
    values = ", ".join(
        ["(%s, %s, %s::timestamptz, %s::timestamptz, %s::jsonb, %s::jsonb, %s::timestamptz, %s::timestamptz)"]
        * len(rows)
    )
    params: list[Any] = []
    for r in rows:
        params += [
            r.pk,
            r.status,
            r.starts_at,
            r.ends_at,
            json.dumps(r.labels),
            json.dumps(r.annotations),
            r.last_seen_at,
            r.resolved_at,
        ]
    table = Alert._meta.db_table
    sql = (
        f"UPDATE {table} AS a SET status = v.status, starts_at = v.starts_at, ends_at = v.ends_at, "  # noqa: S608
        "labels = v.labels, annotations = v.annotations, last_seen_at = v.last_seen_at, "
        "resolved_at = v.resolved_at "
        f"FROM (VALUES {values}) AS v(id, status, starts_at, ends_at, labels, annotations, last_seen_at, "
        "resolved_at) WHERE a.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _touch_group(group: AlertGroup, d: ParsedDelivery, now: datetime) -> None:
    AlertGroup.objects.filter(pk=group.pk).update(
        incident=group.incident,
        receiver=d.receiver,
        group_labels=d.group_labels,
        external_url=d.external_url,
        last_delivery_at=now,
        deliveries=F("deliveries") + 1,
    )
