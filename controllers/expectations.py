"""Expectations: how a controller avoids acting twice on a cache that has not caught up.

A ReplicaSet that wants 3 pods creates 3, and its next sync may run before the informer has seen
any of them: counting the cache alone it would create 3 more. Upstream's answer
(pkg/controller/controller_utils.go, ControllerExpectations): before creating N pods, record "I
expect N adds"; every pod add observed by the informer lowers the count; `sync` does nothing
(beyond status) until the expectations are satisfied, or until they are older than the TTL (a
create that failed silently must not block the controller for ever). Deletions alike, keyed by
the pods' keys so that a delete observed twice counts once (UIDTrackingControllerExpectations).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EXPECTATIONS_TIMEOUT = 5 * 60.0


@dataclass
class _Expectation:
    add: int = 0
    delete: int = 0
    deleting: set[str] = field(default_factory=set)
    at: float = 0.0


class Expectations:
    """Per controller key: how many adds and which deletions are still to be observed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 ttl: float = EXPECTATIONS_TIMEOUT) -> None:
        self._exp: dict[str, _Expectation] = {}
        self._clock = clock
        self._ttl = ttl

    def satisfied(self, key: str) -> bool:
        """True when nothing is pending, or the record expired (then sync must recount)."""
        e = self._exp.get(key)
        if e is None:
            return True
        if e.add <= 0 and e.delete <= 0:
            return True
        return self._clock() - e.at > self._ttl

    def expect_creations(self, key: str, n: int) -> None:
        self._exp[key] = _Expectation(add=n, at=self._clock())

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        keys = set(pod_keys)
        self._exp[key] = _Expectation(delete=len(keys), deleting=keys, at=self._clock())

    def creation_observed(self, key: str) -> None:
        e = self._exp.get(key)
        if e is not None:
            e.add -= 1

    def creation_failed(self, key: str) -> None:
        """A create the controller expected did not happen: stop waiting for it."""
        self.creation_observed(key)

    def deletion_observed(self, key: str, pod_key: str) -> None:
        e = self._exp.get(key)
        if e is not None and pod_key in e.deleting:
            e.deleting.discard(pod_key)
            e.delete -= 1

    def forget(self, key: str) -> None:
        """The controller itself is gone: drop its record."""
        self._exp.pop(key, None)

    def pending(self, key: str) -> tuple[int, int]:
        e = self._exp.get(key)
        return (e.add, e.delete) if e else (0, 0)
