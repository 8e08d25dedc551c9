"""Analysis verdicts with Argo Rollouts semantics: pure functions, no I/O.

A metric is measured every ``interval`` until ``count`` measurements have been taken; each
measurement is classified (:func:`classify`) and the sequence of outcomes is assessed
(:func:`evaluate`). The rules are those of Argo Rollouts' analysis controller
(``analysis/analysis.go`` ``assessMetricStatus`` and ``runMeasurements``,
``utils/evaluate/evaluate.go`` ``EvaluateResult``, ``utils/analysis/factory.go``
``ValidateMetric``, ``pkg/apis/rollouts/v1alpha1`` ``Metric.EffectiveCount``):

- Successful, Failed and Inconclusive measurements count towards ``count``; Errors (the
  measurement could not be taken) do not, and only reset on a non-error measurement.
- Assessment order: Failed when failures > failureLimit; else Inconclusive when
  inconclusives > inconclusiveLimit; else Error when consecutive errors >
  consecutiveErrorLimit (default 4); else Successful once ``count`` is reached; else Running.
- Conditions: with only successCondition, not-success is Failed; with only failureCondition,
  not-failure is Successful; with both, neither holding is Inconclusive; an expression that
  cannot be evaluated is an Error.
- Neither count nor interval: one measurement. Interval without count: measure until the run
  is terminated (an operator promotes or the step ends), then Successful.
- Several metrics: Running while any runs, unless one already ended Failed/Error/Inconclusive
  (that terminates the run); the worst phase wins (Successful < Inconclusive < Error < Failed).

Deliberate deviations, because "no data is never a pass" (docs/DESIGN.md):

- A query with no data is Inconclusive, and so is NaN when the condition comes from a
  ``threshold`` (0/0 from a rate over no traffic). Explicit conditions see NaN as written.
- ``failureLimit`` and ``inconclusiveLimit`` must be < ``count`` (Argo allows ``<=``, which
  lets a run made only of failures, or only of no-data, pass).
- A metric never passes without at least one Successful measurement: reaching ``count`` (or
  being terminated) with none is Inconclusive, so a human looks.
- A metric needs a condition: ``threshold`` (the seed's form, the maximum allowed value:
  ``result <= threshold``) or successCondition / failureCondition.

Durations are milliseconds like the seed (``"interval": 60000``); Argo's strings ("30s", "5m")
are accepted too.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from deployments.providers.base import MetricValue

DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
# Argo retries an errored measurement after 10 s when the metric has no interval.
DEFAULT_ERROR_RETRY_INTERVAL_MS = 10_000


class AnalysisConfigError(ValueError):
    """Invalid analysis configuration; ``field`` and ``rule`` are rendered as a 400."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class Outcome(enum.StrEnum):
    """The verdict on one measurement."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Phase(enum.StrEnum):
    """The verdict on a metric (or a whole analysis run) so far."""

    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"
    INCONCLUSIVE = "inconclusive"

    @property
    def completed(self) -> bool:
        return self is not Phase.RUNNING


# Best to worst, as Argo's analysisStatusOrder (Running sits below the bad verdicts).
_SEVERITY = {Phase.SUCCESSFUL: 0, Phase.RUNNING: 1, Phase.INCONCLUSIVE: 2, Phase.ERROR: 3, Phase.FAILED: 4}


@dataclasses.dataclass(frozen=True)
class MetricSpec:
    """One metric of an analysis: what to measure, how often, and what counts as a pass."""

    name: str
    threshold: float | None = None
    success_condition: str | None = None
    failure_condition: str | None = None
    interval_ms: int | None = None
    count: int | None = None  # None with an interval: until terminated
    initial_delay_ms: int = 0
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    query: str | None = None
    provider: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False, compare=False)

    @property
    def effective_count(self) -> int | None:
        """Argo's EffectiveCount: the count, else 1 without an interval, else None (indefinite)."""
        if self.count:
            return self.count
        return None if self.interval_ms else 1

    @property
    def conditions(self) -> tuple[str | None, str | None]:
        """(success, failure) expressions, with ``threshold`` turned into ``result <= threshold``."""
        if self.threshold is not None:
            return f"result <= {self.threshold!r}", None
        return self.success_condition, self.failure_condition


_KNOWN_FIELDS = {
    "threshold",
    "successCondition",
    "failureCondition",
    "interval",
    "count",
    "initialDelay",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "query",
    "provider",
}


def metric_spec_from_config(
    name: str, cfg: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
) -> MetricSpec:
    """Validate one metric's JSON (seed form or Argo fields) into a :class:`MetricSpec`.

    ``defaults`` fill fields the config leaves out, e.g. an interval and count derived by the
    caller from a canary step's ``duration``.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,99}", name):
        raise AnalysisConfigError("name", "must be a metric name (letters, digits, _ . : -)")
    if not isinstance(cfg, Mapping):
        raise AnalysisConfigError(name, "must be an object")
    if defaults:
        cfg = {**defaults, **cfg}
    unknown = sorted(set(cfg) - _KNOWN_FIELDS)
    if unknown:
        raise AnalysisConfigError(f"{name}.{unknown[0]}", f"unknown field; allowed: {sorted(_KNOWN_FIELDS)}")

    def field(key: str) -> str:
        return f"{name}.{key}"

    threshold = cfg.get("threshold")
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold)
    ):
        raise AnalysisConfigError(field("threshold"), "must be a finite number")

    success = _condition(cfg, "successCondition", field)
    failure = _condition(cfg, "failureCondition", field)
    if threshold is not None and (success or failure):
        raise AnalysisConfigError(
            field("threshold"), "cannot be combined with successCondition or failureCondition"
        )
    if threshold is None and not success and not failure:
        raise AnalysisConfigError(name, "needs a threshold, a successCondition or a failureCondition")

    interval = _duration_ms(cfg.get("interval"), field("interval"))
    if interval is not None and interval <= 0:
        raise AnalysisConfigError(field("interval"), "must be > 0")
    initial_delay = _duration_ms(cfg.get("initialDelay"), field("initialDelay")) or 0
    count = _int(cfg, "count", field, minimum=1)
    failure_limit = _int(cfg, "failureLimit", field, minimum=0) or 0
    inconclusive_limit = _int(cfg, "inconclusiveLimit", field, minimum=0) or 0
    error_limit = _int(cfg, "consecutiveErrorLimit", field, minimum=0)
    if count is not None and count > 1 and interval is None:
        raise AnalysisConfigError(field("interval"), "is required when count > 1")
    effective = count if count is not None else (None if interval else 1)
    if effective is not None:
        if failure_limit >= effective:
            raise AnalysisConfigError(field("failureLimit"), f"must be < count ({effective})")
        if inconclusive_limit >= effective:
            raise AnalysisConfigError(field("inconclusiveLimit"), f"must be < count ({effective})")

    query = cfg.get("query")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise AnalysisConfigError(field("query"), "must be a non-empty string")
    provider = cfg.get("provider")
    if provider is not None:
        if not isinstance(provider, Mapping) or not isinstance(provider.get("type"), str):
            raise AnalysisConfigError(field("provider"), 'must be an object with a "type"')
        provider = dict(provider)

    return MetricSpec(
        name=name,
        threshold=float(threshold) if threshold is not None else None,
        success_condition=success,
        failure_condition=failure,
        interval_ms=interval,
        count=count,
        initial_delay_ms=initial_delay,
        failure_limit=failure_limit,
        inconclusive_limit=inconclusive_limit,
        consecutive_error_limit=DEFAULT_CONSECUTIVE_ERROR_LIMIT if error_limit is None else error_limit,
        query=query,
        provider=provider,
    )


def metric_specs_from_config(
    metrics: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
) -> list[MetricSpec]:
    """A step's ``"metrics": {name: cfg, ...}`` block -> specs (field names are prefixed)."""
    if not isinstance(metrics, Mapping) or not metrics:
        raise AnalysisConfigError("metrics", "must be a non-empty object of metric name -> config")
    return [metric_spec_from_config(name, cfg, defaults=defaults) for name, cfg in metrics.items()]


def _condition(cfg: Mapping[str, Any], key: str, field: Callable[[str], str]) -> str | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise AnalysisConfigError(field(key), "must be a non-empty expression")
    try:
        _compile(value)
    except _ExpressionError as exc:
        raise AnalysisConfigError(field(key), f"invalid expression: {exc}") from None
    return value


def _int(cfg: Mapping[str, Any], key: str, field: Callable[[str], str], *, minimum: int) -> int | None:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnalysisConfigError(field(key), "must be an integer")
    if value < minimum:
        raise AnalysisConfigError(field(key), f"must be >= {minimum}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _duration_ms(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise AnalysisConfigError(field, "must be milliseconds or a duration like '30s'")
    if isinstance(value, int):
        if value < 0:
            raise AnalysisConfigError(field, "must be >= 0")
        return value
    if isinstance(value, str) and value and re.fullmatch(f"(?:{_DURATION.pattern})+", value):
        return int(sum(float(n) * _UNIT_MS[unit] for n, unit in _DURATION.findall(value)))
    raise AnalysisConfigError(field, "must be milliseconds or a duration like '30s'")


# -- verdicts -----------------------------------------------------------------------------------


def classify(spec: MetricSpec, value: MetricValue) -> Outcome:
    """The outcome of one measurement: error -> ERROR, no data -> INCONCLUSIVE, else conditions."""
    if value.error is not None:
        return Outcome.ERROR
    if value.value is None:
        return Outcome.INCONCLUSIVE
    result = float(value.value)
    success_expr, failure_expr = spec.conditions
    if spec.threshold is not None and math.isnan(result):
        return Outcome.INCONCLUSIVE
    try:
        success = _compile(success_expr)(result) if success_expr else False
        failure = _compile(failure_expr)(result) if failure_expr else False
    except (_ExpressionError, ArithmeticError):
        return Outcome.ERROR
    if success_expr and not failure_expr:
        failure = not success
    elif failure_expr and not success_expr:
        success = not failure
    if failure:
        return Outcome.FAILED
    if not success:
        return Outcome.INCONCLUSIVE
    return Outcome.SUCCESSFUL


def evaluate(spec: MetricSpec, outcomes: Sequence[Outcome], *, terminated: bool = False) -> Phase:
    """The metric's phase after ``outcomes`` (oldest first), as Argo's assessMetricStatus.

    ``terminated``: the run was told to stop (promotion, step over); a metric without a
    verdict then ends Successful if it saw a success, else Inconclusive.
    """
    successful = failed = inconclusive = consecutive_errors = 0
    for outcome in outcomes:
        if outcome is Outcome.ERROR:
            consecutive_errors += 1
            continue
        consecutive_errors = 0
        if outcome is Outcome.SUCCESSFUL:
            successful += 1
        elif outcome is Outcome.FAILED:
            failed += 1
        else:
            inconclusive += 1
    if failed > spec.failure_limit:
        return Phase.FAILED
    if inconclusive > spec.inconclusive_limit:
        return Phase.INCONCLUSIVE
    if consecutive_errors > spec.consecutive_error_limit:
        return Phase.ERROR
    count = spec.effective_count
    if (count is not None and successful + failed + inconclusive >= count) or terminated:
        return Phase.SUCCESSFUL if successful else Phase.INCONCLUSIVE
    return Phase.RUNNING


def combine(phases: Sequence[Phase]) -> Phase:
    """The phase of a run of several metrics (Argo's asssessRunStatus with termination)."""
    if not phases:
        return Phase.RUNNING
    bad = [p for p in phases if p in (Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE)]
    if bad:
        return max(bad, key=_SEVERITY.__getitem__)
    if any(p is Phase.RUNNING for p in phases):
        return Phase.RUNNING
    return Phase.SUCCESSFUL


def next_measurement_at(
    spec: MetricSpec,
    started_at: datetime,
    taken: int | Sequence[Outcome],
    *,
    last_at: datetime | None = None,
) -> datetime | None:
    """When to take the next measurement, or None when the metric needs no more.

    ``taken`` is either the outcomes so far (exact: errors are retried and do not count) or
    just how many measurements were taken (then assumed error-free). Measurements are due at
    ``started_at + initialDelay + n * interval``; pass ``last_at`` (when the previous one
    finished) to space them from it instead, as Argo does, so a worker that fell behind does
    not fire a burst of catch-up measurements.
    """
    if isinstance(taken, int):
        n = taken
        count = spec.effective_count
        if count is not None and n >= count:
            return None
        last_was_error = False
    else:
        if evaluate(spec, taken).completed:
            return None
        n = len(taken)
        last_was_error = bool(taken) and taken[-1] is Outcome.ERROR
    first = started_at + timedelta(milliseconds=spec.initial_delay_ms)
    if n == 0:
        return first
    step_ms = spec.interval_ms or (DEFAULT_ERROR_RETRY_INTERVAL_MS if last_was_error else 0)
    if not step_ms:
        return None  # one-shot metric already measured (reachable only with the int form)
    step = timedelta(milliseconds=step_ms)
    if last_at is not None:
        return last_at + step
    return first + n * step


# -- a tiny, safe condition language ------------------------------------------------------------
#
# Argo evaluates conditions with antonmedv/expr; we accept the subset used for metric
# conditions: numbers, ``result`` (also ``result[0]``), + - * /, comparisons, && || !
# (and/or/not), parentheses, true/false, isNaN(x), isInf(x), abs(x). It is parsed into
# closures once (cached) and never handed to eval().


class _ExpressionError(ValueError):
    pass


class _ExpressionTypeError(_ExpressionError):
    pass


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/()\[\],]))"
)
_Fn = Callable[[float], Any]
_FUNCTIONS: dict[str, Callable[[float], Any]] = {"isNaN": math.isnan, "isInf": math.isinf, "abs": abs}
_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _ExpressionError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        token = match.group("num") or match.group("name") or match.group("op")
        tokens.append(_WORD_OPS.get(token, token))
        pos = match.end()
    if not tokens:
        raise _ExpressionError("empty expression")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        item = self.peek()
        if item is None or (expected is not None and item != expected):
            raise _ExpressionError(f"expected {expected or 'more input'}, got {item or 'end'}")
        self.pos += 1
        return item

    def parse(self) -> _Fn:
        fn = self.or_()
        if self.peek() is not None:
            raise _ExpressionError(f"unexpected {self.peek()!r}")
        return fn

    def or_(self) -> _Fn:
        fn = self.and_()
        while self.peek() == "||":
            self.take()
            fn = _logic(False, fn, self.and_())
        return fn

    def and_(self) -> _Fn:
        fn = self.not_()
        while self.peek() == "&&":
            self.take()
            fn = _logic(True, fn, self.not_())
        return fn

    def not_(self) -> _Fn:
        if self.peek() == "!":
            self.take()
            inner = self.not_()
            return lambda r: not _truth(inner(r))
        return self.comparison()

    def comparison(self) -> _Fn:
        fn = self.sum_()
        op = self.peek()
        if op is not None and op in _COMPARE:
            self.take()
            fn = _arith(_COMPARE[op], fn, self.sum_())
            if self.peek() in _COMPARE:
                raise _ExpressionError("chained comparisons need && (a < result && result < b)")
        return fn

    def sum_(self) -> _Fn:
        fn = self.product()
        while (op := self.peek()) in ("+", "-"):
            self.take()
            fn = _arith(operator.add if op == "+" else operator.sub, fn, self.product())
        return fn

    def product(self) -> _Fn:
        fn = self.unary()
        while (op := self.peek()) in ("*", "/"):
            self.take()
            fn = _arith(operator.mul if op == "*" else _divide, fn, self.unary())
        return fn

    def unary(self) -> _Fn:
        if self.peek() == "-":
            self.take()
            inner = self.unary()
            return lambda r: -_number(inner(r))
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.atom()

    def atom(self) -> _Fn:
        item = self.take()
        if item == "(":
            fn = self.or_()
            self.take(")")
            return fn
        if item[0].isdigit() or item[0] == ".":
            number = float(item)
            return lambda r: number
        if item == "result":
            if self.peek() == "[":
                self.take("[")
                self.take("0")  # a single value; Argo's vector results are read as result[0]
                self.take("]")
            return lambda r: r
        if item in ("true", "false"):
            constant = item == "true"
            return lambda r: constant
        if item in _FUNCTIONS:
            function = _FUNCTIONS[item]
            self.take("(")
            arg = self.or_()
            self.take(")")
            return lambda r: function(_number(arg(r)))
        raise _ExpressionError(f"unknown name {item!r} (use result, numbers, isNaN, isInf, abs)")


def _logic(is_and: bool, left: _Fn, right: _Fn) -> _Fn:
    if is_and:
        return lambda r: _truth(left(r)) and _truth(right(r))
    return lambda r: _truth(left(r)) or _truth(right(r))


def _arith(op: Callable[[float, float], Any], left: _Fn, right: _Fn) -> _Fn:
    return lambda r: op(_number(left(r)), _number(right(r)))


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _ExpressionTypeError(f"expected a boolean, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _ExpressionTypeError("expected a number, got a boolean")
    return float(value)


def _divide(a: float, b: float) -> float:
    if b == 0:
        raise _ExpressionError("division by zero")
    return a / b


@functools.lru_cache(maxsize=512)
def _compile(expression: str) -> Callable[[float], bool]:
    fn = _Parser(_tokenize(expression)).parse()

    def condition(result: float) -> bool:
        return _truth(fn(result))

    # Type-check once on a sample value so "result + 1" is a config error, not a runtime one.
    try:
        condition(1.0)
    except _ExpressionTypeError as exc:
        raise _ExpressionError(f"must be a boolean condition ({exc})") from None
    except (_ExpressionError, ArithmeticError):
        pass  # e.g. a division by zero at this sample value; decided per measurement
    return condition
