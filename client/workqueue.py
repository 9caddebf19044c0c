"""The controller work queue: client-go's util/workqueue (Type, DelayingQueue, RateLimitingQueue).

Event handlers only enqueue keys; workers take keys and run a level-triggered `sync(key)`. The
queue is what makes that shape safe and cheap (DESIGN §4):

- **dedup**: a key added many times before a worker takes it is processed once — ten pod updates
  become one sync;
- **one worker per key**: a key being processed is never handed to another worker. If it is added
  again meanwhile it is marked dirty and re-queued when the first worker calls `done(key)`, so the
  change is not lost and two syncs of one object never race;
- **rate-limited retries**: a failing key comes back after a per-key exponential back-off
  (5 ms doubling to 1000 s), combined with an overall token bucket (10 qps, burst 100), taking the
  larger delay (client-go's DefaultControllerRateLimiter); `forget(key)` resets the key's back-off.

Invariants (client-go's Type): a key is in at most one of {queued, processing}; `dirty` holds the
keys that need processing (queued ones, plus processing ones added again); items are handed out
FIFO. After `shut_down()` new adds are ignored, `get()` hands out what is still queued and then
returns None (client-go's `shutdown=true`) to every getter, waiting ones included.

All timing goes through a `Clock`, so tests drive delays with `FakeClock.advance()` instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)


# --- clocks ----------------------------------------------------------------------------------


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time and timers; `RealClock` in production, `FakeClock` in tests."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...

    async def sleep(self, delay: float) -> None: ...


class RealClock:
    """The event loop's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class _FakeTimer:
    def __init__(self, when: float, seq: int, callback: Callable[[], None]) -> None:
        self.when, self.seq, self.callback = when, seq, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: _FakeTimer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class FakeClock:
    """A clock that only moves when told: `advance(seconds)` fires due timers in time order."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[_FakeTimer] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        timer = _FakeTimer(self._now + max(0.0, delay), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle = self.call_later(delay, wake)
        try:
            await fut
        finally:
            handle.cancel()

    def advance(self, seconds: float) -> None:
        """Move time forward, firing each due timer with `now()` set to its due time."""
        target = self._now + seconds
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            timer.callback()
        self._now = target

    def pending_timers(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled)


# --- rate limiters ---------------------------------------------------------------------------


class RateLimiter(Protocol[K_contra]):
    """client-go's RateLimiter: how long to wait before retrying an item."""

    def when(self, item: K_contra) -> float: ...

    def forget(self, item: K_contra) -> None: ...

    def num_requeues(self, item: K_contra) -> int: ...


class ItemExponentialFailureRateLimiter(Generic[K]):
    """Per-item back-off: base_delay * 2^failures, capped at max_delay; `forget` resets."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._failures: dict[K, int] = {}

    def when(self, item: K) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        # Cap the exponent too: 2**10000 is a float overflow long before max_delay matters.
        if exp > 62:
            return self.max_delay
        return min(self.max_delay, self.base_delay * (2**exp))

    def forget(self, item: K) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: K) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[K]):
    """An overall token bucket (golang.org/x/time/rate semantics): `qps` refill, `burst` size.

    `when()` reserves a token and returns how long until it is available; it does not track
    items, so `forget` and `num_requeues` are no-ops.
    """

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        self.qps = qps
        self.burst = burst
        self.clock: Clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self.clock.now()

    def when(self, item: K) -> float:
        now = self.clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.qps

    def forget(self, item: K) -> None:
        pass

    def num_requeues(self, item: K) -> int:
        return 0


class MaxOfRateLimiter(Generic[K]):
    """The longest delay any of the limiters asks for (client-go's MaxOfRateLimiter)."""

    def __init__(self, *limiters: RateLimiter[K]) -> None:
        self.limiters = limiters

    def when(self, item: K) -> float:
        return max(limiter.when(item) for limiter in self.limiters)

    def forget(self, item: K) -> None:
        for limiter in self.limiters:
            limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return max(limiter.num_requeues(item) for limiter in self.limiters)


def default_controller_rate_limiter(
    clock: Clock | None = None, *, base_delay: float = 0.005, max_delay: float = 1000.0,
    qps: float = 10.0, burst: int = 100,
) -> MaxOfRateLimiter[K]:
    """client-go's DefaultControllerRateLimiter: per-item exponential + overall token bucket."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(base_delay, max_delay),
        BucketRateLimiter(qps, burst, clock),
    )


# --- queues ----------------------------------------------------------------------------------


class RateLimitingQueue(Generic[K]):
    """A deduplicating FIFO of keys with delayed and rate-limited adds (see module docstring).

    One class plays client-go's three layers (Type, DelayingQueue, RateLimitingQueue): Python
    has no interface embedding, and every controller wants all three.
    """

    def __init__(
        self, rate_limiter: RateLimiter[K] | None = None, *, clock: Clock | None = None,
        name: str = "",
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.rate_limiter: RateLimiter[K] = (
            rate_limiter if rate_limiter is not None
            else default_controller_rate_limiter(self.clock)
        )
        self.name = name
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._getters: deque[asyncio.Future[None]] = deque()
        # Delayed adds: item -> (ready time, timer). One timer per item; a later add_after with
        # an earlier ready time replaces it, a later one is ignored (client-go's waitingForQueue).
        self._waiting: dict[K, tuple[float, TimerHandle]] = {}
        self._shutting_down = False
        self._drained: asyncio.Event | None = None

    # --- Type -------------------------------------------------------------------------------

    def add(self, item: K) -> None:
        """Mark `item` as needing processing; no-op if it already does or we are shutting down."""
        if self._shutting_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            # Re-queued by done(): never hand one key to two workers at once.
            return
        self._queue.append(item)
        self._wake_one()

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those being processed or delayed)."""
        return len(self._queue)

    async def get(self) -> K | None:
        """The next key, waiting for one; None once the queue is shut down and empty.

        The caller owns the key until it calls `done(key)`.
        """
        while not self._queue:
            if self._shutting_down:
                return None
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    # We were woken for an item but are leaving: pass the wake-up on.
                    self._wake_one()
                else:
                    with contextlib.suppress(ValueError):
                        self._getters.remove(fut)
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: K) -> None:
        """Finish processing `item`; if it was added again meanwhile, queue it now."""
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        elif self._drained is not None and not self._processing:
            self._drained.set()

    def shut_down(self) -> None:
        """Ignore further adds; wake every getter (they get None once the queue is empty)."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    async def shut_down_with_drain(self) -> None:
        """Shut down, then wait until every key handed out has been `done()`.

        Bound it with `asyncio.timeout`: a stuck sync would otherwise block shutdown forever.
        """
        self.shut_down()
        if not self._processing:
            return
        self._drained = asyncio.Event()
        await self._drained.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def is_processing(self, item: K) -> bool:
        return item in self._processing

    def _wake_one(self) -> None:
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    # --- DelayingQueue ----------------------------------------------------------------------

    def add_after(self, item: K, delay: float) -> None:
        """Add `item` after `delay` seconds (at once if delay <= 0)."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready = self.clock.now() + delay
        existing = self._waiting.get(item)
        if existing is not None:
            if existing[0] <= ready:
                return
            existing[1].cancel()

        def fire() -> None:
            entry = self._waiting.get(item)
            if entry is not None and entry[0] == ready:
                del self._waiting[item]
                self.add(item)

        self._waiting[item] = (ready, self.clock.call_later(delay, fire))

    def num_waiting(self) -> int:
        """Keys scheduled by add_after / add_rate_limited that are not due yet."""
        return len(self._waiting)

    # --- RateLimitingQueue ------------------------------------------------------------------

    def add_rate_limited(self, item: K) -> None:
        """Add `item` once the rate limiter allows it (per-item back-off, overall bucket)."""
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: K) -> None:
        """Stop tracking retries of `item` (call after a successful sync)."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return self.rate_limiter.num_requeues(item)


async def process_next_work_item(
    queue: RateLimitingQueue[K], sync: Callable[[K], Awaitable[object]], name: str = ""
) -> bool:
    """One turn of the standard worker loop; False when the queue is shut down.

    get → `await sync(key)` → success: `forget` (reset back-off); failure: log and
    `add_rate_limited` (retry later) → always `done`.
    """
    key = await queue.get()
    if key is None:
        return False
    try:
        await sync(key)
    except asyncio.CancelledError:
        # Leaving mid-sync: put the key back so that whoever runs next does not miss it.
        queue.done(key)
        queue.add(key)
        raise
    except Exception as e:
        log.warning("%serror syncing %r (retry %d): %s: %s", f"{name}: " if name else "",
                    key, queue.num_requeues(key) + 1, type(e).__name__, e,
                    exc_info=log.isEnabledFor(logging.DEBUG))
        queue.add_rate_limited(key)
        queue.done(key)
    else:
        queue.forget(key)
        queue.done(key)
    return True


async def run_workers(
    queue: RateLimitingQueue[K], sync: Callable[[K], Awaitable[object]], workers: int = 1,
    *, name: str = "",
) -> None:
    """Run `workers` worker loops until the queue is shut down (or this task is cancelled).

    The queue guarantees that no key is synced by two workers at once, so `sync` only needs to
    be safe against concurrent syncs of *different* keys.
    """

    async def worker() -> None:
        while await process_next_work_item(queue, sync, name):
            pass

    tasks = [asyncio.create_task(worker(), name=f"{name or 'queue'} worker {i}")
             for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
