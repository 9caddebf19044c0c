"""The proxy runtime both backends share: informers → service map → rate-limited backend sync.

kube-proxy's loop (upstream's iptables/ipvs Proxier + pkg/util/async BoundedFrequencyRunner):
Service and Endpoints events only mark a Service dirty and ask for a sync; the runner coalesces
every request that arrives while a sync runs or within `--min-sync-period` of the last one into
one sync, and syncs at least every `--sync-period` even without events. A sync recomputes the
dirty Services' ports from the informer caches (level-triggered: the cache, not the event, is
the truth), hands the whole desired ServiceMap to the backend in a thread (its kernel calls
block), and records upstream's metrics. A failed sync is retried with back-off; the backend
makes sure a failure never leaves half a rule set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from api.core import Endpoints, Node, Service
from api.meta import TypedObject
from client.informer import SharedInformerFactory
from client.reflector import ListerWatcher
from proxy.metrics import TRIGGER_TIME_ANNOTATION, Metrics, parse_trigger_time
from proxy.model import ServiceMap, ServicePort, service_ports

log = logging.getLogger(__name__)


class Backend(Protocol):
    """What programs the kernel: iptables (proxy.iptables) or IPVS (proxy.ipvs)."""

    def sync(self, services: ServiceMap, node_ips: Sequence[str]) -> None:
        """Make the kernel hold exactly `services` (blocking; raises on failure)."""

    def cleanup(self) -> None:
        """Remove everything this backend ever programmed (blocking)."""


class BoundedFrequencyRunner:
    """Runs `fn` when asked, at most once per `min_interval`, at least once per `max_interval`.

    Invariants (upstream's BoundedFrequencyRunner):
    - `run()` never blocks and never runs `fn` itself; any number of `run()` calls between two
      runs of `fn` cause one run (coalescing); a call during a run causes one more run after it;
    - runs are rate-limited by a token bucket of `burst` runs refilled at one per
      `min_interval` (upstream's, with kube-proxy's burstSyncs=2): after a quiet period up to
      `burst` runs start back to back, then one per `min_interval` (with burst=1: two runs
      start at least `min_interval` apart); after a failure the next run waits the back-off,
      doubling from `retry_initial` up to `max_interval`; the first run is immediate;
    - without any `run()`, `fn` still runs every `max_interval`; a failed run is retried
      (after the back-off) even without a `run()`.
    `clock` and `sleep` are injectable so that tests run on a fake clock.
    """

    def __init__(self, name: str, fn: Callable[[], Awaitable[None]], min_interval: float,
                 max_interval: float, *, burst: int = 1, retry_initial: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.name = name
        self.fn = fn
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.retry_initial = retry_initial
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._tokens_at = clock()
        self.clock = clock
        self.sleep = sleep
        self._requested = asyncio.Event()
        self.failures = 0
        self.runs = 0

    def run(self) -> None:
        """Ask for a run (coalesced with every other request until the run starts)."""
        self._requested.set()

    def _gap(self) -> float:
        if not self.failures:
            return self.min_interval
        backoff = self.retry_initial * 2 ** (self.failures - 1)
        return max(self.min_interval, min(backoff, self.max_interval))

    def _refill(self, now: float) -> None:
        if self.min_interval > 0:
            self._tokens = min(float(self.burst),
                               self._tokens + (now - self._tokens_at) / self.min_interval)
        else:
            self._tokens = float(self.burst)
        self._tokens_at = now

    def _token_due(self, now: float) -> float:
        """When the bucket next holds a whole token (now, if it does)."""
        self._refill(now)
        return now if self._tokens >= 1 else now + (1 - self._tokens) * self.min_interval

    async def _wait(self, timeout: float) -> None:
        """Until a `run()` or `timeout`, whichever is first."""
        waiter = asyncio.ensure_future(self._requested.wait())
        sleeper = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()

    async def loop(self) -> None:
        last: float | None = None
        while True:
            now = self.clock()
            if last is None:
                due = now
            elif self.failures:
                due = last + self._gap()
            elif self._requested.is_set():
                due = self._token_due(now)
            else:
                due = last + self.max_interval
            if due > now:
                if self._requested.is_set() or self.failures:
                    await self.sleep(due - now)  # rate limit: requests keep coalescing
                else:
                    await self._wait(due - now)
                continue
            # Cleared before the run: a request arriving during it causes one more run.
            self._requested.clear()
            last = self.clock()
            self._refill(last)
            self._tokens = max(0.0, self._tokens - 1)
            self.runs += 1
            try:
                await self.fn()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.failures += 1
                log.error("%s failed (attempt %d; retrying in %.1fs): %s", self.name,
                          self.failures, self._gap(), e)
            else:
                self.failures = 0


def node_ips(node: Node | None) -> list[str]:
    """The Node's InternalIP and ExternalIP addresses (NodePorts listen on them in IPVS)."""
    if node is None or node.status is None:
        return []
    return [a.address for a in node.status.addresses or []
            if a.type in ("InternalIP", "ExternalIP") and a.address]


_Key = tuple[str, str]


def _key(obj: TypedObject) -> _Key:
    return (obj.metadata.namespace or "", obj.metadata.name or "")


class Proxier:
    """Watches Services, Endpoints and this Node; keeps `backend` in sync with them."""

    def __init__(self, client: ListerWatcher, node_name: str, backend: Backend, *,
                 min_sync_period: float = 1.0, sync_period: float = 30.0,
                 metrics: Metrics | None = None) -> None:
        self.node_name = node_name
        self.backend = backend
        self.metrics = metrics or Metrics()
        self.factory = SharedInformerFactory(client)
        self.services = self.factory.informer_for(Service)
        self.endpoints = self.factory.informer_for(Endpoints)
        self.nodes = self.factory.informer_for(Node)
        # burst 2: kube-proxy's burstSyncs (a change right after a sync is not held back a
        # whole --min-sync-period; a storm of them still is).
        self.runner = BoundedFrequencyRunner("sync proxy rules", self.sync, min_sync_period,
                                             sync_period, burst=2)
        self._ports: dict[_Key, list[ServicePort]] = {}
        self._dirty: set[_Key] = set()
        # Endpoints' last-change-trigger-time not yet programmed (network programming latency).
        self._triggers: list[float] = []
        self._synced = False
        self.services.add_event_handler(on_add=self._changed,
                                        on_update=lambda old, new: self._changed(new),
                                        on_delete=self._changed)
        self._ep_reg = self.endpoints.add_event_handler(
            on_add=self._endpoints_changed,
            on_update=lambda old, new: self._endpoints_changed(new, old),
            on_delete=self._changed)
        self.nodes.add_event_handler(on_add=self._node_changed,
                                     on_update=lambda old, new: self._node_changed(new, old),
                                     on_delete=self._node_changed)

    def _changed(self, obj: TypedObject) -> None:
        self._dirty.add(_key(obj))
        if self._synced:
            self.runner.run()

    def _endpoints_changed(self, ep: Endpoints, old: Endpoints | None = None) -> None:
        if self._ep_reg.has_synced:  # not the initial list: that is no "change"
            text = (ep.metadata.annotations or {}).get(TRIGGER_TIME_ANNOTATION)
            old_text = (old.metadata.annotations or {}).get(TRIGGER_TIME_ANNOTATION) \
                if old is not None else None
            t = parse_trigger_time(text) if text and text != old_text else None
            if t is not None:
                self._triggers.append(t)
        self._changed(ep)

    def _node_changed(self, node: Node, old: Node | None = None) -> None:
        # Only its addresses matter (NodePorts in IPVS mode): the kubelet's status heartbeat
        # every 10s must not cost a restore each.
        if node.metadata.name != self.node_name or not self._synced:
            return
        if old is None or node_ips(old) != node_ips(node):
            self.runner.run()

    def desired(self) -> ServiceMap:
        """The ServiceMap of the informer caches (recomputing only the dirty Services)."""
        dirty, self._dirty = self._dirty, set()
        for ns, name in dirty:
            svc = self.services.lister.get(name, ns)
            if svc is None:
                self._ports.pop((ns, name), None)
                continue
            ep = self.endpoints.lister.get(name, ns)
            self._ports[(ns, name)] = service_ports(svc.to_dict(),
                                                    ep.to_dict() if ep is not None else None)
        return {sp.name: sp for ports in self._ports.values() for sp in ports}

    async def sync(self) -> None:
        services = self.desired()
        ips = node_ips(self.nodes.lister.get(self.node_name))
        triggers, self._triggers = self._triggers, []
        start = time.monotonic()
        try:
            await asyncio.to_thread(self.backend.sync, services, ips)
        except BaseException:
            self._triggers = triggers + self._triggers  # programmed by the retry instead
            raise
        done = time.time()
        self.metrics.sync_duration.observe(time.monotonic() - start)
        self.metrics.last_sync.set(done)
        for t in triggers:
            self.metrics.network_programming.observe(max(0.0, done - t))
        log.debug("synced %d service ports in %.3fs", len(services), time.monotonic() - start)

    async def run(self) -> None:
        """Start the informers, sync once they hold the first lists, then follow changes."""
        self.factory.start()
        try:
            await self.factory.wait_for_cache_sync()
            self._synced = True
            self._dirty.update(_key(s) for s in self.services.store.list())
            log.info("caches synced: %d services; programming rules",
                     len(self.services.store.list()))
            await self.runner.loop()
        finally:
            await self.factory.shutdown()
