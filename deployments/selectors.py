"""Reads of the deployments app that are more than a one-line queryset."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Prefetch, QuerySet

from deployments.models import Deployment, DeploymentEvent, Environment

# How long a claimed deployment is left alone before the reconciler enqueues it again:
# long enough for a queued message to be consumed, short enough that a lost one costs little.
CLAIM_LEASE = timedelta(seconds=60)


def claim_due_deployments(*, now: datetime, limit: int = 50_000, lease: timedelta = CLAIM_LEASE) -> list[int]:
    """Ids of pending/running deployments whose ``next_check_at`` has passed, claimed in one
    statement: their ``next_check_at`` moves to ``now + lease`` so the next tick does not
    enqueue them again while their message waits; the engine sets the real value when it runs.
    Rows a worker is advancing right now (locked) are skipped."""
    table = Deployment._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} SET next_check_at = %s
            WHERE id IN (
                SELECT id FROM {table}
                WHERE status IN ('pending', 'running') AND next_check_at <= %s
                ORDER BY next_check_at
                LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            RETURNING id
            """,  # noqa: S608 - the table name is ours, values are parameters
            [now + lease, now, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _deployments() -> QuerySet[Deployment]:
    return Deployment.objects.select_related(
        "environment__service", "release", "previous_release", "created_by"
    )


def deployment_list() -> QuerySet[Deployment]:
    """The list page: one query for the rows, JSON the page does not show left in the database."""
    return _deployments().defer("config", "step_state", "request_fingerprint", "environment__traffic",
                                "environment__router", "environment__deployer", "environment__health_check",
                                "environment__metrics")  # fmt: skip


def deployment_detail() -> QuerySet[Deployment]:
    return _deployments().prefetch_related(
        Prefetch("events", queryset=DeploymentEvent.objects.order_by("created_at", "id"))
    )


def environment_by_ref(ref: str) -> Environment:
    """``service/env`` -> Environment (raises Environment.DoesNotExist)."""
    service, _, slug = ref.partition("/")
    return Environment.objects.select_related("service", "current_release").get(
        service__slug=service, slug=slug
    )
