"""Backup metrics at /metrics and the alert rules, checked by promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client

from backups import services
from backups.models import BackupPolicy
from tests.backups.test_pipeline import run_now

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "prometheus" / "alerts.yml"
TOO_OLD_TEXT = "Last success 1d 3h 0m 0s ago. Check the backups catalog for failed or skipped runs."
DRILL_TEXT = "The latest restore drill did not reproduce the recorded row counts or did not restore at all."


def test_metrics_expose_last_success_size_duration_and_drill_result(local_policy: BackupPolicy) -> None:
    idle = services.policy_create(
        name="never-ran", source_db_alias="default", storage_kind="local", local_path="/x"
    )
    backup = run_now(local_policy)
    services.backup_drill(backup=backup)
    text = Client().get("/metrics").content.decode()
    name = local_policy.name
    line = next(
        x
        for x in text.splitlines()
        if x.startswith(f'controlplane_backup_last_success_timestamp_seconds{{policy="{name}"}}')
    )
    assert abs(float(line.split()[-1]) - backup.finished_at.timestamp()) < 1  # type: ignore[union-attr]
    assert f'controlplane_backup_last_size_bytes{{policy="{name}"}} {float(backup.stored_bytes or 0)}' in text
    assert f'controlplane_backup_last_duration_seconds{{policy="{name}"}}' in text
    assert f'controlplane_backup_restore_drill_success{{policy="{name}"}} 1.0' in text
    assert f'controlplane_backup_last_success_timestamp_seconds{{policy="{idle.name}"}} 0.0' in text
    assert f'controlplane_backups{{policy="{name}",status="succeeded"}} 1.0' in text


def test_alert_rules_include_the_backup_alerts() -> None:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = {r["alert"]: r for g in groups if g["name"] == "backups" for r in g["rules"]}
    assert "controlplane_backup_last_success_timestamp_seconds" in rules["BackupTooOld"]["expr"]
    assert "controlplane_backup_restore_drill_success" in rules["RestoreDrillFailed"]["expr"]


@pytest.mark.skipif(
    shutil.which("promtool") is None and os.environ.get("CI") != "true", reason="promtool not installed"
)
def test_promtool_accepts_the_rules_and_they_fire(tmp_path: Path) -> None:
    subprocess.run(["promtool", "check", "rules", str(ALERTS)], check=True, capture_output=True)
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'controlplane_backup_last_success_timestamp_seconds{policy="db"}',
                        "values": "0x1700",
                    },
                    {
                        "series": 'controlplane_backup_restore_drill_success{policy="db"}',
                        "values": "1x5 0x60",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "25h", "alertname": "BackupTooOld", "exp_alerts": []},
                    {
                        "eval_time": "27h",
                        "alertname": "BackupTooOld",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "policy": "db"},
                                "exp_annotations": {
                                    "summary": "No successful backup of db for over 26 hours",
                                    "description": TOO_OLD_TEXT,
                                },
                            }
                        ],
                    },
                    {"eval_time": "3m", "alertname": "RestoreDrillFailed", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "RestoreDrillFailed",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "policy": "db"},
                                "exp_annotations": {
                                    "summary": "Restore drill of db failed",
                                    "description": DRILL_TEXT,
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(tests))
    out = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_notify_failure_logs_and_records_an_event(local_policy: BackupPolicy, caplog: Any) -> None:
    backup = run_now(local_policy)
    with caplog.at_level("ERROR", logger="backups.services"):
        services.notify_failure(backup=backup, kind="drill", message="restored 3 rows, expected 4")
    assert "restored 3 rows" in caplog.text
    event = backup.events.get(kind="notification")
    assert event.details == {"kind": "drill", "notifications": []}  # no channel configured


def test_notify_failure_writes_an_outbox_row_per_configured_channel(
    local_policy: BackupPolicy, settings: Any
) -> None:
    from incidents.models import Notification

    settings.SLACK_WEBHOOK_URL = "http://127.0.0.1:9/slack-hook"
    backup = run_now(local_policy)
    services.notify_failure(backup=backup, kind="drill", message="restored 3 rows, expected 4")
    row = Notification.objects.get()
    assert row.channel == "slack"
    assert row.event == "backup.drill_failed"
    assert "restored 3 rows" in json.dumps(row.body)
    assert backup.events.get(kind="notification").details["notifications"] == [row.pk]
