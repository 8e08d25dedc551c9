"""Deployers: put a release on an instance. ``build_deployer`` dispatches on ``type``.

- ``command``: runs an argv template (a list, never a shell string) with ``{instance}``,
  ``{address}``, ``{slot}``, ``{version}``, ``{artifact}``, ``{git_sha}`` substituted, a clean
  environment (a few inherited names, the config's ``env``, the engine's facts such as
  DEPLOYMENT_ID, and INSTANCE_* / RELEASE_*), and a timeout that kills the whole process group.
- ``webhook``: POSTs JSON to a deploy agent (URL may use ``{address}`` etc.); 2xx = accepted,
  then health checks decide readiness. Optionally signed with HMAC-SHA256.

Both return when the deploy was accepted and raise ProviderError (operator-facing) otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import requests

from deployments.providers.base import (
    Deployer,
    InstanceRef,
    ProviderConfigError,
    ProviderError,
    ReleaseRef,
)
from deployments.providers.config import get_int, get_str, get_str_map, get_url, provider_type, reject_unknown

DeployerFactory = Callable[[Mapping[str, Any]], Deployer]

PLACEHOLDERS = ("instance", "address", "slot", "version", "artifact", "git_sha")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
# Inherited from the control plane's own environment by default: enough to find and run
# programs, never its secrets (DATABASE_URL, SECRET_KEY, ...).
DEFAULT_INHERIT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
TAIL_CHARS = 2000


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace known ``{name}`` placeholders; other braces (JSON, PromQL) are left alone."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _check_placeholders(template: str, field: str) -> None:
    for name in _PLACEHOLDER.findall(template):
        if name not in PLACEHOLDERS:
            raise ProviderConfigError(field, f"unknown placeholder {{{name}}}; allowed: {list(PLACEHOLDERS)}")


def _values(instance: InstanceRef, release: ReleaseRef) -> dict[str, str]:
    return {
        "instance": instance.name,
        "address": instance.address,
        "slot": instance.slot or "",
        "version": release.version,
        "artifact": release.artifact,
        "git_sha": release.git_sha,
    }


def _tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """The last command run (for the deployment timeline)."""

    argv: tuple[str, ...]
    returncode: int | None
    duration_ms: float
    stdout_tail: str
    stderr_tail: str


class CommandDeployer:
    """Runs the configured argv once per instance deploy."""

    def __init__(
        self,
        *,
        argv: Sequence[str],
        timeout_ms: int = 600_000,
        env: Mapping[str, str] | None = None,
        inherit_env: Sequence[str] = DEFAULT_INHERIT_ENV,
        cwd: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.timeout_ms = timeout_ms
        self.env = dict(env or {})
        self.inherit_env = list(inherit_env)
        self.cwd = cwd
        self.last_result: CommandResult | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CommandDeployer:
        reject_unknown(config, ("argv", "timeout", "env", "inherit_env", "cwd"))
        argv = config.get("argv")
        if isinstance(argv, str):
            raise ProviderConfigError("argv", "must be a list of arguments, not a shell string")
        if not isinstance(argv, list) or not argv:
            raise ProviderConfigError("argv", "is required: a non-empty list of strings")
        for n, arg in enumerate(argv):
            if not isinstance(arg, str):
                raise ProviderConfigError(f"argv.{n}", "must be a string")
            _check_placeholders(arg, f"argv.{n}")
        if not argv[0]:
            raise ProviderConfigError("argv.0", "must name the program")
        inherit = config.get("inherit_env", list(DEFAULT_INHERIT_ENV))
        if not isinstance(inherit, list) or not all(
            isinstance(n, str) and _ENV_NAME.fullmatch(n) for n in inherit
        ):
            raise ProviderConfigError("inherit_env", "must be a list of environment variable names")
        cwd = config.get("cwd")
        if cwd is not None:
            cwd = get_str(config, "cwd")
            if not os.path.isabs(cwd):
                raise ProviderConfigError("cwd", "must be an absolute path")
        return cls(
            argv=argv,
            timeout_ms=get_int(config, "timeout", 600_000, minimum=1, maximum=24 * 3_600_000),
            env=get_str_map(config, "env", names=_ENV_NAME),
            inherit_env=inherit,
            cwd=cwd,
        )

    def environment_base(self) -> dict[str, str]:
        """The inherited names, then the config's ``env`` (what every run starts from)."""
        env = {name: os.environ[name] for name in self.inherit_env if name in os.environ}
        env.update(self.env)
        return env

    def environment(
        self, instance: InstanceRef, release: ReleaseRef, facts: Mapping[str, str]
    ) -> dict[str, str]:
        env = self.environment_base()
        for name, value in facts.items():
            if not _ENV_NAME.fullmatch(name):
                raise ProviderError(f"fact {name!r} is not a valid environment variable name")
            env[name] = str(value)
        env.update(
            INSTANCE_NAME=instance.name,
            INSTANCE_ADDRESS=instance.address,
            INSTANCE_SLOT=instance.slot or "",
            RELEASE_VERSION=release.version,
            RELEASE_ARTIFACT=release.artifact,
            RELEASE_GIT_SHA=release.git_sha,
        )
        return env

    def deploy(self, instance: InstanceRef, release: ReleaseRef, *, facts: Mapping[str, str]) -> None:
        values = _values(instance, release)
        argv = [substitute(arg, values) for arg in self.argv]
        try:
            self.last_result = run_argv(
                argv, env=self.environment(instance, release, facts), cwd=self.cwd, timeout_ms=self.timeout_ms
            )
        except CommandFailed as exc:
            self.last_result = exc.result
            raise


class CommandFailed(ProviderError):
    """A command that could not start, timed out or exited non-zero (``result`` when it ran)."""

    def __init__(self, message: str, result: CommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def run_argv(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    timeout_ms: int,
    what: str = "deploy command",
) -> CommandResult:
    """Run ``argv`` (no shell) in its own process group with ``env``; raise CommandFailed unless it exits 0.

    Shared by the command deployer and lifecycle hooks (``deployments/hooks.py``).
    """
    argv = list(argv)
    started = time.monotonic()
    # Output goes to temporary files, not pipes: a chatty command cannot fill memory or
    # block on a full pipe; only the tails are kept.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv list from validated config, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,  # its own process group, so a timeout kills children too
            )
        except OSError as exc:
            raise CommandFailed(f"{what} could not start: {argv[0]}: {exc.strerror or exc}") from None
        timed_out = False
        try:
            proc.wait(timeout=timeout_ms / 1000)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        result = CommandResult(
            argv=tuple(argv),
            returncode=None if timed_out else proc.returncode,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            stdout_tail=_read_tail(out),
            stderr_tail=_read_tail(err),
        )
    if timed_out:
        raise CommandFailed(
            f"{what} timed out after {timeout_ms} ms and was killed"
            + (f": {result.stderr_tail}" if result.stderr_tail else ""),
            result,
        )
    if result.returncode != 0:
        detail = result.stderr_tail or result.stdout_tail or "(no output)"
        raise CommandFailed(f"{what} exited with status {result.returncode}: {detail}", result)
    return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read_tail(handle: IO[bytes]) -> str:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - TAIL_CHARS * 4))
    return _tail(handle.read().decode("utf-8", errors="replace"))


class WebhookDeployer:
    """POSTs ``{"instance": ..., "release": ..., "facts": ...}`` to a deploy agent."""

    def __init__(
        self,
        *,
        url: str,
        timeout_ms: int = 10_000,
        headers: Mapping[str, str] | None = None,
        secret_env: str | None = None,
    ) -> None:
        self.url = url
        self.timeout_ms = timeout_ms
        self.headers = dict(headers or {})
        self.secret_env = secret_env

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookDeployer:
        reject_unknown(config, ("url", "timeout", "headers", "secret_env"))
        url = get_url(config, "url", templated=True)
        _check_placeholders(url, "url")
        secret_env = config.get("secret_env")
        if secret_env is not None and (
            not isinstance(secret_env, str) or not _ENV_NAME.fullmatch(secret_env)
        ):
            raise ProviderConfigError(
                "secret_env", "must name an environment variable holding the signing key"
            )
        return cls(
            url=url,
            timeout_ms=get_int(config, "timeout", 10_000, minimum=1, maximum=300_000),
            headers=get_str_map(config, "headers"),
            secret_env=secret_env,
        )

    def payload(self, instance: InstanceRef, release: ReleaseRef, facts: Mapping[str, str]) -> dict[str, Any]:
        return {
            "instance": {"name": instance.name, "address": instance.address, "slot": instance.slot},
            "release": {"version": release.version, "artifact": release.artifact, "git_sha": release.git_sha},
            "facts": dict(facts),
        }

    def deploy(self, instance: InstanceRef, release: ReleaseRef, *, facts: Mapping[str, str]) -> None:
        url = substitute(self.url, _values(instance, release))
        body = json.dumps(self.payload(instance, release, facts), sort_keys=True).encode()
        headers = signed_headers(body, self.headers, self.secret_env)
        if "DEPLOYMENT_ID" in facts:
            # Lets the agent drop a redelivered request (the engine may retry after a crash).
            headers.setdefault(
                "Idempotency-Key", f"{facts['DEPLOYMENT_ID']}:{instance.name}:{release.version}"
            )
        post_json(url, body, headers, timeout_ms=self.timeout_ms, what=f"deploy agent at {url}")


def post_json(url: str, body: bytes, headers: Mapping[str, str], *, timeout_ms: int, what: str) -> None:
    """POST ``body``; only a 2xx (no redirects) is accepted, anything else raises ProviderError.

    Shared by the webhook deployer and lifecycle hooks (``deployments/hooks.py``).
    """
    timeout = timeout_ms / 1000
    try:
        resp = requests.post(
            url, data=body, headers=dict(headers), timeout=(timeout, timeout), allow_redirects=False
        )
    except requests.Timeout:
        raise ProviderError(f"{what} timed out after {timeout_ms} ms") from None
    except requests.RequestException as exc:
        raise ProviderError(f"{what} unreachable: {type(exc).__name__}") from None
    if not 200 <= resp.status_code < 300:
        raise ProviderError(f"{what} answered HTTP {resp.status_code}: {_tail(resp.text, 500)}")


def signed_headers(body: bytes, headers: Mapping[str, str], secret_env: str | None) -> dict[str, str]:
    """JSON content type, the configured headers, and ``X-Signature-256`` when ``secret_env`` is set."""
    out = {"Content-Type": "application/json", **headers}
    if secret_env:
        key = os.environ.get(secret_env)
        if not key:
            raise ProviderError(f"webhook signing key ${secret_env} is not set")
        out["X-Signature-256"] = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return out


DEPLOYERS: dict[str, DeployerFactory] = {
    "command": CommandDeployer.from_config,
    "webhook": WebhookDeployer.from_config,
}


def build_deployer(config: Mapping[str, Any]) -> Deployer:
    """The deployer for ``config`` (``{"type": "command" | "webhook", ...}``)."""
    factory = provider_type(config, DEPLOYERS, "deployer")
    return factory(config)
