"""The deployment status table: property tests, and the one function that moves along it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments.exceptions import IllegalTransition
from deployments.models import Deployment
from deployments.transitions import ALLOWED, TERMINAL, can_transition, transition
from tests.deployments.conftest import Clock, create

S = Deployment.Status
statuses = st.sampled_from(list(S))


def test_every_status_is_reachable_from_pending_and_nothing_returns_to_pending() -> None:
    seen, todo = {S.PENDING.value}, [S.PENDING.value]
    while todo:
        for nxt in ALLOWED[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(S.values)
    assert not any(S.PENDING in targets for targets in ALLOWED.values())


@given(path=st.lists(statuses, max_size=12))
def test_rolled_back_is_final_and_only_retry_leaves_failure(path: list[str]) -> None:
    current = S.PENDING.value
    for target in path:
        if can_transition(current, target):
            if current in TERMINAL:
                # Leaving an end state: a retry of a failure, a rollback of a success, or a
                # success marked by a failed post-deployment check (then only rolled back).
                assert (current, target) in {
                    (S.FAILED, S.RUNNING),
                    (S.ABORTED, S.RUNNING),
                    (S.SUCCEEDED, S.ROLLED_BACK),
                    (S.SUCCEEDED, S.NEEDS_ATTENTION),
                    (S.NEEDS_ATTENTION, S.ROLLED_BACK),
                }
            current = target
    if current == S.ROLLED_BACK:
        assert all(not can_transition(current, s) for s in S.values)


@pytest.mark.django_db
def test_transition_writes_one_event_and_refuses_illegal_moves(stage_factory: Any, clock: Clock) -> None:
    d = create(stage_factory(), {"strategy": "blue-green"}, clock)
    before = d.events.count()
    event = transition(d, S.RUNNING, reason="go", now=clock.now)
    assert d.events.count() == before + 1
    assert event.details == {"from": "pending", "to": "running"}
    d.refresh_from_db()
    assert d.status == S.RUNNING and d.started_at == clock.now
    with pytest.raises(IllegalTransition):
        transition(d, S.PENDING)
    assert d.events.count() == before + 1


@pytest.mark.django_db
def test_events_are_append_only(stage_factory: Any, clock: Clock) -> None:
    d = create(stage_factory(), {"strategy": "blue-green"}, clock)
    event = d.events.first()
    assert event is not None
    event.message = "rewritten history"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
