"""Celery entry points of the rollout engine."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from deployments import engine, selectors

# Ids per advance message: 10,000 due deployments become 100 messages, not 10,000.
RECONCILE_CHUNK = 100


@shared_task(name="deployments.advance_deployment", ignore_result=True)
def advance_deployment(deployment_id: int) -> None:
    """Advance one deployment until it waits (a no-op if another worker holds it or it is gone)."""
    engine.run(deployment_id)


@shared_task(name="deployments.advance_deployments", ignore_result=True)
def advance_deployments(deployment_ids: list[int]) -> None:
    """Advance a batch of deployments the reconciler found due."""
    for deployment_id in deployment_ids:
        engine.run(deployment_id)


@shared_task(name="deployments.reconcile_deployments", ignore_result=True)
def reconcile_deployments() -> int:
    """Enqueue every pending/running deployment whose ``next_check_at`` has passed.

    A lost message, a killed worker or a restarted broker delays a rollout by at most
    the claim lease; it never strands it, and the row lock keeps it from doubling.
    """
    ids = selectors.claim_due_deployments(now=timezone.now())
    for start in range(0, len(ids), RECONCILE_CHUNK):
        advance_deployments.delay(ids[start : start + RECONCILE_CHUNK])
    return len(ids)


@shared_task(name="deployments.evaluate_checklist_items", ignore_result=True)
def evaluate_checklist_items(item_ids: list[int]) -> None:
    """Evaluate due post-deployment checklist items (a no-op for items already decided)."""
    from deployments.checklists import post_item_evaluate

    for item_id in item_ids:
        post_item_evaluate(item_id=item_id)


@shared_task(name="deployments.sweep_checklist_items", ignore_result=True)
def sweep_checklist_items() -> int:
    """Enqueue post-deployment items whose evaluation is due (windows ending, lost messages)."""
    from deployments.checklists import claim_due_items

    ids = claim_due_items(now=timezone.now())
    if ids:
        evaluate_checklist_items.delay(ids)
    return len(ids)
