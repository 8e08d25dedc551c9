"""Automatic checklist items: each named evaluator looks at real state and returns a verdict.

An evaluator never raises for what it observes: a broken dependency (promtool missing, Prometheus
down, an instance refusing connections) is a failed verdict with the error as evidence.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from deployments.models import Deployment, Evaluator, Instance
from deployments.providers.base import ProviderError

DEFAULT_BACKUP_MAX_AGE_HOURS = 24
DEFAULT_INCIDENT_SEVERITIES = ("P1", "P2")
PROMTOOL_TIMEOUT_S = 20
PROMETHEUS_TIMEOUT_S = 5


@dataclasses.dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def evaluate(name: str, deployment: Deployment, params: Mapping[str, Any], *, now: datetime) -> Verdict:
    """Run the evaluator ``name``; unknown names fail (a typo must not pass a gate)."""
    fn = EVALUATORS.get(name)
    if fn is None:
        return Verdict(False, f"unknown evaluator {name!r}")
    try:
        return fn(deployment, params or {}, now)
    except (ProviderError, OSError, requests.RequestException, ValueError) as exc:
        return Verdict(False, f"could not evaluate: {type(exc).__name__}: {exc}")


def ci_passed(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    status = d.release.ci_status
    ok = status == d.release.CiStatus.PASSED
    return Verdict(ok, f"CI status of {d.release.version} is {status}", {"ci_status": status})


def backup_verified(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    """A restore drill passed on a succeeded backup younger than ``maxAgeHours`` (of ``policy``)."""
    from backups.models import Backup, Verification

    hours = float(params.get("maxAgeHours", DEFAULT_BACKUP_MAX_AGE_HOURS))
    since = now - timedelta(hours=hours)
    qs = (
        Verification.objects.filter(
            kind=Verification.Kind.DRILL,
            status=Verification.Status.PASSED,
            backup__status=Backup.Status.SUCCEEDED,
            backup__finished_at__gte=since,
        )
        .exclude(backup__trigger=Backup.Trigger.SAFETY)
        .exclude(backup__drill_status=Backup.Check.FAILED)
        .select_related("backup__policy")
        .order_by("-backup__finished_at", "-id")
    )
    policy = params.get("policy")
    if policy:
        qs = qs.filter(backup__policy__name=policy)
    drill = qs.first()
    scope = f"policy {policy}" if policy else "any policy"
    if drill is None:
        return Verdict(False, f"no backup of {scope} with a passed restore drill in the last {hours:g}h")
    b = drill.backup
    age = (now - b.finished_at).total_seconds() / 3600 if b.finished_at else None
    return Verdict(
        True,
        f"backup #{b.pk} of {b.policy.name} restored in a drill ({age:.1f}h old)",
        {"backup": b.pk, "policy": b.policy.name, "verification": drill.pk, "age_hours": age},
    )


def instances_healthy(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    """Every instance not being drained answers the environment's health check."""
    from deployments.engine import provider_set_for

    instances = list(
        Instance.objects.filter(environment=d.environment)
        .exclude(state=Instance.State.DRAINING)
        .select_related("release")
    )
    if not instances:
        return Verdict(False, "the environment has no instances")
    providers = provider_set_for(d.environment, instances)
    checker = providers.health_checker(dict(params.get("healthCheck") or {}))
    results: dict[str, Any] = {}
    bad: list[str] = []
    for i in instances:
        from deployments.providers.base import InstanceRef

        r = checker.probe(InstanceRef(name=i.name, address=i.address, slot=i.slot or None))
        results[i.name] = {"ok": r.ok, "status_code": r.status_code, "error": r.error}
        if not r.ok:
            bad.append(f"{i.name}: {r.error or f'HTTP {r.status_code}'}")
    if bad:
        return Verdict(False, "unhealthy: " + "; ".join(bad), {"probes": results})
    return Verdict(True, f"{len(instances)} instance(s) healthy", {"probes": results})


def _deployment_metrics(d: Deployment) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for step in d.plan:
        if step.get("kind") == "analyze":
            metrics.update(step.get("metrics") or {})
    return metrics


def metrics_normal(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    """Each metric (``params.metrics`` or the rollout's analysis metrics) measured on the live
    slot is within its threshold; no data is not a pass."""
    from deployments import analysis
    from deployments.engine import provider_set_for
    from deployments.providers.base import InstanceRef

    metrics = dict(params.get("metrics") or _deployment_metrics(d))
    if not metrics:
        return Verdict(False, "no metrics to judge: give params.metrics or analysis steps")
    instances = list(Instance.objects.filter(environment=d.environment).select_related("release"))
    providers = provider_set_for(d.environment, instances)
    slot = d.environment.live_slot or None
    refs = [
        InstanceRef(name=i.name, address=i.address, slot=i.slot or None)
        for i in instances
        if slot is None or (i.slot or None) == slot
    ]
    seen: dict[str, Any] = {}
    bad: list[str] = []
    for name, cfg in metrics.items():
        spec = analysis.metric_spec_from_config(name, cfg)
        try:
            value = providers.metrics.measure(
                name, query=cfg.get("query"), slot=slot, version=d.release.version, instances=refs
            )
        except ProviderError as exc:
            bad.append(f"{name}: {exc}")
            seen[name] = {"error": str(exc)}
            continue
        outcome = analysis.classify(spec, value)
        seen[name] = {"value": value.value, "error": value.error, "outcome": outcome.value, "threshold": cfg}
        if outcome is not analysis.Outcome.SUCCESSFUL:
            bad.append(f"{name} = {value.value} ({outcome.value})")
    if bad:
        return Verdict(False, "outside thresholds: " + "; ".join(bad), {"metrics": seen})
    return Verdict(True, f"{len(metrics)} metric(s) within thresholds", {"metrics": seen})


def alert_rules_loaded(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    """Prometheus at ``params.prometheusUrl`` serves rule groups, or ``promtool check rules`` passes
    on ``params.rulesFile`` (default ops/prometheus/alerts.yml)."""
    url = params.get("prometheusUrl")
    if url:
        resp = requests.get(str(url).rstrip("/") + "/api/v1/rules", timeout=PROMETHEUS_TIMEOUT_S)
        body = resp.json() if resp.ok else {}
        groups = [g.get("name") for g in (body.get("data") or {}).get("groups", [])]
        rules = sum(len(g.get("rules", [])) for g in (body.get("data") or {}).get("groups", []))
        ok = resp.ok and body.get("status") == "success" and rules > 0
        msg = f"Prometheus serves {rules} rule(s) in {len(groups)} group(s)" if ok else "no rules loaded"
        return Verdict(ok, msg, {"url": url, "status_code": resp.status_code, "groups": groups})
    path = Path(params.get("rulesFile") or settings.BASE_DIR / "ops" / "prometheus" / "alerts.yml")
    promtool = shutil.which("promtool")
    if promtool is None:
        return Verdict(False, "promtool is not installed", {"file": str(path)})
    proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()[-2000:]
    ok = proc.returncode == 0
    return Verdict(
        ok,
        f"promtool check rules {path.name}: {'SUCCESS' if ok else 'FAILED'}",
        {"file": str(path), "returncode": proc.returncode, "output": output},
    )


def no_open_incident(d: Deployment, params: Mapping[str, Any], now: datetime) -> Verdict:
    from incidents.models import Incident

    severities = list(params.get("severities") or DEFAULT_INCIDENT_SEVERITIES)
    open_ = list(
        Incident.objects.filter(
            environments=d.environment,
            status__in=Incident.OPEN_STATUSES,
            severity__code__in=severities,
        )
        .select_related("severity")
        .order_by("severity__rank", "declared_at")
        .values("pk", "title", "severity__code")[:10]
    )
    if open_:
        names = ", ".join(f"#{i['pk']} {i['severity__code']} {i['title']}" for i in open_)
        return Verdict(False, f"open incident(s) on {d.environment}: {names}", {"incidents": open_})
    return Verdict(True, f"no open {'/'.join(severities)} incident on {d.environment}", {})


EVALUATORS: dict[str, Callable[[Deployment, Mapping[str, Any], datetime], Verdict]] = {
    Evaluator.CI_PASSED: ci_passed,
    Evaluator.BACKUP_VERIFIED: backup_verified,
    Evaluator.INSTANCES_HEALTHY: instances_healthy,
    Evaluator.METRICS_NORMAL: metrics_normal,
    Evaluator.ALERT_RULES_LOADED: alert_rules_loaded,
    Evaluator.NO_OPEN_INCIDENT: no_open_incident,
}
