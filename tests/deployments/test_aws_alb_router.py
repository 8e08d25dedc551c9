"""AlbRouter against moto's server on loopback (real HTTP, real boto3 wire format).

Credentials come from the process environment, as in production (boto3's default chain);
the router configuration holds none.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from deployments.providers.aws_alb import AlbConfig, AlbRouter
from deployments.providers.base import InstanceRef, ProviderConfigError, ProviderError, TrafficTable
from deployments.providers.routers import build_router

REGION = "eu-west-1"


def moto_server_binary() -> str:
    found = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(found).exists():
        pytest.fail("moto_server is missing: install the dev extras (moto[s3], flask, flask-cors)")
    return found


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [moto_server_binary(), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default credential chain reads these; nothing is passed through the router config.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


class Alb:
    """A VPC, two subnets, an ALB, an HTTP listener and blue/green target groups in moto."""

    def __init__(self, endpoint: str, name: str) -> None:
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        self.elb = boto3.client("elbv2", region_name=REGION, endpoint_url=endpoint)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{az}")[
                "Subnet"
            ]["SubnetId"]
            for n, az in ((1, "a"), (2, "b"))
        ]
        lb = self.elb.create_load_balancer(Name=name, Subnets=subnets)["LoadBalancers"][0]
        self.groups = {
            slot: self.elb.create_target_group(
                Name=f"{name}-{slot}", Protocol="HTTP", Port=80, VpcId=vpc, TargetType="ip"
            )["TargetGroups"][0]["TargetGroupArn"]
            for slot in ("blue", "green")
        }
        self.listener = self.elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": self.groups["blue"]}],
        )["Listeners"][0]["ListenerArn"]
        self.instances = [
            InstanceRef("blue-1", "http://10.0.1.11:8080", "blue"),
            InstanceRef("blue-2", "http://10.0.1.12:8080", "blue"),
            InstanceRef("green-1", "http://10.0.2.21:8080", "green"),
            InstanceRef("green-2", "http://10.0.2.22:8080", "green"),
        ]
        for slot, arn in self.groups.items():
            targets = [
                {"Id": i.address[7:].split(":")[0], "Port": 8080} for i in self.instances if i.slot == slot
            ]
            self.elb.register_targets(TargetGroupArn=arn, Targets=targets)

    def config(self, endpoint: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "aws_alb",
            "listener_arn": self.listener,
            "target_groups": self.groups,
            "region": REGION,
            "endpoint_url": endpoint,
            **extra,
        }

    def registered(self, slot: str) -> set[str]:
        described = self.elb.describe_target_health(TargetGroupArn=self.groups[slot])[
            "TargetHealthDescriptions"
        ]
        return {d["Target"]["Id"] for d in described}


@pytest.fixture
def alb(moto_url: str, request: pytest.FixtureRequest) -> Alb:
    return Alb(moto_url, name=f"t{abs(hash(request.node.name)) % 10**8}")


def test_weights_are_set_on_the_listener_and_read_back(alb: Alb, moto_url: str) -> None:
    router = build_router(alb.config(moto_url), alb.instances)
    assert isinstance(router, AlbRouter)

    router.apply(TrafficTable({"blue": 90, "green": 10}))

    action = alb.elb.describe_listeners(ListenerArns=[alb.listener])["Listeners"][0]["DefaultActions"][0]
    weights = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    assert weights == {alb.groups["blue"]: 90, alb.groups["green"]: 10}
    assert router.observe() == TrafficTable({"blue": 90, "green": 10})

    router.apply(TrafficTable({"blue": 0, "green": 100}))
    assert AlbRouter.from_config(alb.config(moto_url), alb.instances).observe() == TrafficTable(
        {"blue": 0, "green": 100}
    )


def test_weights_on_a_listener_rule_leave_the_default_action_alone(alb: Alb, moto_url: str) -> None:
    rule = alb.elb.create_rule(
        ListenerArn=alb.listener,
        Priority=10,
        Conditions=[{"Field": "host-header", "Values": ["noodle.example.com"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": alb.groups["blue"]}],
    )["Rules"][0]["RuleArn"]
    router = AlbRouter.from_config(alb.config(moto_url, rule_arn=rule), alb.instances)

    router.apply(TrafficTable({"blue": 50, "green": 50}))

    actions = alb.elb.describe_rules(RuleArns=[rule])["Rules"][0]["Actions"]
    assert {g["Weight"] for g in actions[0]["ForwardConfig"]["TargetGroups"]} == {50}
    default = alb.elb.describe_listeners(ListenerArns=[alb.listener])["Listeners"][0]["DefaultActions"][0]
    assert default["TargetGroupArn"] == alb.groups["blue"]
    assert router.observe() == TrafficTable({"blue": 50, "green": 50})


def test_drain_deregisters_the_target_and_undrain_registers_it_again(alb: Alb, moto_url: str) -> None:
    router = AlbRouter.from_config(alb.config(moto_url), alb.instances)
    table = TrafficTable({"blue": 100, "green": 0}, drained=frozenset({"blue-2"}))

    router.apply(table)

    assert alb.registered("blue") == {"10.0.1.11"}
    assert router.observe() == table
    assert router.drain_complete(table)  # moto drops the target at once
    assert router.deregistration_delay("blue") == 300

    router.apply(TrafficTable({"blue": 100, "green": 0}))
    assert alb.registered("blue") == {"10.0.1.11", "10.0.1.12"}


def test_apply_refuses_a_slot_without_live_targets(alb: Alb, moto_url: str) -> None:
    router = AlbRouter.from_config(alb.config(moto_url), alb.instances)
    with pytest.raises(ProviderError, match="slot green should get 10% but has no live instance"):
        router.apply(TrafficTable({"blue": 90, "green": 10}, drained=frozenset({"green-1", "green-2"})))
    assert alb.registered("green") == {"10.0.2.21", "10.0.2.22"}


def test_drain_is_pending_while_aws_reports_the_target_draining() -> None:
    """moto deregisters at once; AWS keeps the target ``draining`` for the delay (wire format)."""
    client = boto3.client("elbv2", region_name=REGION)
    instances = [InstanceRef("web-1", "http://10.0.1.11:8080", "blue")]
    config = AlbConfig.parse({"listener_arn": "arn:l", "target_groups": {"blue": "arn:tg-blue"}})
    router = AlbRouter(config, instances, client=client)
    table = TrafficTable({"blue": 100}, drained=frozenset({"web-1"}))
    with Stubber(client) as stub:
        for state in ("draining", None):
            described = [{"Target": {"Id": "10.0.1.11", "Port": 8080}, "TargetHealth": {"State": state}}]
            stub.add_response(
                "describe_target_health",
                {"TargetHealthDescriptions": described if state else []},
                {"TargetGroupArn": "arn:tg-blue"},
            )
        assert router.drain_pending(table) == frozenset({"web-1"})
        assert router.drain_pending(table) == frozenset()
        stub.assert_no_pending_responses()


def test_configuration_never_holds_credentials() -> None:
    with pytest.raises(ProviderConfigError, match="credentials never go in the configuration"):
        AlbConfig.parse(
            {"listener_arn": "arn:l", "target_groups": {"blue": "arn:b"}, "aws_secret_access_key": "x"}
        )
    with pytest.raises(ProviderConfigError, match="listener_arn"):
        AlbConfig.parse({"target_groups": {"blue": "arn:b"}})
    with pytest.raises(ProviderConfigError) as exc:
        build_router({"type": "aws_alb", "listener_arn": "arn:l", "target_groups": {"purple": "arn:p"}}, [])
    assert exc.value.field == "target_groups.purple"


def test_a_missing_region_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ProviderError, match="cannot create the elbv2 client"):
        AlbRouter.from_config({"listener_arn": "arn:l", "target_groups": {"blue": "arn:b"}}, [])


def test_aws_errors_surface_as_provider_errors(moto_url: str) -> None:
    missing = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/nope/1/2"
    router = AlbRouter.from_config(
        {
            "listener_arn": missing,
            "target_groups": {"blue": "arn:b"},
            "region": REGION,
            "endpoint_url": moto_url,
        },
        [],
    )
    with pytest.raises(ProviderError, match="describe_listeners failed"):
        router.observe()


def test_apply_is_idempotent_and_changes_only_what_differs(alb: Alb, moto_url: str) -> None:
    router = AlbRouter.from_config(alb.config(moto_url), alb.instances)
    calls: list[str] = []
    router.client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    table = TrafficTable({"blue": 90, "green": 10}, drained=frozenset({"green-2"}))
    router.apply(table)
    changes = [c for c in calls if not c.startswith("Describe")]
    assert changes == ["ModifyListener", "DeregisterTargets"]

    calls.clear()
    router.apply(table)
    assert [c for c in calls if not c.startswith("Describe")] == []
    assert router.observe() == table
