"""One status badge for the whole admin: ``{% load badges %}{% badge value %}`` or ``badge(value)`` in Python.

The tone (colour) of a value is looked up in one table, so "failed" is the same red in the
deployments, incidents and backups lists and on the dashboard. The CSS is
``controlplane/static/controlplane/badges.css``, loaded on every admin page by base_site.html.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Statuses of every app, by tone. A value that is not listed is shown neutral.
TONES: dict[str, str] = {
    # going well / done
    "succeeded": "ok",
    "passed": "ok",
    "ok": "ok",
    "resolved": "ok",
    "closed": "muted",
    "published": "ok",
    "delivered": "ok",
    # in progress
    "pending": "info",
    "running": "info",
    "investigating": "info",
    "queued": "info",
    # needs attention
    "paused": "warn",
    "mitigated": "warn",
    "declared": "bad",
    "skipped": "warn",
    "draft": "warn",
    # ended badly
    "failed": "bad",
    "aborted": "bad",
    "rolled_back": "bad",
    "expired": "muted",
    "error": "bad",
    "never": "bad",
}

# Severity ranks (1 is the most severe).
SEVERITY_TONES = {1: "crit", 2: "bad", 3: "warn"}


def tone_of(value: Any) -> str:
    return TONES.get(str(value).lower(), "neutral")


def badge(value: Any, label: Any = None, *, tone: str | None = None) -> SafeString:
    """``<span class="cp-badge cp-badge--TONE">label</span>``; empty values show a dash."""
    if value in (None, ""):
        return mark_safe('<span class="cp-badge cp-badge--neutral">-</span>')
    text = label if label is not None else str(value).replace("_", " ")
    return format_html('<span class="cp-badge cp-badge--{}">{}</span>', tone or tone_of(value), text)


def severity_badge(code: str, rank: int) -> SafeString:
    return badge(code, code, tone=SEVERITY_TONES.get(rank, "neutral"))


def badge_column(field: str, description: str | None = None) -> Any:
    """A list_display column showing ``field`` as a badge, sortable by it:
    ``list_display = ["id", badge_column("status"), ...]``."""
    from django.contrib import admin

    def column(obj: Any) -> SafeString:
        return badge(getattr(obj, field))

    column.__name__ = f"{field}_badge"
    return admin.display(description=description or field.replace("_", " "), ordering=field)(column)


@register.simple_tag(name="badge")
def badge_tag(value: Any, label: Any = None) -> SafeString:
    return badge(value, label)


@register.simple_tag(name="severity_badge")
def severity_badge_tag(code: str, rank: int) -> SafeString:
    return severity_badge(code, rank)
