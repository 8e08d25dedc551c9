"""A tiny threaded HTTP server that plays one instance of a deployed service.

Tests use it in-process (``with InstanceApp(version="1.0.0") as app: app.url``) or as a
process (``python -m deployments.demo.instance_app --port P --version V --fail-rate X``), so the
engine, providers and routers suites can put real HTTP behind an instance address.

Endpoints:
- ``GET /health``   200 ``{"status": "healthy", "version": V}``, or 503 when made unhealthy.
- ``GET /redirect`` 302 to /health (a health path that redirects is not healthy).
- ``GET /metrics``  Prometheus text: ``app_http_requests_total{code,version,slot}`` counters,
                    ``app_http_request_duration_ms_sum``/``_count`` and ``app_info``.
- ``POST /deploy``  a deploy agent: JSON ``{"release": {"version": ...}}`` (or ``{"version": ...}``)
                    switches the served version; every request body is kept in ``deploys``.
- ``POST /control`` changes behaviour at runtime: JSON with any of ``version``, ``fail_rate``,
                    ``latency_ms``, ``healthy``, ``deploy_status`` (for process mode).
- anything else     the "application": 200 ``V`` after ``latency_ms``, or 500 at ``fail_rate``.

Failures are deterministic: with ``fail_rate=0.25`` exactly every fourth request fails, so
measured error rates are exact and tests are not flaky.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: InstanceApp

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) is expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class InstanceApp:
    """One fake instance; all attributes may be changed while it serves."""

    def __init__(
        self,
        *,
        version: str = "1.0.0",
        fail_rate: float = 0.0,
        latency_ms: float = 0.0,
        healthy: bool = True,
        slot: str = "",
        port: int = 0,
        host: str = "127.0.0.1",
        deploy_status: int = 202,
    ) -> None:
        self.version = version
        self.fail_rate = fail_rate
        self.latency_ms = latency_ms
        self.healthy = healthy
        self.slot = slot
        self.deploy_status = deploy_status
        self.deploys: list[dict[str, Any]] = []
        self.health_checks = 0
        self._lock = threading.Lock()
        self._served = 0  # application requests, drives the deterministic failure pattern
        self._counts: dict[tuple[int, str], int] = {}
        self._duration_sum_ms = 0.0
        self.in_flight = 0
        self.max_in_flight = 0  # most application requests served at once
        self._server = _Server((host, port), _Handler)
        self._server.app = self
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InstanceApp:
        # A short poll interval: stop() (shutdown) returns within 50 ms instead of 500 ms.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> InstanceApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------------------------

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._served

    def next_fails(self) -> bool:
        """Count one application request; True when it must fail (exactly ``fail_rate`` of them)."""
        with self._lock:
            n = self._served
            self._served += 1
            rate = min(max(self.fail_rate, 0.0), 1.0)
            return math.floor((n + 1) * rate + 1e-9) > math.floor(n * rate + 1e-9)

    def record(self, code: int, version: str, duration_ms: float) -> None:
        with self._lock:
            key = (code, version)
            self._counts[key] = self._counts.get(key, 0) + 1
            self._duration_sum_ms += duration_ms

    def control(self, changes: dict[str, Any]) -> None:
        for key in ("version", "fail_rate", "latency_ms", "healthy", "deploy_status", "slot"):
            if key in changes:
                setattr(self, key, changes[key])

    def metrics_text(self) -> str:
        with self._lock:
            counts = dict(self._counts)
            total = sum(counts.values())
            duration_sum = self._duration_sum_ms
        slot = self.slot
        lines = [
            "# HELP app_http_requests_total Application requests served.",
            "# TYPE app_http_requests_total counter",
        ]
        # Always expose both codes for the current version, so ratios have a denominator.
        counts.setdefault((200, self.version), 0)
        counts.setdefault((500, self.version), 0)
        for (code, version), n in sorted(counts.items()):
            lines.append(f'app_http_requests_total{{code="{code}",version="{version}",slot="{slot}"}} {n}')
        lines += [
            "# TYPE app_http_request_duration_ms summary",
            f'app_http_request_duration_ms_sum{{slot="{slot}"}} {duration_sum}',
            f'app_http_request_duration_ms_count{{slot="{slot}"}} {total}',
            "# TYPE app_info gauge",
            f'app_info{{version="{self.version}",slot="{slot}"}} 1',
        ]
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add
    # ~40 ms to keep-alive responses and latency measurements would measure the kernel.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read behaviour, not access logs

    @property
    def app(self) -> InstanceApp:
        return self.server.app

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, payload: Any) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return None

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.app
        if path == "/health":
            with app._lock:
                app.health_checks += 1
            if app.latency_ms:
                time.sleep(app.latency_ms / 1000)
            if app.healthy:
                self._json(200, {"status": "healthy", "version": app.version})
            else:
                self._json(503, {"status": "unhealthy", "version": app.version})
            return
        if path == "/metrics":
            self._send(200, app.metrics_text().encode(), "text/plain; version=0.0.4")
            return
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._serve_app()

    def do_HEAD(self) -> None:
        self._serve_app()

    def _serve_app(self) -> None:
        app = self.app
        started = time.perf_counter()
        fails = app.next_fails()
        with app._lock:
            app.in_flight += 1
            app.max_in_flight = max(app.max_in_flight, app.in_flight)
        try:
            if app.latency_ms:
                time.sleep(app.latency_ms / 1000)
        finally:
            with app._lock:
                app.in_flight -= 1
        version = app.version
        code = 500 if fails else 200
        app.record(code, version, (time.perf_counter() - started) * 1000)
        body = b"internal error\n" if fails else f"{version}\n".encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Version", version)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.app
        body = self._body()
        if path == "/deploy":
            if not isinstance(body, dict):
                self._json(400, {"error": "expected a JSON object"})
                return
            app.deploys.append({"body": body, "headers": dict(self.headers.items())})
            status = app.deploy_status
            if 200 <= status < 300:
                release = body.get("release")
                new_version = (release.get("version") if isinstance(release, dict) else None) or body.get(
                    "version"
                )
                if new_version:
                    app.version = str(new_version)
            self._json(status, {"accepted": 200 <= status < 300, "version": app.version})
            return
        if path == "/control":
            if not isinstance(body, dict):
                self._json(400, {"error": "expected a JSON object"})
                return
            app.control(body)
            self._json(200, {"ok": True})
            return
        self._serve_app()


class InstanceProcess:
    """``python -m deployments.demo.instance_app`` as a child process (killable like a real instance)."""

    def __init__(
        self,
        *,
        version: str = "1.0.0",
        fail_rate: float = 0.0,
        latency_ms: float = 0.0,
        slot: str = "",
        port: int = 0,
        healthy: bool = True,
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "deployments.demo.instance_app",
            "--port",
            str(port),
            "--version",
            version,
            "--fail-rate",
            str(fail_rate),
            "--latency-ms",
            str(latency_ms),
            "--slot",
            slot,
        ]
        if not healthy:
            argv.append("--unhealthy")
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, text=True)  # noqa: S603 - fixed argv
        assert self.proc.stdout is not None  # noqa: S101 - stdout=PIPE
        line = self.proc.stdout.readline()  # blocks until the server is bound
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"instance_app did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])

    def control(self, **changes: Any) -> None:
        """Change behaviour of the running process (version, fail_rate, latency_ms, healthy, ...)."""
        requests.post(f"{self.url}/control", json=changes, timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> InstanceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Play one instance of a service on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--slot", default="")
    parser.add_argument("--unhealthy", action="store_true")
    args = parser.parse_args(argv)
    app = InstanceApp(
        version=args.version,
        fail_rate=args.fail_rate,
        latency_ms=args.latency_ms,
        healthy=not args.unhealthy,
        slot=args.slot,
        port=args.port,
        host=args.host,
    )
    # The readiness line: parents wait for it (and learn the port when --port 0).
    print(f"listening on {app.url}", flush=True)
    try:
        app._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app._server.server_close()


if __name__ == "__main__":
    main(sys.argv[1:])
