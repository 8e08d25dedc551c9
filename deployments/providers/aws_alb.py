"""The AWS Application Load Balancer router: slot weights as weighted target groups.

Each slot is a target group; the listener's default action (or one listener rule) forwards to
both with the slot percentages as weights. Draining an instance deregisters its target; AWS
keeps the target ``draining`` for the group's ``deregistration_delay.timeout_seconds`` and
``drain_pending()`` reports it until then, so the engine re-checks instead of sleeping.
Every change is verified by reading the rule or listener back.

Environment router configuration (JSON)::

    {"type": "aws_alb",
     "listener_arn": "arn:aws:elasticloadbalancing:...:listener/app/noodle/...",
     "rule_arn": null,                     # a listener rule; null = the listener's default action
     "target_groups": {"blue": "arn:...:targetgroup/noodle-blue/...",
                       "green": "arn:...:targetgroup/noodle-green/..."},
     "target_group": null,                 # for instances without a slot (rolling)
     "targets": {"web-1": {"id": "i-0abc", "port": 8080}},  # optional; default: host:port of address
     "region": "eu-west-1",
     "endpoint_url": null}

Credentials are never part of it: boto3's default chain (environment, instance profile, ...)
supplies them; a configuration holding a key is rejected.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from deployments.providers.base import SLOTS, InstanceRef, ProviderConfigError, ProviderError, TrafficTable
from deployments.providers.config import get_str, get_str_map, get_url, reject_unknown, require_mapping

_CREDENTIAL_HINTS = ("secret", "access_key", "session_token", "password", "credential")
# Target states in which the load balancer may still send the target new requests.
_SERVING_STATES = frozenset({"initial", "healthy", "unhealthy", "unhealthy.draining", "unavailable"})
_MAX_WEIGHT = 999
_SLOT_RE = re.compile("|".join(SLOTS))  # ALB's bound for a target group weight


@dataclasses.dataclass(frozen=True)
class AlbConfig:
    listener_arn: str
    target_groups: Mapping[str, str]
    rule_arn: str | None = None
    target_group: str | None = None
    targets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    region: str | None = None
    endpoint_url: str | None = None

    FIELDS = (
        "listener_arn",
        "rule_arn",
        "target_groups",
        "target_group",
        "targets",
        "region",
        "endpoint_url",
    )

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> AlbConfig:
        config = require_mapping(config, "router")
        leaked = sorted(k for k in config if any(h in k.lower() for h in _CREDENTIAL_HINTS))
        if leaked:
            raise ProviderConfigError(
                leaked[0],
                "credentials never go in the configuration; use the environment or the instance profile",
            )
        reject_unknown(config, cls.FIELDS)
        listener = get_str(config, "listener_arn")
        groups = get_str_map(config, "target_groups", names=_SLOT_RE)
        if not all(groups.values()):
            raise ProviderConfigError("target_groups", "must map slot -> target group ARN")
        if not groups and not config.get("target_group"):
            raise ProviderConfigError("target_groups", "give target_groups (per slot) or target_group")
        targets = config.get("targets") or {}
        if not isinstance(targets, Mapping):
            raise ProviderConfigError("targets", "must map instance name -> {id, port}")
        for name, spec in targets.items():
            if not isinstance(spec, Mapping) or not spec.get("id"):
                raise ProviderConfigError(f"targets.{name}", "needs an 'id' (and optionally a 'port')")
        optional = {k: get_str(config, k) for k in ("rule_arn", "target_group", "region") if config.get(k)}
        return cls(
            listener_arn=listener,
            target_groups=groups,
            rule_arn=optional.get("rule_arn"),
            target_group=optional.get("target_group"),
            targets=dict(targets),
            region=optional.get("region"),
            endpoint_url=get_url(config, "endpoint_url") if config.get("endpoint_url") else None,
        )


class AlbRouter:
    """Router for a service behind an ALB; see the module docstring for the configuration."""

    type = "aws_alb"

    def __init__(self, config: AlbConfig, instances: Sequence[InstanceRef], client: Any = None) -> None:
        self.config = config
        self.instances = list(instances)
        if client is None:
            try:
                client = boto3.session.Session().client(
                    "elbv2",
                    region_name=config.region,
                    endpoint_url=config.endpoint_url,
                    config=BotoConfig(retries={"max_attempts": 4, "mode": "standard"}),
                )
            except BotoCoreError as exc:  # e.g. no region in the config nor the environment
                raise ProviderError(f"cannot create the elbv2 client: {exc}") from exc
        self.client = client

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instances: Sequence[InstanceRef]) -> AlbRouter:
        return cls(AlbConfig.parse(config), instances)

    # -- Router protocol -----------------------------------------------------------------------

    def apply(self, table: TrafficTable) -> None:
        """Register live targets, set the weights, deregister drained targets, then verify.

        Idempotent: only what differs from the load balancer's state is changed. Deregistered
        targets keep draining for the group's delay; ``drain_pending()`` says when that is over.
        """
        self._check_table(table)
        live = [i for i in self.instances if i.name not in table.drained]
        drained = [i for i in self.instances if i.name in table.drained]
        states = self._states(self.instances)
        self._change_targets("register", [i for i in live if states.get(i.name) not in _SERVING_STATES])
        if table.weights:
            wanted = {self.config.target_groups[s]: p for s, p in table.weights.items()}
            if self._forward_weights() != wanted:
                self._set_weights(wanted)
        self._change_targets("deregister", [i for i in drained if states.get(i.name) in _SERVING_STATES])
        self._verify(table)

    def observe(self) -> TrafficTable:
        weights: dict[str, int] = {}
        if self.config.target_groups:
            by_arn = {arn: slot for slot, arn in self.config.target_groups.items()}
            forward = self._forward_weights()
            total = sum(forward.values())
            if total > 0:
                weights = {by_arn[arn]: round(100 * w / total) for arn, w in forward.items() if arn in by_arn}
        states = self._states(self.instances)
        drained = frozenset(i.name for i in self.instances if states.get(i.name) not in _SERVING_STATES)
        try:
            return TrafficTable(weights=weights, drained=drained)
        except ValueError as exc:
            raise ProviderError(f"ALB forward config does not add up to a traffic table: {exc}") from exc

    # -- draining ----------------------------------------------------------------------------------

    def drain_pending(self, table: TrafficTable) -> frozenset[str]:
        """Drained instances whose targets are still ``draining`` (deregistration delay running)."""
        drained = [i for i in self.instances if i.name in table.drained]
        states = self._states(drained)
        return frozenset(i.name for i in drained if states.get(i.name) == "draining")

    def drain_complete(self, table: TrafficTable) -> bool:
        return not self.drain_pending(table)

    def deregistration_delay(self, slot: str | None) -> int:
        """Seconds AWS keeps a deregistered target of ``slot``'s group draining."""
        attrs = self._call("describe_target_group_attributes", TargetGroupArn=self._group_of_slot(slot))[
            "Attributes"
        ]
        values = {a["Key"]: a["Value"] for a in attrs}
        return int(values.get("deregistration_delay.timeout_seconds", 300))

    # -- AWS calls ---------------------------------------------------------------------------------

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ProviderError(f"ALB {method} failed: {err.get('Code')}: {err.get('Message')}") from exc
        except BotoCoreError as exc:
            raise ProviderError(f"ALB {method} failed: {exc}") from exc

    def _actions(self) -> list[dict[str, Any]]:
        if self.config.rule_arn:
            rules = self._call("describe_rules", RuleArns=[self.config.rule_arn])["Rules"]
            if not rules:
                raise ProviderError(f"ALB rule {self.config.rule_arn} not found")
            return list(rules[0]["Actions"])
        listeners = self._call("describe_listeners", ListenerArns=[self.config.listener_arn])["Listeners"]
        if not listeners:
            raise ProviderError(f"ALB listener {self.config.listener_arn} not found")
        return list(listeners[0]["DefaultActions"])

    def _forward_weights(self) -> dict[str, int]:
        """Target group ARN -> weight of the forward action that is live now."""
        for action in self._actions():
            if action.get("Type") != "forward":
                continue
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
            if groups:
                return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
            if action.get("TargetGroupArn"):
                return {action["TargetGroupArn"]: 1}
        raise ProviderError("the ALB listener/rule has no forward action to weight")

    def _set_weights(self, wanted: Mapping[str, int]) -> None:
        actions = self._actions()
        forward = next((a for a in actions if a.get("Type") == "forward"), None)
        stickiness = ((forward or {}).get("ForwardConfig") or {}).get("TargetGroupStickinessConfig")
        forward_config: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": arn, "Weight": min(w, _MAX_WEIGHT)} for arn, w in wanted.items()
            ]
        }
        if stickiness:
            forward_config["TargetGroupStickinessConfig"] = stickiness
        new_action: dict[str, Any] = {"Type": "forward", "ForwardConfig": forward_config}
        if forward and "Order" in forward:
            new_action["Order"] = forward["Order"]
        # Keep any other actions (authentication before the forward, for instance) as they are.
        new_actions = [new_action if a is forward else a for a in actions] if forward else [new_action]
        if self.config.rule_arn:
            self._call("modify_rule", RuleArn=self.config.rule_arn, Actions=new_actions)
        else:
            self._call("modify_listener", ListenerArn=self.config.listener_arn, DefaultActions=new_actions)

    def _target(self, inst: InstanceRef) -> dict[str, Any]:
        spec = self.config.targets.get(inst.name)
        if spec:
            target: dict[str, Any] = {"Id": str(spec["id"])}
            if spec.get("port"):
                target["Port"] = int(spec["port"])
            return target
        try:
            parts = urlsplit(inst.address if "://" in inst.address else f"http://{inst.address}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise ProviderError(f"instance {inst.name}: bad address {inst.address!r}") from exc
        if not parts.hostname:
            raise ProviderError(f"instance {inst.name}: no host in {inst.address!r}")
        return {"Id": parts.hostname, "Port": port}

    def _group_of_slot(self, slot: str | None) -> str:
        if slot and slot in self.config.target_groups:
            return self.config.target_groups[slot]
        if self.config.target_group:
            return self.config.target_group
        raise ProviderError(f"no target group for slot {slot or '(none)'}")

    def _by_group(self, instances: Iterable[InstanceRef]) -> dict[str, list[InstanceRef]]:
        groups: dict[str, list[InstanceRef]] = {}
        for inst in instances:
            groups.setdefault(self._group_of_slot(inst.slot), []).append(inst)
        return groups

    def _states(self, instances: Iterable[InstanceRef]) -> dict[str, str]:
        """Instance name -> target state (absent when the target is not registered at all)."""
        states: dict[str, str] = {}
        for arn, members in self._by_group(instances).items():
            described = self._call("describe_target_health", TargetGroupArn=arn)["TargetHealthDescriptions"]
            seen = {
                (d["Target"]["Id"], d["Target"].get("Port")): d.get("TargetHealth", {}).get("State", "")
                for d in described
            }
            for inst in members:
                t = self._target(inst)
                state = seen.get((t["Id"], t.get("Port")))
                if state is None and "Port" not in t:
                    state = next((s for (tid, _), s in seen.items() if tid == t["Id"]), None)
                if state is not None:
                    states[inst.name] = state
        return states

    def _change_targets(self, verb: str, instances: Sequence[InstanceRef]) -> None:
        for arn, members in self._by_group(instances).items():
            self._call(f"{verb}_targets", TargetGroupArn=arn, Targets=[self._target(i) for i in members])

    # -- checks --------------------------------------------------------------------------------------

    def _check_table(self, table: TrafficTable) -> None:
        unknown = set(table.drained) - {i.name for i in self.instances}
        if unknown:
            raise ProviderError(f"cannot drain unknown instances: {', '.join(sorted(unknown))}")
        missing = [s for s in table.weights if s not in self.config.target_groups]
        if missing:
            raise ProviderError(f"no target group configured for slot(s) {', '.join(missing)}")
        for slot, percent in table.weights.items():
            members = [i for i in self.instances if i.slot == slot and i.name not in table.drained]
            if percent > 0 and not members:
                raise ProviderError(f"slot {slot} should get {percent}% but has no live instance")

    def _verify(self, table: TrafficTable) -> None:
        observed = self.observe()
        if table.weights and dict(observed.weights) != dict(table.weights):
            raise ProviderError(
                f"ALB serves weights {dict(observed.weights)}, expected {dict(table.weights)}"
            )
        if observed.drained != frozenset(table.drained):
            raise ProviderError(
                f"ALB targets out of service {sorted(observed.drained)}, expected {sorted(table.drained)}"
            )
