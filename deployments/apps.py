from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    """Services, environments, instances, releases and the rollout engine."""

    name = "deployments"

    def ready(self) -> None:
        from deployments import metrics  # noqa: F401  (registers the /metrics readers)
