"""OpenAPI description of our authentication (drf-spectacular extension)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "API token from `manage.py create_token` or POST /api/v1/tokens/.",
        }


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every 4xx: a machine code, a human message and per-field details.",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": "object", "additionalProperties": True},
    },
    "required": ["code", "message", "details"],
}

_ERRORS = {
    "400": "Invalid input or malformed JSON; `details` names each field and rule.",
    "401": "Missing, unknown, expired or revoked token.",
    "403": "Your role does not allow this.",
    "404": "No such object.",
    "405": "Method not allowed.",
    "409": "The current state forbids this (e.g. an active deployment exists).",
    "415": "Unsupported media type.",
    "429": "Throttled; see Retry-After.",
}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: document the one error format on every operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS.items():
                if code in ("400", "409", "415") and method == "get" and code != "400":
                    continue
                responses.setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": ref}}}
                )
    return result
