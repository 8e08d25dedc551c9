"""A private nginx master for tests: its own prefix, config, pid and logs on a free loopback port.

Never touches the system nginx configuration. When the tests run as root, workers drop to
``nobody`` (the prefix is made traversable for them); otherwise the ``user`` directive is left
out, since nginx ignores it without super-user privileges.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.demo.instance_app import InstanceApp
from deployments.providers.base import InstanceRef, TrafficTable
from deployments.providers.nginx import NginxRouter, render_upstream

NGINX = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None
VERIFY_PATH = "/__controlplane/upstream"


def require_nginx() -> str:
    """The nginx binary, or skip the test naming the missing tool (never on CI)."""
    if NGINX:
        return NGINX
    if os.environ.get("CI") == "true":
        pytest.fail("nginx is required on CI (scripts/test.sh installs nginx-light)")
    pytest.skip("nginx is not installed (apt-get install nginx-light)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_directive() -> str:
    if os.geteuid() != 0:
        return ""
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


class NginxServer:
    """``nginx -p PREFIX -c PREFIX/nginx.conf`` in the foreground (``daemon off``)."""

    def __init__(self, *, upstream_name: str = "app", extra_http: str = "") -> None:
        self.binary = require_nginx()
        self.prefix = Path(tempfile.mkdtemp(prefix="cp-nginx-"))
        self.prefix.chmod(0o755)  # workers (nobody) traverse it to reach nothing but temp dirs
        (self.prefix / "upstreams").mkdir()
        self.upstream_name = upstream_name
        self.upstream_file = self.prefix / "upstreams" / f"{upstream_name}.conf"
        self.conf = self.prefix / "nginx.conf"
        self.port = _free_port()
        self.extra_http = extra_http
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def verify_url(self) -> str:
        return f"{self.url}{VERIFY_PATH}"

    def router_config(self, **overrides: Any) -> dict[str, Any]:
        """The environment's router JSON for an NginxRouter driving this server."""
        config: dict[str, Any] = {
            "type": "nginx",
            "upstream_file": str(self.upstream_file),
            "upstream_name": self.upstream_name,
            "main_config": str(self.conf),
            "nginx": self.binary,
            "prefix": str(self.prefix),
            "verify_url": self.verify_url,
            "pid_file": str(self.prefix / "nginx.pid"),
            "verify_timeout": 10,
        }
        config.update(overrides)
        return config

    def write_conf(self) -> None:
        p = self.prefix
        self.conf.write_text(
            f"""{_user_directive()}
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
    include {self.upstream_file};
    {self.extra_http}
    server {{
        listen 127.0.0.1:{self.port};
        location = {VERIFY_PATH} {{
            add_header X-Controlplane-Generation $controlplane_{self.upstream_name}_generation always;
            return 200 "$controlplane_{self.upstream_name}_generation";
        }}
        location / {{
            proxy_pass http://{self.upstream_name};
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""
        )

    def start(self, upstream_text: str) -> NginxServer:
        self.upstream_file.write_text(upstream_text)
        self.upstream_file.chmod(0o644)
        self.write_conf()
        self.proc = subprocess.Popen(
            # -e: the startup error log too, so a non-root run never touches /var/log/nginx.
            [self.binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {err}{self.error_log()}") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: what a real shutdown does
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.prefix, ignore_errors=True)

    def __enter__(self) -> NginxServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NginxFleet:
    """Two slots of instance apps behind a private nginx, and a router driving it."""

    def __init__(self, blue: int = 1, green: int = 1) -> None:
        self.apps: dict[str, InstanceApp] = {}
        self.instances: list[InstanceRef] = []
        self.nginx = NginxServer(upstream_name="app")
        try:
            self._start(blue, green)
        except BaseException:
            self.stop()
            raise

    def _start(self, blue: int, green: int) -> None:
        for slot, count, version in (("blue", blue, "1.0.0"), ("green", green, "2.0.0")):
            for n in range(1, count + 1):
                name = f"{slot}-{n}"
                app = InstanceApp(version=version, slot=slot).start()
                self.apps[name] = app
                self.instances.append(InstanceRef(name=name, address=app.url, slot=slot, version=version))
        self.nginx.start(render_upstream("app", TrafficTable({"blue": 100, "green": 0}), self.instances))

    def __enter__(self) -> NginxFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def router(self, **overrides: object) -> NginxRouter:
        return NginxRouter.from_config(self.nginx.router_config(**overrides), self.instances)

    def stop(self) -> None:
        self.nginx.stop()
        for app in self.apps.values():
            app.stop()
