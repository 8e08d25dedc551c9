"""The example nginx configuration in ops/nginx/ is valid and matches what the router writes."""

from __future__ import annotations

from pathlib import Path

from deployments.providers.base import InstanceRef, TrafficTable
from deployments.providers.nginx import NginxRouter, render_upstream
from tests.support.nginx import require_nginx

OPS = Path(__file__).resolve().parents[2] / "ops" / "nginx"
LIVE_UPSTREAM = "/etc/nginx/controlplane/upstreams/noodle_production.conf"


def test_example_upstream_is_what_the_router_renders() -> None:
    instances = [
        InstanceRef("noodle-blue-1", "http://10.0.1.11:3000", "blue"),
        InstanceRef("noodle-blue-2", "http://10.0.1.12:3000", "blue"),
        InstanceRef("noodle-green-1", "http://10.0.2.21:3000", "green"),
        InstanceRef("noodle-green-2", "http://10.0.2.22:3000", "green"),
    ]
    table = TrafficTable({"blue": 90, "green": 10}, drained=frozenset({"noodle-green-2"}))
    example = (OPS / "upstreams" / "noodle_production.conf").read_text()
    assert example.split("\n", 1)[1] == render_upstream("noodle_production", table, instances)


def test_example_server_configs_pass_nginx_t_and_the_router_can_drive_them(tmp_path: Path) -> None:
    nginx = require_nginx()
    upstream = tmp_path / "noodle_production.conf"
    upstream.write_text((OPS / "upstreams" / "noodle_production.conf").read_text())
    (tmp_path / "noodle.conf").write_text(
        (OPS / "noodle.conf").read_text().replace(LIVE_UPSTREAM, str(upstream))
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  include {OPS}/controlplane.conf;\n  include {tmp_path}/noodle.conf;\n}}\n"
    )
    config = {
        "type": "nginx",
        "upstream_file": str(upstream),
        "upstream_name": "noodle_production",
        "main_config": str(main),
        "nginx": nginx,
        "reload_command": ["true"],  # no running nginx here: `nginx -t` is the point
    }
    instances = [
        InstanceRef("noodle-blue-1", "http://10.0.1.11:3000", "blue"),
        InstanceRef("noodle-green-1", "http://10.0.2.21:3000", "green"),
    ]
    router = NginxRouter.from_config(config, instances)
    router.apply(TrafficTable({"blue": 50, "green": 50}))
    assert router.observe() == TrafficTable({"blue": 50, "green": 50})
