"""OpenAPI description of the Alertmanager integration token."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AlertmanagerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "incidents.api.views.IntegrationTokenAuthentication"
    name = "alertmanagerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The ALERTMANAGER_TOKEN value (Alertmanager http_config.authorization).",
        }
