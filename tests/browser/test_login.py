"""An operator logs in through the admin's real login page."""

from __future__ import annotations

from typing import Any


def test_admin_logs_in_and_sees_the_operations_index(admin_login: Any) -> None:
    page = admin_login
    assert page.title().startswith("Operations")
    assert page.locator("#site-name").inner_text() == "Control plane"
    assert page.get_by_role("link", name="Log out").count() + page.locator("#logout-form").count() >= 1


def test_wrong_password_shows_an_error(page: Any, live_server: Any, transactional_db: Any) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong")
    page.click("input[type=submit]")
    assert "Please enter the correct username and password" in page.locator(".errornote").inner_text()
