"""Celery entry points of the incidents app (thin: fetch by id, call a service)."""

from __future__ import annotations

from celery import shared_task

from incidents import notifications, services


@shared_task(name="incidents.deliver_notification", ignore_result=True)
def deliver_notification(notification_id: int) -> None:
    """Send one outbox row; the service claims it, so duplicates and stale messages are no-ops."""
    notifications.notification_deliver(notification_id=notification_id)


@shared_task(name="incidents.sweep_notifications", ignore_result=True)
def sweep_notifications() -> int:
    """Re-enqueue outbox rows left behind by a broker outage, a lost message or a dead worker."""
    return notifications.notifications_sweep()


@shared_task(name="incidents.check_deadlines", ignore_result=True)
def check_deadlines() -> int:
    """Record newly breached phase deadlines (each once)."""
    return len(services.deadlines_check())


@shared_task(name="incidents.remind_action_items", ignore_result=True)
def remind_action_items() -> int:
    """Remind owners of overdue action items (at most daily per item)."""
    return len(services.action_items_remind())
