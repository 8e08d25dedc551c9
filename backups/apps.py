from django.apps import AppConfig


class BackupsConfig(AppConfig):
    """Backup policies, the backup catalog, restores and restore drills."""

    name = "backups"
