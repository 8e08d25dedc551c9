"""NginxRouter against a real, private nginx master in front of real loopback instances."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments.providers.base import InstanceRef, ProviderConfigError, ProviderError, TrafficTable
from deployments.providers.nginx import NginxRouter, parse_upstream, plan_weights, render_upstream
from deployments.providers.routers import build_router
from tests.conftest import wait_for
from tests.support.loadgen import LoadGenerator
from tests.support.nginx import NginxFleet as Fleet
from tests.support.nginx import require_nginx


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    require_nginx()
    f = Fleet()
    yield f
    f.stop()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_apply_shifts_traffic_and_observe_reads_back_the_live_file(fleet: Fleet) -> None:
    router = fleet.router()
    assert router.observe() == TrafficTable({"blue": 100, "green": 0})
    first = LoadGenerator(fleet.nginx.url).run(count=100)
    assert first.versions == {"1.0.0": 100}

    router.apply(TrafficTable({"blue": 0, "green": 100}))

    assert router.observe() == TrafficTable({"blue": 0, "green": 100})
    after = LoadGenerator(fleet.nginx.url).run(count=100)
    assert after.failed == 0
    assert after.versions == {"2.0.0": 100}
    assert leftovers(fleet.nginx.upstream_file.parent) == []
    assert leftovers(fleet.nginx.prefix) == []


def test_failed_nginx_t_keeps_old_config_serving_and_reports_nginx_error(fleet: Fleet) -> None:
    router = fleet.router()
    router.apply(TrafficTable({"blue": 90, "green": 10}))
    live_before = fleet.nginx.upstream_file.read_text()
    broken = [*fleet.instances, InstanceRef("green-9", "http://no-such-host.invalid:9000", "green")]
    bad_router = NginxRouter.from_config(fleet.nginx.router_config(), broken)

    with pytest.raises(ProviderError) as exc:
        bad_router.apply(TrafficTable({"blue": 50, "green": 50}))

    assert "nginx -t failed" in str(exc.value)
    assert "host not found in upstream" in str(exc.value)
    assert fleet.nginx.upstream_file.read_text() == live_before
    assert leftovers(fleet.nginx.upstream_file.parent) == []
    assert leftovers(fleet.nginx.prefix) == []
    served = LoadGenerator(fleet.nginx.url).run(count=200)
    assert served.failed == 0
    assert served.versions == {"1.0.0": 180, "2.0.0": 20}  # still the old 90/10


def test_bad_render_is_refused_before_any_file_is_written(fleet: Fleet) -> None:
    live_before = fleet.nginx.upstream_file.read_text()
    table = TrafficTable({"blue": 100, "green": 0})
    evil = [InstanceRef("blue-1", "127.0.0.1:80; server evil:1", "blue"), *fleet.instances[1:]]
    with pytest.raises(ProviderError, match="blue-1: bad address"):
        NginxRouter.from_config(fleet.nginx.router_config(), evil).apply(table)
    evil = [InstanceRef("blue-1", "http://evil{x}:80", "blue"), *fleet.instances[1:]]
    with pytest.raises(ProviderError, match="blue-1: cannot route to address"):
        NginxRouter.from_config(fleet.nginx.router_config(), evil).apply(table)
    with pytest.raises(ProviderError, match="slot green should get 50% but has no live instance"):
        fleet.router().apply(TrafficTable({"blue": 50, "green": 50}, drained=frozenset({"green-1"})))
    assert fleet.nginx.upstream_file.read_text() == live_before
    assert LoadGenerator(fleet.nginx.url).run(count=50).versions == {"1.0.0": 50}


def test_failed_reload_puts_the_previous_file_back(fleet: Fleet) -> None:
    live_before = fleet.nginx.upstream_file.read_text()
    router = fleet.router(reload_command=["sh", "-c", "echo 'signal process started: no pid' >&2; exit 1"])
    with pytest.raises(ProviderError, match=r"reload failed .*no pid"):
        router.apply(TrafficTable({"blue": 0, "green": 100}))
    assert fleet.nginx.upstream_file.read_text() == live_before
    assert fleet.router().observe() == TrafficTable({"blue": 100, "green": 0})


def test_apply_waits_until_nginx_serves_the_new_generation(fleet: Fleet) -> None:
    # A verify URL that never shows the new generation: apply must not report success.
    other = fleet.apps["blue-1"].url + "/version"
    router = fleet.router(verify_url=other, verify_timeout=0.3)
    with pytest.raises(ProviderError, match="did not pick up upstream generation"):
        router.apply(TrafficTable({"blue": 50, "green": 50}))


def test_apply_is_idempotent_and_does_not_rewrite_an_unchanged_file(fleet: Fleet) -> None:
    router = fleet.router()
    table = TrafficTable({"blue": 50, "green": 50})
    router.apply(table)
    stamp = os.stat(fleet.nginx.upstream_file).st_mtime_ns
    # A second apply with a reload that would fail proves no reload is attempted either.
    fleet.router(reload_command=["false"]).apply(table)
    assert os.stat(fleet.nginx.upstream_file).st_mtime_ns == stamp


def test_drained_instance_receives_no_traffic() -> None:
    require_nginx()
    fleet = Fleet(blue=2, green=1)
    try:
        router = fleet.router()
        router.apply(TrafficTable({"blue": 100, "green": 0}, drained=frozenset({"blue-2"})))
        assert router.observe() == TrafficTable({"blue": 100, "green": 0}, drained=frozenset({"blue-2"}))
        before = {name: app.requests_served for name, app in fleet.apps.items()}

        result = LoadGenerator(fleet.nginx.url).run(count=300)

        assert result.failed == 0
        served = {name: app.requests_served - before[name] for name, app in fleet.apps.items()}
        assert served == {"blue-1": 300, "blue-2": 0, "green-1": 0}
    finally:
        fleet.stop()


@pytest.mark.parametrize("keepalive", [False, True], ids=["new-connections", "keepalive-clients"])
def test_reloads_under_load_drop_no_requests(fleet: Fleet, keepalive: bool) -> None:
    router = fleet.router()
    load = LoadGenerator(fleet.nginx.url, threads=4, keepalive=keepalive).start()
    try:
        for i in range(20):
            canary = (10, 50, 90, 0)[i % 4]
            router.apply(TrafficTable({"blue": 100 - canary, "green": canary}))
    finally:
        result = load.stop()
    assert result.sent > 200
    assert result.failed == 0, result.errors
    assert set(result.versions) == {"1.0.0", "2.0.0"}


def test_test_config_follows_glob_and_nested_includes(tmp_path: Path) -> None:
    """The candidate replaces the live file wherever the main config reaches it."""
    nginx = require_nginx()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "upstreams").mkdir()
    upstream = tmp_path / "upstreams" / "app.conf"
    instances = [InstanceRef("blue-1", "http://127.0.0.1:9001", "blue")]
    upstream.write_text(render_upstream("app", TrafficTable({"blue": 100}), instances))
    (tmp_path / "conf.d" / "site.conf").write_text(
        "include upstreams/../upstreams/app.conf;  # relative to the config prefix\n"
        "\nserver { listen 127.0.0.1:1; location / { proxy_pass http://app; } }\n"
    )
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n  # include upstreams/app.conf;  (a comment is not an include)\n"
        "  include conf.d/*.conf;\n}\n"
    )
    config = {
        "upstream_file": str(upstream),
        "upstream_name": "app",
        "main_config": str(tmp_path / "nginx.conf"),
        "nginx": nginx,
        "reload_command": ["true"],
    }
    router = NginxRouter.from_config(config, instances)
    router.apply(TrafficTable({"blue": 100}, drained=frozenset()))  # no-op: unchanged
    bad = [*instances, InstanceRef("blue-2", "http://no-such-host.invalid:1", "blue")]
    with pytest.raises(ProviderError, match="host not found"):
        NginxRouter.from_config(config, bad).apply(TrafficTable({"blue": 100}))
    good = [*instances, InstanceRef("blue-2", "http://127.0.0.1:9002", "blue")]
    NginxRouter.from_config(config, good).apply(TrafficTable({"blue": 100}, drained=frozenset({"blue-1"})))
    assert [s[:2] for s in parse_upstream(upstream.read_text(), "app")] == [
        ("127.0.0.1:9001", 0),
        ("127.0.0.1:9002", 1),
    ]
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []

    (tmp_path / "conf.d" / "site.conf").write_text("server { listen 127.0.0.1:1; }\n")
    with pytest.raises(ProviderError, match="does not include"):
        NginxRouter.from_config(config, good).apply(TrafficTable({"blue": 100}, frozenset({"blue-2"})))


def test_a_slot_missing_from_the_table_gets_no_traffic(fleet: Fleet) -> None:
    router = fleet.router()
    router.apply(TrafficTable({"green": 100}))
    assert router.observe() == TrafficTable({"green": 100})
    assert LoadGenerator(fleet.nginx.url).run(count=50).versions == {"2.0.0": 50}


def test_rolling_table_gives_every_live_instance_equal_weight() -> None:
    instances = [InstanceRef(f"web-{n}", f"http://127.0.0.1:{9000 + n}") for n in range(1, 4)]
    text = render_upstream("web", TrafficTable({}, drained=frozenset({"web-2"})), instances)
    assert [s[:2] for s in parse_upstream(text, "web")] == [
        ("127.0.0.1:9001", 1),
        ("127.0.0.1:9002", 0),
        ("127.0.0.1:9003", 1),
    ]
    with pytest.raises(ProviderError, match="every instance is drained"):
        render_upstream("web", TrafficTable({}, drained=frozenset(i.name for i in instances)), instances)


@given(
    canary=st.integers(min_value=0, max_value=100),
    blue=st.integers(min_value=1, max_value=7),
    green=st.integers(min_value=1, max_value=7),
    drained_blue=st.integers(min_value=0, max_value=6),
)
def test_slot_shares_are_exact_for_any_weight_and_instance_count(
    canary: int, blue: int, green: int, drained_blue: int
) -> None:
    drained_blue = min(drained_blue, blue - 1)
    instances = [InstanceRef(f"blue-{n}", f"http://127.0.0.1:{9100 + n}", "blue") for n in range(blue)]
    instances += [InstanceRef(f"green-{n}", f"http://127.0.0.1:{9200 + n}", "green") for n in range(green)]
    drained = frozenset(f"blue-{n}" for n in range(drained_blue))
    table = TrafficTable({"blue": 100 - canary, "green": canary}, drained=drained)

    planned = plan_weights(table, instances)

    total = sum(w for _, w, _ in planned)
    green_weight = sum(w for i, w, _ in planned if i.slot == "green")
    assert green_weight * 100 == canary * total  # exact, not approximately
    assert all(w == 0 for i, w, _ in planned if i.name in drained)
    live_blue = {w for i, w, _ in planned if i.slot == "blue" and i.name not in drained}
    assert len(live_blue) == 1  # instances of a slot share its percent equally
    assert all(w >= 1 for i, w, _ in planned if i.name not in drained and table.weights[i.slot or ""] > 0)


def test_build_router_makes_an_nginx_router_from_the_environment_json(fleet: Fleet) -> None:
    router = build_router(fleet.nginx.router_config(), fleet.instances)
    assert isinstance(router, NginxRouter)
    router.apply(TrafficTable({"blue": 50, "green": 50}))
    assert router.observe() == TrafficTable({"blue": 50, "green": 50})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"upstream_file": None}, "upstream_file"),
        ({"upstream_file": "relative/app.conf"}, "upstream_file"),
        ({"upstream_name": "app; evil"}, "upstream_name"),
        ({"reload_command": "nginx -s reload"}, "reload_command"),
        ({"verify_url": "ftp://x"}, "verify_url"),
        ({"test_command": ["nginx", "-t"]}, "test_command"),
        ({"verify_timeout": 0}, "verify_timeout"),
        ({"server_options": "max_fails=1; }"}, "server_options"),
        ({"upstream": "typo"}, "upstream"),
    ],
)
def test_bad_configuration_names_the_field(change: dict[str, object], field: str) -> None:
    config: dict[str, object] = {
        "type": "nginx",
        "upstream_file": "/etc/nginx/upstreams/app.conf",
        "upstream_name": "app",
        "main_config": "/etc/nginx/nginx.conf",
    }
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ProviderConfigError) as exc:
        build_router(config, [])
    assert exc.value.field == field


def test_drain_is_pending_until_in_flight_requests_to_the_drained_instance_finish() -> None:
    require_nginx()
    with Fleet(blue=2, green=1) as fleet:
        router = fleet.router()
        router.apply(TrafficTable({"blue": 100, "green": 0}, drained=frozenset({"blue-1"})))
        slow = fleet.apps["blue-2"]
        slow.latency_ms = 1500
        in_flight = LoadGenerator(fleet.nginx.url, threads=1).start(count=1)
        wait_for(lambda: slow.requests_served == 1, timeout=5, interval=0.02)

        table = TrafficTable({"blue": 100, "green": 0}, drained=frozenset({"blue-2"}))
        router.apply(table)

        assert router.drain_pending(table) == frozenset({"blue-2"})
        assert LoadGenerator(fleet.nginx.url).run(count=20).versions == {"1.0.0": 20}
        assert slow.requests_served == 1  # nothing new reaches the drained instance
        result = in_flight.stop()
        assert (result.ok, result.failed) == (1, 0)  # the in-flight request finished normally
        wait_for(lambda: router.drain_complete(table), timeout=5, interval=0.05)


def test_first_apply_creates_the_upstream_file_a_glob_include_will_pick_up(tmp_path: Path) -> None:
    nginx = require_nginx()
    (tmp_path / "upstreams").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        "http {\n  include upstreams/*.conf;\n"
        "  server { listen 127.0.0.1:1; location / { proxy_pass http://app; } }\n}\n"
    )
    upstream = tmp_path / "upstreams" / "app.conf"
    config = {
        "upstream_file": str(upstream),
        "upstream_name": "app",
        "main_config": str(tmp_path / "nginx.conf"),
        "nginx": nginx,
        "reload_command": ["true"],
    }
    router = NginxRouter.from_config(config, [InstanceRef("web-1", "http://127.0.0.1:9001")])
    with pytest.raises(ProviderError, match="does not exist"):
        router.observe()

    router.apply(TrafficTable({}))

    assert upstream.exists()
    assert router.observe() == TrafficTable({})
