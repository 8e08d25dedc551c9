"""Strategy config: the guide's three blocks verbatim, Argo vocabulary, and 400s naming field and rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from deployments.strategies import ConfigError, parse_strategy_config
from deployments.strategies.config import BlueGreenConfig, CanaryConfig, RollingConfig, unwrap

# Copied verbatim from shared/seed/000_77a0adcb38f85924.txt.
SEED_BLUE_GREEN = {
    "deployment": {
        "strategy": "blue-green",
        "environments": {
            "blue": {"url": "https://noodle-blue.example.com", "active": True},
            "green": {"url": "https://noodle-green.example.com", "active": False},
        },
    }
}
SEED_CANARY = {
    "deployment": {
        "strategy": "canary",
        "steps": [
            {
                "percentage": 10,
                "duration": 300000,
                "metrics": {"error_rate": {"threshold": 0.01}, "latency_p99": {"threshold": 500}},
            },
            {"percentage": 50, "duration": 600000},
            {"percentage": 100, "duration": 0},
        ],
    }
}
SEED_ROLLING = {
    "deployment": {
        "strategy": "rolling",
        "batchSize": 2,
        "batchInterval": 60000,
        "healthCheck": {"path": "/health", "timeout": 5000},
    }
}


def test_seed_blue_green_block_is_accepted_verbatim() -> None:
    cfg = parse_strategy_config(unwrap(SEED_BLUE_GREEN))
    assert isinstance(cfg, BlueGreenConfig)
    assert cfg.active_slot == "blue"
    assert cfg.slot_urls["green"] == "https://noodle-green.example.com"


def test_seed_canary_block_is_accepted_verbatim() -> None:
    cfg = parse_strategy_config(unwrap(SEED_CANARY))
    assert isinstance(cfg, CanaryConfig)
    kinds = [(s.kind, s.weight, s.duration_ms) for s in cfg.steps]
    assert kinds == [
        ("weight", 10, None),
        ("analysis", None, None),
        ("weight", 50, None),
        ("pause", None, 600000),
        ("weight", 100, None),
    ]
    analysis = cfg.steps[1].analysis
    assert analysis is not None and analysis.duration_ms == 300000
    assert dict(analysis.metrics) == {"error_rate": {"threshold": 0.01}, "latency_p99": {"threshold": 500}}


def test_seed_rolling_block_is_accepted_verbatim() -> None:
    cfg = parse_strategy_config(unwrap(SEED_ROLLING))
    assert isinstance(cfg, RollingConfig)
    assert (cfg.batch_size, cfg.batch_interval_ms) == (2, 60000)
    assert cfg.health_check.as_provider_config() == {"path": "/health", "timeout": 5000}


def test_argo_vocabulary_is_accepted() -> None:
    canary = parse_strategy_config(
        {
            "strategy": "canary",
            "steps": [
                {"setWeight": 20},
                {"pause": {"duration": "30s"}},
                {"analysis": {"metrics": {"error_rate": {"threshold": 0.05, "interval": "10s", "count": 3}}}},
                {"setWeight": 60},
                {"pause": {}},
            ],
        }
    )
    assert isinstance(canary, CanaryConfig)
    assert [(s.kind, s.weight, s.duration_ms) for s in canary.steps] == [
        ("weight", 20, None),
        ("pause", None, 30000),
        ("analysis", None, None),
        ("weight", 60, None),
        ("pause", None, None),
    ]
    bg = parse_strategy_config(
        {
            "strategy": "blue-green",
            "autoPromotionSeconds": 30,
            "prePromotionAnalysis": {"metrics": {"error_rate": {"successCondition": "result < 0.01"}}},
            "postPromotionAnalysis": {"metrics": {"latency_p99": {"threshold": 500}}, "duration": 60000},
            "scaleDownDelaySeconds": 600,
        }
    )
    assert isinstance(bg, BlueGreenConfig)
    assert (bg.auto_promotion_ms, bg.scale_down_delay_ms) == (30000, 600000)
    assert bg.post_promotion is not None and bg.post_promotion.duration_ms == 60000
    rolling = parse_strategy_config({"strategy": "rolling", "maxSurge": "25%", "maxUnavailable": 1})
    assert isinstance(rolling, RollingConfig)
    assert (rolling.max_surge, rolling.max_unavailable) == ("25%", 1)


def _with(base: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


CANARY = SEED_CANARY["deployment"]
ROLLING = SEED_ROLLING["deployment"]
BLUE_GREEN = SEED_BLUE_GREEN["deployment"]

BAD_CONFIGS = [
    ({"steps": []}, "deployment.strategy", "must be one of"),
    ({"strategy": "big-bang"}, "deployment.strategy", "must be one of"),
    (_with(CANARY, ["steps", 0, "percentage"], 150), "deployment.steps[0].percentage", "from 0 to 100"),
    (_with(CANARY, ["steps", 1, "duration"], -5), "deployment.steps[1].duration", "milliseconds"),
    (_with(CANARY, ["steps", 1, "percentage"], 5), "deployment.steps[1].percentage", "must not decrease"),
    (_with(CANARY, ["steps"], []), "deployment.steps", "non-empty list"),
    (
        _with(CANARY, ["steps", 0, "metrics", "error_rate"], {"threshold": "low"}),
        "deployment.steps[0].metrics.error_rate.threshold",
        "finite number",
    ),
    (
        _with(CANARY, ["steps", 0, "metrics", "error_rate"], {}),
        "deployment.steps[0].metrics.error_rate",
        "needs a threshold",
    ),
    (_with(CANARY, ["steps", 2], {"setWeight": 100, "pause": {}}), "deployment.steps[2]", "exactly one of"),
    (
        _with(CANARY, ["steps", 2], {"pause": {"duration": "soon"}}),
        "deployment.steps[2].pause.duration",
        "'30s'",
    ),
    (_with(ROLLING, ["batchSize"], 0), "deployment.batchSize", "from 1 to"),
    (_with(ROLLING, ["batchSize"], True), "deployment.batchSize", "integer"),
    (_with(ROLLING, ["healthCheck", "path"], "health"), "deployment.healthCheck.path", "starting with '/'"),
    (_with(ROLLING, ["healthCheck", "timeout"], 0), "deployment.healthCheck.timeout", "greater than 0"),
    (_with(ROLLING, ["maxUnavailable"], "150%"), "deployment.maxUnavailable", "percentage"),
    (_with(ROLLING, ["batchSise"], 3), "deployment.batchSise", "unknown field"),
    (
        _with(BLUE_GREEN, ["environments", "green", "active"], True),
        "deployment.environments",
        "at most one slot may be active",
    ),
    (
        _with(BLUE_GREEN, ["environments", "red"], {"url": "http://x"}),
        "deployment.environments.red",
        "'blue'",
    ),
    (_with(BLUE_GREEN, ["autoPromotionSeconds"], -1), "deployment.autoPromotionSeconds", "integer"),
    (
        _with(BLUE_GREEN, ["prePromotionAnalysis"], {"templates": [{"templateName": "x"}]}),
        "deployment.prePromotionAnalysis.templates",
        "not supported",
    ),
    ("canary", "deployment", "must be an object"),
]


@pytest.mark.parametrize(
    ("config", "field", "rule"), BAD_CONFIGS, ids=[b[1] + ":" + b[2] for b in BAD_CONFIGS]
)
def test_bad_config_names_the_field_and_the_rule(config: Any, field: str, rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_strategy_config(config)
    assert field in info.value.errors, info.value.errors
    assert any(rule in message for message in info.value.errors[field]), info.value.errors
