from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    """Severity policies, incidents, timelines, post-mortems, alert intake, notifications."""

    name = "incidents"

    def ready(self) -> None:
        from incidents import metrics  # noqa: F401  (registers the database metric readers)
        from incidents.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
