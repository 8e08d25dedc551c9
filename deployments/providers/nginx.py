"""The nginx router: slot weights as per-server weights in an upstream file nginx includes.

``apply()`` renders the upstream block, checks it with ``nginx -t`` against a copy of the
configuration that includes the candidate instead of the live file, renames it into place
atomically, reloads nginx and verifies the result. Until the rename nothing live is touched,
so a bad render or a rejected candidate leaves the old configuration serving.

Environment router configuration (JSON)::

    {"type": "nginx",
     "upstream_file": "/etc/nginx/controlplane/noodle-production.conf",
     "upstream_name": "noodle_production",
     "main_config": "/etc/nginx/nginx.conf",            # what ``nginx -t -c`` and reload use
     "nginx": "nginx",                                  # binary (optional)
     "prefix": null,                                    # ``nginx -p`` (optional)
     "reload_command": ["nginx", "-s", "reload"],       # argv, never a shell string (optional)
     "test_command": ["nginx", "-t", "-c", "{config}"], # argv; {config} is the candidate config
     "verify_url": "http://127.0.0.1/__controlplane/upstream/noodle_production",  # optional
     "pid_file": "/run/nginx.pid",                      # optional (Linux): wait for old workers
     "verify_timeout": 10,
     "server_options": "max_fails=1 fail_timeout=5s"}   # appended to every live server (optional)

The upstream file also defines ``$controlplane_<upstream_name>_generation`` (a digest of the
rendered file). A server block that returns it (see ``ops/nginx/``) lets ``apply()`` confirm
that nginx's workers actually serve the new generation, not only that the file is in place.
With ``pid_file``, ``apply()`` also waits until every worker that ran the old configuration
has stopped accepting connections (reads ``/proc``), so once it returns, every new request is
routed by the new weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from deployments.providers.base import InstanceRef, ProviderConfigError, ProviderError, TrafficTable
from deployments.providers.config import get_str, get_url, reject_unknown, require_mapping

_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$")
_INCLUDE_RE = re.compile(r"(?<![\w$])include\s+(?P<arg>\"[^\"]*\"|'[^']*'|[^;\s]+)\s*;")
_SERVER_RE = re.compile(r"^\s*server\s+(?P<addr>\S+?)(?P<params>(?:\s+[^;#]+)?)\s*;\s*(?:#\s*(?P<note>.*))?$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_INCLUDE_DEPTH = 8


@dataclasses.dataclass(frozen=True)
class _Server:
    address: str  # host:port as nginx sees it
    instance: InstanceRef
    weight: int  # 0 means "down"
    drained: bool


@dataclasses.dataclass(frozen=True)
class NginxConfig:
    upstream_file: Path
    upstream_name: str
    main_config: Path
    nginx: str = "nginx"
    prefix: str | None = None
    reload_command: tuple[str, ...] = ()
    test_command: tuple[str, ...] = ()
    verify_url: str | None = None
    pid_file: Path | None = None
    verify_timeout: float = 10.0
    command_timeout: float = 30.0
    server_options: str = ""

    FIELDS = (
        "upstream_file",
        "upstream_name",
        "main_config",
        "nginx",
        "prefix",
        "reload_command",
        "test_command",
        "verify_url",
        "pid_file",
        "verify_timeout",
        "command_timeout",
        "server_options",
    )

    @classmethod
    def parse(cls, config: Mapping[str, Any]) -> NginxConfig:
        config = require_mapping(config, "router")
        reject_unknown(config, cls.FIELDS)

        def path(key: str) -> Path:
            value = Path(get_str(config, key))
            if not value.is_absolute():
                raise ProviderConfigError(key, "must be an absolute path")
            return value

        def optional_path(key: str) -> Path | None:
            return path(key) if config.get(key) is not None else None

        def argv(key: str) -> tuple[str, ...]:
            value = config.get(key)
            if value is None:
                return ()
            if not isinstance(value, list) or not value or not all(isinstance(a, str) and a for a in value):
                raise ProviderConfigError(key, "must be a non-empty list of strings (argv, not a shell line)")
            return tuple(value)

        if config.get("test_command") is not None and "{config}" not in argv("test_command"):
            # Without it nginx would test the live configuration, not the candidate.
            raise ProviderConfigError("test_command", "must contain the {config} placeholder")

        def seconds(key: str, default: float) -> float:
            value = config.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
                raise ProviderConfigError(key, "must be a number of seconds in (0, 600]")
            return float(value)

        name = get_str(config, "upstream_name")
        if not _NAME_RE.match(name):
            raise ProviderConfigError("upstream_name", "may hold only letters, digits and _")
        options = str(config.get("server_options") or "")
        if any(ch in options for ch in ";{}#\n"):
            raise ProviderConfigError("server_options", "must be plain server parameters (no ; { } #)")
        return cls(
            upstream_file=path("upstream_file"),
            upstream_name=name,
            main_config=path("main_config"),
            nginx=get_str(config, "nginx", "nginx"),
            prefix=str(optional_path("prefix") or "") or None,
            reload_command=argv("reload_command"),
            test_command=argv("test_command"),
            verify_url=get_url(config, "verify_url") if config.get("verify_url") is not None else None,
            pid_file=optional_path("pid_file"),
            verify_timeout=seconds("verify_timeout", 10),
            command_timeout=seconds("command_timeout", 30),
            server_options=options.strip(),
        )

    def _base(self) -> list[str]:
        return [self.nginx, *(["-p", self.prefix] if self.prefix else [])]

    def test_argv(self, config_path: Path) -> list[str]:
        if self.test_command:
            return [a.replace("{config}", str(config_path)) for a in self.test_command]
        return [*self._base(), "-t", "-q", "-c", str(config_path)]

    def reload_argv(self) -> list[str]:
        if self.reload_command:
            return [a.replace("{config}", str(self.main_config)) for a in self.reload_command]
        return [*self._base(), "-c", str(self.main_config), "-s", "reload"]


def server_address(instance: InstanceRef) -> str:
    """``host:port`` for an instance's base URL; rejects anything that is not a plain address."""
    try:
        parts = urlsplit(instance.address if "://" in instance.address else f"http://{instance.address}")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError as exc:
        raise ProviderError(f"instance {instance.name}: bad address {instance.address!r}: {exc}") from exc
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if not port or not _HOST_RE.match(host):
        raise ProviderError(f"instance {instance.name}: cannot route to address {instance.address!r}")
    return f"{host}:{port}"


def plan_weights(
    table: TrafficTable, instances: Sequence[InstanceRef]
) -> list[tuple[InstanceRef, int, bool]]:
    """Integer weight per instance (0 = down) so that each slot gets exactly its percent.

    Returns ``(instance, weight, drained)`` in the given order. Raises ProviderError when the
    table cannot be served: a slot with traffic but no live instance, or nothing live at all.
    """
    names = {i.name for i in instances}
    unknown = set(table.drained) - names
    if unknown:
        raise ProviderError(f"cannot drain unknown instances: {', '.join(sorted(unknown))}")
    live: dict[str | None, list[InstanceRef]] = {}
    for inst in instances:
        if inst.name not in table.drained:
            live.setdefault(inst.slot if table.weights else None, []).append(inst)
    if table.weights:
        # A slot the table does not name gets no traffic, like a slot at 0%.
        for slot, percent in table.weights.items():
            if percent > 0 and not live.get(slot):
                raise ProviderError(f"slot {slot} should get {percent}% but has no live instance")
        counts = [len(live[s]) for s, p in table.weights.items() if p > 0]
        scale = math.lcm(*counts)
        per_server = {
            slot: (percent * scale // len(live[slot]) if percent > 0 else 0)
            for slot, percent in table.weights.items()
        }
    else:
        if not live.get(None):
            raise ProviderError("every instance is drained: nothing would receive traffic")
        per_server = {}
    divisor = math.gcd(*per_server.values()) if any(per_server.values()) else 1
    out = []
    for inst in instances:
        drained = inst.name in table.drained
        if drained:
            weight = 0
        elif table.weights:
            weight = per_server.get(inst.slot or "", 0) // divisor
        else:
            weight = 1
        out.append((inst, weight, drained))
    return out


def render_upstream(
    name: str, table: TrafficTable, instances: Sequence[InstanceRef], *, server_options: str = ""
) -> str:
    """The upstream file for ``table``: one ``server`` line per instance, plus a generation map."""
    lines = [f"upstream {name} {{"]
    for inst, weight, drained in plan_weights(table, instances):
        addr = server_address(inst)
        note = f"# {inst.name} slot={inst.slot or '-'}{' drained' if drained else ''}"
        params = f"weight={weight} {server_options}".strip() if weight else "down"
        lines.append(f"    server {addr} {params}; {note}")
    lines.append("}")
    body = "\n".join(lines) + "\n"
    generation = hashlib.sha256(body.encode()).hexdigest()[:16]
    header = (
        "# Managed by the control plane: every traffic change rewrites this file.\n"
        f"# controlplane-table: {json.dumps(table.as_dict(), sort_keys=True)}\n"
    )
    generation_map = f'map $pid $controlplane_{name}_generation {{\n    default "{generation}";\n}}\n'
    return header + body + generation_map


def generation_of(text: str, name: str) -> str | None:
    match = re.search(rf"map \$pid \$controlplane_{name}_generation \{{\s*default \"([0-9a-f]+)\";", text)
    return match.group(1) if match else None


def parse_upstream(text: str, name: str) -> list[tuple[str, int, str]]:
    """``(address, weight, note)`` for each server of upstream ``name`` (weight 0 = down)."""
    match = re.search(rf"upstream\s+{name}\s*\{{(?P<body>[^}}]*)\}}", text)
    if not match:
        raise ProviderError(f"upstream {name} not found in the live file")
    servers = []
    for line in match.group("body").splitlines():
        m = _SERVER_RE.match(line)
        if not m:
            continue
        params = m.group("params").split()
        weight = 1
        for p in params:
            if p.startswith("weight="):
                weight = int(p.split("=", 1)[1])
        if "down" in params:
            weight = 0
        servers.append((m.group("addr"), weight, (m.group("note") or "").strip()))
    return servers


class NginxRouter:
    """Router for a service behind nginx; see the module docstring for the configuration."""

    type = "nginx"

    def __init__(self, config: NginxConfig, instances: Sequence[InstanceRef]) -> None:
        self.config = config
        self.instances = list(instances)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instances: Sequence[InstanceRef]) -> NginxRouter:
        return cls(NginxConfig.parse(config), instances)

    # -- Router protocol -----------------------------------------------------------------------

    def apply(self, table: TrafficTable) -> None:
        cfg = self.config
        try:
            rendered = render_upstream(
                cfg.upstream_name, table, self.instances, server_options=cfg.server_options
            )
        except ProviderError as exc:
            raise ProviderError(f"nginx upstream {cfg.upstream_name} not changed: {exc}") from exc
        previous = self._read_live()
        if previous != rendered:
            self._swap_in(rendered, previous)
        self._verify(table, rendered)

    def observe(self) -> TrafficTable:
        text = self._read_live()
        if text is None:
            raise ProviderError(f"nginx upstream file {self.config.upstream_file} does not exist")
        return self._table_from(text)

    def drain_pending(self, table: TrafficTable) -> frozenset[str]:
        """Drained instances that may still have requests in flight through nginx.

        A drained server is ``down`` for new requests at once, but workers that ran the previous
        configuration finish their in-flight requests first ("shutting down"). While any such
        worker lives, restarting a drained instance could cut a request. Needs ``pid_file``.
        """
        if not table.drained or not self._workers(shutting_down=True):
            return frozenset()
        return frozenset(table.drained)

    def drain_complete(self, table: TrafficTable) -> bool:
        return not self.drain_pending(table)

    # -- steps -------------------------------------------------------------------------------------

    def _read_live(self) -> str | None:
        try:
            return self.config.upstream_file.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProviderError(f"cannot read {self.config.upstream_file}: {exc}") from exc

    def _swap_in(self, rendered: str, previous: str | None) -> None:
        cfg = self.config
        target = cfg.upstream_file
        # A hidden name with a non-.conf suffix: never matched by an `include dir/*.conf;` glob.
        candidate = self._write_temp(target.parent, f".{target.name}.", ".candidate", rendered)
        try:
            self._test(candidate)
            os.replace(candidate, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
        old_workers = self._accepting_workers()
        try:
            self._run(cfg.reload_argv(), "reload")
        except ProviderError:
            # nginx still serves the old configuration: put the old file back so they agree.
            if previous is None:
                target.unlink(missing_ok=True)
            else:
                restore = self._write_temp(target.parent, f".{target.name}.", ".restore", previous)
                os.replace(restore, target)
            raise
        if old_workers is not None:
            self._wait_for_new_workers(old_workers)

    def _test(self, candidate: Path) -> None:
        cfg = self.config
        with self._test_config(candidate) as test_main:
            self._run(cfg.test_argv(test_main), "nginx -t")

    @contextlib.contextmanager
    def _test_config(self, candidate: Path) -> Iterator[Path]:
        """A copy of the main configuration where the upstream file is replaced by ``candidate``.

        The copy sits next to the main config, so relative paths still resolve against the same
        configuration prefix; included files that (transitively) include the upstream file are
        copied with the same substitution, everything else is included as is.
        """
        cfg = self.config
        made: list[Path] = []
        conf_prefix = cfg.main_config.parent
        target = cfg.upstream_file.resolve() if cfg.upstream_file.exists() else cfg.upstream_file
        found = False

        def rewrite(path: Path, depth: int) -> str | None:
            nonlocal found
            if depth > _MAX_INCLUDE_DEPTH:
                return None
            try:
                text = path.read_text()
            except OSError as exc:
                raise ProviderError(f"cannot read nginx configuration {path}: {exc}") from exc
            changed = False

            def replace(match: re.Match[str]) -> str:
                nonlocal changed, found
                if _inside_comment(text, match.start()):
                    return match.group(0)
                arg = match.group("arg").strip("'\"")
                pattern = os.path.normpath(arg if os.path.isabs(arg) else str(conf_prefix / arg))
                matches = [pattern]
                if glob.has_magic(pattern):
                    matches = sorted(glob.glob(pattern))
                    # First apply: the live file does not exist yet, but the glob will include it.
                    if (
                        fnmatch.fnmatchcase(str(cfg.upstream_file), pattern)
                        and not cfg.upstream_file.exists()
                    ):
                        matches.append(str(cfg.upstream_file))
                parts: list[str] = []
                hit = False
                for m in matches:
                    p = Path(m)
                    if p == cfg.upstream_file or (p.exists() and p.resolve() == target):
                        parts.append(str(candidate))
                        hit = found = True
                        continue
                    sub = rewrite(p, depth + 1) if p.is_file() else None
                    if sub is not None:
                        copy = self._write_temp(conf_prefix, ".controlplane-test-", ".inc", sub)
                        made.append(copy)
                        parts.append(str(copy))
                        hit = True
                    else:
                        parts.append(m)
                if not hit:
                    return match.group(0)
                changed = True
                return " ".join(f'include "{p}";' for p in parts) if parts else ""

            new = _INCLUDE_RE.sub(replace, text)
            return new if changed else None

        try:
            main = rewrite(cfg.main_config, 0)
            if main is None or not found:
                raise ProviderError(
                    f"{cfg.main_config} does not include {cfg.upstream_file}; "
                    "add `include <upstream_file>;` inside the http block"
                )
            test_main = self._write_temp(conf_prefix, ".controlplane-test-", ".conf", main)
            made.append(test_main)
            yield test_main
        finally:
            for path in made:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def _verify(self, table: TrafficTable, rendered: str) -> None:
        cfg = self.config
        live = self._read_live()
        if live != rendered:
            raise ProviderError(f"{cfg.upstream_file} does not hold the rendered upstream after the swap")
        observed = self._table_from(live)
        if dict(observed.weights) != dict(table.weights) or (observed.drained != frozenset(table.drained)):
            raise ProviderError(f"nginx serves {observed.as_dict()}, expected {table.as_dict()}")
        if cfg.verify_url:
            self._wait_for_generation(generation_of(rendered, cfg.upstream_name) or "")

    def _master_pid(self) -> int | None:
        if self.config.pid_file is None:
            return None
        try:
            return int(self.config.pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ProviderError(f"cannot read nginx pid file {self.config.pid_file}: {exc}") from exc

    def _accepting_workers(self) -> set[int] | None:
        """Worker pids of the master that still accept connections (None: not configured)."""
        return self._workers(shutting_down=False)

    def _workers(self, *, shutting_down: bool) -> set[int] | None:
        """Worker pids of the master, those accepting or those shutting down (None: unknown)."""
        master = self._master_pid()
        if master is None or not Path("/proc").is_dir():
            return None
        workers = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == master and "worker process" in title and ("shutting down" in title) == shutting_down:
                workers.add(int(entry.name))
        return workers

    def _wait_for_new_workers(self, old: set[int]) -> None:
        # After `nginx -s reload` the master starts new workers, then asks the old ones to stop
        # accepting; until they do, new connections may still be routed by the old weights.
        deadline = time.monotonic() + self.config.verify_timeout
        while True:
            now = self._accepting_workers() or set()
            if now and not (now & old):
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"nginx workers {sorted(now & old)} still run the old configuration after "
                    f"{self.config.verify_timeout:g}s (see nginx's error log)"
                )
            time.sleep(0.02)

    def _wait_for_generation(self, generation: str) -> None:
        cfg = self.config
        if not cfg.verify_url:
            return
        deadline = time.monotonic() + cfg.verify_timeout
        seen = ""
        while True:
            try:
                resp = requests.get(cfg.verify_url, timeout=2)
                seen = resp.headers.get("X-Controlplane-Generation") or resp.text.strip()
            except requests.RequestException as exc:
                seen = f"error: {exc}"
            if seen == generation:
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"nginx did not pick up upstream generation {generation} within "
                    f"{cfg.verify_timeout:g}s (last seen: {seen[:200]})"
                )
            time.sleep(0.05)

    def _table_from(self, text: str) -> TrafficTable:
        by_address: dict[str, list[InstanceRef]] = {}
        for inst in self.instances:
            with contextlib.suppress(ProviderError):
                by_address.setdefault(server_address(inst), []).append(inst)
        slot_weight: dict[str, int] = {}
        drained: set[str] = set()
        slotted = any(i.slot for i in self.instances)
        for address, weight, note in parse_upstream(text, self.config.upstream_name):
            name = note.split()[0] if note else ""
            candidates = by_address.get(address, [])
            found = next((i for i in candidates if i.name == name), candidates[0] if candidates else None)
            if found is None:
                continue
            if "drained" in note.split():
                drained.add(found.name)
            if slotted and found.slot:
                slot_weight[found.slot] = slot_weight.get(found.slot, 0) + weight
        declared_line = re.search(r"^# controlplane-table: (\{.*\})$", text, re.MULTILINE)
        declared = json.loads(declared_line.group(1)).get("weights") if declared_line else None
        total = sum(slot_weight.values())
        weights: dict[str, int] = {}
        if slotted and declared != {} and total > 0:
            weights = {s: round(100 * w / total) for s, w in slot_weight.items()}
            # Report the slots the table named; an unnamed slot is shown only if it gets traffic.
            named = set(declared or weights)
            weights = {s: p for s, p in weights.items() if s in named or p}
            weights.update({s: 0 for s in named if s not in weights})
        try:
            return TrafficTable(weights=weights, drained=frozenset(drained))
        except ValueError as exc:
            raise ProviderError(f"live upstream does not add up to a traffic table: {exc}") from exc

    # -- helpers -----------------------------------------------------------------------------------

    def _write_temp(self, directory: Path, prefix: str, suffix: str, text: str) -> Path:
        try:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(name, 0o644)  # nginx workers read it; it holds no secret
        except OSError as exc:
            raise ProviderError(f"cannot write in {directory}: {exc}") from exc
        return Path(name)

    def _run(self, argv: list[str], what: str) -> None:
        try:
            proc = subprocess.run(  # noqa: S603 - argv from the environment's configuration
                argv, capture_output=True, text=True, timeout=self.config.command_timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderError(f"{what} failed: {exc}") from exc
        if proc.returncode != 0:
            output = (proc.stderr or proc.stdout or "").strip()
            raise ProviderError(f"{what} failed (exit {proc.returncode}): {output[-2000:]}")


def _inside_comment(text: str, pos: int) -> bool:
    line_start = text.rfind("\n", 0, pos) + 1
    return "#" in text[line_start:pos]
