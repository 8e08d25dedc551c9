"""Each automatic checklist evaluator, true and false, against real rows, servers and promtool."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from backups.models import Backup, BackupPolicy, Verification
from deployments import evaluators
from deployments.models import Deployment
from incidents import services as incident_services
from tests.deployments.conftest import Clock, Stage, create
from tests.incidents.conftest import seed_policies

pytestmark = pytest.mark.django_db
CANARY = {"strategy": "canary", "steps": [{"setWeight": 50}]}


@pytest.fixture
def deployment(stage_factory: Callable[..., Stage], clock: Clock) -> Deployment:
    stage = stage_factory(blue=1, green=1)
    d = create(stage, CANARY, clock)
    d.stage = stage  # type: ignore[attr-defined]
    return d


def run(name: str, d: Deployment, **params: Any) -> evaluators.Verdict:
    d.refresh_from_db()
    return evaluators.evaluate(name, d, params, now=timezone.now())


def test_ci_passed_follows_the_release_ci_status(deployment: Deployment) -> None:
    assert not run("ci_passed", deployment).ok
    deployment.release.ci_status = "passed"
    deployment.release.save()
    verdict = run("ci_passed", deployment)
    assert verdict.ok and verdict.evidence == {"ci_status": "passed"}


def _backup(policy: BackupPolicy, *, age: timedelta, drill: str) -> Backup:
    finished = timezone.now() - age
    b = Backup.objects.create(
        policy=policy,
        status=Backup.Status.SUCCEEDED,
        source_kind="postgres",
        compression="zstd",
        finished_at=finished,
        drill_status=Backup.Check.OK if drill == "passed" else Backup.Check.FAILED,
        drilled_at=finished,
    )
    Verification.objects.create(backup=b, kind=Verification.Kind.DRILL, status=drill, finished_at=finished)
    return b


def test_backup_verified_needs_a_recent_passed_restore_drill_of_the_policy(deployment: Deployment) -> None:
    policy = BackupPolicy.objects.create(name="noodle-db", storage_kind="local", local_path="/tmp/x")
    other = BackupPolicy.objects.create(name="other-db", storage_kind="local", local_path="/tmp/y")
    params = {"policy": "noodle-db", "maxAgeHours": 24}
    assert not run("backup_verified", deployment, **params).ok  # nothing at all
    _backup(policy, age=timedelta(hours=30), drill="passed")  # too old
    _backup(policy, age=timedelta(hours=1), drill="failed")  # recent, but did not restore
    _backup(other, age=timedelta(hours=1), drill="passed")  # another policy
    verdict = run("backup_verified", deployment, **params)
    assert not verdict.ok and "noodle-db" in verdict.message
    good = _backup(policy, age=timedelta(hours=2), drill="passed")
    verdict = run("backup_verified", deployment, **params)
    assert verdict.ok and verdict.evidence["backup"] == good.pk


def test_instances_healthy_probes_every_instance_over_http(deployment: Deployment) -> None:
    stage: Stage = deployment.stage  # type: ignore[attr-defined]
    verdict = run("instances_healthy", deployment)
    assert verdict.ok and set(verdict.evidence["probes"]) == {"b1", "g1"}
    stage.apps["g1"].healthy = False  # the real server now answers /health with 503
    verdict = run("instances_healthy", deployment)
    assert not verdict.ok
    assert "g1: HTTP 503" in verdict.message
    assert verdict.evidence["probes"]["g1"]["status_code"] == 503


def test_metrics_normal_measures_the_live_slot_against_thresholds(deployment: Deployment) -> None:
    stage: Stage = deployment.stage  # type: ignore[attr-defined]
    params = {"metrics": {"error_rate": {"threshold": 0.01}}}
    verdict = run("metrics_normal", deployment, **params)
    assert verdict.ok, verdict.message
    assert verdict.evidence["metrics"]["error_rate"]["value"] == 0
    stage.apps["b1"].fail_rate = 0.5  # the live slot (blue) serves 500 on every other request
    verdict = run("metrics_normal", deployment, **params)
    assert not verdict.ok and "error_rate" in verdict.message
    assert verdict.evidence["metrics"]["error_rate"]["value"] == pytest.approx(0.5)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
def test_alert_rules_loaded_runs_promtool_on_the_shipped_rules(
    deployment: Deployment, tmp_path: Path
) -> None:
    verdict = run("alert_rules_loaded", deployment)
    assert verdict.ok, verdict.evidence
    assert verdict.evidence["file"].endswith("ops/prometheus/alerts.yml")
    broken = tmp_path / "alerts.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: rate(\n")
    verdict = run("alert_rules_loaded", deployment, rulesFile=str(broken))
    assert not verdict.ok and verdict.evidence["returncode"] != 0


@pytest.fixture
def prometheus() -> Iterator[dict[str, Any]]:
    """A loopback server answering /api/v1/rules like Prometheus does."""
    state: dict[str, Any] = {"groups": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "success", "data": {"groups": state["groups"]}}).encode()
            self.send_response(200 if self.path == "/api/v1/rules" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_alert_rules_loaded_asks_a_configured_prometheus(deployment: Deployment, prometheus: Any) -> None:
    assert not run("alert_rules_loaded", deployment, prometheusUrl=prometheus["url"]).ok
    prometheus["groups"] = [{"name": "deployments", "rules": [{"name": "DeploymentStuck"}]}]
    verdict = run("alert_rules_loaded", deployment, prometheusUrl=prometheus["url"])
    assert verdict.ok and verdict.evidence["groups"] == ["deployments"]


def test_no_open_incident_sees_p1_and_p2_on_the_environment_only(deployment: Deployment) -> None:
    policies = seed_policies()
    assert run("no_open_incident", deployment).ok
    p3 = incident_services.incident_declare(title="cosmetic", severity=policies["P3"])
    incident_services.incident_add_environment(incident=p3, environment=deployment.environment)
    assert run("no_open_incident", deployment).ok
    p2 = incident_services.incident_declare(title="slow checkout", severity=policies["P2"])
    incident_services.incident_add_environment(incident=p2, environment=deployment.environment)
    verdict = run("no_open_incident", deployment)
    assert not verdict.ok and f"#{p2.pk} P2 slow checkout" in verdict.message
    incident_services.incident_transition(incident=p2, to="resolved")
    assert run("no_open_incident", deployment).ok


def test_an_unknown_evaluator_fails_rather_than_passes(deployment: Deployment) -> None:
    assert not run("no_such_check", deployment).ok
