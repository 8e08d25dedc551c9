"""Policies and their beat entries, the run endpoint and the catalog API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from backups import services
from backups.models import Backup, BackupPolicy
from controlplane.celery import app
from controlplane.models import AuditEntry
from tests.backups.test_pipeline import run_now

POLICY = {
    "name": "noodle-db",
    "source_dsn_env": "DATABASE_URL",
    "storage_kind": "s3",
    "s3_bucket": "backups",
    "s3_prefix": "noodle",
    "schedule": "15 2 * * *",
    "drill_schedule": "0 6 * * 1",
    "keep_days": 30,
    "min_redundancy": 2,
}


@pytest.fixture
def eager_tasks() -> Any:
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_admin_creates_a_policy_with_a_crontab_beat_entry_per_schedule(api: Any) -> None:
    response = api("admin").post("/api/v1/backup-policies/", POLICY, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["schedule_enabled"] is True and body["compression"] == "zstd" and body["keep_days"] == 30
    policy = BackupPolicy.objects.get(name="noodle-db")
    task = policy.periodic_task
    assert task is not None and task.task == "backups.run_policy"
    assert json.loads(task.kwargs) == {"policy_id": policy.pk}
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "2", "*")
    assert task.expire_seconds
    drill = policy.drill_periodic_task
    assert drill is not None and drill.task == "backups.drill_policy" and drill.crontab.day_of_week == "1"
    assert AuditEntry.objects.filter(action="backuppolicy.create", object_id=str(policy.pk)).exists()


def test_policy_defaults_follow_the_seed(db: Any) -> None:
    policy = services.policy_create(
        name="defaults", source_db_alias="default", storage_kind="local", local_path="/x"
    )
    assert policy.keep_days == 30 and policy.compression == "zstd" and policy.min_redundancy == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source_dsn_env": "postgres://user:secret@db/noodle"}, "source_dsn_env"),
        ({"source_db_alias": "default"}, "source_dsn_env"),
        ({"s3_bucket": ""}, "s3_bucket"),
        ({"schedule": "every night"}, "schedule"),
        ({"keep_last": 1}, "keep_last"),
        ({"compression": "gzip", "compression_level": 12}, "compression_level"),
        ({"storage_kind": "local"}, "local_path"),
    ],
)
def test_bad_policies_are_a_400_naming_the_field(api: Any, change: dict[str, Any], field: str) -> None:
    response = api("admin").post("/api/v1/backup-policies/", {**POLICY, **change}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["details"]
    assert "secret" not in response.content.decode()


def test_operators_cannot_configure_policies(api: Any) -> None:
    assert api("operator").post("/api/v1/backup-policies/", POLICY, format="json").status_code == 403


def test_a_paused_beat_entry_stays_paused_across_edits_until_the_policy_enabled_flag_changes(
    api: Any,
) -> None:
    admin = api("admin")
    policy_id = admin.post("/api/v1/backup-policies/", POLICY, format="json").json()["id"]
    task = BackupPolicy.objects.get(pk=policy_id).periodic_task
    assert task is not None
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)  # paused in the admin

    r = admin.patch(f"/api/v1/backup-policies/{policy_id}/", {"schedule": "0 4 * * *"}, format="json")
    assert r.status_code == 200 and r.json()["schedule_enabled"] is False
    task.refresh_from_db()
    assert task.enabled is False and task.crontab.hour == "4"

    admin.patch(f"/api/v1/backup-policies/{policy_id}/", {"enabled": False}, format="json")
    admin.patch(f"/api/v1/backup-policies/{policy_id}/", {"enabled": True}, format="json")
    task.refresh_from_db()
    assert task.enabled is True

    admin.patch(f"/api/v1/backup-policies/{policy_id}/", {"drill_schedule": ""}, format="json")
    assert BackupPolicy.objects.get(pk=policy_id).drill_periodic_task is None
    assert not PeriodicTask.objects.filter(name="backup-drill:noodle-db").exists()


def test_run_endpoint_queues_a_backup_that_a_worker_runs(
    api: Any, local_policy: BackupPolicy, eager_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    assert api("viewer").post(f"/api/v1/backup-policies/{local_policy.pk}/run/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = api("operator").post(f"/api/v1/backup-policies/{local_policy.pk}/run/")
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    backup = Backup.objects.get(pk=response.json()["id"])
    assert backup.status == Backup.Status.SUCCEEDED, backup.error
    assert AuditEntry.objects.filter(action="backup.request", object_id=str(backup.pk)).exists()


def test_beat_task_of_a_policy_runs_a_scheduled_backup(local_policy: BackupPolicy) -> None:
    from backups.tasks import run_policy

    run_policy(local_policy.pk)
    backup = Backup.objects.get(policy=local_policy)
    assert backup.trigger == Backup.Trigger.SCHEDULE and backup.status == Backup.Status.SUCCEEDED


def test_catalog_lists_backups_and_shows_history(
    api: Any, local_policy: BackupPolicy, django_assert_max_num_queries: Any
) -> None:
    backups = [run_now(local_policy) for _ in range(3)]
    viewer = api("viewer")
    with django_assert_max_num_queries(8):
        listing = viewer.get("/api/v1/backups/", {"policy": local_policy.pk})
    assert listing.status_code == 200
    rows = listing.json()["results"]
    assert [r["id"] for r in rows] == [b.pk for b in reversed(backups)]
    assert rows[0]["policy"] == local_policy.name and rows[0]["row_counts"]["public.customers"] == 500
    detail = viewer.get(f"/api/v1/backups/{backups[0].pk}/").json()
    assert [e["to_status"] for e in detail["events"] if e["kind"] == "status"] == ["running", "succeeded"]
    assert detail["verifications"][0]["kind"] == "checksum"


def test_verify_and_drill_actions_queue_checks(
    api: Any, local_policy: BackupPolicy, eager_tasks: Any, django_capture_on_commit_callbacks: Any
) -> None:
    backup = run_now(local_policy)
    operator = api("operator")
    with django_capture_on_commit_callbacks(execute=True):
        assert operator.post(f"/api/v1/backups/{backup.pk}/verify/").status_code == 202
        assert operator.post(f"/api/v1/backup-policies/{local_policy.pk}/drill/").status_code == 202
    backup.refresh_from_db()
    assert backup.verify_status == "ok" and backup.drill_status == "ok"
    kinds = api("viewer").get("/api/v1/backup-verifications/", {"backup": backup.pk}).json()["results"]
    assert sorted(v["kind"] for v in kinds) == ["checksum", "checksum", "drill"]
    failed = Backup.objects.create(policy=local_policy, status=Backup.Status.FAILED, source_kind="postgres")
    response = operator.post(f"/api/v1/backups/{failed.pk}/verify/")
    assert response.status_code == 409 and response.json()["code"] == "conflict"


def test_openapi_schema_documents_the_backup_endpoints_without_warnings(tmp_path: Any) -> None:
    import yaml
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--fail-on-warn", "--file", str(out))
    paths = yaml.safe_load(out.read_text())["paths"]
    for path in (
        "/api/v1/backup-policies/{id}/run/",
        "/api/v1/backup-policies/{id}/retention/",
        "/api/v1/backups/{id}/verify/",
        "/api/v1/backups/{id}/drill/",
        "/api/v1/restores/",
    ):
        assert path in paths, path
