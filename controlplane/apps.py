from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ControlPlaneConfig(AppConfig):
    """Project-wide concerns: auth and roles, audit log, health, metrics, maintenance."""

    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from controlplane import metrics, roles
        from controlplane.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        metrics.install_collector()
        # Django creates permissions on post_migrate; the role groups are kept in step with them.
        post_migrate.connect(roles.on_post_migrate, dispatch_uid="controlplane.sync_roles")
