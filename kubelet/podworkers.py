"""One worker per pod: syncs of one pod never overlap, syncs of different pods run in parallel.

Upstream's pod_workers.go gives every pod a goroutine fed by a channel of updates, and coalesces
the updates that arrive while a sync runs into one next sync. The same here with asyncio: a task
per pod uid, woken by `wake(uid)` (pod events, container events, probe results) or by a timer
(`wake(uid, after=s)`: a back-off that expires, a periodic resync). Many wakes while a sync runs
give exactly one more sync after it, so a burst of events costs one sync, never a queue of them.

The sync function returns when it wants to run again (seconds, `math.inf` for "only when woken")
or None when the pod is finished (torn down): then the worker ends and forgets the pod. A sync
that raises is logged and retried after a back-off (1s doubling to `max_retry`), so a bug or a
flaky Docker call degrades into a retry, never a dead worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SyncFn = Callable[[str], Awaitable[float | None]]


@dataclass
class _Worker:
    uid: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    pending: bool = True  # a sync is due as soon as possible
    next_at: float = math.inf  # loop time of a timed sync
    task: asyncio.Task[None] | None = None
    syncing: bool = False


class PodWorkers:
    def __init__(self, sync: SyncFn, *, max_retry: float = 10.0,
                 on_exit: Callable[[str], None] | None = None) -> None:
        self._sync = sync
        self._max_retry = max_retry
        self._on_exit = on_exit
        self._workers: dict[str, _Worker] = {}
        self._closed = False

    def __contains__(self, uid: object) -> bool:
        return uid in self._workers

    def uids(self) -> list[str]:
        return list(self._workers)

    def wake(self, uid: str, after: float = 0.0, *, create: bool = True) -> None:
        """Sync the pod now (or in `after` seconds, unless sooner anyway); starts a worker for
        a pod that has none when `create`."""
        if self._closed:
            return
        w = self._workers.get(uid)
        if w is None:
            if not create:
                return
            w = _Worker(uid, pending=after <= 0)
            if after > 0:
                w.next_at = asyncio.get_running_loop().time() + after
            self._workers[uid] = w
            w.task = asyncio.create_task(self._run(w), name=f"pod worker {uid}")
            return
        if after <= 0:
            w.pending = True
        else:
            w.next_at = min(w.next_at, asyncio.get_running_loop().time() + after)
        w.event.set()

    def wake_all(self) -> None:
        for uid in list(self._workers):
            self.wake(uid)

    async def _run(self, w: _Worker) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        try:
            while True:
                while not w.pending:
                    timeout = w.next_at - loop.time()
                    if timeout <= 0:
                        break
                    w.event.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(None if math.isinf(timeout) else timeout):
                            await w.event.wait()
                w.pending, w.next_at = False, math.inf
                w.syncing = True
                try:
                    again = await self._sync(w.uid)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sync of pod %s failed; retrying", w.uid)
                    failures += 1
                    again = min(self._max_retry, 2.0 ** (failures - 1))
                finally:
                    w.syncing = False
                if again is None:
                    return
                if not math.isinf(again):
                    w.next_at = min(w.next_at, loop.time() + max(0.0, again))
        finally:
            if self._workers.get(w.uid) is w:
                del self._workers[w.uid]
            if self._on_exit is not None:
                with contextlib.suppress(Exception):
                    self._on_exit(w.uid)

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel every worker (a kubelet that stops leaves its containers running)."""
        self._closed = True
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
