"""Shared fixtures: API clients per role and real processes (Celery worker, Redis)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    # Throttle counters live in the cache; every test starts with a clean allowance.
    cache.clear()
    yield


def make_user(username: str, role: str) -> Any:
    from django.contrib.auth import get_user_model

    from controlplane.roles import Role, set_role

    user, _ = get_user_model().objects.get_or_create(username=username)
    set_role(user, Role.parse(role))
    return user


@pytest.fixture
def api(db: Any) -> Callable[..., APIClient]:
    """``api("operator")`` -> an APIClient authenticated with a fresh token of that role."""
    from controlplane.tokens import token_create

    def factory(role: str = "operator", username: str | None = None) -> APIClient:
        user = make_user(username or f"{role}-{uuid.uuid4().hex[:6]}", role)
        _, key = token_create(user=user, name="test")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        client.user = user  # type: ignore[attr-defined]
        return client

    return factory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url_for_children() -> str:
    """A DATABASE_URL pointing child processes at the test database pytest-django created."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_children()
    env.update(extra)
    return env


class WorkerProcess:
    """A real ``celery worker`` subprocess on a private queue."""

    def __init__(self, queue: str, broker_url: str, log_path: Path) -> None:
        self.queue = queue
        self.broker_url = broker_url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, concurrency: int = 1, hostname: str | None = None) -> WorkerProcess:
        env = child_env(
            CELERY_BROKER_URL=self.broker_url,
            CELERY_TASK_DEFAULT_QUEUE=self.queue,
            LOG_LEVEL="INFO",
        )
        name = hostname or f"test-{uuid.uuid4().hex[:8]}@%h"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "controlplane",
                "worker",
                "-Q",
                self.queue,
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "-n",
                name,
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (main process and pool children), like a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def celery_worker_factory(transactional_db: Any, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes bound to the test database and a private queue.

    The test process's Celery app is pointed at the same queue, so ``task.delay()``
    from the test reaches these workers only.
    """
    from controlplane.celery import app

    queue = f"test-{uuid.uuid4().hex[:8]}"
    old_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    workers: list[WorkerProcess] = []

    def factory(*, broker_url: str | None = None, concurrency: int = 1) -> WorkerProcess:
        url = broker_url or settings.CELERY_BROKER_URL
        worker = WorkerProcess(queue, url, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker.start(concurrency=concurrency)

    yield factory
    for worker in workers:
        worker.stop()
    app.conf.task_default_queue = old_queue


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class RedisServer:
    """A private ``redis-server`` on its own port (so the shared one keeps serving)."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=10)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
