"""The one beat schedule.

Synced into django-celery-beat's tables (``manage.py sync_beat_schedule``, and by
beat itself at start), where operators see and pause entries in the admin; a sync
never re-enables an entry an operator paused.  Every entry has an expiry so a
backlog after an outage does not run stale ticks.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Health reports the scheduler pipeline stale after 2 minutes; 30 s keeps it well inside.
    "pipeline-heartbeat": {
        "task": "controlplane.pipeline_heartbeat",
        "schedule": 30.0,
        "options": {"expire_seconds": 25},
    },
    # Retention deletes by day granularity (keep_days); hourly keeps storage within an hour of
    # policy and also fails runs a dead worker left "running" (their policy lock is free).
    "backups-retention": {
        "task": "backups.apply_retention",
        "schedule": 3600.0,
        "options": {"expire_seconds": 3000},
    },
}

BEAT_SCHEDULE.update(
    {
        # The tightest phase deadline is minutes long; a 30 s tick detects a breach within 30 s.
        "incidents-check-deadlines": {
            "task": "incidents.check_deadlines",
            "schedule": 30.0,
            "options": {"expire_seconds": 25},
        },
        # Outbox rows wait 30 s for their own message before the sweeper re-enqueues them.
        "incidents-sweep-notifications": {
            "task": "incidents.sweep_notifications",
            "schedule": 30.0,
            "options": {"expire_seconds": 25},
        },
        # Reminders are daily per item; hourly ticks spread them without spamming.
        "incidents-remind-action-items": {
            "task": "incidents.remind_action_items",
            "schedule": 3600.0,
            "options": {"expire_seconds": 1800},
        },
    }
)

BEAT_SCHEDULE |= {
    # Rollouts wait by storing next_check_at (timed pauses, health intervals, analysis
    # intervals); this tick turns due ones into work and recovers lost messages. 5 s is
    # the granularity of a rollout's clock; a tick for 10,000 deployments costs ~1 query.
    "deployments-reconcile": {
        "task": "deployments.reconcile_deployments",
        "schedule": 5.0,
        "options": {"expire_seconds": 5},
    },
}

# Maintenance (the guide's maintenance.sh). Retention is counted in days, so daily prunes keep
# storage within a day of policy; they run at night, staggered, away from the 03:00 backups.
_DAY = 24 * 3600
BEAT_SCHEDULE |= {
    "maintenance-prune-deployment-events": {
        "task": "controlplane.prune_deployment_events",
        "schedule": crontab(minute=10, hour=2),
        "options": {"expire_seconds": 6 * 3600},
    },
    "maintenance-prune-measurements": {
        "task": "controlplane.prune_measurements",
        "schedule": crontab(minute=20, hour=2),
        "options": {"expire_seconds": 6 * 3600},
    },
    "maintenance-prune-notifications": {
        "task": "controlplane.prune_notifications",
        "schedule": crontab(minute=30, hour=2),
        "options": {"expire_seconds": 6 * 3600},
    },
    "maintenance-prune-audit-log": {
        "task": "controlplane.prune_audit_log",
        "schedule": crontab(minute=40, hour=2),
        "options": {"expire_seconds": 6 * 3600},
    },
    # Keys live IDEMPOTENCY_KEY_TTL_HOURS (24 h); hourly keeps them within an hour of it.
    "maintenance-expire-idempotency-keys": {
        "task": "controlplane.expire_idempotency_keys",
        "schedule": 3600.0,
        "options": {"expire_seconds": 3000},
    },
    # Autovacuum does the day-to-day work; a weekly full pass after the nightly prunes
    # reclaims what they freed and refreshes planner statistics (Sunday, after backups).
    "maintenance-vacuum-analyze": {
        "task": "controlplane.vacuum_analyze",
        "schedule": crontab(minute=0, hour=4, day_of_week=0),
        "options": {"expire_seconds": _DAY},
    },
}
BEAT_SCHEDULE.update(
    {
        # Post-deployment metric windows are minutes long; 30 s judges them within 30 s of ending
        # and recovers an evaluation whose message was lost.
        "deployments-sweep-checklist-items": {
            "task": "deployments.sweep_checklist_items",
            "schedule": 30.0,
            "options": {"expire_seconds": 25},
        },
    }
)
