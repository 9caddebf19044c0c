"""The Reflector: keep a local Store equal to the apiserver's view of one resource, forever.

This is where "every component can be kill -9'd and rebuilds its view by list + watch" (DESIGN §1)
actually happens for clients. A Reflector lists a resource (paginated), then watches from the
list's resourceVersion, applying every event to its Store and telling its owner (the
SharedInformer) what changed as a `Delta`. It never gives up:

- every call has a deadline, so no call can hold the reflector for good (issue 20: after an
  overload a controller-manager's pod watch was gone on the server while its reflector waited
  on it forever, logging nothing): a list gets `list_timeout` (60 s, upstream's request
  timeout); a watch asks the server to end it after a random 5-10 minutes (`timeoutSeconds`,
  as client-go), and the call itself ends `WATCH_DEADLINE_SLACK` later if the server did not;
- a watch asks for bookmarks, which the apiserver sends whenever the watch is idle, so a
  watch with no event and no bookmark for `watch_progress_deadline` (60 s) is stalled (a
  stream the server forgot, a hung apiserver, a half-dead connection): it is abandoned and
  restarted;
- the watch stream ends (server timeout, apiserver restart), fails (connection lost,
  ServiceUnavailable) or stalls: re-watch from the last resourceVersion seen, after an
  exponential back-off with jitter (0.1 s doubling to a 30 s cap; reset as soon as a list or
  a watch makes progress); a list that fails is retried the same way, forever;
- each kind of trouble is logged once: the first failure of a streak at WARNING (a stall, a
  failed list or watch), repeats at DEBUG, and the recovery at INFO with how long it took;
  routine ends of a watch at DEBUG;
- the resourceVersion is too old for the server's watch cache (`Gone`, HTTP 410): relist, replace
  the Store, and emit synthetic deltas for the difference, like client-go's
  `DeltaFIFO.Replace`: ADDED for keys that are new, MODIFIED for keys whose resourceVersion
  changed, DELETED (with `final_state_unknown`, client-go's `DeletedFinalStateUnknown`) for keys
  that vanished. Nothing that changed while we were not watching is lost.

Invariants:
- deltas are emitted after the Store reflects them, in the order the server sent the events;
- `last_sync_resource_version` only moves forward along the server's event stream (events,
  bookmarks, list snapshots), so a re-watch from it neither replays nor skips events;
- `has_synced` becomes true once, after the first successful list has been applied, and stays
  true (client-go's HasSynced).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from api import errors
from api.meta import TypedObject
from api.resources import for_model
from client.apiclient import WatchEvent
from client.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T", bound=TypedObject)

LIST_TIMEOUT = 60.0  # seconds for a whole (paginated) list: upstream's --request-timeout
WATCH_TIMEOUT_MIN = 300  # a watch's timeoutSeconds is random in [5, 10) minutes (client-go)
WATCH_DEADLINE_SLACK = 30.0  # the client ends a watch this long after the server should have
WATCH_PROGRESS_DEADLINE = 60.0  # no event and no bookmark for this long: the watch is stalled


class ListerWatcher(Protocol):
    """What a Reflector needs from the apiserver (client-go's ListerWatcher); ApiClient is one."""

    async def list_all(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", page_size: int = 500, timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]: ...

    def watch(
        self, resource: str, namespace: str | None = None, *, resource_version: str = "",
        label_selector: str = "", field_selector: str = "", allow_bookmarks: bool = False,
        timeout_seconds: int = 0, request_timeout: float | None = None,
    ) -> AsyncIterator[WatchEvent]: ...


class WatchStalled(Exception):
    """A watch that delivered nothing, not even a bookmark, within its progress deadline, or
    that outlived the timeout the server was asked to end it at."""


class _Streak:
    """Consecutive failures of one kind of call, logged once (see the module docstring)."""

    def __init__(self, name: str, what: str) -> None:
        self.name, self.what = name, what
        self.count = 0
        self.since = 0.0

    def failed(self, problem: str, level: int = logging.WARNING) -> None:
        self.count += 1
        if self.count == 1:
            self.since = time.monotonic()
            log.log(level, "%s: %s: %s; retrying with back-off", self.name, self.what, problem)
        else:
            log.debug("%s: %s (failure %d in a row): %s", self.name, self.what, self.count,
                      problem)

    def succeeded(self) -> None:
        if self.count:
            log.info("%s: %s works again, after %d failure%s in %.0fs", self.name, self.what,
                     self.count, "" if self.count == 1 else "s", time.monotonic() - self.since)
            self.count = 0


class DeltaType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Delta(Generic[T]):
    """One change applied to the Store.

    `object` is the new state (ADDED, MODIFIED) or the final state (DELETED). For a DELETED found
    only by a relist, the final state is unknown: `object` is the last state we saw and
    `final_state_unknown` is true (client-go wraps it in a DeletedFinalStateUnknown tombstone).
    `old` is the previous cached state for MODIFIED and DELETED.
    """

    type: DeltaType
    object: T
    old: T | None = None
    final_state_unknown: bool = False


def replace_deltas(store: Store[T], items: list[T]) -> list[Delta[T]]:
    """The deltas that turn the store's content into `items` (a fresh list).

    Unchanged objects (same resourceVersion) produce nothing: a relist is not a resync.
    """
    deltas: list[Delta[T]] = []
    seen: set[str] = set()
    for obj in items:
        key = store.key_of(obj)
        seen.add(key)
        old = store.get(key)
        if old is None:
            deltas.append(Delta(DeltaType.ADDED, obj))
        elif old.metadata.resource_version != obj.metadata.resource_version:
            deltas.append(Delta(DeltaType.MODIFIED, obj, old))
    for key, old in store.items():
        if key not in seen:
            deltas.append(Delta(DeltaType.DELETED, old, old, final_state_unknown=True))
    return deltas


class Backoff:
    """Exponential back-off with jitter: initial, doubling, capped; `reset()` after a success."""

    def __init__(
        self, initial: float = 0.1, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rng = rng or random.Random()
        self._current = initial

    def next(self) -> float:
        # Jitter spreads the reconnects of many clients after an apiserver restart, so they do
        # not all relist in the same instant.
        delay = min(self.cap, self._current * (1 + self.jitter * self._rng.random()))
        self._current = min(self.cap, self._current * self.factor)
        return delay

    def reset(self) -> None:
        self._current = self.initial


class Reflector(Generic[T]):
    """List + watch one resource (optionally one namespace and selectors) into a Store.

    `run()` loops until cancelled; it never raises anything else. `on_delta` is called
    synchronously for every change after the Store has been updated, and `on_synced` once, right
    after the first list's deltas; an exception from either is logged and does not disturb the
    reflector.
    """

    def __init__(
        self,
        lw: ListerWatcher,
        model: type[T],
        store: Store[T],
        *,
        resource: str | None = None,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        on_delta: Callable[[Delta[T]], None] | None = None,
        on_synced: Callable[[], None] | None = None,
        name: str = "",
        page_size: int = 500,
        backoff: Backoff | None = None,
        watch_timeout_seconds: int | None = None,
        watch_progress_deadline: float = WATCH_PROGRESS_DEADLINE,
        list_timeout: float = LIST_TIMEOUT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.lw = lw
        self.model = model
        self.store = store
        self.resource = resource or for_model(model).name
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.on_delta = on_delta
        self.on_synced = on_synced
        self.name = name or _describe(self.resource, namespace, label_selector, field_selector)
        self.page_size = page_size
        self.backoff = backoff or Backoff()
        # None: a random 5-10 minutes per watch, as client-go does, so that watches of many
        # clients do not all expire together and a half-dead connection is noticed eventually.
        self.watch_timeout_seconds = watch_timeout_seconds
        self.watch_progress_deadline = watch_progress_deadline
        self.watch_deadline_slack = WATCH_DEADLINE_SLACK
        self.list_timeout = list_timeout
        self._sleep = sleep
        self._list_trouble = _Streak(self.name, "list")
        self._watch_trouble = _Streak(self.name, "watch")
        self._last_rv = ""
        self._synced = asyncio.Event()
        self._progressed = False
        # Counters, for tests and metrics: how often we listed and (re)started a watch, and
        # how many watches were abandoned as stalled.
        self.list_count = 0
        self.watch_count = 0
        self.stalled_count = 0

    # --- state ------------------------------------------------------------------------------

    @property
    def last_sync_resource_version(self) -> str:
        return self._last_rv

    @property
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        """Wait until the first list has been applied (bound it with `asyncio.timeout`)."""
        await self._synced.wait()

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        need_list = True
        while True:
            self._progressed = False
            listed = False
            try:
                if need_list:
                    await self._list_and_replace()
                    self._list_trouble.succeeded()
                    need_list = False
                    listed = True
                    self.backoff.reset()
                await self._watch()
                if self._progressed:
                    # A watch that delivered events and then ended normally (server-side
                    # timeout) is routine: re-watch at once.
                    log.debug("%s: watch ended; re-watching from %s", self.name, self._last_rv)
                    self.backoff.reset()
                    continue
                self._watch_trouble.failed("it ended without any event", logging.INFO)
            except errors.Gone as e:
                log.info("%s: resourceVersion %s is too old (%s); relisting",
                         self.name, self._last_rv, e)
                need_list = True
                if self._progressed or not listed:
                    continue
                # Gone from a watch of the RV we just listed: the server is confused (or its
                # cache restarting). Relisting at once would spin, so back off first.
            except asyncio.CancelledError:
                raise
            except WatchStalled as e:
                self.stalled_count += 1
                self._watch_trouble.failed(f"{e}; abandoning it")
            except Exception as e:
                trouble = self._list_trouble if need_list else self._watch_trouble
                problem = str(e) if isinstance(e, errors.ApiError) and str(e) \
                    else f"{type(e).__name__}: {e}"
                trouble.failed(problem)
            if self._progressed:
                self.backoff.reset()
            await self._sleep(self.backoff.next())

    async def _list_and_replace(self) -> None:
        self.list_count += 1
        raw, rv = await self.lw.list_all(
            self.resource, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size,
            timeout=self.list_timeout,
        )
        objs = [o for o in (self._parse(d) for d in raw) if o is not None]
        deltas = replace_deltas(self.store, objs)
        self.store.replace(objs, rv)
        self._last_rv = rv
        log.debug("%s: listed %d objects at resourceVersion %s (%d changes)",
                  self.name, len(objs), rv, len(deltas))
        for d in deltas:
            self._emit(d)
        if not self._synced.is_set():
            self._synced.set()
            if self.on_synced is not None:
                try:
                    self.on_synced()
                except Exception:
                    log.exception("%s: on_synced failed", self.name)

    async def _watch(self) -> None:
        """One watch from the last resourceVersion, until it ends; WatchStalled when it
        delivers nothing for the progress deadline or outlives its timeout."""
        self.watch_count += 1
        timeout = self.watch_timeout_seconds
        if timeout is None:
            timeout = int(WATCH_TIMEOUT_MIN * (1 + random.random()))
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout + self.watch_deadline_slack
        progress = self.watch_progress_deadline

        def deadline() -> float:
            return min(end, loop.time() + progress)

        stream = self.lw.watch(
            self.resource, self.namespace, resource_version=self._last_rv,
            label_selector=self.label_selector, field_selector=self.field_selector,
            allow_bookmarks=True, timeout_seconds=timeout,
            request_timeout=timeout + self.watch_deadline_slack,
        )
        # One timer for the whole watch, moved on by every event (bookmarks included): the
        # cancellation it delivers on expiry ends the stream's pending read.
        scope = asyncio.timeout_at(deadline())
        try:
            async with scope:
                async for ev in stream:
                    if not self._progressed:
                        self._progressed = True
                        self._watch_trouble.succeeded()
                    self._handle(ev)
                    scope.reschedule(deadline())
        except TimeoutError:
            if not scope.expired():
                raise
            if loop.time() >= end:
                raise WatchStalled(f"the server did not end it after its {timeout}s "
                                   "timeout") from None
            raise WatchStalled(f"no event and no bookmark for {progress:g}s") from None
        finally:
            # Close the stream now (cancels the RPC) rather than whenever it is collected. A
            # stream that cannot be closed (one already broken) must not stop the reflector.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):
                    await aclose()

    def _handle(self, ev: WatchEvent) -> None:
        md = ev.object.get("metadata")
        rv = str(md.get("resourceVersion") or "") if isinstance(md, dict) else ""
        if ev.type == "BOOKMARK":
            # A bookmark carries no object change, only "you are up to date until rv": moving
            # forward means a later re-watch does not have to replay (or relist) that far.
            self._advance(rv)
            return
        if ev.type == "ERROR":
            raise errors.from_status(ev.object)
        obj = self._parse(ev.object)
        if obj is None:
            self._advance(rv)
            return
        key = self.store.key_of(obj)
        if ev.type in ("ADDED", "MODIFIED"):
            old = self.store.get(key)
            self.store.add(obj)
            self._advance(rv)
            if old is None:
                self._emit(Delta(DeltaType.ADDED, obj))
            else:
                self._emit(Delta(DeltaType.MODIFIED, obj, old))
        elif ev.type == "DELETED":
            old = self.store.delete_key(key)
            self._advance(rv)
            self._emit(Delta(DeltaType.DELETED, obj, old))
        else:
            log.warning("%s: unknown watch event type %r", self.name, ev.type)
            self._advance(rv)

    def _advance(self, rv: str) -> None:
        if rv:
            self._last_rv = rv
            self.store.set_resource_version(rv)

    def _parse(self, data: dict[str, Any]) -> T | None:
        try:
            return self.model.model_validate(data)
        except Exception as e:
            # One malformed object must not wedge the whole cache in a relist loop.
            md = data.get("metadata") if isinstance(data, dict) else None
            name = md.get("name") if isinstance(md, dict) else None
            log.error("%s: dropping object %s that does not parse: %s", self.name, name, e)
            return None

    def _emit(self, delta: Delta[T]) -> None:
        if self.on_delta is None:
            return
        try:
            self.on_delta(delta)
        except Exception:
            log.exception("%s: delta handler failed", self.name)


def _describe(resource: str, namespace: str | None, label: str, field: str) -> str:
    parts = [resource]
    if namespace:
        parts.append(f"ns={namespace}")
    if label:
        parts.append(f"labels={label}")
    if field:
        parts.append(f"fields={field}")
    return "reflector(" + ",".join(parts) + ")"
