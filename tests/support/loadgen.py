"""A bounded load generator: threads sending GETs to a loopback URL, recording every outcome.

By default each request opens its own connection (``Connection: close``); every connection
error, timeout or 5xx is a failure. With ``keepalive=True`` each thread reuses one
connection, and a request that fails on a *reused* connection before any response arrived is
retried once on a fresh one (what browsers and HTTP client libraries do for idempotent
requests when a server closes an idle keep-alive connection, as nginx workers do on reload);
those retries are counted in ``retried``, and only a failure of the retry is a failure.
Bounded by a request count or a duration, or run in the background (``start()`` /
``stop()``) while a test changes the load balancer.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import threading
import time
from urllib.parse import urlsplit


@dataclasses.dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    versions: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    errors: list[str] = dataclasses.field(default_factory=list)
    retried: int = 0
    seconds: float = 0.0
    # (monotonic time, status or 0 for a connection error, version) for each request, in order
    log: list[tuple[float, int, str]] = dataclasses.field(default_factory=list)

    def share(self, version: str) -> float:
        """Fraction of successful responses that came from ``version``."""
        return self.versions[version] / self.ok if self.ok else 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class LoadGenerator:
    def __init__(
        self,
        url: str,
        *,
        threads: int = 4,
        version_header: str = "X-Version",
        timeout: float = 5.0,
        max_errors_kept: int = 20,
        keepalive: bool = False,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.threads = threads
        self.version_header = version_header
        self.timeout = timeout
        self.max_errors_kept = max_errors_kept
        self.keepalive = keepalive
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._remaining: int | None = None
        self._started = 0.0

    def run(self, *, count: int | None = None, duration: float | None = None) -> LoadResult:
        """Send ``count`` requests, or for ``duration`` seconds, then return the totals."""
        if count is None and duration is None:
            raise ValueError("bound the load: give count or duration")
        self.start(count=count)
        if duration is not None:
            self._stop.wait(duration)
            return self.stop()
        for t in self._workers:
            t.join()
        return self.stop()

    def start(self, *, count: int | None = None) -> LoadGenerator:
        self._remaining = count
        self._started = time.monotonic()
        self._workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout + 5)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def _claim(self) -> bool:
        if self._stop.is_set():
            return False
        with self._lock:
            if self._remaining is None:
                return True
            if self._remaining <= 0:
                return False
            self._remaining -= 1
            return True

    def _loop(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while self._claim():
            if self.keepalive:
                conn, status, version, error, retried = self._reusing(conn)
            else:
                (status, version, error), retried = self._one(), False
            with self._lock:
                r = self.result
                r.sent += 1
                r.retried += retried
                r.log.append((time.monotonic(), status, version))
                if error is None and status < 500:
                    r.ok += 1
                    r.statuses[status] += 1
                    if version:
                        r.versions[version] += 1
                else:
                    r.failed += 1
                    if status:
                        r.statuses[status] += 1
                    if len(r.errors) < self.max_errors_kept:
                        r.errors.append(error or f"HTTP {status}")

        if conn is not None:
            conn.close()

    def _reusing(
        self, conn: http.client.HTTPConnection | None
    ) -> tuple[http.client.HTTPConnection | None, int, str, str | None, bool]:
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path)
            resp = conn.getresponse()
            resp.read()
            keep = conn if not resp.will_close else None
            if keep is None:
                conn.close()
            return keep, resp.status, resp.getheader(self.version_header) or "", None, False
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
            conn.close()
            if not reused:
                return None, 0, "", f"{type(exc).__name__}: {exc}", False
            status, version, error = self._one()  # the server closed an idle connection: retry once
            return None, status, version, error, True
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            return None, 0, "", f"{type(exc).__name__}: {exc}", False

    def _one(self) -> tuple[int, str, str | None]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            return resp.status, resp.getheader(self.version_header) or "", None
        except (OSError, http.client.HTTPException) as exc:
            return 0, "", f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
