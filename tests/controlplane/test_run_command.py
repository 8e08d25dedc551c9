"""The README's run command: embedded defaults, admin + API docs served, Ctrl-C stops all."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import requests

from tests.conftest import ROOT, free_port, wait_for


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=2)
    except requests.RequestException:
        return None


def test_run_script_serves_admin_and_docs_on_embedded_defaults_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CACHE_URL", "CONTROLPLANE_TESTING")
    }
    env.update(
        CONTROLPLANE_DATA_DIR=str(tmp_path / "data"), PORT=str(port), HEALTH_WORKER_MAX_AGE_SECONDS="60"
    )
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "run.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        login = wait_for(lambda: (r := _get(f"{base}/admin/login/")) is not None and r.ok and r, timeout=120)
        assert "Control plane" in login.text
        docs = _get(f"{base}/api/docs/")
        assert docs is not None and docs.status_code == 200 and "swagger" in docs.text.lower()
        # The worker (filesystem broker) and beat run: the beat-scheduled task reaches the worker.
        health = wait_for(
            lambda: (
                (r := _get(f"{base}/health")) is not None
                and r.json()["checks"]["workers"].get("scheduler_ok")
                and r
            ),
            timeout=90,
        )
        body = health.json()
        assert body["status"] == "healthy", body
        assert body["checks"]["database"]["vendor"] == "sqlite"
        output = Path(log.name).read_text()
        assert re.search(r"Admin user: admin", output)
        assert f"{base}/admin/" in output and f"{base}/api/docs/" in output
        with sqlite3.connect(tmp_path / "data" / "controlplane.sqlite3") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is persistent
        assert len(_session_pids(proc.pid)) >= 4  # bash, gunicorn, worker, beat (and their children)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the script
        try:
            proc.wait(timeout=60)
        finally:
            deadline = time.monotonic() + 30
            while _session_pids(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            leftovers = _session_pids(proc.pid)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "processes survived Ctrl-C"
