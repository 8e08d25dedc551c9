"""Seed the default pre and post checklist templates with the user guide's two lists, verbatim.

They are inactive: an operator turns them on (or copies them to an environment) in the admin,
so existing environments do not start blocking deployments on upgrade.
"""

from typing import Any

from django.db import migrations

# (title, evaluator or "", params, required)
PRE = [
    ("All tests passing", "ci_passed", {}, True),
    ("Code reviewed and approved", "", {}, True),
    ("Environment variables configured", "", {}, True),
    ("Secrets properly stored", "", {}, True),
    ("Database migrations run", "", {}, True),
    ("Backups verified", "backup_verified", {"maxAgeHours": 24}, True),
    ("Monitoring and alerting configured", "alert_rules_loaded", {}, True),
    ("Documentation updated", "", {}, False),
    ("Rollback plan documented", "", {}, True),
    ("Team notified of deployment", "", {}, True),
]
POST = [
    ("Health checks passing", "instances_healthy", {}, True),
    ("Metrics normal", "metrics_normal", {"windowMs": 300000}, True),
    ("No errors in logs", "", {}, True),
    ("Performance baseline met", "", {}, True),
    ("Alert rules tested", "alert_rules_loaded", {}, True),
    ("Documentation updated", "", {}, False),
    ("Post-mortem if issues occurred", "", {}, False),
]


def seed(apps: Any, schema_editor: Any) -> None:
    Template = apps.get_model("deployments", "ChecklistTemplate")
    Item = apps.get_model("deployments", "ChecklistTemplateItem")
    for phase, name, rows in (
        ("pre", "Pre-Deployment Checklist", PRE),
        ("post", "Post-Deployment Checklist", POST),
    ):
        template, created = Template.objects.get_or_create(
            environment=None, phase=phase, defaults={"name": name, "active": False}
        )
        if created:
            Item.objects.bulk_create(
                Item(template=template, position=i, title=t, evaluator=e, params=p, required=r)
                for i, (t, e, p, r) in enumerate(rows)
            )


class Migration(migrations.Migration):
    dependencies = [("deployments", "0002_gates")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
