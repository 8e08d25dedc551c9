"""Alert rules and the Grafana dashboard: promtool checks and unit tests, and every metric they
use is one /metrics really exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from backups.models import Backup, BackupPolicy, Verification
from controlplane.maintenance import maintenance_run
from controlplane.models import Heartbeat
from deployments.models import Deployment
from incidents import services as incident_services
from tests.conftest import ROOT
from tests.controlplane.test_maintenance import make_deployment
from tests.incidents.conftest import seed_policies

OPS = ROOT / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((OPS / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = OPS / "grafana" / "dashboard.json"
EXPECTED_ALERTS = {
    "HighErrorRate",
    "HighMemoryUsage",
    "DiskSpaceLow",
    "DeploymentStuck",
    "AutomaticRollback",
    "IncidentDeadlineBreached",
    "BackupTooOld",
    "RestoreDrillFailed",
    "CeleryWorkersDown",
}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None and os.environ.get("CI") != "true",
    reason="promtool not installed (Debian package prometheus)",
)

# --- Metric names in PromQL -------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.I)
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "atan2", "start", "end"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric (sample) names an expression selects: identifiers that are not functions,
    aggregations, keywords, label names, label values, durations or Grafana variables."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, is_call = match.group(1), match.group(2)
        if is_call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_promql_metric_names_skips_functions_labels_and_variables() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, view) (rate(x_seconds_bucket{status=~"5..", a="b{c}"}'
        "[$__rate_interval]))) / on(instance) group_left(job) max without (pod) (y_total offset 5m) "
        '> bool 1e3 and label_replace(z, "dst", "$1", "src", "(.*)") unless time() - w:recorded'
    )
    assert promql_metric_names(expr) == {"x_seconds_bucket", "y_total", "z", "w:recorded"}
    assert promql_metric_names("process_resident_memory_bytes / 1024 / 1024 > 4096") == {
        "process_resident_memory_bytes"
    }


def family_of(sample_name: str) -> tuple[str, str]:
    """Split a sample name into family and suffix (``x_seconds_bucket`` -> ``x_seconds``, ``_bucket``)."""
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)], suffix
    return sample_name, ""


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> dict[str, str]:
    dash = json.loads(DASHBOARD.read_text())
    return {
        f"{p['title']} {t['refId']}": t["expr"]
        for p in dash["panels"]
        if p["type"] != "row"
        for t in p.get("targets", [])
    }


# --- Rules --------------------------------------------------------------------------


def test_the_rules_cover_the_guides_alerts_and_ours() -> None:
    assert set(rule_exprs()) == EXPECTED_ALERTS
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    assert "backups" in {g["name"] for g in groups}
    for group in groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    out = subprocess.run(
        ["promtool", "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_rule_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../alerts.yml"], path
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


# --- Dashboard ----------------------------------------------------------------------


def test_dashboard_is_a_provisioned_grafana_dashboard() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "controlplane" and dash["title"] and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((OPS / "grafana/provisioning/datasources/prometheus.yml").read_text())
    ds_uid = datasource["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(pos["x"] + i, pos["y"] + j) for i in range(pos["w"]) for j in range(pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": ds_uid}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)) and all(t["expr"] for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("request rate", "error rate", "p99", "deployments", "incidents", "backup"):
        assert topic in titles, topic
    # The file provider reads the directory that docker-compose mounts ops/grafana into.
    provider = yaml.safe_load((OPS / "grafana/provisioning/dashboards/controlplane.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert f"./ops/grafana:{path}:ro" in compose["services"]["grafana"]["volumes"]


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs().values())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# --- Every name is exported ----------------------------------------------------------


def create_rows_behind_every_series() -> None:
    now = timezone.now()
    policies = seed_policies()
    incident_services.incident_declare(title="open", severity=policies["P1"], now=now - timedelta(minutes=10))
    done = incident_services.incident_declare(
        title="done", severity=policies["P2"], now=now - timedelta(hours=2)
    )
    incident_services.incident_transition(incident=done, to="resolved", now=now - timedelta(hours=1))
    incident_services.deadlines_check(now=now)
    make_deployment(Deployment.Status.RUNNING, next_check_at=now - timedelta(minutes=20))
    make_deployment(Deployment.Status.ROLLED_BACK)
    make_deployment(Deployment.Status.SUCCEEDED)
    policy = BackupPolicy.objects.create(name="db", storage_kind="local", local_path="/srv/backups")
    backup = Backup.objects.create(
        policy=policy,
        status=Backup.Status.SUCCEEDED,
        source_kind="postgres",
        compression="zstd",
        finished_at=now,
        stored_bytes=1234,
        duration_seconds=2.0,
    )
    Verification.objects.create(
        backup=backup,
        kind=Verification.Kind.DRILL,
        status=Verification.Status.PASSED,
        finished_at=now,
        details={"time_to_restore_seconds": 3.5},
    )
    Heartbeat.objects.create(name="worker:test", last_seen=now)  # what the worker bootstep writes
    maintenance_run(job="expire_idempotency_keys")


@pytest.mark.django_db
def test_every_metric_the_rules_and_dashboard_use_is_exported() -> None:
    create_rows_behind_every_series()
    client = Client()
    assert client.get("/health/live").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    exported: dict[str, str] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            exported[sample.name] = family.type

    used: dict[str, set[str]] = {}
    for where, expr in {**rule_exprs(), **dashboard_exprs()}.items():
        names = promql_metric_names(expr)
        assert names, f"no metric found in {where}: {expr}"
        for name in names:
            used.setdefault(name, set()).add(where)
    missing = {name: sorted(where) for name, where in used.items() if name not in exported}
    assert not missing, f"used but not exported: {missing}"
    for name in used:
        _, suffix = family_of(name)
        if suffix == "_bucket":
            assert exported[name] == "histogram", name
        if suffix in ("_sum", "_count"):
            assert exported[name] in ("histogram", "summary"), name
        if suffix == "_total":
            assert exported[name] == "counter", name
    # Sanity: the series the new rules need carry real values from the rows above.
    assert any(n.startswith("controlplane_deployment_overdue_seconds") for n in used)
    text = response.content.decode()
    overdue = [x for x in text.splitlines() if x.startswith("controlplane_deployment_overdue_seconds{")]
    assert len(overdue) == 1 and 1100 < float(overdue[0].split()[-1]) < 1300
    assert 'status="running"' in overdue[0]
    age = [x for x in text.splitlines() if x.startswith("controlplane_deployment_active_age_seconds{")]
    assert len(age) == 1 and 0 <= float(age[0].split()[-1]) < 60
    ratio = next(x for x in text.splitlines() if x.startswith("controlplane_disk_free_ratio{"))
    assert 0 < float(ratio.split()[-1]) <= 1
