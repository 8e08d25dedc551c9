"""Seed P1/P2/P3 with the runbook's phase deadlines (declare 5 min, assess 10, mitigate 30,
resolve 1 h, post-mortem 1 week); operators edit them in the admin afterwards."""

from datetime import timedelta

from django.db import migrations

POLICIES = [
    {
        "code": "P1",
        "rank": 1,
        "name": "Complete system outage",
        "postmortem_required": True,
        "channels": ["slack", "pagerduty", "webhook"],
        "alert_severities": ["critical", "page", "p1"],
    },
    {
        "code": "P2",
        "rank": 2,
        "name": "Major functionality degraded",
        "postmortem_required": True,
        "channels": ["slack", "pagerduty", "webhook"],
        "alert_severities": ["error", "major", "high", "p2"],
    },
    {
        "code": "P3",
        "rank": 3,
        "name": "Minor functionality degraded",
        "postmortem_required": False,
        "channels": ["slack", "webhook"],
        "alert_severities": ["warning", "minor", "low", "info", "p3"],
    },
]


def seed(apps, schema_editor):
    SeverityPolicy = apps.get_model("incidents", "SeverityPolicy")
    for p in POLICIES:
        SeverityPolicy.objects.get_or_create(
            code=p["code"],
            defaults={
                **p,
                "acknowledge_within": timedelta(minutes=5),
                "assess_within": timedelta(minutes=10),
                "mitigate_within": timedelta(minutes=30),
                "resolve_within": timedelta(hours=1),
                "postmortem_within": timedelta(weeks=1),
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("incidents", "SeverityPolicy").objects.filter(
        code__in=[p["code"] for p in POLICIES], incidents__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
