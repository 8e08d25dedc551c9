from __future__ import annotations

from typing import Any

from rest_framework import serializers

from backups.models import Backup, BackupEvent, BackupPolicy, Restore, Verification


class BackupPolicySerializer(serializers.ModelSerializer[BackupPolicy]):
    schedule_enabled = serializers.SerializerMethodField(
        help_text="Whether the beat entry of the schedule is active (operators may pause it in the admin)."
    )

    class Meta:
        model = BackupPolicy
        fields = [
            "id",
            "name",
            "description",
            "enabled",
            "source_kind",
            "source_dsn_env",
            "source_db_alias",
            "source_path",
            "storage_kind",
            "s3_bucket",
            "s3_prefix",
            "s3_endpoint_url",
            "s3_region",
            "local_path",
            "schedule",
            "drill_schedule",
            "schedule_enabled",
            "keep_days",
            "keep_last",
            "min_redundancy",
            "compression",
            "compression_level",
            "verify_after_backup",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def get_schedule_enabled(self, obj: BackupPolicy) -> bool:
        return bool(obj.periodic_task and obj.periodic_task.enabled)


class VerificationSerializer(serializers.ModelSerializer[Verification]):
    class Meta:
        model = Verification
        fields = [
            "id",
            "backup",
            "kind",
            "status",
            "started_at",
            "finished_at",
            "seconds",
            "details",
            "error",
        ]


class BackupEventSerializer(serializers.ModelSerializer[BackupEvent]):
    class Meta:
        model = BackupEvent
        fields = ["created_at", "kind", "from_status", "to_status", "message", "details"]


class BackupSerializer(serializers.ModelSerializer[Backup]):
    policy: serializers.SlugRelatedField[BackupPolicy] = serializers.SlugRelatedField(
        slug_field="name", read_only=True
    )

    class Meta:
        model = Backup
        fields = [
            "id",
            "policy",
            "status",
            "trigger",
            "source_kind",
            "source_name",
            "created_at",
            "started_at",
            "finished_at",
            "storage",
            "storage_key",
            "storage_version_id",
            "compression",
            "raw_bytes",
            "stored_bytes",
            "sha256",
            "pg_dump_version",
            "server_version",
            "duration_seconds",
            "throughput_bytes_per_second",
            "row_counts",
            "error",
            "verified_at",
            "verify_status",
            "drilled_at",
            "drill_status",
            "expired_at",
        ]
        read_only_fields = fields


class BackupDetailSerializer(BackupSerializer):
    events = BackupEventSerializer(many=True, read_only=True)
    verifications = VerificationSerializer(many=True, read_only=True)

    class Meta(BackupSerializer.Meta):
        fields = [*BackupSerializer.Meta.fields, "events", "verifications"]
        read_only_fields = fields


class RetentionInputSerializer(serializers.Serializer[Any]):
    dry_run = serializers.BooleanField(default=True)


class RetentionEntrySerializer(serializers.Serializer[Any]):
    backup = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    reason = serializers.CharField()
    expired = serializers.BooleanField(required=False)
    error = serializers.CharField(required=False)


class RestoreSerializer(serializers.ModelSerializer[Restore]):
    confirm = serializers.CharField(write_only=True, help_text="The target database's name, typed exactly.")

    class Meta:
        model = Restore
        fields = [
            "id",
            "backup",
            "target_dsn_env",
            "target_db_alias",
            "target_name",
            "confirm",
            "reason",
            "status",
            "safety_backup",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "log",
            "error",
        ]
        read_only_fields = [
            "target_name",
            "status",
            "safety_backup",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "log",
            "error",
        ]
