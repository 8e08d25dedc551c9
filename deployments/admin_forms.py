"""Start a deployment from the admin: the same checks and service as ``POST /api/v1/deployments/``."""

from __future__ import annotations

from typing import Any

from django import forms

from deployments import services, strategies
from deployments.models import Deployment
from deployments.strategies.config import unwrap


class DeploymentStartForm(forms.ModelForm):
    config = forms.JSONField(
        label="Strategy",
        help_text='The `deployment` block, e.g. {"strategy": "canary", "canary": {"steps": [...]}}.',
    )

    class Meta:
        model = Deployment
        fields = ["environment", "release", "config", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        env, release, config = data.get("environment"), data.get("release"), data.get("config")
        if env is None or release is None or config is None:
            return data
        if release.service_id != env.service_id:
            self.add_error("release", f"belongs to service {release.service.slug}, not {env.service.slug}")
        if env.frozen:
            self.add_error("environment", f"{env} is frozen: only rollbacks may start")
        active = services.active_deployment(env)
        if active is not None:
            self.add_error("environment", f"deployment #{active.pk} is still active on {env}")
        try:
            strategies.plan(strategies.parse_strategy_config(unwrap(config)), services.env_state(env))
        except strategies.ConfigError as exc:
            self.add_error("config", [f"{k}: {', '.join(v)}" for k, v in exc.errors.items()])
        except strategies.PlanError as exc:
            self.add_error("config", f"{exc.field}: {exc.rule}")
        return data
