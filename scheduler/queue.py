"""The scheduling queue: which pending pod to try next, and when to retry one that did not fit.

Upstream's PriorityQueue, in three parts:

- **active**: pods ready to be tried, highest priority first, then oldest first;
- **backoff**: pods waiting out a back-off (initial 1 s, doubling per attempt up to 10 s, like
  upstream's podInitialBackoffSeconds / podMaxBackoffSeconds) before they go back to active;
- **unschedulable**: pods that fit nowhere. Retrying them blindly would burn CPU for nothing, so
  they wait for a cluster event that may change the answer (a node added or changed, an assigned
  pod deleted, a bind that failed), which moves them all to backoff (still backing off) or
  active; and, as a safety net, for 5 minutes at most (podMaxInUnschedulablePodsDuration).

`scheduling_cycle` counts pops and `move_request_cycle` remembers the cycle of the last move
request: a pod that failed while a move request happened during its cycle goes to backoff, not
unschedulable, so the event that could have made it fit is not lost (upstream's
moveRequestCycle). Each pod is in at most one part; keys are "namespace/name". The only async
method is `pop`; everything else is synchronous and takes its time from `clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from api.core import Pod
from scheduler.framework import PodInfo

DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 10.0
MAX_IN_UNSCHEDULABLE = 300.0


@dataclass(eq=False)
class QueuedPodInfo:
    """A pod in the queue with its attempt history (framework.QueuedPodInfo)."""

    info: PodInfo
    timestamp: float  # when it was (re)added: the FIFO order among equal priorities
    attempts: int = 0
    last_failure: float = 0.0
    unschedulable_since: float = 0.0
    seq: int = field(default=0)

    @property
    def key(self) -> str:
        return self.info.key


def backoff_duration(attempts: int, initial: float, maximum: float) -> float:
    """initial * 2^(attempts-1), capped at maximum (calculateBackoffDuration)."""
    d = initial
    for _ in range(1, attempts):
        d *= 2
        if d >= maximum:
            return maximum
    return min(d, maximum)


def _spec_changed(old: Pod, new: Pod) -> bool:
    """An update that could change where the pod fits (not just its status or resourceVersion)."""
    return old.spec != new.spec or old.metadata.labels != new.metadata.labels


class SchedulingQueue:
    def __init__(self, initial_backoff: float = DEFAULT_INITIAL_BACKOFF,
                 max_backoff: float = DEFAULT_MAX_BACKOFF,
                 clock: Callable[[], float] = time.monotonic,
                 max_in_unschedulable: float = MAX_IN_UNSCHEDULABLE) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_in_unschedulable = max_in_unschedulable
        self.clock = clock
        self.scheduling_cycle = 0
        self.move_request_cycle = -1
        self._active: dict[str, QueuedPodInfo] = {}
        self._active_heap: list[tuple[int, float, int, str]] = []
        self._backoff: dict[str, QueuedPodInfo] = {}
        self._backoff_heap: list[tuple[float, int, str]] = []
        self._unschedulable: dict[str, QueuedPodInfo] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._closed = False

    # --- where a pod is ---------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._active or key in self._backoff or key in self._unschedulable

    def __len__(self) -> int:
        return len(self._active) + len(self._backoff) + len(self._unschedulable)

    def counts(self) -> tuple[int, int, int]:
        """(active, backoff, unschedulable) sizes."""
        return len(self._active), len(self._backoff), len(self._unschedulable)

    def _remove(self, key: str) -> QueuedPodInfo | None:
        # Heap entries of removed pods stay behind; `seq` tells them apart from live ones.
        return (self._active.pop(key, None) or self._backoff.pop(key, None)
                or self._unschedulable.pop(key, None))

    def _to_active(self, q: QueuedPodInfo) -> None:
        q.seq = next(self._seq)
        self._active[q.key] = q
        heapq.heappush(self._active_heap, (-q.info.priority, q.timestamp, q.seq, q.key))
        self._wake.set()

    def _to_backoff(self, q: QueuedPodInfo) -> None:
        q.seq = next(self._seq)
        self._backoff[q.key] = q
        heapq.heappush(self._backoff_heap, (self.backoff_expiry(q), q.seq, q.key))
        self._wake.set()

    def backoff_expiry(self, q: QueuedPodInfo) -> float:
        if q.attempts == 0:
            return q.last_failure
        return q.last_failure + backoff_duration(q.attempts, self.initial_backoff,
                                                 self.max_backoff)

    def _is_backing_off(self, q: QueuedPodInfo, now: float) -> bool:
        return q.attempts > 0 and self.backoff_expiry(q) > now

    # --- informer events --------------------------------------------------------------------

    def add(self, p: PodInfo) -> None:
        """A new pending pod (or one seen again after a relist): straight to active."""
        old = self._remove(p.key)
        if old is not None:
            old.info = p
            self._to_active(old)
            return
        self._to_active(QueuedPodInfo(p, self.clock()))

    def update(self, p: PodInfo) -> None:
        """A pending pod changed. Unschedulable pods move only if the change could matter."""
        key = p.key
        if key in self._active:
            self._active[key].info = p
            return
        if key in self._backoff:
            self._backoff[key].info = p
            return
        q = self._unschedulable.get(key)
        if q is None:
            # Not queued: being scheduled right now, or never seen; the scheduler skips pods it
            # has already placed, so adding is safe.
            self._to_active(QueuedPodInfo(p, self.clock()))
            return
        changed = _spec_changed(q.info.pod, p.pod)
        q.info = p
        if changed:
            del self._unschedulable[key]
            self._requeue(q, self.clock())

    def delete(self, key: str) -> None:
        self._remove(key)

    def _requeue(self, q: QueuedPodInfo, now: float) -> None:
        if self._is_backing_off(q, now):
            self._to_backoff(q)
        else:
            self._to_active(q)

    def move_all_to_active_or_backoff(self) -> int:
        """A cluster event may make unschedulable pods fit: retry them all; returns how many."""
        now = self.clock()
        moved = list(self._unschedulable.values())
        self._unschedulable.clear()
        for q in moved:
            self._requeue(q, now)
        self.move_request_cycle = self.scheduling_cycle
        return len(moved)

    # --- the scheduler's side ---------------------------------------------------------------

    def add_unschedulable(self, q: QueuedPodInfo, pod_cycle: int) -> None:
        """`q` fit nowhere in cycle `pod_cycle`: park it, or back it off if a move request came
        in meanwhile."""
        if q.key in self:
            return  # an informer event re-added it during its cycle: that copy is newer
        now = self.clock()
        q.last_failure = q.timestamp = now  # behind the pods that waited while it was tried
        if self.move_request_cycle >= pod_cycle:
            self._to_backoff(q)
        else:
            q.unschedulable_since = now
            self._unschedulable[q.key] = q

    def add_backoff(self, q: QueuedPodInfo) -> None:
        """`q` failed with an error (not a misfit): retry after its back-off."""
        if q.key in self:
            return
        q.last_failure = q.timestamp = self.clock()
        self._to_backoff(q)

    def flush_backoff(self) -> None:
        """Move pods whose back-off is over to active."""
        now = self.clock()
        heap = self._backoff_heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            q = self._backoff.get(key)
            if q is not None and q.seq == seq:
                del self._backoff[key]
                self._to_active(q)

    def flush_unschedulable_leftover(self) -> int:
        """Retry pods parked longer than the maximum (in case the event that helps never came)."""
        now = self.clock()
        stale = [q for q in self._unschedulable.values()
                 if now - q.unschedulable_since >= self.max_in_unschedulable]
        for q in stale:
            del self._unschedulable[q.key]
            self._requeue(q, now)
        return len(stale)

    def _next_backoff_in(self) -> float | None:
        heap = self._backoff_heap
        while heap:
            expiry, seq, key = heap[0]
            q = self._backoff.get(key)
            if q is not None and q.seq == seq:
                return max(0.0, expiry - self.clock())
            heapq.heappop(heap)
        return None

    def pop_nowait(self) -> QueuedPodInfo | None:
        """The next active pod, if any; counts a scheduling cycle and an attempt."""
        self.flush_backoff()
        heap = self._active_heap
        while heap:
            _, _, seq, key = heapq.heappop(heap)
            q = self._active.get(key)
            if q is not None and q.seq == seq:
                del self._active[key]
                self.scheduling_cycle += 1
                q.attempts += 1
                return q
        return None

    async def pop(self) -> QueuedPodInfo | None:
        """Wait for the next pod to try; None once closed."""
        while not self._closed:
            q = self.pop_nowait()
            if q is not None:
                return q
            self._wake.clear()
            timeout = self._next_backoff_in()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns when the wake-up and
            # a cancellation arrive together and drops the cancellation, so the scheduler's
            # loop would go on after being stopped.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        return None

    def close(self) -> None:
        self._closed = True
        self._wake.set()
