"""Restart one loopback instance on a new version: what the ``command`` deployer runs in the e2e suite.

``python -m deployments.demo.restart_instance --state-dir D --instance NAME --address URL --slot S
--version V [--failing VERSION ...] [--latency-ms MS]`` stops the instance process recorded in ``D/NAME.pid``
(SIGTERM, then SIGKILL after 5 s), starts ``python -m deployments.demo.instance_app`` on the same
port with the new version (in its own session, so it outlives this script and the deployer's
process group), waits until it listens, and records its pid. A version named by ``--failing``
answers every application request with a 500 (its health check stays green, as a bad release's
often does), so only analysis catches it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]  # the repository (for -m deployments.demo.instance_app)
_CHILDREN: dict[int, subprocess.Popen[str]] = {}  # started in this process: reaped on stop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours (in-process callers) counts as stopped.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def stop(pid_file: Path, *, grace: float = 5.0) -> None:
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if pid <= 0 or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline += grace
        time.sleep(0.01)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait()


def start(
    state_dir: Path,
    instance: str,
    port: int,
    slot: str,
    version: str,
    *,
    fail_rate: float = 0.0,
    latency_ms: float = 0,
) -> str:
    """Start the instance process; returns its URL once it listens."""
    argv = [
        sys.executable,
        "-m",
        "deployments.demo.instance_app",
        "--port",
        str(port),
        "--version",
        version,
        "--slot",
        slot,
        "--fail-rate",
        str(fail_rate),
        "--latency-ms",
        str(latency_ms),
    ]
    for _attempt in range(50):  # the port may be held a moment by the process just stopped
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None  # noqa: S101 - stdout=PIPE
        line = proc.stdout.readline()
        proc.stdout.close()
        if line.startswith("listening on "):
            (state_dir / f"{instance}.pid").write_text(str(proc.pid))
            _CHILDREN[proc.pid] = proc
            return line.split("listening on ", 1)[1].strip()
        proc.wait()
        time.sleep(0.05)
    raise RuntimeError(f"instance {instance} did not start on port {port}")


def stop_all(state_dir: Path) -> None:
    for pid_file in state_dir.glob("*.pid"):
        stop(pid_file, grace=2.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--slot", default="")
    parser.add_argument("--version", required=True)
    parser.add_argument("--failing", action="append", default=[])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    port = urlsplit(args.address).port
    if port is None:
        print(f"address without a port: {args.address}", file=sys.stderr)
        return 2
    stop(args.state_dir / f"{args.instance}.pid")
    fail_rate = 1.0 if args.version in args.failing else 0.0
    url = start(
        args.state_dir,
        args.instance,
        port,
        args.slot,
        args.version,
        fail_rate=fail_rate,
        latency_ms=args.latency_ms,
    )
    print(f"{args.instance} serves {args.version} on {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
