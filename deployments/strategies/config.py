"""Parsing and validation of the ``deployment`` block (pure: no ORM, no I/O).

Accepts the user guide's three blocks verbatim (camelCase, milliseconds) and the Argo
Rollouts vocabulary.  Every problem is reported as ``(field path, rule)`` so the API can
answer 400 naming both, e.g. ``deployment.steps[1].percentage: must be ...``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

STRATEGIES = ("canary", "blue-green", "rolling")
MAX_STEPS = 100
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_PERCENT_RE = re.compile(r"^(\d{1,3})%$")


class ConfigError(Exception):
    """The config is invalid; ``errors`` maps field paths to the rules they break."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class HealthCheckConfig:
    path: str | None = None
    timeout_ms: int | None = None
    interval_ms: int | None = None
    healthy_threshold: int | None = None

    def as_provider_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.path is not None:
            out["path"] = self.path
        if self.timeout_ms is not None:
            out["timeout"] = self.timeout_ms
        if self.interval_ms is not None:
            out["interval"] = self.interval_ms
        if self.healthy_threshold is not None:
            out["healthyThreshold"] = self.healthy_threshold
        return out


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Metrics to judge (name -> raw metric config) while holding for ``duration_ms``."""

    metrics: Mapping[str, Mapping[str, Any]]
    duration_ms: int = 0


@dataclasses.dataclass(frozen=True)
class ApprovalSpec:
    """Wait for someone holding ``role`` to approve; after ``timeout_ms`` abort or promote."""

    role: str = "operator"
    timeout_ms: int = 3_600_000
    on_timeout: str = "abort"


APPROVAL_ROLES = ("viewer", "operator", "admin")
APPROVAL_ON_TIMEOUT = ("abort", "promote")


@dataclasses.dataclass(frozen=True)
class CanaryStep:
    kind: str  # "weight" | "pause" | "analysis" | "approval"
    weight: int | None = None
    duration_ms: int | None = None  # pause: None = until promoted
    analysis: Analysis | None = None
    approval: ApprovalSpec | None = None


@dataclasses.dataclass(frozen=True)
class CanaryConfig:
    steps: tuple[CanaryStep, ...]
    health_check: HealthCheckConfig


@dataclasses.dataclass(frozen=True)
class BlueGreenConfig:
    active_slot: str | None  # from the guide's "environments" block, used when the env has no record
    slot_urls: Mapping[str, str]
    auto_promotion_enabled: bool
    auto_promotion_ms: int | None
    pre_promotion: Analysis | None
    post_promotion: Analysis | None
    scale_down_delay_ms: int | None
    health_check: HealthCheckConfig
    approval: ApprovalSpec | None = None  # before traffic is switched


@dataclasses.dataclass(frozen=True)
class RollingConfig:
    batch_size: int | None
    batch_interval_ms: int
    max_surge: int | str | None
    max_unavailable: int | str | None
    health_check: HealthCheckConfig


StrategyConfig = CanaryConfig | BlueGreenConfig | RollingConfig


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, path: str, rule: str) -> None:
        self.errors.setdefault(path, []).append(rule)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(e: _Errors, path: str, value: Any, *, lo: int, hi: int) -> int | None:
    if not _is_int(value) or not lo <= value <= hi:
        e.add(path, f"must be an integer from {lo} to {hi}")
        return None
    return int(value)


def _duration(e: _Errors, path: str, value: Any) -> int | None:
    """Milliseconds as an integer (the guide), or an Argo-style string: 500ms, 30s, 5m, 1h."""
    if _is_int(value):
        if 0 <= value <= MAX_DURATION_MS:
            return int(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
        if ms <= MAX_DURATION_MS:
            return ms
    e.add(path, f"must be milliseconds (integer 0..{MAX_DURATION_MS}) or a duration like '30s', '5m', '1h'")
    return None


def _object(e: _Errors, path: str, value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        e.add(path, "must be an object")
        return None
    return value


def _known(e: _Errors, path: str, obj: Mapping[str, Any], allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            e.add(f"{path}.{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}")


def analysis_defaults(duration_ms: int) -> dict[str, Any]:
    """Sampling for metrics that give no interval/count: five measurements spread over the
    step's hold, the last one at its end (none of the guide's steps gives an interval)."""
    if duration_ms <= 0:
        return {}
    interval = max(duration_ms // 5, 1)
    return {"interval": interval, "count": 5, "initialDelay": interval}


def _metrics(e: _Errors, path: str, value: Any, *, duration_ms: int = 0) -> dict[str, dict[str, Any]] | None:
    from deployments.analysis import AnalysisConfigError, metric_spec_from_config

    obj = _object(e, path, value)
    if obj is None:
        return None
    if not obj:
        e.add(path, "must name at least one metric")
        return None
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in obj.items():
        try:
            metric_spec_from_config(name, cfg, defaults=analysis_defaults(duration_ms))
        except AnalysisConfigError as exc:
            field = exc.field if exc.field.startswith(name) else f"{name}.{exc.field}"
            e.add(f"{path}.{field}", exc.rule)
            continue
        out[name] = dict(cfg)
    return out


def _analysis(e: _Errors, path: str, value: Any) -> Analysis | None:
    obj = _object(e, path, value)
    if obj is None:
        return None
    if "templates" in obj:
        e.add(f"{path}.templates", "analysis templates are not supported; give the metrics inline")
    _known(e, path, obj, {"metrics", "duration", "templates"})
    if "metrics" not in obj:
        e.add(f"{path}.metrics", "is required")
        return None
    duration = _duration(e, f"{path}.duration", obj.get("duration", 0))
    metrics = _metrics(e, f"{path}.metrics", obj["metrics"], duration_ms=duration or 0)
    if metrics is None or duration is None:
        return None
    return Analysis(metrics=metrics, duration_ms=duration)


def _approval(e: _Errors, path: str, value: Any) -> ApprovalSpec | None:
    obj = _object(e, path, value)
    if obj is None:
        return None
    _known(e, path, obj, {"role", "timeout", "onTimeout"})
    role = obj.get("role", "operator")
    if role not in APPROVAL_ROLES:
        e.add(f"{path}.role", f"must be one of: {', '.join(APPROVAL_ROLES)}")
    timeout = _duration(e, f"{path}.timeout", obj.get("timeout", ApprovalSpec.timeout_ms))
    if timeout == 0:
        e.add(f"{path}.timeout", "must be greater than 0 (an approval never waits forever)")
    on_timeout = obj.get("onTimeout", "abort")
    if on_timeout not in APPROVAL_ON_TIMEOUT:
        e.add(f"{path}.onTimeout", f"must be one of: {', '.join(APPROVAL_ON_TIMEOUT)}")
    if role not in APPROVAL_ROLES or not timeout or on_timeout not in APPROVAL_ON_TIMEOUT:
        return None
    return ApprovalSpec(role=str(role), timeout_ms=timeout, on_timeout=str(on_timeout))


def _health_check(e: _Errors, path: str, value: Any) -> HealthCheckConfig:
    obj = _object(e, path, value)
    if obj is None:
        return HealthCheckConfig()
    _known(e, path, obj, {"path", "timeout", "interval", "healthyThreshold"})
    hc_path = obj.get("path")
    if hc_path is not None and (not isinstance(hc_path, str) or not hc_path.startswith("/")):
        e.add(f"{path}.path", "must be a URL path starting with '/'")
    timeout = _duration(e, f"{path}.timeout", obj["timeout"]) if "timeout" in obj else None
    if timeout == 0:
        e.add(f"{path}.timeout", "must be greater than 0")
    interval = _duration(e, f"{path}.interval", obj["interval"]) if "interval" in obj else None
    threshold = (
        _int(e, f"{path}.healthyThreshold", obj["healthyThreshold"], lo=1, hi=100)
        if "healthyThreshold" in obj
        else None
    )
    return HealthCheckConfig(
        path=hc_path if isinstance(hc_path, str) else None,
        timeout_ms=timeout,
        interval_ms=interval,
        healthy_threshold=threshold,
    )


def _canary(e: _Errors, p: str, cfg: Mapping[str, Any]) -> CanaryConfig:
    _known(e, p, cfg, {"strategy", "steps", "healthCheck"})
    steps_raw = cfg.get("steps")
    steps: list[CanaryStep] = []
    if not isinstance(steps_raw, list) or not steps_raw:
        e.add(f"{p}.steps", "is required: a non-empty list of steps")
        steps_raw = []
    elif len(steps_raw) > MAX_STEPS:
        e.add(f"{p}.steps", f"at most {MAX_STEPS} steps")
        steps_raw = []
    last_weight = 0
    for i, raw in enumerate(steps_raw):
        sp = f"{p}.steps[{i}]"
        step = _object(e, sp, raw)
        if step is None:
            continue
        forms = [k for k in ("percentage", "setWeight", "pause", "analysis", "approval") if k in step]
        if len(forms) != 1:
            e.add(sp, "each step has exactly one of: percentage, setWeight, pause, analysis, approval")
            continue
        form = forms[0]
        weight: int | None = None
        if form == "percentage":
            _known(e, sp, step, {"percentage", "duration", "metrics"})
            weight = _int(e, f"{sp}.percentage", step["percentage"], lo=0, hi=100)
            duration = _duration(e, f"{sp}.duration", step.get("duration", 0))
            if weight is not None:
                steps.append(CanaryStep(kind="weight", weight=weight))
            if "metrics" in step:
                metrics = _metrics(e, f"{sp}.metrics", step["metrics"], duration_ms=duration or 0)
                if metrics is not None and duration is not None:
                    steps.append(CanaryStep(kind="analysis", analysis=Analysis(metrics, duration)))
            elif duration:
                steps.append(CanaryStep(kind="pause", duration_ms=duration))
        elif form == "setWeight":
            _known(e, sp, step, {"setWeight"})
            weight = _int(e, f"{sp}.setWeight", step["setWeight"], lo=0, hi=100)
            if weight is not None:
                steps.append(CanaryStep(kind="weight", weight=weight))
        elif form == "pause":
            _known(e, sp, step, {"pause"})
            pause = _object(e, f"{sp}.pause", step["pause"])
            if pause is not None:
                _known(e, f"{sp}.pause", pause, {"duration"})
                if "duration" in pause:
                    d = _duration(e, f"{sp}.pause.duration", pause["duration"])
                    if d is not None:
                        steps.append(CanaryStep(kind="pause", duration_ms=d))
                else:
                    steps.append(CanaryStep(kind="pause", duration_ms=None))
        elif form == "approval":
            _known(e, sp, step, {"approval"})
            approval = _approval(e, f"{sp}.approval", step["approval"])
            if approval is not None:
                steps.append(CanaryStep(kind="approval", approval=approval))
        else:
            _known(e, sp, step, {"analysis"})
            analysis = _analysis(e, f"{sp}.analysis", step["analysis"])
            if analysis is not None:
                steps.append(CanaryStep(kind="analysis", analysis=analysis))
        if weight is not None:
            if weight < last_weight:
                e.add(
                    f"{sp}.{form}",
                    f"canary weight must not decrease before promotion ({weight} after {last_weight})",
                )
            last_weight = max(last_weight, weight)
    health = _health_check(e, f"{p}.healthCheck", cfg["healthCheck"]) if "healthCheck" in cfg else None
    return CanaryConfig(steps=tuple(steps), health_check=health or HealthCheckConfig())


def _blue_green(e: _Errors, p: str, cfg: Mapping[str, Any]) -> BlueGreenConfig:
    _known(
        e,
        p,
        cfg,
        {
            "strategy",
            "environments",
            "autoPromotionEnabled",
            "autoPromotionSeconds",
            "prePromotionAnalysis",
            "postPromotionAnalysis",
            "scaleDownDelaySeconds",
            "healthCheck",
            "approval",
        },
    )
    active: str | None = None
    urls: dict[str, str] = {}
    if "environments" in cfg:
        envs = _object(e, f"{p}.environments", cfg["environments"])
        if envs is not None:
            actives = []
            for slot, raw in envs.items():
                sp = f"{p}.environments.{slot}"
                if slot not in ("blue", "green"):
                    e.add(sp, "slots are 'blue' and 'green'")
                    continue
                item = _object(e, sp, raw)
                if item is None:
                    continue
                _known(e, sp, item, {"url", "active"})
                if "url" in item:
                    if not isinstance(item["url"], str) or not re.match(r"^https?://", item["url"]):
                        e.add(f"{sp}.url", "must be an http(s) URL")
                    else:
                        urls[slot] = item["url"]
                if "active" in item and not isinstance(item["active"], bool):
                    e.add(f"{sp}.active", "must be true or false")
                elif item.get("active"):
                    actives.append(slot)
            if len(actives) > 1:
                e.add(f"{p}.environments", "at most one slot may be active")
            active = actives[0] if len(actives) == 1 else None
    auto_enabled = cfg.get("autoPromotionEnabled", True)
    if not isinstance(auto_enabled, bool):
        e.add(f"{p}.autoPromotionEnabled", "must be true or false")
        auto_enabled = True
    auto_s = (
        _int(e, f"{p}.autoPromotionSeconds", cfg["autoPromotionSeconds"], lo=0, hi=MAX_DURATION_MS // 1000)
        if "autoPromotionSeconds" in cfg
        else None
    )
    if auto_s is not None and not auto_enabled:
        e.add(f"{p}.autoPromotionSeconds", "cannot be used with autoPromotionEnabled: false")
    scale_s = (
        _int(e, f"{p}.scaleDownDelaySeconds", cfg["scaleDownDelaySeconds"], lo=0, hi=MAX_DURATION_MS // 1000)
        if "scaleDownDelaySeconds" in cfg
        else None
    )
    pre = (
        _analysis(e, f"{p}.prePromotionAnalysis", cfg["prePromotionAnalysis"])
        if "prePromotionAnalysis" in cfg
        else None
    )
    post = (
        _analysis(e, f"{p}.postPromotionAnalysis", cfg["postPromotionAnalysis"])
        if "postPromotionAnalysis" in cfg
        else None
    )
    health = _health_check(e, f"{p}.healthCheck", cfg["healthCheck"]) if "healthCheck" in cfg else None
    approval = _approval(e, f"{p}.approval", cfg["approval"]) if "approval" in cfg else None
    return BlueGreenConfig(
        active_slot=active,
        slot_urls=urls,
        auto_promotion_enabled=auto_enabled,
        auto_promotion_ms=auto_s * 1000 if auto_s is not None else None,
        pre_promotion=pre,
        post_promotion=post,
        scale_down_delay_ms=scale_s * 1000 if scale_s is not None else None,
        health_check=health or HealthCheckConfig(),
        approval=approval,
    )


def _int_or_percent(e: _Errors, path: str, value: Any) -> int | str | None:
    if _is_int(value) and 0 <= value <= 10_000:
        return int(value)
    if isinstance(value, str) and (m := _PERCENT_RE.match(value)) and int(m.group(1)) <= 100:
        return value
    e.add(path, "must be a non-negative integer or a percentage like '25%'")
    return None


def _rolling(e: _Errors, p: str, cfg: Mapping[str, Any]) -> RollingConfig:
    _known(e, p, cfg, {"strategy", "batchSize", "batchInterval", "healthCheck", "maxSurge", "maxUnavailable"})
    batch = _int(e, f"{p}.batchSize", cfg["batchSize"], lo=1, hi=10_000) if "batchSize" in cfg else None
    interval = _duration(e, f"{p}.batchInterval", cfg.get("batchInterval", 0))
    surge = _int_or_percent(e, f"{p}.maxSurge", cfg["maxSurge"]) if "maxSurge" in cfg else None
    unavailable = (
        _int_or_percent(e, f"{p}.maxUnavailable", cfg["maxUnavailable"]) if "maxUnavailable" in cfg else None
    )
    if unavailable in (0, "0%") and batch is None:
        e.add(
            f"{p}.maxUnavailable",
            "must allow at least one instance out of service: instances are updated in place",
        )
    health = _health_check(e, f"{p}.healthCheck", cfg["healthCheck"]) if "healthCheck" in cfg else None
    return RollingConfig(
        batch_size=batch,
        batch_interval_ms=interval or 0,
        max_surge=surge,
        max_unavailable=unavailable,
        health_check=health or HealthCheckConfig(),
    )


def parse_strategy_config(raw: Any, *, path: str = "deployment") -> StrategyConfig:
    """Validate a ``deployment`` block; raise :class:`ConfigError` naming each bad field."""
    e = _Errors()
    if not isinstance(raw, dict):
        raise ConfigError({path: ["must be an object with a 'strategy'"]})
    strategy = raw.get("strategy")
    if strategy not in STRATEGIES:
        raise ConfigError({f"{path}.strategy": [f"must be one of: {', '.join(STRATEGIES)}"]})
    parsed: StrategyConfig
    if strategy == "canary":
        parsed = _canary(e, path, raw)
    elif strategy == "blue-green":
        parsed = _blue_green(e, path, raw)
    else:
        parsed = _rolling(e, path, raw)
    if e.errors:
        raise ConfigError(e.errors)
    return parsed


def unwrap(raw: Any) -> Any:
    """Accept the guide's outer ``{"deployment": {...}}`` wrapper as well as the bare block."""
    if isinstance(raw, dict) and set(raw) == {"deployment"} and isinstance(raw["deployment"], dict):
        return raw["deployment"]
    return raw
