"""Analysis verdicts follow Argo Rollouts' semantics (plus the no-data-never-passes guards)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments.analysis import (
    AnalysisConfigError,
    MetricSpec,
    Outcome,
    Phase,
    classify,
    combine,
    evaluate,
    metric_spec_from_config,
    metric_specs_from_config,
    next_measurement_at,
)
from deployments.providers.base import MetricValue

S, F, I, E = Outcome.SUCCESSFUL, Outcome.FAILED, Outcome.INCONCLUSIVE, Outcome.ERROR  # noqa: E741
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**cfg: object) -> MetricSpec:
    cfg.setdefault("threshold", 1.0)
    return metric_spec_from_config("m", cfg)


# -- config ------------------------------------------------------------------------------------


def test_seed_metrics_block_is_accepted_verbatim() -> None:
    error_rate, latency = metric_specs_from_config(
        {"error_rate": {"threshold": 0.01}, "latency_p99": {"threshold": 500}}
    )
    assert (error_rate.name, error_rate.threshold, error_rate.effective_count) == ("error_rate", 0.01, 1)
    assert latency.threshold == 500
    assert latency.consecutive_error_limit == 4
    # threshold is the maximum allowed value
    assert classify(latency, MetricValue(500)) is S
    assert classify(latency, MetricValue(500.1)) is F
    assert classify(error_rate, MetricValue(0.0)) is S
    assert classify(error_rate, MetricValue(0.02)) is F


def test_argo_fields_are_accepted() -> None:
    s = metric_spec_from_config(
        "success-rate",
        {
            "interval": "1m",
            "count": 5,
            "failureLimit": 2,
            "inconclusiveLimit": 1,
            "consecutiveErrorLimit": 0,
            "initialDelay": 30000,
            "successCondition": "result[0] >= 0.95",
            "query": 'sum(rate(http_requests_total{code!~"5.."}[1m])) / sum(rate(http_requests_total[1m]))',
            "provider": {"type": "prometheus", "address": "http://prom:9090"},
        },
    )
    assert (s.interval_ms, s.count, s.failure_limit, s.inconclusive_limit) == (60_000, 5, 2, 1)
    assert (s.consecutive_error_limit, s.initial_delay_ms) == (0, 30_000)
    assert s.provider == {"type": "prometheus", "address": "http://prom:9090"}
    assert s.query and s.query.startswith("sum(")


def test_defaults_fill_missing_fields_only() -> None:
    s = metric_spec_from_config(
        "error_rate", {"threshold": 0.01, "count": 2}, defaults={"interval": 60000, "count": 5}
    )
    assert (s.interval_ms, s.count) == (60000, 2)


@pytest.mark.parametrize(
    ("cfg", "field", "rule"),
    [
        ({}, "m", "needs a threshold"),
        ({"threshold": "0.01"}, "m.threshold", "finite number"),
        ({"threshold": True}, "m.threshold", "finite number"),
        ({"threshold": 1, "successCondition": "result < 1"}, "m.threshold", "cannot be combined"),
        ({"successCondition": "result <"}, "m.successCondition", "invalid expression"),
        ({"successCondition": "result + 1"}, "m.successCondition", "boolean"),
        ({"failureCondition": "__import__('os').system('x')"}, "m.failureCondition", "invalid expression"),
        ({"successCondition": "result.__class__"}, "m.successCondition", "invalid expression"),
        ({"successCondition": "0 < result < 1"}, "m.successCondition", "chained"),
        ({"threshold": 1, "count": 3}, "m.interval", "required when count > 1"),
        ({"threshold": 1, "count": 0}, "m.count", ">= 1"),
        ({"threshold": 1, "count": 2.5}, "m.count", "integer"),
        ({"threshold": 1, "interval": "soon"}, "m.interval", "duration"),
        ({"threshold": 1, "interval": 0, "count": 2}, "m.interval", "> 0"),
        ({"threshold": 1, "failureLimit": -1}, "m.failureLimit", ">= 0"),
        ({"threshold": 1, "interval": 1000, "count": 3, "failureLimit": 3}, "m.failureLimit", "< count"),
        (
            {"threshold": 1, "interval": 1000, "count": 3, "inconclusiveLimit": 3},
            "m.inconclusiveLimit",
            "< count",
        ),
        ({"threshold": 1, "consecutiveErrorLimit": -2}, "m.consecutiveErrorLimit", ">= 0"),
        ({"threshold": 1, "query": ""}, "m.query", "non-empty"),
        ({"threshold": 1, "provider": "prometheus"}, "m.provider", "type"),
        ({"threshold": 1, "treshold": 2}, "m.treshold", "unknown field"),
    ],
)
def test_invalid_config_names_field_and_rule(cfg: dict[str, object], field: str, rule: str) -> None:
    with pytest.raises(AnalysisConfigError) as exc:
        metric_spec_from_config("m", cfg)
    assert exc.value.field == field
    assert rule in exc.value.rule
    assert isinstance(exc.value, ValueError)


def test_empty_metrics_block_is_rejected() -> None:
    with pytest.raises(AnalysisConfigError) as exc:
        metric_specs_from_config({})
    assert exc.value.field == "metrics"


# -- classify ----------------------------------------------------------------------------------


def test_no_data_is_inconclusive_and_error_is_error() -> None:
    s = spec(threshold=0.01)
    assert classify(s, MetricValue(None)) is I
    assert classify(s, MetricValue(None, error="connection refused")) is E
    assert classify(s, MetricValue(math.nan)) is I  # 0/0 over no traffic is no data, not a pass


@pytest.mark.parametrize(
    ("success", "failure", "value", "expected"),
    [
        ("result < 0.01", None, 0.001, S),
        ("result < 0.01", None, 0.5, F),  # only success: not-success is failure
        (None, "result > 0.05", 0.01, S),  # only failure: not-failure is success
        (None, "result > 0.05", 0.5, F),
        ("result < 0.01", "result > 0.05", 0.03, I),  # both: neither holds -> inconclusive
        ("result < 0.01", "result > 0.05", 0.001, S),
        ("result < 0.01", "result > 0.05", 0.9, F),
        ("result <= 500 && result >= 0", None, 500, S),
        ("result <= 500 && result >= 0", None, -1, F),
        ("result <= 500 and not (result < 0)", None, 10, S),
        ("isNaN(result) || result >= 0.95", None, math.nan, S),  # explicit conditions see NaN
        ("abs(result - 1) < 0.1 || result * 2 == 8 / 2", None, 2, S),
        ("1 / result > 0", None, 0, E),  # cannot evaluate -> error
        ("result == -1.5e0", None, -1.5, S),
    ],
)
def test_conditions_follow_argo_evaluate_result(
    success: str | None, failure: str | None, value: float, expected: Outcome
) -> None:
    cfg: dict[str, object] = {}
    if success:
        cfg["successCondition"] = success
    if failure:
        cfg["failureCondition"] = failure
    assert classify(metric_spec_from_config("m", cfg), MetricValue(value)) is expected


# -- evaluate (Argo's TestAssessMetricStatus* cases) ------------------------------------------


def test_single_measurement_metric() -> None:
    s = spec()
    assert evaluate(s, []) is Phase.RUNNING
    assert evaluate(s, [S]) is Phase.SUCCESSFUL
    assert evaluate(s, [F]) is Phase.FAILED
    assert evaluate(s, [I]) is Phase.INCONCLUSIVE
    assert evaluate(s, [E]) is Phase.RUNNING  # errors are retried, they do not count
    assert evaluate(s, [E, E, E, E, S]) is Phase.SUCCESSFUL
    assert evaluate(s, [E] * 5) is Phase.ERROR  # consecutive errors (5) > limit (4)


def test_failure_limit_is_exceeded_not_reached() -> None:
    s = spec(interval=1000, count=5, failureLimit=2)
    assert evaluate(s, [F, F]) is Phase.RUNNING
    assert evaluate(s, [F, F, F]) is Phase.FAILED
    assert evaluate(s, [S, F, S, F, S]) is Phase.SUCCESSFUL


def test_inconclusive_limit() -> None:
    s = spec(interval=1000, count=4, inconclusiveLimit=1)
    assert evaluate(s, [I, S]) is Phase.RUNNING
    assert evaluate(s, [I, S, I]) is Phase.INCONCLUSIVE


def test_consecutive_errors_reset_on_a_measurement() -> None:
    s = spec(interval=1000, count=3, consecutiveErrorLimit=2)
    assert evaluate(s, [E, E, S, E, E, S]) is Phase.RUNNING
    assert evaluate(s, [E, E, S, E, E, E]) is Phase.ERROR


def test_failures_win_over_other_verdicts() -> None:
    s = spec(interval=1000, count=3, consecutiveErrorLimit=0)
    assert evaluate(s, [I, F, E]) is Phase.FAILED


def test_indefinite_metric_runs_until_terminated() -> None:
    s = spec(interval=1000)
    assert s.effective_count is None
    assert evaluate(s, [S] * 50) is Phase.RUNNING
    assert evaluate(s, [S] * 50, terminated=True) is Phase.SUCCESSFUL
    assert evaluate(s, [], terminated=True) is Phase.INCONCLUSIVE  # never measured: not a pass


def test_count_reached_without_any_success_is_inconclusive() -> None:
    s = spec(interval=1000, count=4, failureLimit=2, inconclusiveLimit=2)
    assert evaluate(s, [F, F, I, I]) is Phase.INCONCLUSIVE


def test_combine_takes_the_worst_and_terminates_on_a_bad_metric() -> None:
    assert combine([Phase.SUCCESSFUL, Phase.SUCCESSFUL]) is Phase.SUCCESSFUL
    assert combine([Phase.SUCCESSFUL, Phase.RUNNING]) is Phase.RUNNING
    assert combine([Phase.RUNNING, Phase.INCONCLUSIVE]) is Phase.INCONCLUSIVE
    assert combine([Phase.INCONCLUSIVE, Phase.ERROR, Phase.SUCCESSFUL]) is Phase.ERROR
    assert combine([Phase.ERROR, Phase.FAILED]) is Phase.FAILED
    assert combine([]) is Phase.RUNNING


# -- scheduling --------------------------------------------------------------------------------


def test_schedule_from_start_and_stop_after_count() -> None:
    s = spec(interval=60_000, count=3, initialDelay=5_000)
    assert next_measurement_at(s, T0, 0) == T0 + timedelta(seconds=5)
    assert next_measurement_at(s, T0, 2) == T0 + timedelta(seconds=125)
    assert next_measurement_at(s, T0, 3) is None
    assert next_measurement_at(s, T0, [S, S, S]) is None
    assert next_measurement_at(s, T0, [F]) is None  # already failed: no more measurements


def test_errors_are_retried_and_spaced_from_the_last_measurement() -> None:
    single = spec()
    assert next_measurement_at(single, T0, [S]) is None
    assert next_measurement_at(single, T0, [E]) == T0 + timedelta(seconds=10)  # Argo's retry interval
    s = spec(interval=30_000, count=2)
    late = T0 + timedelta(minutes=10)
    assert next_measurement_at(s, T0, [E], last_at=late) == late + timedelta(seconds=30)
    assert next_measurement_at(s, T0, [E, S]) == T0 + timedelta(seconds=60)


# -- properties --------------------------------------------------------------------------------

outcomes_st = st.lists(st.sampled_from(list(Outcome)), max_size=40)


@st.composite
def specs(draw: st.DrawFn) -> MetricSpec:
    count = draw(st.integers(min_value=1, max_value=10))
    return spec(
        interval=1000,
        count=count,
        failureLimit=draw(st.integers(min_value=0, max_value=count - 1)),
        inconclusiveLimit=draw(st.integers(min_value=0, max_value=count - 1)),
        consecutiveErrorLimit=draw(st.integers(min_value=0, max_value=5)),
    )


@given(specs(), outcomes_st)
def test_more_failures_than_the_limit_always_fail(s: MetricSpec, outcomes: list[Outcome]) -> None:
    if outcomes.count(F) > s.failure_limit:
        assert evaluate(s, outcomes) is Phase.FAILED
    else:
        assert evaluate(s, outcomes) is not Phase.FAILED


@given(specs(), outcomes_st)
def test_success_needs_count_measurements_and_a_successful_one(
    s: MetricSpec, outcomes: list[Outcome]
) -> None:
    if evaluate(s, outcomes) is Phase.SUCCESSFUL:
        assert S in outcomes
        assert len([o for o in outcomes if o is not E]) >= (s.count or 0)
        assert outcomes.count(F) <= s.failure_limit
        assert outcomes.count(I) <= s.inconclusive_limit


@given(specs(), st.integers(min_value=0, max_value=30), st.sampled_from([F, I, E]))
def test_no_data_or_errors_or_failures_alone_never_pass(s: MetricSpec, n: int, bad: Outcome) -> None:
    assert evaluate(s, [bad] * n) is not Phase.SUCCESSFUL
    assert evaluate(s, [bad] * n, terminated=True) is not Phase.SUCCESSFUL


@given(specs(), outcomes_st)
def test_errors_never_count_towards_count(s: MetricSpec, outcomes: list[Outcome]) -> None:
    without_errors = [o for o in outcomes if o is not E]
    with_errors_first = [E] * s.consecutive_error_limit + without_errors
    assert evaluate(s, with_errors_first) is evaluate(s, without_errors)


@given(specs(), st.lists(st.sampled_from(list(Outcome)), min_size=100, max_size=100))
def test_every_analysis_ends_within_a_bounded_number_of_measurements(
    s: MetricSpec, stream: list[Outcome]
) -> None:
    bound = (s.count or 0) * (s.consecutive_error_limit + 1) + s.consecutive_error_limit + 1
    phases = [evaluate(s, stream[:n]) for n in range(bound + 1)]
    first_done = next(n for n, p in enumerate(phases) if p.completed)
    assert first_done <= bound
    # the engine stops at the first verdict; the schedule agrees there is nothing more to take
    assert next_measurement_at(s, T0, stream[:first_done]) is None
    assert all(next_measurement_at(s, T0, stream[:n]) is not None for n in range(first_done))


@given(st.lists(st.sampled_from(list(Phase)), min_size=1, max_size=6))
def test_combined_verdict_is_never_better_than_a_bad_metric(phases: list[Phase]) -> None:
    combined = combine(phases)
    if Phase.FAILED in phases:
        assert combined is Phase.FAILED
    if combined is Phase.SUCCESSFUL:
        assert set(phases) == {Phase.SUCCESSFUL}


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9), st.floats(-1e6, 1e6))
def test_threshold_is_the_maximum_allowed_value(threshold: float, value: float) -> None:
    s = metric_spec_from_config("m", {"threshold": threshold})
    assert classify(s, MetricValue(value)) is (S if value <= threshold else F)
