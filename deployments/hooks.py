"""Lifecycle hooks per environment: commands or webhooks run at fixed points of a rollout.

``Environment.hooks`` (JSON)::

    {"pre_rollout": [{"type": "webhook", "url": "https://ci.example.com/hook", "timeout": 5000,
                      "retries": 2, "headers": {...}, "secret_env": "HOOK_KEY"}],
     "after_traffic_shift": [{"type": "command", "argv": ["/opt/smoke.sh"], "timeout": 30000}],
     "rollback": [...]}

Points: ``pre_rollout`` (before the first step), ``before_traffic_shift`` / ``after_traffic_shift``
(around every weight change or switch), ``post_rollout`` (before the release is recorded live),
``rollback`` (after traffic went back to stable: automatic rollback, failure, abort, or a
rollback deployment). Each hook gets the deployment's facts: as environment variables for a
command (``DEPLOYMENT_ID ENVIRONMENT SERVICE RELEASE_VERSION STEP WEIGHTS HOOK``), as JSON for a
webhook (``{"hook": ..., "deployment": {"id", "environment", "release", "step", "weights"}}``).
A hook is tried ``1 + retries`` times. A failing hook fails the step (the rollout ends
``failed`` with traffic back on stable), except ``rollback`` hooks: they are logged, never block.

Execution reuses the deployers' code (``run_argv``, ``post_json``, ``signed_headers``); no ORM here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from deployments.providers.base import ProviderConfigError, ProviderError
from deployments.providers.config import get_int
from deployments.providers.deployers import (
    CommandDeployer,
    WebhookDeployer,
    post_json,
    run_argv,
    signed_headers,
)

POINTS = ("pre_rollout", "before_traffic_shift", "after_traffic_shift", "post_rollout", "rollback")
NON_BLOCKING = frozenset({"rollback"})
MAX_RETRIES = 10


class HookFailed(ProviderError):
    """A blocking hook failed after all its attempts."""


@dataclasses.dataclass(frozen=True)
class Facts:
    deployment_id: int
    environment: str
    service: str
    release: str
    step: int | None
    weights: Mapping[str, int]

    def as_env(self, point: str) -> dict[str, str]:
        return {
            "HOOK": point,
            "DEPLOYMENT_ID": str(self.deployment_id),
            "ENVIRONMENT": self.environment,
            "SERVICE": self.service,
            "RELEASE_VERSION": self.release,
            "STEP": "" if self.step is None else str(self.step),
            "WEIGHTS": json.dumps(dict(self.weights), sort_keys=True),
        }

    def as_json(self, point: str) -> dict[str, Any]:
        return {
            "hook": point,
            "deployment": {
                "id": self.deployment_id,
                "environment": self.environment,
                "service": self.service,
                "release": self.release,
                "step": self.step,
                "weights": dict(self.weights),
            },
        }


@dataclasses.dataclass(frozen=True)
class Hook:
    point: str
    index: int
    retries: int
    runner: CommandDeployer | WebhookDeployer

    @property
    def label(self) -> str:
        kind = "command" if isinstance(self.runner, CommandDeployer) else "webhook"
        return f"{self.point}[{self.index}] ({kind})"

    def run_once(self, facts: Facts) -> None:
        r = self.runner
        if isinstance(r, CommandDeployer):
            env = r.environment_base()
            env.update(facts.as_env(self.point))
            run_argv(r.argv, env=env, cwd=r.cwd, timeout_ms=r.timeout_ms, what=f"hook {self.label}")
            return
        body = json.dumps(facts.as_json(self.point), sort_keys=True).encode()
        headers = signed_headers(body, r.headers, r.secret_env)
        headers.setdefault("Idempotency-Key", f"{facts.deployment_id}:{self.point}:{facts.step}:{self.index}")
        post_json(r.url, body, headers, timeout_ms=r.timeout_ms, what=f"hook {self.label} at {r.url}")

    def run(self, facts: Facts) -> tuple[int, str | None]:
        """Try up to ``1 + retries`` times; returns (attempts, last error or None)."""
        error: str | None = None
        for attempt in range(1, self.retries + 2):
            try:
                self.run_once(facts)
                return attempt, None
            except ProviderError as exc:
                error = str(exc)
        return self.retries + 1, error


def parse_hooks(config: Mapping[str, Any] | None) -> dict[str, list[Hook]]:
    """Validate ``Environment.hooks``; raises ProviderConfigError(field, rule)."""
    if not config:
        return {}
    if not isinstance(config, Mapping):
        raise ProviderConfigError("hooks", "must be an object")
    out: dict[str, list[Hook]] = {}
    for point, items in config.items():
        if point not in POINTS:
            raise ProviderConfigError(f"hooks.{point}", f"unknown hook point; allowed: {list(POINTS)}")
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise ProviderConfigError(f"hooks.{point}", "must be a list of hooks")
        hooks = []
        for n, item in enumerate(items):
            field = f"hooks.{point}.{n}"
            if not isinstance(item, Mapping):
                raise ProviderConfigError(field, "must be an object")
            rest = {k: v for k, v in item.items() if k not in ("type", "retries")}
            try:
                retries = get_int(item, "retries", 0, minimum=0, maximum=MAX_RETRIES)
                kind = item.get("type")
                runner: CommandDeployer | WebhookDeployer
                if kind == "command":
                    runner = CommandDeployer.from_config(rest)
                elif kind == "webhook":
                    runner = WebhookDeployer.from_config(rest)
                else:
                    raise ProviderConfigError("type", "must be 'command' or 'webhook'")
            except ProviderConfigError as exc:
                raise ProviderConfigError(f"{field}.{exc.field}", exc.rule) from None
            hooks.append(Hook(point=point, index=n, retries=retries, runner=runner))
        out[point] = hooks
    return out


@dataclasses.dataclass(frozen=True)
class HookRun:
    label: str
    attempts: int
    error: str | None


def run_hooks(config: Mapping[str, Any] | None, point: str, facts: Facts) -> list[HookRun]:
    """Run the hooks of ``point`` in order; raise HookFailed on the first blocking failure."""
    runs: list[HookRun] = []
    for hook in parse_hooks(config).get(point, []):
        attempts, error = hook.run(facts)
        runs.append(HookRun(hook.label, attempts, error))
        if error is not None and point not in NON_BLOCKING:
            raise HookFailed(f"hook {hook.label} failed after {attempts} attempt(s): {error}")
    return runs
