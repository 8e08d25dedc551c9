"""Reads of the backups app that other apps use (the pre-deployment "Backups verified" gate)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from backups.models import Backup


def latest_verified_backup(
    *, within: timedelta = timedelta(hours=24), policy: str | None = None, now: datetime | None = None
) -> Backup | None:
    """The newest succeeded (non-safety) backup younger than ``within`` whose checksum or drill passed.

    ``None`` means the gate fails: nothing recent was proven readable. A failed drill of
    the same backup outweighs its passed checksum.
    """
    now = now or timezone.now()
    qs = (
        Backup.objects.filter(status=Backup.Status.SUCCEEDED, finished_at__gte=now - within)
        .exclude(trigger=Backup.Trigger.SAFETY)
        .filter(Q(verify_status=Backup.Check.OK) | Q(drill_status=Backup.Check.OK))
        .exclude(drill_status=Backup.Check.FAILED)
        .select_related("policy")
        .order_by("-finished_at")
    )
    if policy is not None:
        qs = qs.filter(policy__name=policy)
    return qs.first()
