"""Celery: a real worker process against Redis writes to PostgreSQL; beat schedule sync."""

from __future__ import annotations

from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from controlplane.beat import sync_beat_schedule
from controlplane.celery import app
from controlplane.models import Heartbeat
from controlplane.schedule import BEAT_SCHEDULE
from controlplane.tasks import pipeline_heartbeat
from tests.conftest import wait_for


@pytest.mark.worker
def test_real_worker_runs_a_task_and_its_effect_lands_in_postgres(celery_worker_factory: Any) -> None:
    worker = celery_worker_factory()
    # The worker's own bootstep heartbeat proves it booted against the test database.
    wait_for(lambda: Heartbeat.objects.filter(name__startswith="worker:test-").exists(), timeout=60)
    assert not Heartbeat.objects.filter(name="pipeline").exists()
    pipeline_heartbeat.delay(note="from-test")
    row = wait_for(lambda: Heartbeat.objects.filter(name="pipeline").first(), timeout=30)
    assert row.details["note"] == "from-test", worker.output()


def test_celery_is_configured_for_json_and_late_acks() -> None:
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_time_limit and conf.task_soft_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


@pytest.mark.django_db
def test_schedule_sync_creates_entries_and_keeps_operator_pauses() -> None:
    sync_beat_schedule()
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(BEAT_SCHEDULE) <= names
    task = PeriodicTask.objects.get(name="pipeline-heartbeat")
    assert task.expire_seconds == 25
    task.enabled = False
    task.save()
    sync_beat_schedule()
    assert PeriodicTask.objects.get(name="pipeline-heartbeat").enabled is False


def test_every_schedule_entry_has_an_expiry_and_a_registered_task() -> None:
    app.loader.import_default_modules()
    for name, entry in BEAT_SCHEDULE.items():
        assert entry["options"].get("expire_seconds"), name
        assert entry["task"] in app.tasks, name
