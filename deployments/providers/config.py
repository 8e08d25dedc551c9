"""Reading providers' JSON configuration: typed getters that raise ProviderConfigError(field, rule)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from deployments.providers.base import ProviderConfigError

T = TypeVar("T")


def require_mapping(config: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(config, Mapping):
        raise ProviderConfigError(what, "must be an object")
    return config


def provider_type(config: Any, registry: Mapping[str, T], what: str) -> T:
    """The registry entry named by ``config["type"]``."""
    config = require_mapping(config, what)
    kind = config.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProviderConfigError("type", f"is required; one of {sorted(registry)}")
    try:
        return registry[kind]
    except KeyError:
        raise ProviderConfigError(
            "type", f"unknown {what} type {kind!r}; one of {sorted(registry)}"
        ) from None


def reject_unknown(config: Mapping[str, Any], allowed: Collection[str]) -> None:
    unknown = sorted(set(config) - set(allowed) - {"type"})
    if unknown:
        raise ProviderConfigError(unknown[0], f"unknown field; allowed: {sorted(allowed)}")


def get_int(
    config: Mapping[str, Any], key: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProviderConfigError(key, "must be an integer")
    if value < minimum:
        raise ProviderConfigError(key, f"must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ProviderConfigError(key, f"must be <= {maximum}")
    return value


def get_str(config: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        raise ProviderConfigError(key, "is required" if value is None else "must be a non-empty string")
    return value


def get_url(config: Mapping[str, Any], key: str, *, templated: bool = False) -> str:
    """An http(s) URL; ``templated`` also allows one starting with ``{address}`` (the instance's)."""
    value = get_str(config, key)
    if templated and value.startswith("{address}"):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProviderConfigError(key, "must be an http(s) URL")
    return value


def get_path(config: Mapping[str, Any], key: str, default: str) -> str:
    value = get_str(config, key, default)
    if not value.startswith("/"):
        raise ProviderConfigError(key, "must start with /")
    return value


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")


def get_str_map(
    config: Mapping[str, Any], key: str, *, names: re.Pattern[str] | None = None
) -> dict[str, str]:
    value = config.get(key) or {}
    if not isinstance(value, Mapping):
        raise ProviderConfigError(key, "must be an object of strings")
    pattern = names or _HEADER_NAME
    for name, item in value.items():
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise ProviderConfigError(f"{key}.{name}", f"invalid name (must match {pattern.pattern})")
        if not isinstance(item, str):
            raise ProviderConfigError(f"{key}.{name}", "must be a string")
    return dict(value)
