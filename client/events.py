"""The EventRecorder: components report what they did as core/v1 Events (client-go tools/record).

`kubectl describe pod` shows "Scheduled", "Pulled", "BackOff", "FailedScheduling"...; those come
from here. Recording must never slow down or break the component that records, and a crash-looping
pod must not flood etcd with events, hence:

- **non-blocking**: `event()` only puts the event on a bounded in-memory queue (dropped with a log
  line when full, as client-go's broadcaster does); a background task writes them;
- **never raises** into the caller: every failure is logged and the event dropped;
- **aggregation** (client-go's eventLogger cache): an event identical to one recorded within the
  last 10 minutes — same involvedObject, type, reason, message and source — patches the existing
  Event's `count` and `lastTimestamp` instead of creating a new object;
- **spam filter** (simplified client-go EventSourceObjectSpamFilter): a token bucket per
  (source, involvedObject, type, reason) with burst 25, refilled with one token every 5 minutes;
  events beyond it are dropped. Both caches are LRU-bounded.

Event names are `<objname>.<hex nanoseconds>` as in client-go; the namespace is the object's, or
`default` for cluster-scoped objects (Nodes, Namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from api import errors
from api.meta import TypedObject, now_rfc3339

log = logging.getLogger(__name__)

EVENTS = "events"
NORMAL = "Normal"
WARNING = "Warning"

V = TypeVar("V")


class EventClient(Protocol):
    """The ApiClient verbs the recorder uses (ApiClient satisfies it)."""

    async def create(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, dry_run: bool = False,
    ) -> dict[str, Any]: ...

    async def patch(
        self, resource: str, name: str, patch: dict[str, Any] | list[Any],
        namespace: str | None = None, *, patch_type: str = "merge", subresource: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]: ...


class _LRU(Generic[V]):
    """A size-bounded mapping that evicts the least recently used key."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple[str, ...], V] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> V | None:
        value = self._d.get(key)
        if value is not None:
            self._d.move_to_end(key)
        return value

    def put(self, key: tuple[str, ...], value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def pop(self, key: tuple[str, ...]) -> None:
        self._d.pop(key, None)


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass
class _Seen:
    """What we wrote for one distinct event: enough to patch it instead of creating another."""

    name: str
    namespace: str
    count: int
    last_seen: float


@dataclass
class _Pending:
    involved: dict[str, Any]
    type: str
    reason: str
    message: str
    namespace: str


def object_reference(obj: TypedObject | dict[str, Any]) -> dict[str, Any]:
    """The involvedObject (core/v1 ObjectReference, JSON form) for a model or a JSON object."""
    if isinstance(obj, TypedObject):
        data: dict[str, Any] = {
            "apiVersion": obj.api_version, "kind": obj.kind,
            "metadata": obj.metadata.to_dict(),
        }
    else:
        data = obj
    md = data.get("metadata")
    if md is None:
        # Already an ObjectReference-shaped dict.
        return {k: v for k, v in data.items() if v}
    ref = {
        "kind": data.get("kind"), "namespace": md.get("namespace"), "name": md.get("name"),
        "uid": md.get("uid"), "apiVersion": data.get("apiVersion"),
        "resourceVersion": md.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Record Events for objects; see the module docstring for the guarantees.

    `flush()` waits until everything queued so far has been written (tests, shutdown);
    `close()` flushes (bounded) and stops the writer. Recording after `close()` is a no-op.
    """

    def __init__(
        self,
        client: EventClient,
        component: str,
        host: str | None = None,
        *,
        burst: int = 25,
        refill_interval: float = 300.0,
        aggregate_window: float = 600.0,
        max_queue: int = 1000,
        cache_size: int = 4096,
        max_attempts: int = 3,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host if host is not None else socket.gethostname()
        self.burst = burst
        self.refill_interval = refill_interval
        self.aggregate_window = aggregate_window
        self.max_attempts = max_attempts
        self.retry_interval = retry_interval
        self._clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(max_queue)
        self._buckets: _LRU[_Bucket] = _LRU(cache_size)
        self._seen: _LRU[_Seen] = _LRU(cache_size)
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._last_ns = 0
        # Counters, for tests and metrics.
        self.dropped = 0
        self.written = 0

    # --- recording (never raises) -----------------------------------------------------------

    def event(
        self, obj: TypedObject | dict[str, Any], type: str, reason: str, message: str
    ) -> None:
        """Record an event about `obj`; type is "Normal" or "Warning". Returns at once."""
        try:
            self._enqueue(obj, type, reason, message)
        except Exception:
            self.dropped += 1
            log.exception("dropping event %s %s", type, reason)

    def eventf(
        self, obj: TypedObject | dict[str, Any], type: str, reason: str, fmt: str, *args: Any
    ) -> None:
        """`event()` with a %-format message, like client-go's Eventf."""
        try:
            message = fmt % args if args else fmt
        except Exception:
            message = f"{fmt} {args!r}"
        self.event(obj, type, reason, message)

    def _enqueue(
        self, obj: TypedObject | dict[str, Any], type: str, reason: str, message: str
    ) -> None:
        if self._closed:
            return
        if type not in (NORMAL, WARNING):
            # client-go refuses unknown types the same way: log and drop.
            log.error("unsupported event type %r (reason %s); dropping", type, reason)
            self.dropped += 1
            return
        involved = object_reference(obj)
        namespace = involved.get("namespace") or "default"
        pending = _Pending(involved, type, reason, message, namespace)
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event queue full; dropping %s %s for %s", type, reason,
                        involved.get("name"))
            return
        self._ensure_writer()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                # Called outside the event loop: the event stays queued; the writer starts
                # with the next event() or flush() made inside the loop.
                return
            self._writer = loop.create_task(
                self._write_loop(), name=f"event recorder {self.component}")

    # --- writing ----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing event %s failed", pending.reason)
            finally:
                self._queue.task_done()

    def _allow(self, p: _Pending) -> bool:
        key = self._spam_key(p)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            refill = (now - bucket.last) / self.refill_interval if self.refill_interval else 0
            bucket.tokens = min(float(self.burst), bucket.tokens + refill)
            bucket.last = now
        self._buckets.put(key, bucket)
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _spam_key(self, p: _Pending) -> tuple[str, ...]:
        i = p.involved
        return (self.component, self.host, str(i.get("kind", "")), str(i.get("namespace", "")),
                str(i.get("name", "")), str(i.get("uid", "")), str(i.get("apiVersion", "")),
                p.type, p.reason)

    def _event_key(self, p: _Pending) -> tuple[str, ...]:
        return (*self._spam_key(p), p.message)

    async def _write(self, p: _Pending) -> None:
        if not self._allow(p):
            self.dropped += 1
            log.debug("event spam filter dropped %s %s for %s", p.type, p.reason,
                      p.involved.get("name"))
            return
        key = self._event_key(p)
        now = self._clock()
        ts = now_rfc3339()
        seen = self._seen.get(key)
        if seen is not None and now - seen.last_seen <= self.aggregate_window:
            patched = await self._attempt(lambda: self.client.patch(
                EVENTS, seen.name, {"count": seen.count + 1, "lastTimestamp": ts},
                seen.namespace,
            ), create=False)
            if patched is not None:
                seen.count += 1
                seen.last_seen = now
                self._seen.put(key, seen)
                self.written += 1
                return
            # The Event is gone (expired by its TTL, deleted): start a new series.
            self._seen.pop(key)
        name = self._event_name(str(p.involved.get("name") or "unknown"))
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": p.namespace},
            "involvedObject": p.involved,
            "reason": p.reason, "message": p.message, "type": p.type,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        created = await self._attempt(
            lambda: self.client.create(EVENTS, body, p.namespace), create=True)
        if created is not None:
            self._seen.put(key, _Seen(name, p.namespace, 1, now))
            self.written += 1

    async def _attempt(
        self, call: Callable[[], Any], *, create: bool
    ) -> dict[str, Any] | None:
        """A few tries with a pause; None when the write is abandoned."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                result: dict[str, Any] = await call()
                return result
            except errors.NotFound:
                # Patch: the event vanished. Create: the namespace is gone. Retrying cannot help.
                return None
            except (errors.AlreadyExists, errors.Invalid, errors.BadRequest,
                    errors.Forbidden) as e:
                log.warning("event %s rejected: %s", "create" if create else "patch", e)
                self.dropped += 1
                return None
            except errors.ApiError as e:
                log.info("event write failed (attempt %d/%d): %s", attempt, self.max_attempts,
                         e)
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.retry_interval)
        self.dropped += 1
        return None

    def _event_name(self, obj_name: str) -> str:
        # client-go: fmt.Sprintf("%v.%x", ref.Name, t.UnixNano()). Strictly increasing so two
        # events in the same nanosecond tick cannot collide.
        ns = max(time.time_ns(), self._last_ns + 1)
        self._last_ns = ns
        return f"{obj_name}.{ns:x}"

    # --- lifecycle --------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until every event queued so far is written or dropped.

        Writes retry for a few seconds at most, so this ends; `asyncio.timeout` bounds it anyway.
        """
        if not self._queue.empty() and (self._writer is None or self._writer.done()):
            self._ensure_writer()
        await self._queue.join()

    async def close(self, grace: float = 5.0) -> None:
        """Flush for at most `grace` seconds, then stop the writer; later events are ignored."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            # asyncio.wait, unlike wait_for, neither raises the task's CancelledError nor
            # swallows a cancellation of close() itself.
            await asyncio.wait({self._writer}, timeout=grace)
            self._writer = None
