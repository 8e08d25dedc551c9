"""The admin's landing page: active rollouts, open incidents with countdowns, backups per policy."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from backups.models import Backup, BackupPolicy
from controlplane.dashboard import duration_text
from controlplane.templatetags.badges import badge, severity_badge
from deployments.models import Deployment, Environment, Release, Service
from incidents.models import Incident
from tests.conftest import make_user
from tests.incidents.conftest import seed_policies

PLAN = [
    {"kind": "deploy", "title": "Deploy to green"},
    {"kind": "set_weight", "weight": 20, "title": "Shift 20% of traffic to the canary"},
    {"kind": "pause", "title": "Pause until promoted"},
    {"kind": "set_weight", "weight": 100, "title": "Shift 100% of traffic to the canary"},
]


def _rollout(slug: str, *, step: int, weight: int, status: str = "running") -> Deployment:
    service = Service.objects.create(slug=slug)
    env = Environment.objects.create(
        service=service,
        slug="production",
        router={"type": "static"},
        deployer={"type": "webhook", "url": "{address}/deploy"},
        traffic={"weights": {"blue": 100 - weight, "green": weight}, "drained": []},
    )
    release = Release.objects.create(service=service, version=f"{slug}-2.0")
    return Deployment.objects.create(
        environment=env,
        release=release,
        strategy="canary",
        config={},
        plan=PLAN,
        stable_slot="blue",
        target_slot="green",
        status=status,
        current_step=step,
    )


def _backups(name: str, *, backup_age: timedelta, drill_age: timedelta | None) -> BackupPolicy:
    now = timezone.now()
    policy = BackupPolicy.objects.create(name=name, storage_kind="local", local_path="/tmp/x")
    Backup.objects.create(
        policy=policy,
        status="succeeded",
        source_kind="postgres",
        compression="zstd",
        finished_at=now - backup_age - timedelta(days=3),
    )  # older, not the one shown
    Backup.objects.create(
        policy=policy,
        status="succeeded",
        source_kind="postgres",
        compression="zstd",
        finished_at=now - backup_age,
        drilled_at=(now - drill_age) if drill_age else None,
        drill_status="ok" if drill_age else "",
    )
    Backup.objects.create(
        policy=policy, status="failed", source_kind="postgres", compression="zstd", finished_at=now
    )  # newer but failed: not the last good one
    return policy


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    policies = seed_policies()
    now = timezone.now()
    sev1 = next(p for p in policies.values() if p.rank == 1)
    sev3 = max(policies.values(), key=lambda p: p.rank)
    overdue = Incident.objects.create(
        title="Checkout is down",
        severity=sev1,
        declared_at=now - sev1.acknowledge_within - timedelta(minutes=5),
    )
    fresh = Incident.objects.create(title="Slow search", severity=sev3, declared_at=now)
    Incident.objects.create(title="Old and resolved", severity=sev3, status="resolved", resolved_at=now)
    return {
        "running": _rollout("checkout", step=2, weight=20),
        "paused": _rollout("search", step=3, weight=20, status="paused"),
        "done": _rollout("billing", step=4, weight=100, status="succeeded"),
        "overdue": overdue,
        "fresh": fresh,
        "sev1": sev1,
        "nightly": _backups("nightly", backup_age=timedelta(hours=3, minutes=7), drill_age=timedelta(days=2)),
        "undrilled": _backups("undrilled", backup_age=timedelta(minutes=20), drill_age=None),
    }


def _section(html: str, ident: str) -> str:
    match = re.search(rf'<div class="module" id="{ident}">(.*?)</table>', html, re.S)
    assert match, ident
    return re.sub(r"\s+", " ", match.group(1))


def test_dashboard_shows_rollouts_incidents_and_backups(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(make_user("boss", "admin"))
    html = client.get("/admin/").content.decode()

    rollouts = _section(html, "dash-rollouts")
    assert f"#{world['running'].pk}" in rollouts and f"#{world['paused'].pk}" in rollouts
    assert f"#{world['done'].pk}" not in rollouts  # finished rollouts are not "active"
    assert "step 3 of 4: Pause until promoted" in rollouts
    assert "step 4 of 4: Shift 100% of traffic to the canary" in rollouts
    assert '<td class="weight">20%</td>' in rollouts
    assert str(badge("paused")) in rollouts and str(badge("running")) in rollouts

    incidents = _section(html, "dash-incidents")
    assert "Checkout is down" in incidents and "Slow search" in incidents
    assert "Old and resolved" not in incidents
    assert incidents.index("Checkout is down") < incidents.index("Slow search")  # by severity
    assert str(severity_badge(world["sev1"].code, 1)) in incidents
    assert re.search(r'class="cp-overdue">Acknowledge[^<]* overdue by 5m 0\ds<', incidents), incidents
    assert re.search(r'class="cp-due">Acknowledge[^<]* in \d+m \d\ds<', incidents), incidents

    backups = _section(html, "dash-backups")
    nightly = re.search(r'data-name="nightly">(.*?)</tr>', backups).group(1)  # type: ignore[union-attr]
    assert "3h 07m ago" in nightly and "2d 0h ago" in nightly and str(badge("ok")) in nightly
    undrilled = re.search(r'data-name="undrilled">(.*?)</tr>', backups).group(1)  # type: ignore[union-attr]
    assert "20m 0" in undrilled and str(badge("never")) in undrilled

    # The apps' list still follows the dashboard.
    assert "Deployments" in html


def test_dashboard_query_count_is_bounded(world: dict[str, Any], django_assert_max_num_queries: Any) -> None:
    client = Client()
    client.force_login(make_user("boss", "admin"))
    client.get("/admin/")  # warm the session and the content types
    for i in range(10):
        _rollout(f"more-{i}", step=1, weight=10)
        Incident.objects.create(title=f"more {i}", severity=world["sev1"])
        _backups(f"more-{i}", backup_age=timedelta(hours=1), drill_age=timedelta(hours=2))
    # Six for Django (session, user, two permission lookups, the role's group, recent actions)
    # and one per panel, however many rows are behind each.
    with django_assert_max_num_queries(9):
        response = client.get("/admin/")
    assert response.content.decode().count('class="rollout"') == 12


def test_a_viewer_sees_the_dashboard(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(make_user("watcher", "viewer"))
    response = client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Checkout is down" in html and f"#{world['running'].pk}" in html and "nightly" in html


def test_the_same_badge_in_every_app_list(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(make_user("boss", "admin"))
    paused = str(badge("paused"))
    assert paused in client.get("/admin/deployments/deployment/").content.decode()
    incidents = client.get("/admin/incidents/incident/").content.decode()
    assert str(severity_badge(world["sev1"].code, 1)) in incidents and str(badge("declared")) in incidents
    assert str(badge("failed")) in client.get("/admin/backups/backup/").content.decode()
    assert "controlplane/badges.css" in incidents


def test_badge_tones_and_durations() -> None:
    assert badge("failed") == '<span class="cp-badge cp-badge--bad">failed</span>'
    assert badge("rolled_back") == '<span class="cp-badge cp-badge--bad">rolled back</span>'
    assert badge("succeeded") == '<span class="cp-badge cp-badge--ok">succeeded</span>'
    assert badge("something-new") == '<span class="cp-badge cp-badge--neutral">something-new</span>'
    assert badge("") == '<span class="cp-badge cp-badge--neutral">-</span>'
    assert "<script>" not in badge("<script>")
    assert severity_badge("SEV1", 1) == '<span class="cp-badge cp-badge--crit">SEV1</span>'
    assert [duration_text(s) for s in (5, 65, 3 * 3600 + 7 * 60, 2 * 86400 + 3600)] == [
        "5s",
        "1m 05s",
        "3h 07m",
        "2d 1h",
    ]
