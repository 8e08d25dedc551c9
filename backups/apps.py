from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup policies, the backup catalog, restores and restore drills."""

    name = "backups"

    def ready(self) -> None:
        from backups import metrics  # noqa: F401  (registers the database metrics reader)
