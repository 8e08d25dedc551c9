"""The allowed status moves of incidents and post-mortems, and the checks that enforce them."""

from __future__ import annotations

from controlplane.api.errors import Conflict
from incidents.models import Incident, PostMortem

S = Incident.Status

# Forward skips are allowed (a short blip may resolve before anyone marks it mitigated);
# skipped phases get the same timestamp.  Reopening goes back to investigating.
INCIDENT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.DECLARED: (S.INVESTIGATING, S.MITIGATED, S.RESOLVED),
    S.INVESTIGATING: (S.MITIGATED, S.RESOLVED),
    S.MITIGATED: (S.INVESTIGATING, S.RESOLVED),
    S.RESOLVED: (S.CLOSED, S.INVESTIGATING),
    S.CLOSED: (S.INVESTIGATING,),
}

# Which timestamp a status sets, in phase order.
PHASE_FIELDS: tuple[tuple[str, str], ...] = (
    (S.INVESTIGATING, "investigating_at"),
    (S.MITIGATED, "mitigated_at"),
    (S.RESOLVED, "resolved_at"),
    (S.CLOSED, "closed_at"),
)

P = PostMortem.Status
POSTMORTEM_TRANSITIONS: dict[str, tuple[str, ...]] = {
    P.DRAFT: (P.IN_REVIEW,),
    P.IN_REVIEW: (P.DRAFT, P.PUBLISHED),
    P.PUBLISHED: (),
}


def is_reopen(current: str, target: str) -> bool:
    return current in (S.RESOLVED, S.CLOSED) and target == S.INVESTIGATING


def check_move(table: dict[str, tuple[str, ...]], current: str, target: str, *, what: str) -> None:
    """Raise a 409 naming the allowed targets when ``current -> target`` is not in ``table``."""
    allowed = table.get(current, ())
    if target not in allowed:
        names = ", ".join(allowed) or "none"
        raise Conflict(
            f"Cannot move {what} from {current} to {target}; allowed: {names}.",
            code="illegal_transition",
            details={"status": current, "target": target, "allowed": list(allowed)},
        )
