"""Who is acting, from where, under which request id: set per request or task."""

from __future__ import annotations

import contextvars
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ActorContext:
    request_id: str
    source: str  # "api", "admin", "web", "worker", "cli"
    ip: str | None = None
    request: Any = None  # the HttpRequest, whose .user is set once authenticated


_current: contextvars.ContextVar[ActorContext | None] = contextvars.ContextVar(
    "controlplane_actor", default=None
)


def current() -> ActorContext | None:
    return _current.get()


def activate(ctx: ActorContext) -> contextvars.Token[ActorContext | None]:
    return _current.set(ctx)


def deactivate(token: contextvars.Token[ActorContext | None]) -> None:
    _current.reset(token)
