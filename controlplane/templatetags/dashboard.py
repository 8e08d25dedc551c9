"""``{% operator_dashboard as dash %}``: the landing page's panels (see controlplane/dashboard.py)."""

from __future__ import annotations

from typing import Any

from django import template

from controlplane import dashboard

register = template.Library()


@register.simple_tag
def operator_dashboard() -> dict[str, Any]:
    return dashboard.dashboard()
