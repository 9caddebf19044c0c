"""The watch cache's per-client stream (apiserver/watchcache.py WatchStream): its shutdown is
safe however the task serving it ends, and the watch ends at the client's timeoutSeconds.

Issue 20: after an overload an informer's watch was gone for good and the apiserver logged
`RuntimeError: aclose(): asynchronous generator is already running`. The watch was a chain of
async generators (front → handler → cache), each closing the next with `await aclose()` in a
`finally`. When the coroutine awaiting one of them is closed rather than cancelled (a task
destroyed while pending, a frame finalized by the garbage collector), that generator stays
"running" forever: its `aclose()` raises, and the `finally` that unregisters the watcher never
runs. `test_a_consumer_closed_mid_wait_leaves_a_closable_stream` is that sequence.
"""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

from apiserver.watchcache import CacheEvent, WatchCache, WatchStream


def configmap(name: str, rv: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)}}


class Cache:
    """A watch cache filled by hand, the way its etcd watch fills it (never started)."""

    def __init__(self) -> None:
        self.cache = WatchCache(None)  # type: ignore[arg-type]
        self.rv = 0

    def put(self, name: str) -> None:
        self.rv += 1
        key = f"ns/{name}"
        res = self.cache.caches["configmaps"]
        prev = res.store.get(key)
        res.apply(CacheEvent("MODIFIED" if prev else "ADDED", self.rv, "ns",
                             configmap(name, self.rv), prev), key)
        self.cache.rv = self.rv

    @property
    def watchers(self) -> int:
        return len(self.cache.caches["configmaps"].watchers)

    async def stream(self, *, bookmarks: float | None = None,
                     timeout: float | None = None) -> WatchStream:
        w = await self.cache.watch("configmaps", "ns", lambda _o: True, str(self.rv))
        return self.cache.stream(w, bookmarks is not None, bookmarks or 0.0, "ConfigMap", "v1",
                                 timeout)


def names(events: list[Any]) -> list[str]:
    return [json.loads(e.object)["metadata"].get("name", e.type) for e in events]


async def test_events_then_close_unregisters_once() -> None:
    c = Cache()
    s = await c.stream()
    assert c.watchers == 1
    c.put("a")
    c.put("b")
    assert names([await anext(s), await anext(s)]) == ["a", "b"]
    s.close()
    s.close()
    await s.aclose()  # as often as any front likes
    assert c.watchers == 0 and s.closed
    c.put("c")
    assert [e async for e in s] == []


async def test_a_consumer_closed_mid_wait_leaves_a_closable_stream() -> None:
    """The wedge: the coroutine awaiting the stream is closed (not cancelled) while it waits.
    With the old async generators the next aclose() raised "already running" and the watcher
    stayed registered for good."""
    c = Cache()
    s = await c.stream()
    coro = consume(s)
    waiting = coro.send(None)  # runs until the stream waits for an event
    assert waiting is not None
    coro.close()  # what a destroyed task does to its coroutine
    await s.aclose()  # no RuntimeError
    assert c.watchers == 0


async def consume(s: WatchStream) -> None:
    async for _ in s:
        pass


async def test_a_stream_dropped_unclosed_unregisters_when_collected() -> None:
    c = Cache()
    coro = consume(await c.stream())
    coro.send(None)
    assert c.watchers == 1
    coro.close()  # nobody calls close(): the stream is only dropped with the frame
    del coro
    gc.collect()
    assert c.watchers == 0


async def test_close_from_another_task_ends_a_waiting_consumer() -> None:
    c = Cache()
    s = await c.stream()
    got: list[Any] = []

    async def consume() -> None:
        async for ev in s:
            got.append(ev)

    task = asyncio.create_task(consume())
    c.put("a")
    await asyncio.sleep(0.01)
    s.close()
    await asyncio.wait_for(task, 1)  # ended, not hung
    assert names(got) == ["a"] and c.watchers == 0


async def test_cancelling_the_consumer_loses_no_event() -> None:
    """A cancelled wait leaves the stream usable: the event that arrives next is delivered to
    the next reader, not swallowed by an orphaned get()."""
    c = Cache()
    s = await c.stream(bookmarks=10.0)
    task = asyncio.create_task(anext(s))
    await asyncio.sleep(0.01)
    task.cancel()
    c.put("a")  # lands while the cancellation is being delivered
    await asyncio.gather(task, return_exceptions=True)
    assert names([await asyncio.wait_for(anext(s), 1)]) == ["a"]
    s.close()


async def test_the_watch_ends_at_its_timeout_with_bookmarks_before() -> None:
    c = Cache()
    loop = asyncio.get_running_loop()
    start = loop.time()
    s = await c.stream(bookmarks=0.05, timeout=0.3)
    events = [e async for e in s]
    elapsed = loop.time() - start
    assert 0.25 <= elapsed < 2.0
    assert events and {e.type for e in events} == {"BOOKMARK"}
    assert c.watchers == 0 and s.closed


async def test_a_timeout_without_bookmarks_ends_the_watch() -> None:
    c = Cache()
    s = await c.stream(timeout=0.1)
    assert [e async for e in s] == []
    assert c.watchers == 0


async def test_a_watcher_closed_by_the_cache_ends_the_stream() -> None:
    c = Cache()
    s = await c.stream()
    c.cache.caches["configmaps"].reset({}, c.rv)  # "watch cache reinitialized"
    assert [e async for e in s] == []
    assert s.closed
