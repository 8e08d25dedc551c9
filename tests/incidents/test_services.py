"""Services: declaring, transitions, roles and hand-off, timeline, deadlines, post-mortems, reminders."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from controlplane.api.errors import Conflict
from controlplane.models import AuditEntry
from incidents import services
from incidents.models import (
    ActionItem,
    DeadlineBreach,
    Incident,
    IncidentRoleAssignment,
    Notification,
    PostMortem,
    TimelineEvent,
)
from incidents.transitions import INCIDENT_TRANSITIONS
from tests.conftest import make_user

pytestmark = pytest.mark.django_db
S = Incident.Status
T0 = timezone.now().replace(microsecond=0)


def declare(policies: dict[str, Any], code: str = "P1", **kw: Any) -> Incident:
    return services.incident_declare(title="API down", severity=policies[code], now=kw.pop("now", T0), **kw)


def test_seeded_policies_carry_the_runbook_deadlines(policies: dict[str, Any]) -> None:
    p1 = policies["P1"]
    assert [p.code for p in sorted(policies.values(), key=lambda p: p.rank)] == ["P1", "P2", "P3"]
    assert p1.acknowledge_within == timedelta(minutes=5)
    assert p1.assess_within == timedelta(minutes=10)
    assert p1.mitigate_within == timedelta(minutes=30)
    assert p1.resolve_within == timedelta(hours=1)
    assert p1.postmortem_within == timedelta(weeks=1)
    assert p1.postmortem_required and not policies["P3"].postmortem_required


def test_declare_writes_timeline_audit_and_outbox_in_one_go(policies: dict[str, Any], channels: Any) -> None:
    incident = declare(policies)
    assert incident.status == S.DECLARED and incident.declared_at == T0
    event = incident.timeline.get()
    assert event.kind == TimelineEvent.Kind.STATUS and event.details["to"] == "declared"
    assert AuditEntry.objects.filter(action="incident.declare", object_id=str(incident.pk)).exists()
    assert sorted(Notification.objects.values_list("channel", flat=True)) == ["pagerduty", "slack", "webhook"]


def test_every_legal_move_succeeds_and_every_illegal_one_is_a_409_naming_the_allowed(
    policies: dict[str, Any],
) -> None:
    for current, allowed in INCIDENT_TRANSITIONS.items():
        for target in S.values:
            incident = declare(policies)
            Incident.objects.filter(pk=incident.pk).update(status=current)
            incident.refresh_from_db()
            if target in allowed:
                assert services.incident_transition(incident=incident, to=target).status == target
            else:
                with pytest.raises(Conflict) as exc:
                    services.incident_transition(incident=incident, to=target)
                assert exc.value.details["allowed"] == list(allowed)
                assert Incident.objects.get(pk=incident.pk).status == current


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(walk=st.lists(st.sampled_from(S.values), min_size=1, max_size=8))
def test_random_walks_keep_phase_timestamps_consistent(policies: dict[str, Any], walk: list[str]) -> None:
    incident = declare(policies)
    for i, target in enumerate(walk):
        now = T0 + timedelta(minutes=i + 1)
        before = incident.status
        try:
            incident = services.incident_transition(incident=incident, to=target, now=now)
        except Conflict:
            assert target not in INCIDENT_TRANSITIONS[before]
            continue
        assert target in INCIDENT_TRANSITIONS[before]
        # Phase timestamps never go backwards in phase order.
        stamps = [incident.investigating_at, incident.mitigated_at, incident.resolved_at, incident.closed_at]
        set_stamps = [s for s in stamps if s is not None]
        assert set_stamps == sorted(set_stamps)
        if incident.status == S.RESOLVED:
            assert incident.mitigated_at and incident.investigating_at
    statuses = list(incident.timeline.filter(kind="status").values_list("details__to", flat=True))
    assert statuses[-1] == incident.status


def test_skipped_phases_share_the_timestamp_and_reopen_clears_and_counts(policies: dict[str, Any]) -> None:
    incident = declare(policies)
    t = T0 + timedelta(minutes=7)
    incident = services.incident_transition(incident=incident, to=S.RESOLVED, now=t)
    assert incident.investigating_at == incident.mitigated_at == incident.resolved_at == t
    incident = services.incident_transition(
        incident=incident, to=S.INVESTIGATING, note="came back", now=t + timedelta(minutes=1)
    )
    assert incident.reopened_count == 1 and incident.resolved_at is None and incident.mitigated_at is None
    last = incident.timeline.filter(kind="status").last()
    assert last is not None and "reopened" in last.message


def test_first_commander_acknowledges_and_a_second_one_needs_an_explicit_handoff(
    policies: dict[str, Any], channels: Any
) -> None:
    alice, bob = make_user("alice", "operator"), make_user("bob", "operator")
    incident = declare(policies)
    services.incident_assign_role(
        incident=incident, role="commander", user=alice, actor=alice, now=T0 + timedelta(minutes=2)
    )
    incident.refresh_from_db()
    assert incident.acknowledged_at == T0 + timedelta(minutes=2)
    acks = Notification.objects.filter(channel="pagerduty", event="incident.acknowledged")
    assert acks.get().body["event_action"] == "acknowledge"
    with pytest.raises(Conflict) as exc:
        services.incident_assign_role(incident=incident, role="commander", user=bob)
    assert exc.value.get_codes() == "commander_handoff_required"
    services.incident_handoff_commander(
        incident=incident, to_user=bob, actor=alice, note="shift change", now=T0 + timedelta(minutes=3)
    )
    history = list(IncidentRoleAssignment.objects.filter(incident=incident, role="commander"))
    assert [a.user.username for a in history] == ["alice", "bob"]
    assert history[0].ended_at is not None and history[1].ended_at is None
    handoff = incident.timeline.filter(kind="role").last()
    assert handoff is not None and "handed off from alice to bob" in handoff.message
    # Acknowledged once: the hand-off does not re-acknowledge.
    assert acks.count() == 1
    # Other roles are simply replaced, and the history keeps both.
    services.incident_assign_role(incident=incident, role="scribe", user=alice)
    services.incident_assign_role(incident=incident, role="scribe", user=bob)
    assert IncidentRoleAssignment.objects.filter(incident=incident, role="scribe").count() == 2


def test_timeline_is_append_only_but_pinnable(policies: dict[str, Any]) -> None:
    incident = declare(policies)
    note = services.incident_add_note(incident=incident, message="rolled back v2")
    note.message = "rewritten"
    with pytest.raises(TypeError):
        note.save()
    with pytest.raises(TypeError):
        note.delete()
    with pytest.raises(TypeError):
        TimelineEvent.objects.filter(pk=note.pk).delete()
    services.timeline_event_pin(event=TimelineEvent.objects.get(pk=note.pk), pinned=True)
    assert TimelineEvent.objects.get(pk=note.pk).pinned
    assert TimelineEvent.objects.get(pk=note.pk).message == "rolled back v2"


def test_each_breached_deadline_is_recorded_and_notified_exactly_once(
    policies: dict[str, Any], channels: Any
) -> None:
    incident = declare(policies)
    assert services.deadlines_check(now=T0 + timedelta(minutes=4)) == []
    first = services.deadlines_check(now=T0 + timedelta(minutes=6))
    assert [b.phase for b in first] == ["acknowledge"]
    # The next ticks see it again and do nothing.
    assert services.deadlines_check(now=T0 + timedelta(minutes=7)) == []
    assert services.deadlines_check(now=T0 + timedelta(minutes=8)) == []
    later = services.deadlines_check(now=T0 + timedelta(minutes=61))
    assert sorted(b.phase for b in later) == ["assess", "mitigate", "resolve"]
    assert DeadlineBreach.objects.filter(incident=incident).count() == 4
    assert incident.timeline.filter(kind="deadline_breached").count() == 4
    assert Notification.objects.filter(event="incident.deadline_breached", channel="slack").count() == 4


def test_a_met_phase_is_not_breached(policies: dict[str, Any]) -> None:
    incident = declare(policies)
    services.incident_assign_role(
        incident=incident, role="commander", user=make_user("c", "operator"), now=T0 + timedelta(minutes=1)
    )
    services.incident_transition(incident=incident, to=S.INVESTIGATING, now=T0 + timedelta(minutes=2))
    breaches = services.deadlines_check(now=T0 + timedelta(minutes=20))
    assert [b.phase for b in breaches] == []


def test_resolving_a_p1_opens_a_postmortem_due_a_week_later_and_its_deadline_is_watched(
    policies: dict[str, Any], channels: Any
) -> None:
    incident = declare(policies)
    resolved = T0 + timedelta(minutes=50)
    services.incident_transition(incident=incident, to=S.RESOLVED, now=resolved)
    pm = PostMortem.objects.get(incident=incident)
    assert pm.due_at == resolved + timedelta(weeks=1)
    assert pm.timeline and pm.timeline[0]["kind"] == "status"
    assert not pm.is_overdue
    assert services.deadlines_check(now=resolved + timedelta(days=6)) == []
    breaches = services.deadlines_check(now=resolved + timedelta(days=7, minutes=1))
    assert [b.phase for b in breaches] == ["postmortem"]
    # Reminded on chat and the webhook, but a PagerDuty trigger would reopen the resolved page.
    late = Notification.objects.filter(event="incident.deadline_breached")
    assert set(late.values_list("channel", flat=True)) == {"slack", "webhook"}
    PostMortem.objects.filter(pk=pm.pk).update(due_at=timezone.now() - timedelta(seconds=1))
    pm.refresh_from_db()
    assert pm.is_overdue


def test_p3_does_not_require_a_postmortem(policies: dict[str, Any]) -> None:
    incident = declare(policies, "P3")
    services.incident_transition(incident=incident, to=S.RESOLVED)
    assert not PostMortem.objects.filter(incident=incident).exists()


def test_postmortem_moves_draft_review_published_and_needs_its_sections(policies: dict[str, Any]) -> None:
    incident = declare(policies)
    services.incident_transition(incident=incident, to=S.RESOLVED)
    pm = incident.postmortem
    with pytest.raises(Conflict):
        services.postmortem_transition(postmortem=pm, to="published")
    services.postmortem_transition(postmortem=pm, to="in_review")
    with pytest.raises(Exception, match="Required to publish"):
        services.postmortem_transition(postmortem=pm, to="published")
    services.postmortem_update(
        postmortem=pm,
        summary="API down 40 min",
        impact="All users",
        root_causes="Bad config",
        resolution="Rolled back",
        went_well="Alert fired fast",
        got_lucky="Low traffic",
    )
    pm = services.postmortem_transition(postmortem=pm, to="published")
    assert pm.published_at is not None and not pm.is_overdue
    with pytest.raises(Conflict):
        services.postmortem_update(postmortem=pm, summary="changed")


def test_overdue_action_items_are_reminded_once_a_day(policies: dict[str, Any], channels: Any) -> None:
    incident = declare(policies)
    services.incident_transition(incident=incident, to=S.RESOLVED)
    owner = make_user("owner", "operator")
    item = services.action_item_create(
        postmortem=incident.postmortem,
        title="Add canary analysis",
        owner=owner,
        due_date=timezone.localdate() - timedelta(days=1),
        kind="prevent",
        link="https://tickets.example.com/OPS-1",
    )
    done = services.action_item_create(
        postmortem=incident.postmortem, title="done", due_date=timezone.localdate() - timedelta(days=3)
    )
    services.action_item_update(item=done, status="done")
    now = timezone.now()
    assert [i.pk for i in services.action_items_remind(now=now)] == [item.pk]
    assert services.action_items_remind(now=now + timedelta(hours=2)) == []
    assert [i.pk for i in services.action_items_remind(now=now + timedelta(days=1, minutes=1))] == [item.pk]
    reminders = Notification.objects.filter(event="action_item.overdue")
    assert set(reminders.values_list("channel", flat=True)) == {"slack", "webhook"}  # never paged
    assert reminders.count() == 4
    assert ActionItem.objects.get(pk=item.pk).is_overdue


def test_escalate_raises_one_rank_and_pages(policies: dict[str, Any], channels: Any) -> None:
    incident = declare(policies, "P3")
    incident = services.incident_escalate(incident=incident)
    assert incident.severity.code == "P2"
    assert Notification.objects.filter(event="incident.escalated", channel="pagerduty").exists()
    services.incident_escalate(incident=incident)
    with pytest.raises(Conflict):
        services.incident_escalate(incident=Incident.objects.get(pk=incident.pk))
