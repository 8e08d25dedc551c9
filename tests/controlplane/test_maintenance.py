"""Scheduled maintenance: retention prunes, idempotency-key expiry, VACUUM, and their guards.

Rows are created at the real time; the jobs run with the clock moved forward (``now=``).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from backups.models import Backup, BackupPolicy, Restore
from controlplane import maintenance, tasks
from controlplane.audit import audit_record
from controlplane.beat import sync_beat_schedule
from controlplane.celery import app
from controlplane.maintenance import maintenance_run
from controlplane.models import AuditEntry, MaintenanceRun
from controlplane.schedule import BEAT_SCHEDULE
from deployments.models import Deployment, DeploymentEvent, Environment, Measurement, Release, Service
from incidents import services as incident_services
from incidents.models import DeploymentLink, Incident, Notification
from tests.conftest import ROOT, child_env, make_user
from tests.incidents.conftest import seed_policies

pytestmark = pytest.mark.django_db

_seq = itertools.count()
MAINTENANCE_ENTRIES = {
    "maintenance-prune-deployment-events": "controlplane.prune_deployment_events",
    "maintenance-prune-measurements": "controlplane.prune_measurements",
    "maintenance-prune-notifications": "controlplane.prune_notifications",
    "maintenance-prune-audit-log": "controlplane.prune_audit_log",
    "maintenance-expire-idempotency-keys": "controlplane.expire_idempotency_keys",
    "maintenance-vacuum-analyze": "controlplane.vacuum_analyze",
}


def make_deployment(
    status: str = Deployment.Status.SUCCEEDED,
    *,
    finished_at: datetime | None = None,
    events: int = 3,
    measurements: int = 2,
    **fields: Any,
) -> Deployment:
    """A deployment on its own environment (one active per environment), with history rows."""
    n = next(_seq)
    service = Service.objects.create(slug=f"svc-{n}")
    env = Environment.objects.create(service=service, slug="production", router={"type": "static"})
    release = Release.objects.create(service=service, version=f"1.{n}.0")
    active = status in Deployment.ACTIVE_STATUSES
    d = Deployment.objects.create(
        environment=env,
        release=release,
        strategy="canary",
        config={"strategy": "canary", "steps": []},
        status=status,
        started_at=timezone.now(),
        finished_at=None if active else (finished_at or timezone.now()),
        **fields,
    )
    for i in range(events):
        DeploymentEvent.objects.create(deployment=d, kind="transition", message=f"event {i}")
    for _ in range(measurements):
        Measurement.objects.create(deployment=d, step=0, metric="error_rate", value=0.0, outcome="successful")
    return d


def later(days: float) -> datetime:
    return timezone.now() + timedelta(days=days)


def history(d: Deployment) -> tuple[int, int]:
    return d.events.count(), d.measurements.count()


def test_deployment_history_is_pruned_only_when_nothing_open_needs_it() -> None:
    policies = seed_policies()
    old = make_deployment()
    recent = make_deployment(finished_at=later(60))
    running = make_deployment(Deployment.Status.RUNNING)
    paused = make_deployment(Deployment.Status.PAUSED)
    warm = make_deployment(warm_until=later(200))
    rolled_back = make_deployment(Deployment.Status.ROLLED_BACK)
    make_deployment(Deployment.Status.RUNNING, kind="rollback", rollback_of=rolled_back, events=0)
    suspect = make_deployment(Deployment.Status.FAILED)
    incident = incident_services.incident_declare(title="x", severity=policies["P3"])
    DeploymentLink.objects.create(incident=incident, deployment=suspect, relation="suspect")

    run = maintenance_run(job="prune_deployment_events", now=later(100), batch_size=2)

    assert history(old) == (0, 2)  # events gone; measurements live longer (180 days)
    for kept in (recent, running, paused, warm, rolled_back, suspect):
        assert history(kept) == (3, 2), kept.status
    assert run.status == "ok" and run.rows == 3 and run.details["batches"] == 2

    run = maintenance_run(job="prune_measurements", now=later(100))
    assert run.rows == 0 and history(old) == (0, 2)
    run = maintenance_run(job="prune_measurements", now=later(190))
    assert history(old) == (0, 0) and run.rows == 2
    assert history(recent) == (3, 2)  # finished 130 days before that clock
    assert history(running) == (3, 2) and history(suspect) == (3, 2)

    # Once the incident is closed, the suspect's history is no longer needed.
    Incident.objects.filter(pk=incident.pk).update(status=Incident.Status.CLOSED)
    maintenance_run(job="prune_deployment_events", now=later(100))
    assert history(suspect) == (0, 2)
    assert history(running) == (3, 2) and history(rolled_back) == (3, 2)


def test_delivered_notifications_are_pruned_except_an_open_incidents() -> None:
    policies = seed_policies()
    open_incident = incident_services.incident_declare(title="open", severity=policies["P3"])
    Notification.objects.all().delete()  # declaring queued its own; this test builds the outbox by hand

    def row(status: str, *, incident: Incident | None = None) -> Notification:
        delivered = timezone.now() if status == Notification.Status.DELIVERED else None
        return Notification.objects.create(
            channel="slack",
            event="declared",
            body={},
            status=status,
            delivered_at=delivered,
            incident=incident,
        )

    old = [row("delivered") for _ in range(5)]
    failed, pending = row("failed"), row("pending")
    of_open = row("delivered", incident=open_incident)

    assert maintenance_run(job="prune_notifications", now=later(20)).rows == 0
    run = maintenance_run(job="prune_notifications", now=later(31), batch_size=2)
    assert run.rows == 5 and run.details["batches"] == 3
    left = set(Notification.objects.values_list("pk", flat=True))
    assert left == {failed.pk, pending.pk, of_open.pk} and not left & {n.pk for n in old}


def test_audit_entries_of_open_work_outlive_retention() -> None:
    policies = seed_policies()
    incident = incident_services.incident_declare(title="open", severity=policies["P3"])
    active = make_deployment(Deployment.Status.RUNNING)
    finished = make_deployment()
    policy = BackupPolicy.objects.create(name="db", storage_kind="local", local_path="/srv/backups")
    backup = Backup.objects.create(
        policy=policy, status="succeeded", source_kind="postgres", compression="zstd"
    )
    restoring = Restore.objects.create(backup=backup, target_name="app", status=Restore.Status.RESTORING)
    restored = Restore.objects.create(backup=backup, target_name="app", status=Restore.Status.SUCCEEDED)
    for obj in (active, finished, restoring, restored):
        audit_record(action="x.update", obj=obj)
    AuditEntry.objects.create(actor_repr="system", action="old", source="worker")

    assert maintenance_run(job="prune_audit_log", now=later(300)).rows == 0
    run = maintenance_run(job="prune_audit_log", now=later(366))

    kept = set(AuditEntry.objects.values_list("object_type", "object_id"))
    assert ("deployments.deployment", str(active.pk)) in kept
    assert ("incidents.incident", str(incident.pk)) in kept
    assert ("backups.restore", str(restoring.pk)) in kept
    assert ("deployments.deployment", str(finished.pk)) not in kept
    assert ("backups.restore", str(restored.pk)) not in kept
    assert not AuditEntry.objects.filter(action="old").exists()
    assert run.rows >= 3
    # The prune itself is audited, so the log says who removed history and how much.
    entry = AuditEntry.objects.get(action="maintenance.prune_audit_log")
    assert entry.changes["rows"] == run.rows


def test_idempotency_keys_expire_after_the_ttl_except_on_active_deployments() -> None:
    done = make_deployment(idempotency_key="ci-run-1", request_fingerprint="f" * 64)
    active = make_deployment(
        Deployment.Status.RUNNING, idempotency_key="ci-run-2", request_fingerprint="e" * 64
    )

    assert maintenance_run(job="expire_idempotency_keys", now=timezone.now() + timedelta(hours=23)).rows == 0
    run = maintenance_run(job="expire_idempotency_keys", now=timezone.now() + timedelta(hours=25))

    assert run.rows == 1
    done.refresh_from_db()
    active.refresh_from_db()
    assert (done.idempotency_key, done.request_fingerprint) == ("", "")
    assert active.idempotency_key == "ci-run-2" and active.request_fingerprint == "e" * 64
    # The key is free again; the active one is still unique.
    make_deployment(idempotency_key="ci-run-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_deployment(idempotency_key="ci-run-2")


@pytest.mark.django_db(transaction=True)
def test_vacuum_analyze_runs_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("VACUUM is PostgreSQL's")
    for _ in range(50):
        AuditEntry.objects.create(actor_repr="system", action="churn", source="worker")
    AuditEntry.objects.filter(action="churn").delete()
    run = maintenance_run(job="vacuum_analyze")
    assert run.status == "ok" and run.details["tables"] > 10 and run.rows >= 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'controlplane_auditentry'"
        )
        assert cursor.fetchone() == (True, True)


def test_vacuum_is_skipped_on_sqlite_and_says_so(tmp_path: Any) -> None:
    code = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from controlplane.maintenance import vacuum_analyze\n"
        "r = vacuum_analyze(now=timezone.now())\n"
        "print(r.status, '|', r.message)\n"
    )
    env = child_env(DJANGO_SETTINGS_MODULE="controlplane.settings", CONTROLPLANE_DATA_DIR=str(tmp_path))
    env["DATABASE_URL"] = ""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "skipped | VACUUM ANALYZE runs on PostgreSQL only; skipped on sqlite"


def test_a_failing_job_is_recorded_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(maintenance.JOBS, "prune_audit_log", broken)
    with pytest.raises(RuntimeError):
        maintenance_run(job="prune_audit_log")
    run = MaintenanceRun.objects.get(job="prune_audit_log")
    assert run.status == "failed" and run.message == "RuntimeError: disk on fire"
    text = Client().get("/metrics").content.decode()
    assert 'controlplane_maintenance_last_run_success{job="prune_audit_log"} 0.0' in text


def test_tasks_report_rows_and_duration_at_metrics() -> None:
    for _ in range(3):
        AuditEntry.objects.create(
            actor_repr="system",
            action="old",
            source="worker",
            created_at=timezone.now() - timedelta(days=400),
        )
    assert tasks.prune_audit_log() == 3
    assert tasks.expire_idempotency_keys() == 0
    text = Client().get("/metrics").content.decode()
    assert 'controlplane_maintenance_last_run_rows{job="prune_audit_log"} 3.0' in text
    assert 'controlplane_maintenance_last_run_rows{job="expire_idempotency_keys"} 0.0' in text
    assert 'controlplane_maintenance_last_run_success{job="prune_audit_log"} 1.0' in text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('controlplane_maintenance_last_run_duration_seconds{job="prune_a')
    )
    assert 0 < float(line.split()[-1]) < 10
    stamp = MaintenanceRun.objects.get(job="prune_audit_log").finished_at.timestamp()
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('controlplane_maintenance_last_run_timestamp_seconds{job="prune_a')
    )
    assert abs(float(line.split()[-1]) - stamp) < 0.01


def test_each_job_is_a_beat_entry_visible_and_pausable_in_the_admin() -> None:
    app.loader.import_default_modules()
    for name, task in MAINTENANCE_ENTRIES.items():
        assert BEAT_SCHEDULE[name]["task"] == task and task in app.tasks
        assert BEAT_SCHEDULE[name]["options"]["expire_seconds"] > 0
    sync_beat_schedule()
    admin_user = make_user("root", "admin")
    admin_user.is_superuser = True
    admin_user.save()
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/django_celery_beat/periodictask/?q=maintenance-").content.decode()
    for name in MAINTENANCE_ENTRIES:
        assert name in page

    vacuum = PeriodicTask.objects.get(name="maintenance-vacuum-analyze")
    assert vacuum.crontab is not None and vacuum.crontab.day_of_week == "0"
    response = client.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [vacuum.pk]},
    )
    assert response.status_code == 302
    sync_beat_schedule()  # a release's re-sync must not undo the operator's pause
    vacuum.refresh_from_db()
    assert vacuum.enabled is False
    assert PeriodicTask.objects.get(name="maintenance-prune-audit-log").enabled is True

    maintenance_run(job="prune_notifications")
    listing = client.get("/admin/controlplane/maintenancerun/").content.decode()
    assert "prune_notifications" in listing
    assert client.get("/admin/controlplane/maintenancerun/add/").status_code == 403


def test_settings_come_from_the_environment() -> None:
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings as s\n"
        "print(s.RETENTION_DEPLOYMENT_EVENTS_DAYS, s.RETENTION_MEASUREMENTS_DAYS, "
        "s.RETENTION_NOTIFICATIONS_DAYS, s.RETENTION_AUDIT_DAYS, s.IDEMPOTENCY_KEY_TTL_HOURS)\n"
    )
    env = child_env(DJANGO_SETTINGS_MODULE="controlplane.settings", RETENTION_AUDIT_DAYS="730")
    for key in (
        "RETENTION_DEPLOYMENT_EVENTS_DAYS",
        "RETENTION_MEASUREMENTS_DAYS",
        "RETENTION_NOTIFICATIONS_DAYS",
        "IDEMPOTENCY_KEY_TTL_HOURS",
    ):
        env.pop(key, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["90", "180", "30", "730", "24"], out.stderr
