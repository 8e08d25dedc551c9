"""Management commands for operators without the API, and the admin pages."""

from __future__ import annotations

import io
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from backups import services
from backups.models import Backup, BackupPolicy, Restore
from tests.backups.conftest import fingerprint
from tests.conftest import make_user


def test_backup_run_and_backup_list(local_policy: BackupPolicy) -> None:
    out = io.StringIO()
    call_command("backup_run", local_policy.name, stdout=out)
    backup = Backup.objects.get(policy=local_policy)
    assert backup.status == Backup.Status.SUCCEEDED
    assert f"backup #{backup.pk} succeeded" in out.getvalue()
    listing = io.StringIO()
    call_command("backup_list", "--policy", local_policy.name, stdout=listing)
    assert backup.storage_key in listing.getvalue() and "succeeded" in listing.getvalue()
    with pytest.raises(CommandError, match="no backup policy"):
        call_command("backup_run", "nope")


def test_backup_restore_command_restores_into_the_target(
    local_policy: BackupPolicy, scratch_db: Any, source_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = services.backup_execute(backup=services.backup_request(policy=local_policy, enqueue=False))
    dsn = scratch_db("cmdtarget")
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    monkeypatch.setenv("BK_CMD_TARGET", dsn)
    with pytest.raises(CommandError, match="exactly"):
        call_command("backup_restore", str(backup.pk), "--target", "BK_CMD_TARGET", "--confirm", "wrong")
    out = io.StringIO()
    call_command("backup_restore", str(backup.pk), "--target", "BK_CMD_TARGET", "--confirm", name, stdout=out)
    assert "succeeded" in out.getvalue()
    assert fingerprint(dsn) == fingerprint(source_db)
    assert Restore.objects.get().status == Restore.Status.SUCCEEDED


def test_admin_pages_render_and_policy_admin_goes_through_the_services(local_policy: BackupPolicy) -> None:
    services.backup_execute(backup=services.backup_request(policy=local_policy, enqueue=False))
    client = Client()
    client.force_login(make_user("boss", "admin"))
    for url in (
        "/admin/backups/backuppolicy/",
        f"/admin/backups/backuppolicy/{local_policy.pk}/change/",
        "/admin/backups/backup/",
        f"/admin/backups/backup/{Backup.objects.get().pk}/change/",
        "/admin/backups/restore/add/",
        "/admin/backups/verification/",
    ):
        assert client.get(url).status_code == 200, url
    response = client.post(
        "/admin/backups/backuppolicy/add/",
        {
            "name": "from-admin",
            "enabled": "on",
            "source_kind": "postgres",
            "source_db_alias": "default",
            "storage_kind": "local",
            "local_path": "/srv/backups",
            "schedule": "0 1 * * *",
            "drill_schedule": "",
            "keep_days": 30,
            "min_redundancy": 1,
            "compression": "zstd",
            "compression_level": 3,
            "verify_after_backup": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    created = BackupPolicy.objects.get(name="from-admin")
    assert created.periodic_task is not None and created.periodic_task.crontab.hour == "1"
    bad = client.post(
        "/admin/backups/backuppolicy/add/",
        {
            "name": "bad",
            "source_kind": "postgres",
            "storage_kind": "s3",
            "schedule": "0 1 * * *",
            "keep_days": 30,
            "min_redundancy": 1,
            "compression": "zstd",
            "compression_level": 3,
        },
    )
    assert bad.status_code == 200 and not BackupPolicy.objects.filter(name="bad").exists()


def test_operators_cannot_open_restores_in_the_admin(db: Any) -> None:
    client = Client()
    client.force_login(make_user("op", "operator"))
    assert client.get("/admin/backups/restore/add/").status_code == 403


def test_admin_restore_form_checks_the_typed_name_and_records_the_request(
    local_policy: BackupPolicy, scratch_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = services.backup_execute(backup=services.backup_request(policy=local_policy, enqueue=False))
    dsn = scratch_db("admintarget")
    monkeypatch.setenv("BK_ADMIN_TARGET", dsn)
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    client = Client()
    client.force_login(make_user("boss", "admin"))
    form = {"backup": backup.pk, "target_dsn_env": "BK_ADMIN_TARGET", "target_db_alias": "", "reason": "x"}
    wrong = client.post("/admin/backups/restore/add/", {**form, "confirm": "nope"})
    assert wrong.status_code == 200 and "exactly" in wrong.content.decode()
    assert not Restore.objects.exists()
    ok = client.post("/admin/backups/restore/add/", {**form, "confirm": name})
    assert ok.status_code == 302
    restore = Restore.objects.get()
    assert restore.target_name == name and restore.requested_by == "boss" and restore.status == "pending"
