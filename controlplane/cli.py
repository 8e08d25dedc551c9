"""``cpctl``: a pipeline-friendly client that speaks only the REST API.

Configuration comes from the environment: ``CPCTL_URL`` (default
``http://127.0.0.1:8000``) and ``CPCTL_TOKEN`` (an API token). ``cpctl status ID
--watch`` exits 0 only when the deployment succeeded, so a CI job can block on
it, like ``kubectl argo rollouts status``.

Exit codes: 0 success, 1 the deployment ended unsuccessfully, 2 usage or API
error, 3 timed out while watching.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
TERMINAL_OK = {"succeeded"}
TERMINAL_BAD = {"failed", "aborted", "rolled_back", "needs_attention"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


class CliError(Exception):
    """An error the user must see; exits with code 2."""


def parse_duration(text: str) -> float:
    """``"30m"`` -> 1800.0 seconds (units ms, s, m, h; bare numbers are seconds)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}; use e.g. 90s, 30m, 1h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = "cpctl"
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        url = f"{self.base}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.request(method, url, json=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code >= 400:
            try:
                err = response.json()
                message = err.get("message") or json.dumps(err)
                details = err.get("details")
                if details:
                    message += f" {json.dumps(details)}"
            except ValueError:
                message = response.text[:300]
            raise CliError(f"{method} {path}: HTTP {response.status_code}: {message}")
        return response.json() if response.content else {}


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=2, sort_keys=True))
    elif isinstance(obj, dict):
        for key in ("id", "status", "environment", "release", "current_step", "title", "severity"):
            if key in obj:
                print(f"{key}: {obj[key]}")
    else:
        print(obj)


def cmd_deploy(client: Client, args: argparse.Namespace) -> int:
    try:
        strategy = json.loads(Path(args.strategy_file).read_text())
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read strategy file {args.strategy_file}: {exc}") from exc
    # The seed's files wrap the block as {"deployment": {...}}; accept both shapes.
    if isinstance(strategy, dict) and "deployment" in strategy and "strategy" not in strategy:
        strategy = strategy["deployment"]
    body: dict[str, Any] = {"environment": args.environment, "release": args.release, "deployment": strategy}
    if args.reason:
        body["reason"] = args.reason
    key = args.idempotency_key or str(uuid.uuid4())
    created = client.request("POST", "deployments/", body, headers={"Idempotency-Key": key})
    _print(created, args.json)
    if args.wait:
        return watch(client, created["id"], timeout=args.timeout, interval=args.interval, as_json=args.json)
    return EXIT_OK


def watch(client: Client, deployment_id: int | str, *, timeout: float, interval: float, as_json: bool) -> int:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        dep = client.request("GET", f"deployments/{deployment_id}/")
        line = f"{dep['status']} step={dep.get('current_step')}"
        if line != last and not as_json:
            print(f"deployment {deployment_id}: {line}", flush=True)
            last = line
        if dep["status"] in TERMINAL_OK:
            if as_json:
                _print(dep, True)
            return EXIT_OK
        if dep["status"] in TERMINAL_BAD:
            if as_json:
                _print(dep, True)
            return EXIT_FAILED
        if time.monotonic() >= deadline:
            print(f"timed out after {timeout:.0f}s; deployment is {dep['status']}", file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return watch(client, args.id, timeout=args.timeout, interval=args.interval, as_json=args.json)
    dep = client.request("GET", f"deployments/{args.id}/")
    _print(dep, args.json)
    if dep["status"] in TERMINAL_OK:
        return EXIT_OK
    return EXIT_FAILED if dep["status"] in TERMINAL_BAD else EXIT_TIMEOUT


def _verb(verb: str) -> Any:
    def run(client: Client, args: argparse.Namespace) -> int:
        body = {"reason": args.reason} if args.reason else {}
        _print(client.request("POST", f"deployments/{args.id}/{verb}/", body), args.json)
        return EXIT_OK

    return run


def cmd_promote(client: Client, args: argparse.Namespace) -> int:
    return _verb("promote-full" if args.full else "promote")(client, args)


def cmd_incident_declare(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"title": args.title, "severity": args.severity}
    if args.summary:
        body["impact_summary"] = args.summary
    if args.environment:
        body["environments"] = args.environment
    _print(client.request("POST", "incidents/", body), args.json)
    return EXIT_OK


def cmd_backup_run(client: Client, args: argparse.Namespace) -> int:
    _print(client.request("POST", f"backup-policies/{args.policy}/run/", {}), args.json)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpctl", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--url", default=os.environ.get("CPCTL_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--json", action="store_true", help="Print API objects as JSON.")
    sub = parser.add_subparsers(dest="command", required=True)

    def watch_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timeout", type=parse_duration, default=parse_duration("30m"))
        p.add_argument("--interval", type=parse_duration, default=parse_duration("2s"))

    deploy = sub.add_parser("deploy", help="Start a deployment of RELEASE to ENV (service/env).")
    deploy.add_argument("environment")
    deploy.add_argument("release")
    deploy.add_argument("--strategy-file", required=True, help="JSON: the deployment block of the guide.")
    deploy.add_argument("--reason", default="")
    deploy.add_argument("--idempotency-key", default="", help="Default: a new UUID per invocation.")
    deploy.add_argument("--wait", action="store_true", help="Watch until it ends (like status --watch).")
    watch_opts(deploy)
    deploy.set_defaults(func=cmd_deploy)

    status = sub.add_parser("status", help="Show a deployment; --watch blocks until it ends.")
    status.add_argument("id")
    status.add_argument("--watch", action="store_true")
    watch_opts(status)
    status.set_defaults(func=cmd_status)

    for verb, helptext in (
        ("abort", "Abort: all traffic back to stable."),
        ("rollback", "Roll back to the previous release."),
        ("pause", "Pause a running deployment."),
        ("resume", "Resume a paused deployment."),
    ):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("id")
        p.add_argument("--reason", default="")
        p.set_defaults(func=_verb(verb))

    promote = sub.add_parser("promote", help="Skip the current step (--full: skip all remaining).")
    promote.add_argument("id")
    promote.add_argument("--full", action="store_true")
    promote.add_argument("--reason", default="")
    promote.set_defaults(func=cmd_promote)

    incident = sub.add_parser("incident", help="Incidents.").add_subparsers(
        dest="incident_cmd", required=True
    )
    declare = incident.add_parser("declare", help="Declare an incident.")
    declare.add_argument("--title", required=True)
    declare.add_argument("--severity", required=True, choices=["P1", "P2", "P3"])
    declare.add_argument("--summary", default="")
    declare.add_argument("--environment", action="append", default=[], help="service/env; repeatable.")
    declare.set_defaults(func=cmd_incident_declare)

    backup = sub.add_parser("backup", help="Backups.").add_subparsers(dest="backup_cmd", required=True)
    run = backup.add_parser("run", help="Run a backup policy now.")
    run.add_argument("policy", help="Policy id.")
    run.set_defaults(func=cmd_backup_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    token = os.environ.get("CPCTL_TOKEN", "")
    if not token:
        print(
            "cpctl: set CPCTL_TOKEN to an API token (manage.py create_token NAME --role operator)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        return int(args.func(Client(args.url, token), args))
    except CliError as exc:
        print(f"cpctl: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
