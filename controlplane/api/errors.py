"""One error format for every 4xx: ``{"code", "message", "details"}``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(exceptions.APIException):
    """The request is valid but the current state forbids it (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"
    default_detail = "The request conflicts with the current state."

    def __init__(self, message: str, *, code: str = "conflict", details: dict[str, Any] | None = None):
        super().__init__(detail=message, code=code)
        self.details = details or {}


def _first_message(data: Any) -> str:
    if isinstance(data, dict):
        for key, value in data.items():
            msg = _first_message(value)
            if msg:
                return msg if key in ("non_field_errors", "detail") else f"{key}: {msg}"
    elif isinstance(data, list):
        for value in data:
            msg = _first_message(value)
            if msg:
                return msg
    elif data:
        return str(data)
    return ""


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        body: dict[str, Any] = {
            "code": "invalid",
            "message": _first_message(details) or "Invalid input.",
            "details": details,
        }
    else:
        if isinstance(exc, Http404):
            code = "not_found"
        elif isinstance(exc, PermissionDenied):
            code = "permission_denied"
        elif isinstance(exc, exceptions.APIException):
            codes = exc.get_codes()
            code = codes if isinstance(codes, str) else exc.default_code
        else:
            code = "error"
        message = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        body = {"code": str(code), "message": str(message), "details": getattr(exc, "details", {})}
    response.data = body
    return response


@csrf_exempt
def api_not_found(request: Any, *args: Any, **kwargs: Any) -> Any:
    """Unmatched ``/api/`` paths answer in the API's error format, not Django's HTML page."""
    from django.http import JsonResponse

    return JsonResponse(
        {"code": "not_found", "message": f"No API endpoint at {request.path}.", "details": {}}, status=404
    )
