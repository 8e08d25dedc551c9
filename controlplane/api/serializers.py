from django.contrib.auth import get_user_model
from rest_framework import serializers

from controlplane.models import ApiToken, AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer[AuditEntry]):
    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "created_at",
            "actor_repr",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "source",
            "source_ip",
            "request_id",
        ]


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )
    ttl_days = serializers.IntegerField(
        write_only=True, required=False, min_value=1, max_value=3650, help_text="Expire after N days."
    )
    key = serializers.SerializerMethodField(help_text="The key; present only in the create response.")

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "username",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "ttl_days",
            "key",
        ]
        read_only_fields = ["prefix", "created_at", "expires_at", "revoked_at", "last_used_at"]

    def get_key(self, obj: ApiToken) -> str | None:
        return self.context.get("plaintext_key")
