"""The garbage collector: deletes objects whose owners are gone, and runs the three deletion
propagations (background, foreground, orphan) that the apiserver only records as finalizers.

Upstream's shape (pkg/controller/garbagecollector): informers over every stored resource feed a
dependency graph (`controllers.gc_graph`); two work queues of uids do the writes:
- attemptToDelete: for an object, classify each ownerReference by a *live* GET of the owner
  (absent or uid mismatch = dangling; being deleted with `foregroundDeletion` = waiting; else
  solid) and act on `gc_graph.decide`; for an owner deleting in foreground, remove the finalizer
  once no dependent with blockOwnerDeletion is left; for a virtual node (an owner only known
  from references), verify it exists and drop it from the graph if not;
- attemptToOrphan: for an owner deleted with the `orphan` finalizer, remove its
  ownerReferences from every dependent, then the finalizer.

Every write is guarded: deletes carry a uid precondition, patches of ownerReferences and
finalizers carry the resourceVersion they were computed from (a conflict re-reads and retries),
so a stale cache can delay the collector but never make it delete the wrong object.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from api import errors
from api.meta import TypedObject
from api.resources import RESOURCES, ResourceInfo, for_kind
from client.informer import ResourceEventHandlerRegistration
from client.workqueue import RateLimitingQueue
from controllers.base import Controller, ControllerContext
from controllers.gc_graph import (
    FOREGROUND,
    ORPHAN,
    Effects,
    EventType,
    Graph,
    Identity,
    Node,
    ObjectState,
    OwnerRef,
    decide,
)

log = logging.getLogger(__name__)

# Upstream's DefaultIgnoredResources: events are never owners worth tracking.
IGNORED_RESOURCES = frozenset({"events"})
_ABSENT_CACHE_SIZE = 500  # upstream's absentOwnerCache size
_CONFLICT_RETRIES = 5

Obj = dict[str, Any]


class Outcome(enum.Enum):
    DONE = "done"  # forget the item's back-off
    FORGET = "forget"  # nothing more to do, whatever happened
    REQUEUE = "requeue"  # try again later with back-off, without it being an error


class _Forget(Exception):
    """Stop working on this item without retrying: it was verified absent (the graph was
    told), or retrying cannot help (a cluster-scoped object naming a namespaced owner, a kind
    this apiserver does not serve)."""


class AbsentOwnerCache:
    """LRU of owner identities verified absent, to spare live GETs for every dependent of a
    deleted owner (upstream's ReferenceCache)."""

    def __init__(self, size: int = _ABSENT_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Identity, None] = OrderedDict()

    def add(self, ident: Identity) -> None:
        self._items[ident] = None
        self._items.move_to_end(ident)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __contains__(self, ident: object) -> bool:
        if ident in self._items:
            assert isinstance(ident, Identity)
            self._items.move_to_end(ident)
            return True
        return False


def owner_refs(md: Obj) -> tuple[OwnerRef, ...]:
    """The ownerReferences of a JSON object's metadata."""
    return tuple(
        OwnerRef(str(r.get("apiVersion", "")), str(r.get("kind", "")), str(r.get("name", "")),
                 str(r.get("uid", "")), bool(r.get("controller")),
                 bool(r.get("blockOwnerDeletion")))
        for r in md.get("ownerReferences") or [])


def object_state(info: ResourceInfo, obj: TypedObject) -> ObjectState:
    md = obj.metadata
    refs = tuple(
        OwnerRef(r.api_version, r.kind, r.name, r.uid, bool(r.controller),
                 bool(r.block_owner_deletion))
        for r in md.owner_references or [])
    ident = Identity(info.api_version, info.kind, md.namespace or "", md.name or "",
                     md.uid or "")
    return ObjectState(ident, refs, md.deletion_timestamp is not None,
                       frozenset(md.finalizers or ()))


def _md(obj: Obj) -> Obj:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else {}


class GarbageCollector(Controller):
    name = "garbagecollector"
    component = "garbage-collector-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx, workers=ctx.options.gc_workers)
        self.graph = Graph()
        self.orphan_queue: RateLimitingQueue[str] = RateLimitingQueue(
            name="garbage_collector_attempt_to_orphan")
        self.absent = AbsentOwnerCache()
        self._registrations: list[ResourceEventHandlerRegistration[Any]] = []
        self._kinds: dict[tuple[str, str], ResourceInfo | None] = {}

    # --- graph building -------------------------------------------------------------------

    def setup(self) -> None:
        for info in RESOURCES.values():
            if info.virtual or info.name in IGNORED_RESOURCES:
                continue
            inf = self.factory.informer_for(info.model)
            self._registrations.append(inf.add_event_handler(
                on_add=self._handler(info, "add"),
                on_update=self._update_handler(info),
                on_delete=self._handler(info, "delete")))

    def _handler(self, info: ResourceInfo, kind: EventType) -> Callable[[TypedObject], None]:
        def handle(obj: TypedObject) -> None:
            self._apply(self.graph.process(kind, object_state(info, obj)))
        return handle

    def _update_handler(self, info: ResourceInfo) -> Callable[[TypedObject, TypedObject], None]:
        def handle(old: TypedObject, new: TypedObject) -> None:
            self._apply(self.graph.process("update", object_state(info, new),
                                           object_state(info, old)))
        return handle

    def _apply(self, fx: Effects) -> None:
        for uid in fx.attempt_to_delete:
            self.queue.add(uid)
        for uid in fx.attempt_to_orphan:
            self.orphan_queue.add(uid)
        for ident in fx.absent:
            self.absent.add(ident)
        for dep, ref in fx.invalid_namespace:
            owner = Identity(ref.api_version, ref.kind, dep.namespace, ref.name, ref.uid)
            involved = {"apiVersion": dep.api_version, "kind": dep.kind,
                        "metadata": {"name": dep.name, "namespace": dep.namespace,
                                     "uid": dep.uid}}
            self.recorder.event(involved, "Warning", "OwnerRefInvalidNamespace",
                                f'ownerRef {owner} does not exist in namespace '
                                f'"{dep.namespace}"')

    def _virtual_delete(self, ident: Identity) -> None:
        self._apply(self.graph.process("delete", ObjectState(ident), virtual=True))

    # --- running --------------------------------------------------------------------------

    async def run(self) -> None:
        # The informers have synced; wait until our handlers have put every listed object in
        # the graph too, so that the first decisions see whole owner/dependent sets.
        while True:
            if all(r.has_synced for r in self._registrations):
                break
            await asyncio.sleep(0.05)
        self.log.info("all resource monitors have synced; proceeding to collect garbage "
                      "(%d objects in the graph)", len(self.graph))
        workers = [self._worker(self.queue, self._attempt_to_delete, "attempt to delete")
                   for _ in range(self.workers)]
        workers += [self._worker(self.orphan_queue, self._attempt_to_orphan,
                                 "attempt to orphan") for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shut_down()
            self.orphan_queue.shut_down()

    async def _worker(self, queue: RateLimitingQueue[str],
                      fn: Callable[[str], Awaitable[Outcome]], what: str) -> None:
        """Upstream's attemptToDeleteWorker/attemptToOrphanWorker: unlike the standard loop,
        an item can ask to be retried with back-off without counting as an error."""
        while True:
            uid = await queue.get()
            if uid is None:
                return
            try:
                outcome = await fn(uid)
            except asyncio.CancelledError:
                queue.done(uid)
                queue.add(uid)
                raise
            except Exception as e:
                node = self.graph.get(uid)
                self.log.warning("%s %s: %s: %s (retry %d)", what,
                                 node.identity if node else uid, type(e).__name__, e,
                                 queue.num_requeues(uid) + 1)
                outcome = Outcome.REQUEUE
            if outcome is Outcome.REQUEUE:
                queue.add_rate_limited(uid)
            else:
                queue.forget(uid)
            queue.done(uid)

    async def sync(self, key: str) -> None:
        """One attemptToDelete of the node with uid `key` (the Controller interface)."""
        if await self._attempt_to_delete(key) is Outcome.REQUEUE:
            raise RuntimeError(f"{key}: not observed yet")

    # --- attemptToDelete ------------------------------------------------------------------

    async def _attempt_to_delete(self, uid: str) -> Outcome:
        node = self.graph.get(uid)
        if node is None:
            return Outcome.FORGET
        try:
            await self._attempt_to_delete_item(node)
        except _Forget:
            return Outcome.FORGET
        node = self.graph.get(uid)
        if node is not None and not node.observed:
            # It exists but no informer has shown it yet: look again until one does, or a
            # virtual node for an object created and deleted meanwhile would stay forever.
            return Outcome.REQUEUE
        return Outcome.DONE

    async def _attempt_to_delete_item(self, node: Node) -> None:
        if node.being_deleted and not node.deleting_dependents:
            return  # deletion is a one-way trip: wait for it, then handle the dependents
        ident = node.identity
        info = self._resource(ident.api_version, ident.kind)
        if info is None:
            self.log.warning("%s: unknown kind; ignoring it", ident)
            raise _Forget
        # A namespaced kind named by a cluster-scoped dependent has no namespace to look in:
        # as good as absent (the dependent is then refused by `_is_dangling`).
        latest = await self._get(info, ident) if ident.namespace or not info.namespaced \
            else None
        if latest is None or _md(latest).get("uid") != ident.uid:
            self._virtual_delete(ident)
            raise _Forget
        current = self.graph.get(ident.uid)
        if current is None:
            return
        if current.deleting_dependents:
            await self._process_deleting_dependents(current)
            return
        refs = owner_refs(_md(latest))
        if not refs:
            return
        solid, dangling, waiting = await self._classify(refs, ident)
        current = self.graph.get(ident.uid) or current
        deps = self.graph.dependents_of(current)
        decision = decide(solid, dangling, waiting, has_dependents=bool(deps),
                          dependent_deleting_dependents=any(d.deleting_dependents
                                                            for d in deps),
                          finalizers=frozenset(_md(latest).get("finalizers") or ()))
        if decision.remove_owner_uids:
            gone = set(decision.remove_owner_uids)
            self.log.info("%s: removing dangling/waiting owner references %s", ident,
                          sorted(gone))
            await self._patch_owner_refs(info, ident, lambda r: [x for x in r
                                                                 if x.get("uid") not in gone])
            return
        if decision.unblock:
            self.log.info("%s: unblocking its owner references to break a cycle", ident)
            await self._patch_owner_refs(info, ident, _unblocked)
        if decision.delete_policy:
            self.log.info("%s: deleting (propagationPolicy=%s): no solid owner left", ident,
                          decision.delete_policy)
            await self._delete(info, ident, decision.delete_policy)

    async def _classify(self, refs: tuple[OwnerRef, ...], ident: Identity) -> tuple[
            list[OwnerRef], list[OwnerRef], list[OwnerRef]]:
        """(solid, dangling, waitingForDependentsDeletion), each owner read live."""
        solid: list[OwnerRef] = []
        dangling: list[OwnerRef] = []
        waiting: list[OwnerRef] = []
        for ref in refs:
            is_dangling, owner = await self._is_dangling(ref, ident)
            if is_dangling:
                dangling.append(ref)
                continue
            omd = _md(owner or {})
            if omd.get("deletionTimestamp") and FOREGROUND in (omd.get("finalizers") or ()):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    async def _is_dangling(self, ref: OwnerRef, item: Identity) -> tuple[bool, Obj | None]:
        cluster_key = ref.identity("")
        ns_key = ref.identity(item.namespace)
        if cluster_key in self.absent or ns_key in self.absent:
            return True, None
        info = self._resource(ref.api_version, ref.kind)
        if info is None:
            # A kind this apiserver does not serve: keep the dependent (upstream cannot
            # resolve it either and never deletes on its account).
            return False, None
        if info.namespaced and not item.namespace:
            self.log.info("%s is cluster-scoped but names a namespaced owner %s", item,
                          ref.name)
            raise _Forget
        key = ns_key if info.namespaced else cluster_key
        owner = await self._get(info, key)
        if owner is None or _md(owner).get("uid") != ref.uid:
            self.absent.add(key)
            return True, None
        return False, owner

    async def _process_deleting_dependents(self, node: Node) -> None:
        blocking = self.graph.blocking_dependents(node)
        if not blocking:
            info = self._resource(node.identity.api_version, node.identity.kind)
            if info is not None:
                await self._remove_finalizer(info, node.identity, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.queue.add(dep.identity.uid)

    # --- attemptToOrphan ------------------------------------------------------------------

    async def _attempt_to_orphan(self, uid: str) -> Outcome:
        owner = self.graph.get(uid)
        if owner is None:
            return Outcome.FORGET
        results = await asyncio.gather(
            *(self._orphan(dep.identity, uid) for dep in self.graph.dependents_of(owner)),
            return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise RuntimeError(f"orphaning dependents of {owner.identity}: "
                               f"{len(failed)} failed: {failed[0]}")
        info = self._resource(owner.identity.api_version, owner.identity.kind)
        if info is not None:
            await self._remove_finalizer(info, owner.identity, ORPHAN)
        return Outcome.DONE

    async def _orphan(self, dep: Identity, owner_uid: str) -> None:
        info = self._resource(dep.api_version, dep.kind)
        if info is not None:
            await self._patch_owner_refs(info, dep, lambda refs: [
                r for r in refs if r.get("uid") != owner_uid])

    # --- API access -----------------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> ResourceInfo | None:
        key = (api_version, kind)
        if key not in self._kinds:
            try:
                self._kinds[key] = for_kind(api_version, kind)
            except errors.NotFound:
                self._kinds[key] = None
        return self._kinds[key]

    async def _get(self, info: ResourceInfo, ident: Identity) -> Obj | None:
        try:
            return await self.client.get(info.name, ident.name, ident.namespace or None)
        except errors.NotFound:
            return None

    async def _delete(self, info: ResourceInfo, ident: Identity, policy: str) -> None:
        try:
            await self.client.delete(info.name, ident.name, ident.namespace or None,
                                     propagation_policy=policy, precondition_uid=ident.uid)
        except errors.NotFound:
            pass

    async def _patch_owner_refs(self, info: ResourceInfo, ident: Identity,
                                change: Callable[[list[Obj]], list[Obj]]) -> None:
        """Rewrite the object's ownerReferences with `change(refs) -> refs`."""
        await self._rewrite_metadata(info, ident, "ownerReferences",
                                     lambda refs: change([dict(r) for r in refs]),
                                     f"{ident}: ownerReferences kept changing")

    async def _remove_finalizer(self, info: ResourceInfo, ident: Identity,
                                finalizer: str) -> None:
        if await self._rewrite_metadata(
                info, ident, "finalizers", lambda fs: [f for f in fs if f != finalizer],
                f"{ident}: could not remove finalizer {finalizer}"):
            self.log.info("%s: removed finalizer %s", ident, finalizer)

    async def _rewrite_metadata(self, info: ResourceInfo, ident: Identity, field: str,
                                change: Callable[[list[Any]], list[Any]],
                                conflict_message: str) -> bool:
        """Set the list `metadata.<field>` to `change(current)` by a merge patch guarded by the
        resourceVersion read; a conflict re-reads and retries. True if the patch went through;
        False if the object is gone or replaced, or nothing would change."""
        for _ in range(_CONFLICT_RETRIES):
            obj = await self._get(info, ident)
            md = _md(obj or {})
            if obj is None or md.get("uid") != ident.uid:
                return False
            current = list(md.get(field) or [])
            new = change(current)
            if new == current:
                return False
            patch = {"metadata": {"resourceVersion": md.get("resourceVersion"),
                                  field: new or None}}
            if await self._patch(info, ident, patch):
                return True
        raise errors.Conflict(message=conflict_message)

    async def _patch(self, info: ResourceInfo, ident: Identity, patch: Obj) -> bool:
        """A merge patch; False on a conflict (the caller re-reads), True when done or gone."""
        try:
            await self.client.patch(info.name, ident.name, patch, ident.namespace or None)
        except errors.Conflict:
            return False
        except errors.NotFound:
            pass
        return True


def _unblocked(refs: list[Obj]) -> list[Obj]:
    return [{**r, "blockOwnerDeletion": False} if r.get("blockOwnerDeletion") else r
            for r in refs]
