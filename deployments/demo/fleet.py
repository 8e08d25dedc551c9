"""A demo fleet on loopback: sample instances in two slots, behind a private nginx when installed.

``manage.py demo_fleet`` (``DEMO=1 ./scripts/run.sh``) runs it. Everything lives under
``DATA_DIR/demo`` (pid files, nginx prefix). The service ``demo`` gets an environment
``demo/production`` whose deployer is the ``command`` deployer restarting an instance process on
the new version (``deployments/demo/restart_instance.py``), and the releases ``1.0.0``,
``1.1.0`` and ``bad`` (its instances answer every request with a 500, so a canary of it is
rolled back automatically by analysis).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.db import transaction

from deployments.demo import restart_instance
from deployments.models import Environment, Instance, Release, Service
from deployments.providers.base import InstanceRef, TrafficTable
from deployments.providers.nginx import render_upstream

UPSTREAM = "demo_production"
VERSIONS = ("1.0.0", "1.1.0", "bad")
FAILING = "bad"
SLOTS = (("blue", 2), ("green", 2))
VERIFY_PATH = "/__controlplane/upstream"


def find_nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nginx_conf(prefix: Path, port: int, upstream_file: Path, upstream: str, extra_http: str = "") -> str:
    """A self-contained nginx.conf: its own pid, logs and temp paths under ``prefix``, loopback only."""
    user = ""
    if os.geteuid() == 0:  # workers drop to nobody; without root nginx ignores the directive
        import grp
        import pwd

        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    p = prefix
    return f"""{user}
worker_processes 1;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    include {upstream_file};
    {extra_http}
    server {{
        listen 127.0.0.1:{port};
        location = {VERIFY_PATH} {{
            add_header X-Controlplane-Generation $controlplane_{upstream}_generation always;
            return 200 "$controlplane_{upstream}_generation";
        }}
        location / {{
            proxy_pass http://{upstream};
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""


class DemoFleet:
    def __init__(self, data_dir: Path, *, port: int = 8080, use_nginx: bool = True) -> None:
        self.root = data_dir / "demo"
        self.pids = self.root / "pids"
        self.prefix = self.root / "nginx"
        self.port = port
        self.nginx_binary = find_nginx() if use_nginx else None
        self.nginx: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.nginx else None

    def start(self) -> Environment:
        self.pids.mkdir(parents=True, exist_ok=True)
        restart_instance.stop_all(self.pids)  # left over from a run that was killed
        env = self._environment()
        refs: list[InstanceRef] = []
        for instance in Instance.objects.filter(environment=env).select_related("release").order_by("name"):
            version = instance.release.version if instance.release else VERSIONS[0]
            url = restart_instance.start(
                self.pids,
                instance.name,
                free_port(),
                instance.slot,
                version,
                fail_rate=1.0 if version == FAILING else 0.0,
            )
            instance.address = url
            instance.save(update_fields=["address"])
            refs.append(
                InstanceRef(name=instance.name, address=url, slot=instance.slot or None, version=version)
            )
        table = TrafficTable(
            weights=dict((env.traffic or {}).get("weights") or {"blue": 100, "green": 0}),
        )
        if self.nginx_binary:
            self._start_nginx(table, refs)
            env.router = self._router_config()
        else:
            env.router = {"type": "static", "applied": table.as_dict()}
        env.traffic = table.as_dict()
        env.save(update_fields=["router", "traffic"])
        return env

    def stop(self) -> None:
        if self.nginx and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        restart_instance.stop_all(self.pids)

    # -- pieces ----------------------------------------------------------------------------------

    @transaction.atomic
    def _environment(self) -> Environment:
        service, _ = Service.objects.get_or_create(slug="demo", defaults={"name": "Demo"})
        releases = {
            v: Release.objects.get_or_create(
                service=service,
                version=v,
                defaults={
                    "artifact": f"demo/app:{v}",
                    "notes": "answers every request with a 500" if v == FAILING else "",
                },
            )[0]
            for v in VERSIONS
        }
        env, _ = Environment.objects.get_or_create(
            service=service,
            slug="production",
            defaults={"live_slot": "blue", "current_release": releases[VERSIONS[0]]},
        )
        env.deployer = {
            "type": "command",
            "argv": [
                sys.executable,
                "-m",
                "deployments.demo.restart_instance",
                "--state-dir",
                str(self.pids),
                "--instance",
                "{instance}",
                "--address",
                "{address}",
                "--slot",
                "{slot}",
                "--version",
                "{version}",
                "--failing",
                FAILING,
            ],
            "cwd": str(restart_instance.ROOT),
            "timeout": 30000,
        }
        env.health_check = {"path": "/health", "timeout": 2000, "interval": 1000, "healthyThreshold": 1}
        env.metrics = {"type": "http_probe", "requests": 50, "concurrency": 4}
        env.save()
        for slot, count in SLOTS:
            for n in range(1, count + 1):
                Instance.objects.get_or_create(
                    environment=env,
                    name=f"{slot}-{n}",
                    defaults={
                        "slot": slot,
                        "address": "http://127.0.0.1:1",
                        "release": releases[VERSIONS[0]],
                    },
                )
        return env

    def _router_config(self) -> dict[str, Any]:
        return {
            "type": "nginx",
            "upstream_file": str(self.prefix / "upstreams" / f"{UPSTREAM}.conf"),
            "upstream_name": UPSTREAM,
            "main_config": str(self.prefix / "nginx.conf"),
            "nginx": self.nginx_binary,
            "prefix": str(self.prefix),
            "verify_url": f"http://127.0.0.1:{self.port}{VERIFY_PATH}",
            "pid_file": str(self.prefix / "nginx.pid"),
        }

    def _start_nginx(self, table: TrafficTable, refs: list[InstanceRef]) -> None:
        assert self.nginx_binary  # noqa: S101 - checked by the caller
        (self.prefix / "upstreams").mkdir(parents=True, exist_ok=True)
        self.prefix.chmod(0o755)
        upstream_file = self.prefix / "upstreams" / f"{UPSTREAM}.conf"
        upstream_file.write_text(render_upstream(UPSTREAM, table, refs))
        upstream_file.chmod(0o644)
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_conf(self.prefix, self.port, upstream_file, UPSTREAM))
        error_log = str(self.prefix / "error.log")
        self.nginx = subprocess.Popen(  # noqa: S603 - fixed argv
            [self.nginx_binary, "-p", str(self.prefix), "-e", error_log, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.nginx.poll() is not None or time.monotonic() > deadline:
                    log = Path(error_log).read_text(errors="replace") if Path(error_log).exists() else ""
                    self.stop()
                    raise RuntimeError(
                        f"demo nginx did not start on port {self.port}: {log[-2000:]}"
                    ) from None
                time.sleep(0.05)
