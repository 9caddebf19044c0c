"""SharedInformer and SharedInformerFactory: one watch per resource, shared by every handler.

A controller-manager runs many controllers that all care about pods; without sharing, each would
hold its own list + watch and its own copy of every pod. client-go's answer, reproduced here: a
factory hands out one SharedInformer per (resource, namespace, label selector, field selector);
each informer runs one Reflector into one Store (an Indexer) and fans every change out to any
number of ResourceEventHandlers.

Invariants (client-go's sharedIndexInformer / processorListener):
- the Store is updated before handlers are told about a change, so a handler that reads the cache
  sees at least the state it is being notified about;
- each handler has its own unbounded notification buffer and its own task: a slow or failing
  handler delays only itself, never the watch or the other handlers; it receives notifications in
  the order the changes happened;
- a handler added after objects are cached first receives an ADDED for each of them;
- a handler that raises is logged; the informer and the handler's later notifications go on;
- `shutdown()` is bounded: it cancels every task and waits for them at most `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from api.meta import TypedObject
from api.resources import for_model
from client.reflector import (
    WATCH_PROGRESS_DEADLINE,
    Backoff,
    Delta,
    DeltaType,
    ListerWatcher,
    Reflector,
)
from client.store import NAMESPACE_INDEX, IndexFunc, Lister, Store, namespace_index

log = logging.getLogger(__name__)

T = TypeVar("T", bound=TypedObject)

@dataclass
class ResourceEventHandler(Generic[T]):
    """client-go's ResourceEventHandlerFuncs: any of the three may be None.

    Each may be a plain function or a coroutine function (its result is awaited if awaitable).

    `on_update(old, new)` is also called with old == new on a resync. `on_delete` gets the last
    known state of the object; when the deletion was only noticed by a relist, that state may be
    stale (client-go's DeletedFinalStateUnknown) — handlers that enqueue keys do not care.
    """

    on_add: Callable[[T], Any] | None = None
    on_update: Callable[[T, T], Any] | None = None
    on_delete: Callable[[T], Any] | None = None


@dataclass(frozen=True)
class _Note(Generic[T]):
    kind: str  # "add", "update", "delete", or "synced" (the initial-list marker)
    obj: T | None = None
    old: T | None = None


async def _call(fn: Callable[..., Any], *args: Any) -> None:
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


async def _eternal(name: str, body: Callable[[], Awaitable[None]], pause: float = 1.0) -> None:
    """Run `body` forever: a crash or an unexpected return is logged and `body` restarted.

    The bodies here already catch what they expect; this is the guard against the unexpected,
    so that a bug degrades into a log line and a retry instead of a silently dead informer.
    """
    while True:
        try:
            await body()
            log.error("%s: task exited unexpectedly; restarting", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: task crashed; restarting", name)
        await asyncio.sleep(pause)


class ResourceEventHandlerRegistration(Generic[T]):
    """One handler attached to a SharedInformer (client-go's processorListener + registration).

    `has_synced` is true once this handler has been handed every object of the initial list.
    """

    def __init__(
        self, informer: SharedInformer[T], handler: ResourceEventHandler[T],
        resync_period: float,
    ) -> None:
        self.informer = informer
        self.handler = handler
        self.resync_period = resync_period
        self._pending: deque[_Note[T]] = deque()
        self._wakeup = asyncio.Event()
        self._synced = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def has_synced(self) -> bool:
        return self._synced

    def _push(self, note: _Note[T]) -> None:
        self._pending.append(note)
        self._wakeup.set()

    def _start(self) -> None:
        name = f"{self.informer.name} handler"
        self._tasks.append(asyncio.create_task(_eternal(name, self._run), name=name))
        if self.resync_period > 0:
            self._tasks.append(asyncio.create_task(
                _eternal(f"{name} resync", self._resync_loop), name=f"{name} resync"))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                note = self._pending.popleft()
                await self._dispatch(note)

    async def _dispatch(self, note: _Note[T]) -> None:
        h = self.handler
        try:
            if note.kind == "add" and h.on_add is not None:
                await _call(h.on_add, note.obj)
            elif note.kind == "update" and h.on_update is not None:
                await _call(h.on_update, note.old, note.obj)
            elif note.kind == "delete" and h.on_delete is not None:
                await _call(h.on_delete, note.obj)
            elif note.kind == "synced":
                self._synced = True
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: %s handler raised", self.informer.name, note.kind)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            if self.informer.has_synced:
                # A resync replays the cache as updates (old == new) so that a controller
                # re-examines everything periodically even if no event arrives.
                for obj in self.informer.store.list():
                    self._push(_Note("update", obj, obj))

    async def _stop(self, grace: float) -> None:
        await _cancel_all(self._tasks, grace)
        self._tasks.clear()


class SharedInformer(Generic[T]):
    """One Reflector into one Store, fanned out to any number of handlers."""

    def __init__(
        self,
        lw: ListerWatcher,
        model: type[T],
        *,
        resource: str | None = None,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float = 0.0,
        indexers: dict[str, IndexFunc[T]] | None = None,
        backoff: Backoff | None = None,
        watch_timeout_seconds: int | None = None,
        watch_progress_deadline: float = WATCH_PROGRESS_DEADLINE,
    ) -> None:
        self.model = model
        self.resync_period = resync_period
        self.store: Store[T] = Store(
            indexers={NAMESPACE_INDEX: namespace_index, **(indexers or {})}
        )
        self.reflector: Reflector[T] = Reflector(
            lw, model, self.store, resource=resource, namespace=namespace,
            label_selector=label_selector, field_selector=field_selector,
            on_delta=self._distribute, on_synced=self._mark_synced, backoff=backoff,
            watch_timeout_seconds=watch_timeout_seconds,
            watch_progress_deadline=watch_progress_deadline,
        )
        self.name = self.reflector.name.replace("reflector", "informer", 1)
        self._handlers: list[ResourceEventHandlerRegistration[T]] = []
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    # --- cache access -----------------------------------------------------------------------

    @property
    def indexer(self) -> Store[T]:
        return self.store

    @property
    def lister(self) -> Lister[T]:
        return Lister(self.store)

    def add_indexers(self, indexers: dict[str, IndexFunc[T]]) -> None:
        self.store.add_indexers(indexers)

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the store (client-go's HasSynced)."""
        return self.reflector.has_synced

    async def wait_for_sync(self) -> None:
        """Wait until the first list is in the store (bound it with `asyncio.timeout`)."""
        await self.reflector.wait_for_sync()

    # --- handlers ---------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Callable[[T], Any] | None = None,
        on_update: Callable[[T, T], Any] | None = None,
        on_delete: Callable[[T], Any] | None = None,
        *,
        handler: ResourceEventHandler[T] | None = None,
        resync_period: float | None = None,
    ) -> ResourceEventHandlerRegistration[T]:
        """Attach a handler; it first gets ADDED for every object already cached.

        `resync_period` (seconds; default: the informer's) replays the cache to this handler as
        `on_update(obj, obj)` periodically; 0 disables it.
        """
        h = handler or ResourceEventHandler(on_add, on_update, on_delete)
        reg = ResourceEventHandlerRegistration(
            self, h, self.resync_period if resync_period is None else resync_period
        )
        # Synchronous from here to the end: no delta can slip in between the snapshot of the
        # store and the registration, so the handler sees every object exactly once as an add.
        for obj in self.store.list():
            reg._push(_Note("add", obj))
        if self.has_synced:
            reg._push(_Note("synced"))
        self._handlers.append(reg)
        if self._task is not None:
            reg._start()
        return reg

    async def remove_event_handler(
        self, reg: ResourceEventHandlerRegistration[T], grace: float = 5.0
    ) -> None:
        if reg in self._handlers:
            self._handlers.remove(reg)
            await reg._stop(grace)

    def _distribute(self, delta: Delta[T]) -> None:
        if delta.type is DeltaType.ADDED:
            note: _Note[T] = _Note("add", delta.object)
        elif delta.type is DeltaType.MODIFIED:
            note = _Note("update", delta.object, delta.old)
        else:
            note = _Note("delete", delta.object, delta.old)
        for reg in self._handlers:
            reg._push(note)

    def _mark_synced(self) -> None:
        # Called by the reflector right after the first list's deltas were distributed: the
        # marker sits behind them in every handler's buffer.
        for reg in self._handlers:
            reg._push(_Note("synced"))

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the reflector and every handler's task (needs a running event loop)."""
        if self._stopped:
            raise RuntimeError(f"{self.name} was shut down; informers cannot be restarted")
        if self._task is not None:
            return
        self._task = asyncio.create_task(_eternal(self.name, self.reflector.run), name=self.name)
        for reg in self._handlers:
            reg._start()

    async def run(self) -> None:
        """Start and run until cancelled (client-go's informer.Run(stopCh))."""
        self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel the reflector and the handlers' tasks; wait for them at most `grace` s."""
        self._stopped = True
        tasks: list[asyncio.Task[None]] = [self._task] if self._task is not None else []
        for reg in self._handlers:
            tasks.extend(reg._tasks)
            reg._tasks = []
        await _cancel_all(tasks, grace)


async def _cancel_all(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Cancel tasks and wait for them, but never longer than `grace`: shutdown is bounded."""
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    if pending:
        _, still = await asyncio.wait(pending, timeout=grace)
        for t in still:
            log.warning("task %s did not stop within %.1fs", t.get_name(), grace)
    for t in tasks:
        if t.done() and not t.cancelled():
            with contextlib.suppress(BaseException):
                t.result()


_InformerKey = tuple[str, str, str, str]


class SharedInformerFactory:
    """Hands out one SharedInformer per (resource, namespace, label selector, field selector).

    Usage, as in every client-go controller:

        factory = SharedInformerFactory(client)
        pods = factory.informer_for(Pod)
        pods.add_event_handler(on_add=..., on_update=..., on_delete=...)
        factory.start()
        await factory.wait_for_cache_sync()
        ...
        await factory.shutdown()
    """

    def __init__(
        self, client: ListerWatcher, *, default_resync: float = 0.0,
        namespace: str | None = None,
    ) -> None:
        self.client = client
        self.default_resync = default_resync
        self.namespace = namespace
        self._informers: dict[_InformerKey, SharedInformer[Any]] = {}
        self._started = False

    def informer_for(
        self,
        model: type[T],
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float | None = None,
        indexers: dict[str, IndexFunc[T]] | None = None,
    ) -> SharedInformer[T]:
        """The shared informer for this resource and filter, created on first use.

        Indexers asked for by a later caller are added to the existing informer (an index name
        already present is kept: the same name must mean the same function).
        `resync_period` only applies when the informer is created.
        """
        resource = for_model(model).name
        ns = namespace if namespace is not None else self.namespace
        key: _InformerKey = (resource, ns or "", label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = SharedInformer(
                self.client, model, resource=resource, namespace=ns or None,
                label_selector=label_selector, field_selector=field_selector,
                resync_period=self.default_resync if resync_period is None else resync_period,
                indexers=indexers,
            )
            self._informers[key] = inf
            if self._started:
                inf.start()
        elif indexers:
            have = inf.store.get_indexers()
            new = {k: v for k, v in indexers.items() if k not in have}
            if new:
                inf.add_indexers(new)
        return cast(SharedInformer[T], inf)

    @property
    def informers(self) -> list[SharedInformer[Any]]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer not yet started; call again after asking for more informers."""
        self._started = True
        for inf in self._informers.values():
            inf.start()

    async def wait_for_cache_sync(self) -> bool:
        """Wait until every started informer has applied its first list.

        Bound it with `async with asyncio.timeout(s):`. Returns True (client-go returns a map
        of per-type results; with no timeout inside there is nothing else to report).
        """
        started = [i for i in self._informers.values() if i.started]
        await asyncio.gather(*(i.wait_for_sync() for i in started))
        return True

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every informer concurrently, waiting at most about `grace` seconds in total."""
        coros: list[Coroutine[Any, Any, None]] = [
            i.stop(grace) for i in self._informers.values()
        ]
        await asyncio.gather(*coros)
