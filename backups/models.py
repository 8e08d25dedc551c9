"""Backup policies, the backup catalog, verifications (checks and restore drills) and restores."""

from __future__ import annotations

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

env_var_name = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Must be an environment variable name.")
slug_name = RegexValidator(r"^[a-z0-9][a-z0-9_-]*$", "Lowercase letters, digits, '-' and '_'.")
cron_expression = RegexValidator(
    r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+$", "Five crontab fields: minute hour day-of-month month day-of-week."
)


class BackupPolicy(models.Model):
    """What to back up, where to, when, how long to keep it and how to prove it restores.

    Secrets never live here: a PostgreSQL source names the environment variable that
    holds its DSN (or a Django database alias), and S3 credentials come from the
    environment / the default AWS credential chain of the worker.
    """

    class SourceKind(models.TextChoices):
        POSTGRES = "postgres"
        DIRECTORY = "directory"

    class StorageKind(models.TextChoices):
        S3 = "s3"
        LOCAL = "local"

    class Compression(models.TextChoices):
        ZSTD = "zstd"
        GZIP = "gzip"

    name = models.CharField(max_length=100, unique=True, validators=[slug_name])
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)

    source_kind = models.CharField(max_length=10, choices=SourceKind.choices, default=SourceKind.POSTGRES)
    source_dsn_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[env_var_name],
        help_text="Name of the environment variable holding the database DSN (never the DSN itself).",
    )
    source_db_alias = models.CharField(
        max_length=100, blank=True, help_text="Or a database alias from Django's DATABASES."
    )
    source_path = models.CharField(max_length=500, blank=True, help_text="Directory to archive (tar).")

    storage_kind = models.CharField(max_length=10, choices=StorageKind.choices, default=StorageKind.S3)
    s3_bucket = models.CharField(max_length=63, blank=True)
    s3_prefix = models.CharField(max_length=300, blank=True)
    s3_endpoint_url = models.URLField(blank=True, help_text="For S3-compatible stores (MinIO, R2, ...).")
    s3_region = models.CharField(max_length=40, blank=True)
    local_path = models.CharField(max_length=500, blank=True)

    schedule = models.CharField(
        max_length=100, default="0 3 * * *", validators=[cron_expression], help_text="Crontab, UTC."
    )
    drill_schedule = models.CharField(
        max_length=100,
        blank=True,
        default="0 5 * * 0",
        validators=[cron_expression],
        help_text="Crontab for restore drills of the newest backup; empty for none.",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    drill_periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    keep_days = models.PositiveIntegerField(default=30, help_text="Delete backups older than this.")
    keep_last = models.PositiveIntegerField(
        null=True, blank=True, help_text="Also delete beyond the newest N successful backups."
    )
    min_redundancy = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Never keep fewer successful backups."
    )
    compression = models.CharField(max_length=10, choices=Compression.choices, default=Compression.ZSTD)
    compression_level = models.PositiveSmallIntegerField(default=3)
    verify_after_backup = models.BooleanField(
        default=True, help_text="Read the object back and check its sha256 after every backup."
    )

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "backup policies"

    def __str__(self) -> str:
        return self.name


class Backup(models.Model):
    """One catalog entry: everything needed to find, check and restore the object, never a file name parse."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual"
        SAFETY = "safety"

    class Check(models.TextChoices):
        OK = "ok"
        FAILED = "failed"

    policy = models.ForeignKey(BackupPolicy, on_delete=models.PROTECT, related_name="backups")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    source_kind = models.CharField(max_length=10, choices=BackupPolicy.SourceKind.choices)
    source_name = models.CharField(max_length=200, blank=True, help_text="Database name or directory.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    storage = models.JSONField(default=dict, blank=True, help_text="Where the object lives (no secrets).")
    storage_key = models.CharField(max_length=500, blank=True)
    storage_version_id = models.CharField(max_length=200, blank=True)
    compression = models.CharField(max_length=10, choices=BackupPolicy.Compression.choices)
    raw_bytes = models.BigIntegerField(null=True, blank=True)
    stored_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    pg_dump_version = models.CharField(max_length=100, blank=True)
    server_version = models.CharField(max_length=100, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    throughput_bytes_per_second = models.FloatField(null=True, blank=True)
    row_counts = models.JSONField(default=dict, blank=True, help_text="Exact rows per table, same snapshot.")
    error = models.TextField(blank=True)

    verified_at = models.DateTimeField(null=True, blank=True)
    verify_status = models.CharField(max_length=10, choices=Check.choices, blank=True)
    drilled_at = models.DateTimeField(null=True, blank=True)
    drill_status = models.CharField(max_length=10, choices=Check.choices, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["policy", "status", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.policy.name}#{self.pk} {self.status}"


class BackupEvent(models.Model):
    """Append-only history of a backup: every transition, check, drill and notification."""

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, blank=True)
    message = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.backup_id} {self.kind}"


class Verification(models.Model):
    """One check of a backup: ``checksum`` reads the object back, ``drill`` restores it into a scratch DB."""

    class Kind(models.TextChoices):
        CHECKSUM = "checksum"
        DRILL = "drill"

    class Status(models.TextChoices):
        RUNNING = "running"
        PASSED = "passed"
        FAILED = "failed"

    backup = models.ForeignKey(Backup, on_delete=models.CASCADE, related_name="verifications")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Check time; for a drill, time to restore.")
    details = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} of backup {self.backup_id}: {self.status}"


class Restore(models.Model):
    """Restoring a backup over a target database, after a safety backup of that target."""

    class Status(models.TextChoices):
        PENDING = "pending"
        VERIFYING = "verifying"
        SAFETY_BACKUP = "safety_backup"
        RESTORING = "restoring"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    backup = models.ForeignKey(Backup, on_delete=models.PROTECT, related_name="restores")
    target_dsn_env = models.CharField(max_length=100, blank=True, validators=[env_var_name])
    target_db_alias = models.CharField(max_length=100, blank=True)
    target_name = models.CharField(max_length=200, help_text="Database name of the target.")
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.PENDING)
    safety_backup = models.ForeignKey(
        Backup, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"restore of backup {self.backup_id} into {self.target_name}: {self.status}"
