"""The one shape every controller has: informers → work queue → level-triggered `sync(key)`.

client-go's sample-controller, reduced to what differs per controller: `setup()` asks the shared
informer factory for informers and registers handlers that only enqueue keys; `sync(key)` reads
the informer caches, compares with the desired state and writes the difference through the
apiserver. It must be idempotent: the queue may hand it the same key again at any time (a resync,
a retry after an error, an event that changed nothing), and the manager may be SIGKILLed between
any two writes. An exception from `sync` retries the key with exponential back-off.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from api import errors
from api.meta import TypedObject
from client.apiclient import ApiClient
from client.events import EventRecorder
from client.informer import SharedInformerFactory
from client.store import meta_namespace_key
from client.workqueue import RateLimitingQueue, run_workers


@dataclass
class Options:
    """Every controller-manager flag a controller reads (upstream's names and defaults).

    Timings are seconds; tests and the lab shorten them.
    """

    concurrent_syncs: int = 5
    # nodeipam
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    allocate_node_cidrs: bool = True
    # nodelifecycle
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 40.0
    node_startup_grace_period: float = 60.0
    # garbagecollector
    gc_workers: int = 20
    # namespace
    namespace_sync_period: float = 300.0
    # root-ca-cert-publisher: the CA bundle to publish (upstream --root-ca-file)
    root_ca_file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ControllerContext:
    """What the manager hands every controller: one client, one informer factory, and event
    recorders named per controller (Events carry upstream's `source.component`, such as
    `deployment-controller`, so `tkctl describe` reads as it does on a real cluster)."""

    client: ApiClient
    factory: SharedInformerFactory
    options: Options
    recorders: dict[str, EventRecorder] = field(default_factory=dict)

    def recorder_for(self, component: str) -> EventRecorder:
        if component not in self.recorders:
            self.recorders[component] = EventRecorder(self.client, component)
        return self.recorders[component]

    async def close(self) -> None:
        # Concurrently: each flushes for up to its grace period, and a SIGTERMed manager with
        # the apiserver gone must not wait for them one after the other.
        await asyncio.gather(*(r.close() for r in self.recorders.values()))


class Controller(ABC):
    """Base of every controller; subclasses set `name` and implement `setup` and `sync`."""

    name: ClassVar[str] = ""
    # The Events' source component, upstream's name for this controller.
    component: ClassVar[str] = ""

    def __init__(self, ctx: ControllerContext, workers: int | None = None) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.factory = ctx.factory
        self.recorder = ctx.recorder_for(self.component or f"{self.name}-controller")
        self.options = ctx.options
        self.workers = workers if workers is not None else ctx.options.concurrent_syncs
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(name=self.name)
        self.log = logging.getLogger(f"controllers.{self.name}")

    @abstractmethod
    def setup(self) -> None:
        """Ask `self.factory` for informers and register handlers; called before start."""

    @abstractmethod
    async def sync(self, key: str) -> None:
        """Converge the object named `key` (`namespace/name` or `name`); raise to retry."""

    def enqueue(self, obj: TypedObject) -> None:
        self.queue.add(meta_namespace_key(obj))

    def enqueue_after(self, obj: TypedObject, delay: float) -> None:
        self.queue.add_after(meta_namespace_key(obj), delay)

    async def run(self) -> None:
        """Run the workers until cancelled (the manager starts informers and waits for sync)."""
        try:
            await run_workers(self.queue, self.sync, self.workers, name=self.name)
        finally:
            self.queue.shut_down()

    async def recheck_not_deleted(self, resource: str, owner: TypedObject) -> None:
        """A quorum read before adopting: raise Conflict unless `owner` still exists with the
        same uid and is not being deleted. The cache may still show an owner that was deleted
        (and recreated); adopting for it would keep its dependents alive (upstream #42639)."""
        fresh = await self.client.get(resource, owner.name, owner.namespace)
        md = fresh.get("metadata") or {}
        kind = owner.kind or owner.KIND
        if md.get("uid") != owner.metadata.uid:
            raise errors.Conflict(
                message=f"original {kind} {owner.key} is gone: got uid {md.get('uid')}, "
                        f"wanted {owner.metadata.uid}")
        if md.get("deletionTimestamp"):
            raise errors.Conflict(
                message=f"{kind} {owner.key} has just been deleted at {md['deletionTimestamp']}")


def namespace_terminating(e: Exception) -> bool:
    """A create refused because its namespace is being deleted: nothing to retry, the
    namespace controller is emptying it. Upstream checks the NamespaceTerminating status
    cause; our apiserver says it in words."""
    return isinstance(e, errors.Forbidden) and "being terminated" in str(e)
