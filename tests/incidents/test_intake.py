"""Alertmanager webhook intake: grouping, dedupe, resolution, auth, bad payloads, concurrency."""

from __future__ import annotations

import copy
import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from incidents.models import Alert, AlertGroup, Incident, Notification, TimelineEvent
from tests.incidents.conftest import am_alert, am_payload, seed_policies

URL = "/api/v1/integrations/alertmanager/"


@pytest.mark.django_db
def test_a_delivery_opens_one_incident_with_mapped_severity(policies: Any, post_alerts: Any) -> None:
    resp = post_alerts(am_payload([am_alert("a1"), am_alert("a2", severity="warning")]))
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body["created"] is True and body["new"] == 2
    incident = Incident.objects.get(pk=body["incident"])
    assert incident.source == "alert" and incident.severity.code == "P1"
    assert incident.title == "HighErrorRate: Error rate above 1%"
    alert = Alert.objects.get(fingerprint="a1")
    assert alert.status == "firing" and alert.ends_at is None
    assert alert.starts_at is not None and alert.starts_at.microsecond == 123456
    fired = incident.timeline.get(kind=TimelineEvent.Kind.ALERT_FIRED)
    assert fired.details["count"] == 2


@pytest.mark.django_db
def test_severity_mapping_is_configurable_per_policy(policies: Any, post_alerts: Any) -> None:
    p2 = policies["P2"]
    p2.alert_severities = ["sev2"]
    p2.save()
    body = post_alerts(am_payload([am_alert("x", severity="sev2")], group_key="g-sev2")).json()
    assert Incident.objects.get(pk=body["incident"]).severity.code == "P2"
    body = post_alerts(am_payload([am_alert("y", severity="unknown")], group_key="g-unknown")).json()
    assert Incident.objects.get(pk=body["incident"]).severity.code == "P3"


@pytest.mark.django_db
def test_repeated_deliveries_keep_one_incident_and_one_row_per_fingerprint(
    policies: Any, post_alerts: Any
) -> None:
    payload = am_payload([am_alert("a1"), am_alert("a2")])
    ids = {post_alerts(payload).json()["incident"] for _ in range(3)}
    second = post_alerts(am_payload([am_alert("a1"), am_alert("a2"), am_alert("a3")])).json()
    assert len(ids | {second["incident"]}) == 1
    assert second["new"] == 1 and second["unchanged"] == 2
    assert Incident.objects.count() == 1 and Alert.objects.count() == 3
    assert AlertGroup.objects.get().deliveries == 4
    assert TimelineEvent.objects.filter(kind="alert_fired").count() == 2


@pytest.mark.django_db
def test_resolved_alerts_are_recorded_and_auto_resolve_is_a_policy_option(
    policies: Any, post_alerts: Any
) -> None:
    post_alerts(am_payload([am_alert("a1"), am_alert("a2")]))
    body = post_alerts(am_payload([am_alert("a1", status="resolved"), am_alert("a2")])).json()
    incident = Incident.objects.get(pk=body["incident"])
    assert body["resolved"] == 1 and incident.status == "declared"
    assert Alert.objects.get(fingerprint="a1").resolved_at is not None
    assert incident.timeline.filter(kind="alert_resolved").count() == 1
    # Without the option, all alerts resolved still leaves the incident to humans.
    post_alerts(am_payload([am_alert("a1", status="resolved"), am_alert("a2", status="resolved")]))
    assert Incident.objects.get(pk=incident.pk).status == "declared"

    p1 = policies["P1"]
    p1.auto_resolve = True
    p1.save()
    group = '{}:{alertname="Disk"}'
    post_alerts(am_payload([am_alert("d1", name="Disk")], group_key=group))
    body = post_alerts(am_payload([am_alert("d1", name="Disk", status="resolved")], group_key=group)).json()
    assert body["auto_resolved"] is True
    assert Incident.objects.get(pk=body["incident"]).status == "resolved"
    # Firing again reopens the same incident instead of opening a second one.
    body = post_alerts(am_payload([am_alert("d1", name="Disk")], group_key=group)).json()
    assert body["reopened"] is True and body["created"] is False
    assert Incident.objects.get(pk=body["incident"]).status == "investigating"


@pytest.mark.django_db
def test_a_closed_incident_is_not_reused_when_its_group_fires_again(policies: Any, post_alerts: Any) -> None:
    first = post_alerts(am_payload([am_alert("a1")])).json()["incident"]
    Incident.objects.filter(pk=first).update(status="closed")
    second = post_alerts(am_payload([am_alert("a1")])).json()
    assert second["created"] is True and second["incident"] != first
    assert AlertGroup.objects.get().incident_id == second["incident"]


@pytest.mark.django_db
def test_a_higher_severity_alert_escalates_the_open_incident(policies: Any, post_alerts: Any) -> None:
    post_alerts(am_payload([am_alert("w1", severity="warning")], group_key="g"))
    body = post_alerts(am_payload([am_alert("w1", severity="warning"), am_alert("c1")], group_key="g")).json()
    assert Incident.objects.get(pk=body["incident"]).severity.code == "P1"


def _bad_payloads() -> list[tuple[str, Any, str]]:
    good = am_payload([am_alert("a1"), am_alert("a2")])
    cases: list[tuple[str, Any, str]] = []

    def case(name: str, field: str, mutate: Any) -> None:
        p = copy.deepcopy(good)
        mutate(p)
        cases.append((name, p, field))

    case("version", "version", lambda p: p.update(version="3"))
    case("no group key", "groupKey", lambda p: p.pop("groupKey"))
    case("status", "status", lambda p: p.update(status="broken"))
    case("no alerts", "alerts", lambda p: p.update(alerts=[]))
    case("alert not object", "alerts[1]", lambda p: p["alerts"].__setitem__(1, "x"))
    case("no fingerprint", "alerts[1].fingerprint", lambda p: p["alerts"][1].pop("fingerprint"))
    case("labels", "alerts[1].labels", lambda p: p["alerts"][1].update(labels={"a": 1}))
    case("time", "alerts[1].startsAt", lambda p: p["alerts"][1].update(startsAt="yesterday"))
    case("alert status", "alerts[1].status", lambda p: p["alerts"][1].update(status="pending"))
    cases.append(("not an object", ["x"], "non_field_errors"))
    return cases


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "payload", "field"), _bad_payloads(), ids=[c[0] for c in _bad_payloads()])
def test_malformed_payloads_are_a_400_naming_the_field_and_write_nothing(
    policies: Any, post_alerts: Any, name: str, payload: Any, field: str
) -> None:
    resp = post_alerts(payload)
    assert resp.status_code == 400
    assert field in resp.json()["details"], resp.json()
    assert resp.json()["message"]
    assert not Incident.objects.exists() and not AlertGroup.objects.exists() and not Alert.objects.exists()


@pytest.mark.django_db
def test_invalid_json_is_a_400(policies: Any, am_token: str) -> None:
    client = APIClient()
    resp = client.post(
        URL, data="{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {am_token}"
    )
    assert resp.status_code == 400 and resp.json()["code"] == "parse_error"


@pytest.mark.django_db
def test_intake_needs_the_integration_token_or_an_operator_token(
    policies: Any, am_token: str, api: Any
) -> None:
    payload = am_payload([am_alert("a1")])
    assert APIClient().post(URL, payload, format="json").status_code == 401
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.post(URL, payload, format="json").status_code == 401
    assert api("viewer").post(URL, payload, format="json").status_code == 403
    assert api("operator").post(URL, payload, format="json").status_code == 200
    assert not Notification.objects.filter(body__icontains=am_token).exists()


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_deliveries_of_one_group_make_one_incident_with_every_alert_once(
    am_token: str,
) -> None:
    seed_policies()
    payloads = [am_payload([am_alert(f"fp-{j}") for j in range(i, i + 10)]) for i in range(20)]
    results: list[int] = []
    barrier = threading.Barrier(20)

    def deliver(p: dict[str, Any]) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {am_token}")
        try:
            barrier.wait()
            resp = client.post(URL, p, format="json")
            results.append(resp.status_code)
        finally:
            connection.close()  # each thread had its own database connection

    threads = [threading.Thread(target=deliver, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 20
    assert Incident.objects.count() == 1
    assert AlertGroup.objects.count() == 1 and AlertGroup.objects.get().deliveries == 20
    assert Alert.objects.count() == 29  # fp-0 .. fp-28, each once
    assert (
        sorted(TimelineEvent.objects.filter(kind="alert_fired").values_list("details__count", flat=True))[-1]
        == 10
    )
    fired_total = sum(
        TimelineEvent.objects.filter(kind="alert_fired").values_list("details__count", flat=True)
    )
    assert fired_total == 29
