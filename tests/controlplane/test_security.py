"""Login brute-force protection, CORS and security headers."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _login(client: Client, password: str, ip: str = "10.0.0.1") -> int:
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": password}, REMOTE_ADDR=ip
    )
    return response.status_code


def test_login_locks_after_repeated_failures_even_with_the_right_password() -> None:
    user = make_user("ops", "operator")
    user.set_password("correct horse battery staple")
    user.save()
    client = Client()
    assert [_login(client, "wrong") for _ in range(5)] == [200] * 5  # form re-rendered with an error
    assert _login(client, "correct horse battery staple") == 200  # locked: still the login form
    assert "_auth_user_id" not in client.session
    # Another address is not locked out by someone else's failures.
    assert _login(Client(), "correct horse battery staple", ip="10.0.0.2") == 302


def test_a_successful_login_resets_the_failure_count() -> None:
    user = make_user("ops", "operator")
    user.set_password("correct horse battery staple")
    user.save()
    for _ in range(4):
        _login(Client(), "wrong")
    assert _login(Client(), "correct horse battery staple") == 302
    for _ in range(4):
        _login(Client(), "wrong")
    assert _login(Client(), "correct horse battery staple") == 302


@override_settings(CORS_ALLOWED_ORIGINS=["https://ops.example.com"])
def test_cors_allows_only_configured_origins() -> None:
    client = Client()
    ok = client.options(
        "/api/v1/audit-log/", HTTP_ORIGIN="https://ops.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert ok["Access-Control-Allow-Origin"] == "https://ops.example.com"
    bad = client.options(
        "/api/v1/audit-log/", HTTP_ORIGIN="https://evil.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert "Access-Control-Allow-Origin" not in bad


def test_security_headers_are_set() -> None:
    response = Client().get("/admin/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "camera=()" in response["Permissions-Policy"]


def test_swagger_ui_is_served_without_a_cdn() -> None:
    user = make_user("reader", "viewer")
    client = Client()
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
