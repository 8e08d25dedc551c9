"""An operator runs rollouts, incidents and backups from the admin in a real browser.

The engine and the backup pipeline run in-process between page loads (the clock is moved,
not waited for); every check reads what the rendered page shows.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backups import services as backup_services
from backups.models import Backup
from deployments import engine
from deployments.models import Deployment
from incidents.models import Incident, PostMortem
from tests.conftest import make_user
from tests.deployments.conftest import Clock, Stage, build_stage
from tests.incidents.conftest import seed_policies

CANARY = {
    "strategy": "canary",
    "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1m"}}],
}


@pytest.fixture
def stage(transactional_db: Any) -> Iterator[Stage]:
    built = build_stage(blue=1, green=1, slug=f"shop-{uuid.uuid4().hex[:4]}")
    yield built
    for app in built.apps.values():
        app.stop()


def advance(deployment_id: int, clock: Clock, *, until_waiting: bool = True, rounds: int = 50) -> Deployment:
    """Run the engine like the reconciler would until the deployment waits for an operator or ends."""
    d = Deployment.objects.get(pk=deployment_id)
    for _ in range(rounds):
        engine.run(deployment_id, now=clock)
        d.refresh_from_db()
        if d.status not in (Deployment.Status.PENDING, Deployment.Status.RUNNING):
            return d
        spec = d.current_step_spec or {}
        if until_waiting and spec.get("kind") == "pause" and not spec.get("duration_ms"):
            return d
        if d.next_check_at and d.next_check_at > clock.now:
            clock.now = d.next_check_at
        else:
            clock.advance(seconds=1)
    raise AssertionError(f"deployment #{deployment_id} did not settle: {d.status} at step {d.current_step}")


def submit(page: Any, selector: str) -> None:
    """Click a submit button and wait until the page it leads to has loaded."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def text(page: Any, selector: str = "body") -> str:
    return re.sub(r"\s+", " ", page.locator(selector).first.inner_text())


def start_canary_from_the_admin(page: Any, base: str, stage: Stage) -> int:
    page.goto(f"{base}/admin/deployments/deployment/add/")
    page.select_option("#id_environment", label=str(stage.env))
    page.select_option("#id_release", label=str(stage.v2))
    page.fill("#id_config", json.dumps(CANARY))
    page.fill("#id_reason", "browser canary")
    submit(page, "input[name=_save]")
    assert "was added successfully" in text(page, ".messagelist")
    return Deployment.objects.get(environment=stage.env, reason="browser canary").pk


def run_action(page: Any, base: str, changelist: str, pk: int, action: str) -> str:
    page.goto(f"{base}/admin/{changelist}/")
    page.check(f'input[name="_selected_action"][value="{pk}"]')
    page.select_option("select[name=action]", action)
    submit(page, 'button[title="Run the selected action"]')
    return text(page, ".messagelist")


def dashboard_row(page: Any, base: str, panel: str, pk: int) -> str:
    page.goto(f"{base}/admin/")
    return text(page, f"#{panel} tr[data-id='{pk}']")


def test_canary_started_from_the_admin_progresses_and_promotes(
    admin_login: Any, live_server: Any, stage: Stage
) -> None:
    page, base, clock = admin_login, live_server.url, Clock()
    pk = start_canary_from_the_admin(page, base, stage)
    row = dashboard_row(page, base, "dash-rollouts", pk)
    assert "pending" in row and re.search(r"step 1 of \d+", row), row

    d = advance(pk, clock)  # deploys the canary, shifts 20%, waits in the until-promoted pause
    row = dashboard_row(page, base, "dash-rollouts", pk)
    assert f"step {d.current_step + 1} of {d.step_total}" in row and "Pause" in row, row
    assert "20%" in text(page, f"#dash-rollouts tr[data-id='{pk}'] td.weight")
    assert stage.apps["g1"].version == "1.1.0" and stage.apps["b1"].version == "1.0.0"

    message = run_action(page, base, "deployments/deployment", pk, "promote")
    assert "Promote (skip current step): 1 deployment(s)." in message
    d = advance(pk, clock, until_waiting=False)
    assert d.status == Deployment.Status.SUCCEEDED

    page.goto(f"{base}/admin/deployments/deployment/")
    listed = text(page, f"#result_list tr:has(input[value='{pk}'])")
    assert "succeeded" in listed and f"{d.step_total}/{d.step_total}" in listed, listed
    assert page.locator(f"#result_list tr:has(input[value='{pk}']) .cp-badge--ok").count() == 1
    page.goto(f"{base}/admin/")
    assert "No rollout in progress." in text(page, "#dash-rollouts")
    page.goto(f"{base}/admin/deployments/deployment/{pk}/change/")
    assert "promote" in text(page).lower() and "50% of traffic" in text(page)


def test_an_operator_aborts_a_canary(admin_login: Any, live_server: Any, stage: Stage) -> None:
    page, base, clock = admin_login, live_server.url, Clock()
    pk = start_canary_from_the_admin(page, base, stage)
    advance(pk, clock)
    assert "20%" in dashboard_row(page, base, "dash-rollouts", pk)

    message = run_action(page, base, "deployments/deployment", pk, "abort")
    assert "Abort (traffic back to stable): 1 deployment(s)." in message
    listed = text(page, f"#result_list tr:has(input[value='{pk}'])")
    assert "aborted" in listed
    assert page.locator(f"#result_list tr:has(input[value='{pk}']) .cp-badge--bad").count() == 1
    stage.refresh()
    assert stage.env.traffic["weights"] == {"blue": 100, "green": 0}
    page.goto(f"{base}/admin/")
    assert "No rollout in progress." in text(page, "#dash-rollouts")


def test_incident_declared_handed_off_resolved_and_written_up(admin_login: Any, live_server: Any) -> None:
    page, base = admin_login, live_server.url
    policies = seed_policies()
    sev2 = next(p for p in policies.values() if p.rank == 2)
    make_user("second", "operator")

    page.goto(f"{base}/admin/incidents/incident/add/")
    page.fill("#id_title", "Payments timing out")
    page.select_option("#id_severity", label=str(sev2))
    page.fill("#id_impact_summary", "Card payments fail for 30% of users")
    submit(page, "input[name=_save]")
    assert "was added successfully" in text(page, ".messagelist")
    incident = Incident.objects.get(title="Payments timing out")
    row = dashboard_row(page, base, "dash-incidents", incident.pk)
    assert sev2.code in row and "declared" in row and re.search(r"Acknowledge.* in \d+m", row), row

    assert "Acknowledged 1 incident(s)." in run_action(
        page, base, "incidents/incident", incident.pk, "acknowledge"
    )
    listed = text(page, f"#result_list tr:has(input[value='{incident.pk}'])")
    assert "opsadmin" in listed

    page.goto(f"{base}/admin/incidents/incident/{incident.pk}/change/")
    page.select_option("#id_hand_off_to", label="second")
    page.fill("#id_handoff_note", "end of shift")
    submit(page, "input[name=_continue]")
    assert "Command handed off from opsadmin to second: end of shift" in text(page)
    page.goto(f"{base}/admin/incidents/incident/")
    assert "second" in text(page, f"#result_list tr:has(input[value='{incident.pk}'])")

    assert "Resolved 1 incident(s)." in run_action(page, base, "incidents/incident", incident.pk, "resolve")
    assert "resolved" in text(page, f"#result_list tr:has(input[value='{incident.pk}'])")
    page.goto(f"{base}/admin/")
    assert "Payments timing out" not in text(page, "#dash-incidents")

    # Resolving a SEV2 opens its post-mortem (due per the policy): write it up and publish it.
    pm = PostMortem.objects.get(incident=incident)
    page.goto(f"{base}/admin/incidents/postmortem/")
    assert "draft" in text(page, f"#result_list tr:has(input[value='{pm.pk}'])")
    page.goto(f"{base}/admin/incidents/postmortem/{pm.pk}/change/")
    assert page.input_value("#id_summary") == "Card payments fail for 30% of users"
    page.fill("#id_impact", "30% of card payments failed for 40 minutes")
    page.fill("#id_root_causes", "A connection pool sized for the old traffic")
    page.fill("#id_resolution", "Pool resized and payments retried")
    submit(page, "input[name=_save]")
    assert "was changed successfully" in text(page, ".messagelist")
    assert "is now in review" in run_action(page, base, "incidents/postmortem", pm.pk, "send_to_review")
    assert "is now published" in run_action(page, base, "incidents/postmortem", pm.pk, "publish")
    listed = text(page, f"#result_list tr:has(input[value='{pm.pk}'])")
    assert "published" in listed and "Payments timing out" in listed
    page.goto(f"{base}/admin/incidents/postmortem/{pm.pk}/change/")
    assert "A connection pool sized for the old traffic" in text(page)


def test_backup_run_from_the_admin_is_verified(admin_login: Any, live_server: Any, tmp_path: Path) -> None:
    page, base = admin_login, live_server.url
    policy = backup_services.policy_create(
        name="browser-nightly",
        source_db_alias="default",  # the test database itself
        storage_kind="local",
        local_path=str(tmp_path / "store"),
    )
    page.goto(f"{base}/admin/")
    assert "never" in text(page, "#dash-backups tr[data-name='browser-nightly']")

    message = run_action(page, base, "backups/backuppolicy", policy.pk, "run_now")
    backup = Backup.objects.get(policy=policy)
    assert f"Backup #{backup.pk} of browser-nightly queued." in message
    page.goto(f"{base}/admin/backups/backup/")
    assert "pending" in text(page, f"#result_list tr:has(input[value='{backup.pk}'])")

    backup_services.backup_execute(backup=backup)  # what the worker runs: dump, store, read back

    page.goto(f"{base}/admin/backups/backup/")
    listed = page.locator(f"#result_list tr:has(input[value='{backup.pk}'])")
    assert "succeeded" in re.sub(r"\s+", " ", listed.inner_text())
    assert listed.locator("td.field-verify_status_badge .cp-badge--ok").inner_text() == "ok"
    page.goto(f"{base}/admin/backups/verification/")
    assert "passed" in text(page, "#result_list")
    page.goto(f"{base}/admin/")
    assert re.search(rf"#{backup.pk} \d+s ago", text(page, "#dash-backups tr[data-name='browser-nightly']"))
