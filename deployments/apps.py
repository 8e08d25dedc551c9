from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    """Services, environments, instances, releases and the rollout engine."""

    name = "deployments"
