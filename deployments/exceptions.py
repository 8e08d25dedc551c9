"""Exceptions of the deployments app."""

from __future__ import annotations


class IllegalTransition(Exception):
    """A deployment was asked to move along an edge the status table does not have."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"a {current} deployment cannot become {target}")
        self.current = current
        self.target = target


class StepFailed(Exception):
    """The current step cannot succeed; the engine fails the deployment and restores traffic."""
