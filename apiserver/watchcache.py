"""The watch cache: every client watch is served from here, never straight from etcd.

One etcd watch (over the whole keyspace, from the revision of one consistent initial list) feeds a
store and a ring buffer of recent events per resource. A client watch then:
- from resourceVersion "" or "0": gets synthetic ADDED events for the current state, then changes;
- from N: gets exactly the buffered events after N, then changes — or Gone when the ring no longer
  reaches back to N (the client relists), or waits up to 3s when N is newer than what the cache has
  seen yet (a List just answered by etcd can be a moment ahead of the watch stream).

Why one etcd watch rather than one per resource: every cache then shares one totally ordered
revision stream, so the cache's revision tracks etcd's global revision and a watch from *any*
resourceVersion a List returned can be served promptly. Kubernetes gets the same guarantee from
etcd progress notifications, which etcd 3.4 sends only every 10 minutes by default
(docs/deviations.md).

Invariants: everything runs on one event loop, so registering a watcher and snapshotting the ring
happen atomically (no event can fall between replay and live delivery); `rv` only grows; a
watcher sees events in revision order; an object that stops matching a watcher's selectors
arrives as DELETED (its previous state, stamped with the new resourceVersion), one that starts
matching as ADDED; a watcher is unregistered exactly once, however its stream ends (see
`WatchStream`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from api import errors
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES, ResourceInfo
from apiserver import metrics
from apiserver.storage import Storage, key_parts, object_key

log = logging.getLogger(__name__)

WAIT_FRESH_SECONDS = 3.0
WATCHER_BUFFER = 4096

Filter = Callable[[dict[str, Any]], bool]


def _message(kind: str, obj: dict[str, Any]) -> pb.WatchEvent:
    return pb.WatchEvent(type=kind, object=json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class CacheEvent:
    """One change, with its wire messages built once and shared by every watcher it goes to
    (with a thousand watchers, per-watcher encoding would dominate the cost of a write)."""

    type: str  # ADDED, MODIFIED, DELETED
    rv: int
    namespace: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None
    _messages: dict[str, pb.WatchEvent] = field(default_factory=dict)

    def message(self, kind: str) -> pb.WatchEvent:
        """This event's object as a `kind` event (ADDED/MODIFIED/DELETED)."""
        msg = self._messages.get(kind)
        if msg is None:
            msg = self._messages[kind] = _message(kind, self.obj)
        return msg

    def prev_as_deleted(self) -> pb.WatchEvent:
        """The previous state stamped with this event's resourceVersion (stopped matching)."""
        msg = self._messages.get("prev")
        if msg is None:
            assert self.prev is not None
            prev = {**self.prev, "metadata": {**self.prev.get("metadata", {}),
                                              "resourceVersion": str(self.rv)}}
            msg = self._messages["prev"] = _message("DELETED", prev)
        return msg


@dataclass(eq=False)  # identity semantics: watchers live in sets
class Watcher:
    """One client watch: a namespace/selector filter and the events waiting to be sent."""

    resource: str
    namespace: str
    matches: Filter
    initial: deque[pb.WatchEvent] = field(default_factory=deque)
    queue: asyncio.Queue[pb.WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(WATCHER_BUFFER)
    )
    closed: bool = False
    close_reason: str = ""

    def offer(self, ev: CacheEvent) -> None:
        if self.closed:
            return
        item = self.translate(ev)
        if item is None:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A consumer this far behind would hold memory without bound; end its watch and let
            # it resume from its last resourceVersion, as Kubernetes does with slow watchers.
            self.close("watcher too slow")

    def translate(self, ev: CacheEvent) -> pb.WatchEvent | None:
        """What this watcher is told of `ev`, if anything."""
        if self.namespace and ev.namespace != self.namespace:
            return None
        now = self.matches(ev.obj)
        before = ev.prev is not None and self.matches(ev.prev)
        if ev.type == "DELETED":
            return ev.message("DELETED") if now else None
        if now and before:
            return ev.message("MODIFIED")
        if now:
            return ev.message("ADDED")
        if before:
            return ev.prev_as_deleted()
        return None

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    async def next(self, timeout: float | None) -> pb.WatchEvent | None:
        """The next event; None when closed; raises TimeoutError when idle for `timeout`."""
        if self.initial:
            return self.initial.popleft()
        if not self.queue.empty():
            return self.queue.get_nowait()  # the common case under load: no timer needed
        if self.closed:
            return None
        if timeout is None:
            return await self.queue.get()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for runs the get() in a task of its
        # own, which a second cancellation can orphan (its event then lost) and whose result
        # can swallow a cancellation that arrives with it (the watch then outlives its end).
        async with asyncio.timeout(timeout):
            return await self.queue.get()


class ResourceCache:
    """Current objects and recent events of one resource."""

    def __init__(self, info: ResourceInfo, capacity: int) -> None:
        self.info = info
        self.store: dict[str, dict[str, Any]] = {}
        self.ring: deque[CacheEvent] = deque()
        self.capacity = capacity
        # Watches from any resourceVersion >= start_rv can be served from the ring.
        self.start_rv = 0
        self.watchers: set[Watcher] = set()

    def reset(self, objects: dict[str, dict[str, Any]], rv: int) -> None:
        self.store = objects
        self.ring.clear()
        self.start_rv = rv
        for w in list(self.watchers):
            w.close("watch cache reinitialized")
        self.watchers.clear()
        metrics.WATCHERS.labels(self.info.name).set(0)

    def apply(self, ev: CacheEvent, key: str) -> None:
        if ev.type == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = ev.obj
        if len(self.ring) >= self.capacity:
            self.start_rv = self.ring.popleft().rv
        self.ring.append(ev)
        metrics.WATCH_CACHE_EVENTS.labels(self.info.name).inc()
        for w in self.watchers:
            w.offer(ev)


class WatchCache:
    """All resource caches, fed by one etcd watch. `start()` returns once the initial list is in."""

    def __init__(self, storage: Storage, capacity: int = 1000) -> None:
        self.storage = storage
        self.caches = {name: ResourceCache(info, capacity) for name, info in RESOURCES.items()}
        self.rv = 0
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._relist()
        self._task = asyncio.create_task(self._run(), name="watch-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for c in self.caches.values():
            for w in list(c.watchers):
                w.close("apiserver shutting down")

    async def _relist(self) -> None:
        rev = await self.storage.current_revision()
        objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.caches}
        start = b"/registry/"
        end = b"/registry0"  # '/' + 1: the end of the /registry/ prefix
        while True:
            kvs, more, _, _ = await self.storage.range(start, end, limit=1000, revision=rev)
            for kv in kvs:
                parts = key_parts(kv.key)
                if parts and parts[0] in objects:
                    res, ns, name = parts
                    try:
                        obj = self.storage.decode(kv)
                    except ValueError as e:
                        log.error("watch cache: skipping undecodable value at %r: %s", kv.key, e)
                        continue
                    objects[res][f"{ns}/{name}" if ns else name] = obj
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        for name, cache in self.caches.items():
            cache.reset(objects[name], rev)
        self._advance(rev)
        log.info("watch cache listed %d objects at revision %d",
                 sum(len(o) for o in objects.values()), rev)

    async def _run(self) -> None:
        """Follow etcd forever: reconnect with back-off; relist when etcd compacted past us."""
        delay = 0.1
        while True:
            try:
                async for resp in self.storage.watch(self.rv + 1):
                    delay = 0.1
                    self._handle(resp)
            except errors.Gone as e:
                log.warning("watch cache: %s; relisting", e)
                await self._relist_with_retry()
            except errors.ApiError as e:
                log.warning("watch cache: etcd watch failed: %s; retrying in %.1fs", e, delay)
            except Exception:
                # A bug here must not freeze every watch for good: log it, start over.
                log.exception("watch cache: unexpected error; relisting")
                await self._relist_with_retry()
            await asyncio.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, 5.0)

    async def _relist_with_retry(self) -> None:
        while True:
            try:
                await self._relist()
                return
            except errors.ApiError as e:
                log.warning("watch cache: relist failed: %s", e)
                await asyncio.sleep(1.0)

    def _handle(self, resp: Any) -> None:
        if not resp.events:
            # A progress notification: every later event has a higher revision.
            if not resp.created and resp.header.revision > self.rv:
                self._advance(int(resp.header.revision))
            return
        for ev in resp.events:
            self._handle_event(ev)
            self._advance(int(ev.kv.mod_revision))

    def _handle_event(self, ev: Any) -> None:
        parts = key_parts(ev.kv.key)
        if not parts or parts[0] not in self.caches:
            return
        res, ns, name = parts
        cache = self.caches[res]
        key = f"{ns}/{name}" if ns else name
        prev = cache.store.get(key)
        if ev.type == 1:  # DELETE
            if prev is None:
                return
            obj = {**prev, "metadata": {**prev.get("metadata", {}),
                                        "resourceVersion": str(ev.kv.mod_revision)}}
            cache.apply(CacheEvent("DELETED", ev.kv.mod_revision, ns, obj, prev), key)
            return
        try:
            obj = self.storage.decode(ev.kv)
        except ValueError as e:
            log.error("watch cache: undecodable value at %r: %s", ev.kv.key, e)
            return
        kind = "MODIFIED" if prev is not None else "ADDED"
        cache.apply(CacheEvent(kind, ev.kv.mod_revision, ns, obj, prev), key)

    def _advance(self, rv: int) -> None:
        if rv > self.rv:
            self.rv = rv
            self._advanced.set()
            self._advanced = asyncio.Event()

    async def wait_fresh(self, rv: int) -> None:
        """Wait until the cache has seen revision `rv`; Timeout after 3s like kube-apiserver."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_FRESH_SECONDS
        while self.rv < rv:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise errors.Timeout(
                    message=f"Too large resource version: {rv}, current: {self.rv}",
                    retry_after_seconds=1,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # not wait_for: see Watcher.next
                    await self._advanced.wait()

    # --- what the registry and the gRPC service use ---------------------------------------

    def get(self, resource: str, key: str) -> dict[str, Any] | None:
        return self.caches[resource].store.get(key)

    async def lookup(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object from the cache, or from etcd when the cache has not seen it (yet): for
        checks that must not fail because the cache is a few milliseconds behind a create."""
        obj = self.get(resource, f"{namespace}/{name}" if namespace else name)
        if obj is None:
            obj = await self.storage.get(object_key(resource, namespace, name))
        return obj

    def list(self, resource: str, namespace: str, matches: Filter
             ) -> tuple[list[dict[str, Any]], int]:
        cache = self.caches[resource]
        items = [
            o for k, o in sorted(cache.store.items())
            if (not namespace or k.startswith(namespace + "/")) and matches(o)
        ]
        return items, self.rv

    async def watch(self, resource: str, namespace: str, matches: Filter, rv: str) -> Watcher:
        """Register a watcher, primed with the replay its resourceVersion asks for."""
        cache = self.caches[resource]
        w = Watcher(resource, namespace, matches)
        if rv in ("", "0"):
            items, _ = self.list(resource, namespace, matches)
            w.initial.extend(_message("ADDED", obj) for obj in items)
        else:
            start = _parse_rv(rv)
            await self.wait_fresh(start)
            if start < cache.start_rv:
                raise errors.Gone(
                    message=f"too old resource version: {start} ({cache.start_rv})"
                )
            for ev in cache.ring:
                if ev.rv > start:
                    item = w.translate(ev)
                    if item is not None:
                        w.initial.append(item)
        cache.watchers.add(w)
        metrics.WATCHERS.labels(resource).set(len(cache.watchers))
        return w

    def unregister(self, w: Watcher) -> None:
        cache = self.caches[w.resource]
        cache.watchers.discard(w)
        w.close("client went away")
        metrics.WATCHERS.labels(w.resource).set(len(cache.watchers))

    def stream(self, w: Watcher, bookmarks: bool, bookmark_interval: float, kind: str,
               api_version: str, timeout: float | None = None) -> WatchStream:
        """Events for one watcher until `timeout` seconds (the client's timeoutSeconds) have
        passed or the watcher closes; BOOKMARKs (when asked) whenever it is idle for an
        interval."""
        return WatchStream(self, w, bookmark_interval if bookmarks else None, kind, api_version,
                           timeout)

    def bookmark(self, kind: str, api_version: str) -> bytes:
        return json.dumps({"apiVersion": api_version, "kind": kind,
                           "metadata": {"resourceVersion": str(self.rv)}}).encode()


class WatchEvents(Protocol):
    """What a front iterates to serve a watch: a `WatchStream`, or an async generator of its
    own (the HTTP front's one-event ERROR answer). `aclose()` must be safe to call more than
    once."""

    def __aiter__(self) -> AsyncIterator[pb.WatchEvent]: ...

    def __anext__(self) -> Awaitable[pb.WatchEvent]: ...

    def aclose(self) -> Awaitable[None]: ...


class WatchStream:
    """One client watch's events: an async iterator whose shutdown is safe from anywhere.

    Why a class and not an async generator (issue 20: an informer stopped for good after an
    overload, and the apiserver logged `aclose(): asynchronous generator is already
    running`): an async generator is "running" for as long as one `__anext__` is in flight.
    When the coroutine awaiting it is closed instead of cancelled (a task destroyed while
    pending, a frame finalized by the garbage collector), that `__anext__` never completes
    and every later `aclose()` raises, so the `finally` that unregisters the watcher never
    runs, and with three generators nested (front, handler, cache) each one's `finally`
    awaited the next one's `aclose()`. Here:

    - `close()` is synchronous, idempotent and callable while a `__anext__` is waiting (the
      watcher's close wakes it with the end-of-stream sentinel), from any task;
    - a stream dropped without being closed still unregisters its watcher when it is collected
      (`weakref.finalize`), so the watcher count cannot leak;
    - the watch's end (`timeout`, the client's timeoutSeconds) is a deadline checked here,
      so a front never needs a cancel scope around a `yield`: `asyncio.timeout` around a yield
      cancels whatever its task is doing at the time, such as gRPC's own write of the
      previous event, and leaves the generator to be finalized later, elsewhere.
    """

    _REPORT_EVERY = 64  # the events-sent counter takes a lock: report in batches

    def __init__(self, cache: WatchCache, w: Watcher, bookmark_interval: float | None,
                 kind: str, api_version: str, timeout: float | None) -> None:
        self._cache = cache
        self._w = w
        self._bookmark_interval = bookmark_interval
        self._kind, self._api_version = kind, api_version
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout if timeout else None
        self._closed = False
        self._sent = metrics.WATCH_EVENTS_SENT.labels(w.resource)
        self._unreported = 0
        self._finalizer = weakref.finalize(self, cache.unregister, w)

    @property
    def closed(self) -> bool:
        return self._closed

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> pb.WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        wait = self._bookmark_interval
        until_deadline = False
        if self._deadline is not None:
            remaining = self._deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                self.close()
                raise StopAsyncIteration
            if wait is None or remaining <= wait:
                wait, until_deadline = remaining, True
        try:
            item = await self._w.next(wait)
        except TimeoutError:
            if until_deadline:
                self.close()  # the client's timeoutSeconds: ending the stream is the answer
                raise StopAsyncIteration from None
            item = pb.WatchEvent(type="BOOKMARK",
                                 object=self._cache.bookmark(self._kind, self._api_version))
        if item is None:  # the watcher closed (too slow, cache reinitialized, shutdown)
            self.close()
            raise StopAsyncIteration
        self._unreported += 1
        if self._unreported >= self._REPORT_EVERY:
            self._report()
        return item

    def _report(self) -> None:
        if self._unreported:
            self._sent.inc(self._unreported)
            self._unreported = 0

    def close(self) -> None:
        """End the stream and unregister its watcher (once; any later call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self._report()
        self._finalizer()

    async def aclose(self) -> None:
        """`close()`, for callers that treat the stream as an async generator."""
        self.close()


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
    except ValueError:
        raise errors.BadRequest(message=f'resourceVersion: Invalid value: "{rv}": must be an '
                                "integer") from None
    if value < 0:
        raise errors.BadRequest(message=f'resourceVersion: Invalid value: "{rv}": must be >= 0')
    return value

