from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Severity policies, incidents, timelines, post-mortems, alert intake, notifications."""

    name = "incidents"
