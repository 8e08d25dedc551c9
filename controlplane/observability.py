"""Sentry initialisation (only when ``SENTRY_DSN`` is set)."""

from __future__ import annotations


def init_sentry(dsn: str, *, environment: str) -> None:
    """Report errors from Django and Celery to Sentry; never send request bodies or PII."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
        send_default_pii=False,
        traces_sample_rate=0.0,
    )
