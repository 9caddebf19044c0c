"""The ReplicaSet and ReplicationController controllers: keep N copies of a pod template running.

One implementation for both kinds, as upstream (pkg/controller/replicaset serves both; the RC is
"an older API version of ReplicaSet" with a plain map selector and core/v1 names). `_Kind` holds
the few differences; everything else is shared.

A sync of one owner, level-triggered from the informer caches:
1. claim pods: keep ours that still match, adopt matching orphans (ownerReference patched with a
   uid test, never while the owner is being deleted), release ours that stopped matching;
2. if expectations are satisfied (every create/delete of the last sync has been observed) and the
   owner is not being deleted: create the missing pods in slow-start batches (1, 2, 4, ...; the
   first failure stops the rest) or delete the surplus, the least valuable first
   (upstream's ActivePodsWithRanks), at most 500 per sync;
3. write status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
   observedGeneration, the ReplicaFailure condition) when it changed, and requeue when a pod will
   become available after minReadySeconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from api import errors
from api.apps import ReplicaSet
from api.core import Pod, PodTemplateSpec, ReplicationController
from api.meta import OwnerReference, format_rfc3339, parse_rfc3339
from api.podutil import (
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    new_controller_ref,
    pod_condition,
    pod_phase,
)
from api.selectors import Selector, from_label_selector, from_map
from client.store import NAMESPACE_INDEX, split_meta_namespace_key
from controllers.base import Controller, ControllerContext, namespace_terminating
from controllers.expectations import Expectations

Owner = ReplicaSet | ReplicationController

# Upstream's BurstReplicas: at most this many creates or deletes per sync.
BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH_SIZE = 1
CONTROLLER_UID_INDEX = "controllerUID"
# Pods with a lower cost are deleted first (the PodDeletionCost feature, on by default).
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REPLICA_FAILURE = "ReplicaFailure"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


@dataclass(frozen=True)
class _Kind:
    """What differs between the two kinds this controller serves."""

    model: type[Owner]
    resource: str
    kind: str

    def selector(self, owner: Owner) -> Selector:
        if isinstance(owner, ReplicationController):
            # An RC without a selector matches nothing (upstream converts it to an empty
            # LabelSelector, which validation never lets through).
            sel = owner.spec.selector if owner.spec else None
            return from_map(sel) if sel else Selector.nothing()
        return from_label_selector(owner.spec.selector if owner.spec else None)


RS_KIND = _Kind(ReplicaSet, "replicasets", "ReplicaSet")
RC_KIND = _Kind(ReplicationController, "replicationcontrollers", "ReplicationController")


# --- pure logic -------------------------------------------------------------------------------

def slow_start_sizes(count: int, initial: int = SLOW_START_INITIAL_BATCH_SIZE) -> list[int]:
    """The batch sizes slowStartBatch uses for `count` calls: initial, doubling, capped."""
    sizes: list[int] = []
    remaining, size = count, min(count, initial)
    while size > 0:
        sizes.append(size)
        remaining -= size
        size = min(2 * size, remaining)
    return sizes


async def slow_start_batch(count: int, fn: Callable[[], Awaitable[None]],
                           initial: int = SLOW_START_INITIAL_BATCH_SIZE
                           ) -> tuple[int, Exception | None]:
    """Call `fn` `count` times in growing concurrent batches; stop after a batch with a failure.

    Returns (successful calls, the first error). A project out of quota or with a broken
    template thus costs one failed create, not hundreds.
    """
    successes = 0
    for size in slow_start_sizes(count, initial):
        results = await asyncio.gather(*(fn() for _ in range(size)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r  # cancellation and the like are not the callee's errors
        failures = [r for r in results if isinstance(r, Exception)]
        successes += size - len(failures)
        if failures:
            return successes, failures[0]
    return successes, None


def _time(value: str | None) -> dt.datetime | None:
    return parse_rfc3339(value) if value else None


def _ready_time(pod: Pod) -> dt.datetime | None:
    c = pod_condition(pod, "Ready")
    return _time(c.last_transition_time) if c is not None and c.status == "True" else None


def _after_or_zero(t1: dt.datetime | None, t2: dt.datetime | None) -> bool:
    """Upstream's afterOrZero: an unknown time first, else the later one first."""
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _deletion_cost(pod: Pod) -> int:
    raw = (pod.metadata.annotations or {}).get(POD_DELETION_COST, "0")
    try:
        return int(raw)
    except ValueError:
        return 0


def _max_restarts(pod: Pod) -> int:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return max((s.restart_count for s in statuses), default=0)


def _less(a: Pod, ra: int, b: Pod, rb: int) -> bool:
    """controller.ActivePodsWithRanks.Less: True if `a` should be deleted before `b`."""
    na, nb = (a.spec.node_name if a.spec else None) or "", (b.spec.node_name if b.spec else
                                                              None) or ""
    if na != nb and (not na or not nb):  # 1. unscheduled < scheduled
        return not na
    pa, pb = _PHASE_ORDINAL.get(pod_phase(a), 0), _PHASE_ORDINAL.get(pod_phase(b), 0)
    if pa != pb:  # 2. Pending < Unknown < Running
        return pa < pb
    if is_pod_ready(a) != is_pod_ready(b):  # 3. not ready < ready
        return not is_pod_ready(a)
    ca, cb = _deletion_cost(a), _deletion_cost(b)
    if ca != cb:  # 4. lower pod-deletion-cost first
        return ca < cb
    if ra != rb:  # 5. more pods of the same owner family on its node first
        return ra > rb
    if is_pod_ready(a) and is_pod_ready(b):  # 6. ready for less time first
        ta, tb = _ready_time(a), _ready_time(b)
        if ta != tb:
            return _after_or_zero(ta, tb)
    ma, mb = _max_restarts(a), _max_restarts(b)
    if ma != mb:  # 7. more restarts first
        return ma > mb
    ta, tb = _time(a.metadata.creation_timestamp), _time(b.metadata.creation_timestamp)
    if ta != tb:  # 8. newer first
        return _after_or_zero(ta, tb)
    return False


def rank_for_deletion(pods: list[Pod], related: Iterable[Pod]) -> list[Pod]:
    """`pods` sorted so that the first ones are the ones to delete first.

    A pod's rank is the number of active `related` pods (the pods of every ReplicaSet with the
    same controller, for a Deployment mid-rollout) on its node: deleting from crowded nodes
    first keeps the replicas spread.
    """
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.spec.node_name if p.spec else None) or ""
            on_node[node] = on_node.get(node, 0) + 1
    ranked = [(p, on_node.get((p.spec.node_name if p.spec else None) or "", 0)) for p in pods]

    def cmp(x: tuple[Pod, int], y: tuple[Pod, int]) -> int:
        if _less(x[0], x[1], y[0], y[1]):
            return -1
        if _less(y[0], y[1], x[0], x[1]):
            return 1
        return 0

    ranked.sort(key=functools.cmp_to_key(cmp))
    return [p for p, _ in ranked]


def pods_to_delete(pods: list[Pod], related: Iterable[Pod], diff: int) -> list[Pod]:
    if diff >= len(pods):
        return list(pods)
    return rank_for_deletion(pods, related)[:diff]


@dataclass
class ClaimPlan:
    """What ClaimPods decides for each pod of the namespace (the pods' writes are separate)."""

    owned: list[Pod] = field(default_factory=list)
    adopt: list[Pod] = field(default_factory=list)
    release: list[Pod] = field(default_factory=list)


def claim_plan(owner_uid: str, owner_deleting: bool, selector: Selector,
               pods: Iterable[Pod]) -> ClaimPlan:
    """PodControllerRefManager.ClaimPods without the writes.

    Ours and matching: owned. Ours and no longer matching: released (unless the owner is being
    deleted: then left alone, the garbage collector decides). An orphan that matches: adopted,
    unless the owner or the pod is being deleted. Pods of another controller: never touched.
    """
    plan = ClaimPlan()
    for pod in pods:
        ref = controller_ref(pod)
        matches = selector.matches(pod.metadata.labels)
        if ref is not None:
            if ref.uid != owner_uid:
                continue
            if matches:
                plan.owned.append(pod)
            elif not owner_deleting:
                plan.release.append(pod)
            continue
        if owner_deleting or not matches or is_terminating(pod):
            continue
        plan.adopt.append(pod)
    return plan


def pod_from_template(owner: Owner, template: PodTemplateSpec,
                      ref: OwnerReference) -> dict[str, Any]:
    """controller.GetPodFromTemplate: labels, annotations, finalizers and spec of the
    template, generateName `<owner>-`, and the controller reference."""
    md = template.metadata
    metadata: dict[str, Any] = {
        "generateName": f"{owner.name}-", "namespace": owner.namespace,
        "labels": dict((md.labels if md else None) or {}),
        "ownerReferences": [ref.to_dict()],
    }
    if md is not None and md.annotations:
        metadata["annotations"] = dict(md.annotations)
    if md is not None and md.finalizers:
        metadata["finalizers"] = list(md.finalizers)
    spec = template.spec.to_dict() if template.spec else {}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def calculate_status(owner: Owner, pods: list[Pod], manage_error: Exception | None,
                     now: dt.datetime) -> dict[str, Any]:
    """The status the owner should have (calculateStatus), camelCase; observedGeneration is
    added by the writer. Zero counts are left out as upstream's `omitempty` does."""
    spec = owner.spec
    tmpl = spec.template if spec else None
    template_labels = (tmpl.metadata.labels if tmpl and tmpl.metadata else None) or {}
    min_ready = (spec.min_ready_seconds if spec else None) or 0
    fully = ready = available = 0
    for pod in pods:
        labels = pod.metadata.labels or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully += 1
        if is_pod_ready(pod):
            ready += 1
            if is_pod_available(pod, min_ready, now):
                available += 1
    conditions = [c.to_dict() for c in ((owner.status.conditions if owner.status else None)
                                        or [])]
    failure = next((c for c in conditions if c["type"] == REPLICA_FAILURE), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - ((spec.replicas if spec else None) or 0)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        conditions.append({"type": REPLICA_FAILURE, "status": "True",
                           "lastTransitionTime": format_rfc3339(now),
                           "reason": reason, "message": str(manage_error)})
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c["type"] != REPLICA_FAILURE]
    status: dict[str, Any] = {"replicas": len(pods)}
    for name, value in (("fullyLabeledReplicas", fully), ("readyReplicas", ready),
                        ("availableReplicas", available)):
        if value:
            status[name] = value
    if conditions:
        status["conditions"] = conditions
    return status


def status_differs(owner: Owner, status: dict[str, Any]) -> bool:
    """updateReplicaSetStatus's short cut: nothing to write if counts, conditions and the
    observed generation already match."""
    cur = owner.status.to_dict() if owner.status else {}
    for name in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if (cur.get(name) or 0) != (status.get(name) or 0):
            return True
    if (cur.get("conditions") or []) != (status.get("conditions") or []):
        return True
    return (owner.metadata.generation or 0) != (cur.get("observedGeneration") or 0)


def next_available_in(pods: Iterable[Pod], min_ready_seconds: int,
                      now: dt.datetime) -> float | None:
    """Seconds until the next ready-but-not-yet-available pod becomes available, if any."""
    if min_ready_seconds <= 0:
        return None
    waits = []
    for pod in pods:
        t = _ready_time(pod)
        if t is None:
            continue
        left = (t + dt.timedelta(seconds=min_ready_seconds) - now).total_seconds()
        if left > 0:
            waits.append(left)
    return min(waits) if waits else None


def _controller_uid_index(obj: Owner) -> list[str]:
    ref = controller_ref(obj)
    return [ref.uid] if ref is not None else []


# --- the controller ---------------------------------------------------------------------------

class _ReplicaManager(Controller):
    """The shared controller; subclasses only choose the kind."""

    kind: ClassVar[_Kind]

    def __init__(self, ctx: ControllerContext, workers: int | None = None) -> None:
        super().__init__(ctx, workers)
        self.expectations = Expectations()
        self.burst = BURST_REPLICAS

    def setup(self) -> None:
        self.owners = self.factory.informer_for(
            self.kind.model, indexers={CONTROLLER_UID_INDEX: _controller_uid_index})
        self.owners.add_event_handler(on_add=self.enqueue, on_update=self._update_owner,
                                      on_delete=self._delete_owner)
        self.pods = self.factory.informer_for(Pod)
        self.pods.add_event_handler(on_add=self._add_pod, on_update=self._update_pod,
                                    on_delete=self._delete_pod)

    # --- event handlers: they only enqueue keys and count observations ---------------------

    def _update_owner(self, old: Owner, cur: Owner) -> None:
        if old.metadata.uid != cur.metadata.uid:
            self._delete_owner(old)
        self.enqueue(cur)

    def _delete_owner(self, owner: Owner) -> None:
        self.expectations.forget(owner.key)
        self.enqueue(owner)

    def _resolve(self, namespace: str, ref: OwnerReference) -> Owner | None:
        if ref.kind != self.kind.kind:
            return None
        owner = self.owners.lister.get(ref.name, namespace)
        if owner is None or owner.metadata.uid != ref.uid:
            return None
        return owner

    def _matching_owners(self, pod: Pod) -> list[Owner]:
        found = []
        for owner in self.owners.store.by_index(NAMESPACE_INDEX, pod.namespace):
            sel = self.kind.selector(owner)
            if not sel.empty and sel.matches(pod.metadata.labels):
                found.append(owner)
        if len(found) > 1:
            self.log.warning("user error: more than one %s selects pod %s with labels %s",
                             self.kind.kind, pod.key, pod.metadata.labels)
        return found

    def _add_pod(self, pod: Pod) -> None:
        if is_terminating(pod):
            # A restarted manager may first see a pod already being deleted: that is no
            # creation it is waiting for.
            self._delete_pod(pod)
            return
        ref = controller_ref(pod)
        if ref is not None:
            owner = self._resolve(pod.namespace, ref)
            if owner is not None:
                self.expectations.creation_observed(owner.key)
                self.enqueue(owner)
            return
        for owner in self._matching_owners(pod):
            self.enqueue(owner)

    def _update_pod(self, old: Pod, cur: Pod) -> None:
        if old.metadata.resource_version == cur.metadata.resource_version:
            return  # a resync
        label_changed = old.metadata.labels != cur.metadata.labels
        if is_terminating(cur):
            # Graceful deletion: replace the pod now, not when its node finally removes it.
            self._delete_pod(cur)
            if label_changed:
                self._delete_pod(old)
            return
        cur_ref, old_ref = controller_ref(cur), controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            previous = self._resolve(old.namespace, old_ref)
            if previous is not None:
                self.enqueue(previous)
        if cur_ref is not None:
            owner = self._resolve(cur.namespace, cur_ref)
            if owner is None:
                return
            self.enqueue(owner)
            min_ready = (owner.spec.min_ready_seconds if owner.spec else None) or 0
            if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(cur):
                # Look again once the pod can count as available (+1s for clock skew).
                self.enqueue_after(owner, min_ready + 1)
            return
        if label_changed or ref_changed:
            for owner in self._matching_owners(cur):
                self.enqueue(owner)

    def _delete_pod(self, pod: Pod) -> None:
        ref = controller_ref(pod)
        if ref is None:
            return
        owner = self._resolve(pod.namespace, ref)
        if owner is None:
            return
        self.expectations.deletion_observed(owner.key, pod.key)
        self.enqueue(owner)

    # --- sync -----------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_meta_namespace_key(key)
        owner = self.owners.lister.get(name, ns)
        if owner is None:
            self.expectations.forget(key)
            return
        needs_sync = self.expectations.satisfied(key)
        selector = self.kind.selector(owner)
        active = [p for p in self.pods.store.by_index(NAMESPACE_INDEX, ns) if is_pod_active(p)]
        pods = await self._claim_pods(owner, selector, active)
        manage_error: Exception | None = None
        if needs_sync and not is_terminating(owner):
            try:
                await self._manage_replicas(key, owner, pods)
            except errors.ApiError as e:
                manage_error = e
        now = dt.datetime.now(dt.UTC)
        updated = await self._write_status(owner, calculate_status(owner, pods, manage_error,
                                                                   now))
        if manage_error is not None:
            raise manage_error
        self._requeue_for_availability(key, updated, pods, now)

    def _requeue_for_availability(self, key: str, owner: Owner, pods: list[Pod],
                                  now: dt.datetime) -> None:
        spec, st = owner.spec, owner.status
        min_ready = (spec.min_ready_seconds if spec else None) or 0
        wait = next_available_in(pods, min_ready, now)
        if wait is not None and st is not None and (st.available_replicas or 0) != (
                spec.replicas if spec else 0):
            # Parse-precision of the Ready transition is one second: a little slack.
            self.queue.add_after(key, math.ceil(wait) + 0.1)

    async def _claim_pods(self, owner: Owner, selector: Selector,
                          pods: list[Pod]) -> list[Pod]:
        plan = claim_plan(owner.metadata.uid or "", is_terminating(owner), selector, pods)
        claimed = list(plan.owned)
        if plan.adopt:
            await self.recheck_not_deleted(self.kind.resource, owner)
            adopted = await asyncio.gather(*(self._adopt(owner, p) for p in plan.adopt))
            claimed.extend(p for p, ok in zip(plan.adopt, adopted, strict=True) if ok)
        if plan.release:
            await asyncio.gather(*(self._release(owner, p) for p in plan.release))
        return claimed

    async def _adopt(self, owner: Owner, pod: Pod) -> bool:
        """Add our controller reference to an orphan; False if it vanished or changed."""
        ref = new_controller_ref(owner).to_dict()
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid}]
        if pod.metadata.owner_references:
            ops.append({"op": "add", "path": "/metadata/ownerReferences/-", "value": ref})
        else:
            ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [ref]})
        try:
            await self.client.patch("pods", pod.name, ops, pod.namespace, patch_type="json")
        except (errors.NotFound, errors.Invalid):
            return False
        return True

    async def _release(self, owner: Owner, pod: Pod) -> None:
        """Remove our reference from a pod that no longer matches (uid-checked)."""
        refs = pod.metadata.owner_references or []
        idx = next((i for i, r in enumerate(refs) if r.uid == owner.metadata.uid), None)
        if idx is None:
            return
        ops = [{"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
               {"op": "test", "path": f"/metadata/ownerReferences/{idx}/uid",
                "value": owner.metadata.uid},
               {"op": "remove", "path": f"/metadata/ownerReferences/{idx}"}]
        try:
            await self.client.patch("pods", pod.name, ops, pod.namespace, patch_type="json")
        except (errors.NotFound, errors.Invalid):
            pass  # gone, or no longer ours: nothing to release

    async def _manage_replicas(self, key: str, owner: Owner, pods: list[Pod]) -> None:
        want = (owner.spec.replicas if owner.spec else None) or 0
        diff = len(pods) - want
        if diff < 0:
            await self._create_pods(key, owner, min(-diff, self.burst))
        elif diff > 0:
            await self._delete_pods(key, owner, pods, min(diff, self.burst))

    async def _create_pods(self, key: str, owner: Owner, n: int) -> None:
        self.expectations.expect_creations(key, n)
        template = owner.spec.template if owner.spec else None
        if template is None:
            raise errors.Invalid(message=f"{self.kind.kind} {owner.key} has no pod template")
        ref = new_controller_ref(owner)

        async def create() -> None:
            body = pod_from_template(owner, template, ref)
            try:
                created = await self.client.create("pods", body, owner.namespace)
            except errors.ApiError as e:
                if namespace_terminating(e):
                    return  # every create would fail; the namespace is going away
                self.recorder.event(owner, "Warning", "FailedCreate", f"Error creating: {e}")
                raise
            self.recorder.event(owner, "Normal", "SuccessfulCreate",
                                f"Created pod: {created['metadata']['name']}")

        done, err = await slow_start_batch(n, create)
        for _ in range(n - done):
            # Never attempted or failed: the informer will not see these.
            self.expectations.creation_observed(key)
        if err is not None:
            raise err

    async def _delete_pods(self, key: str, owner: Owner, pods: list[Pod], n: int) -> None:
        victims = pods_to_delete(pods, self._related_pods(owner, pods), n)
        self.expectations.expect_deletions(key, [p.key for p in victims])

        async def delete(pod: Pod) -> None:
            try:
                await self.client.delete("pods", pod.name, pod.namespace)
            except errors.ApiError as e:
                self.expectations.deletion_observed(key, pod.key)
                if isinstance(e, errors.NotFound):
                    return
                self.recorder.event(owner, "Warning", "FailedDelete", f"Error deleting: {e}")
                raise
            self.recorder.event(owner, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.name}")

        results = await asyncio.gather(*(delete(p) for p in victims), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _related_pods(self, owner: Owner, own: list[Pod]) -> list[Pod]:
        """The pods of every owner with the same controller as this one (getIndirectlyRelatedPods);
        just our own without a controller."""
        ref = controller_ref(owner)
        if ref is None:
            return own
        # One pass over each namespace's pods (siblings share their controller's), not one
        # per sibling.
        selectors: dict[str, list[Selector]] = {}
        for sibling in self.owners.store.by_index(CONTROLLER_UID_INDEX, ref.uid):
            selectors.setdefault(sibling.namespace, []).append(self.kind.selector(sibling))
        return [p for ns, sels in selectors.items()
                for p in self.pods.store.by_index(NAMESPACE_INDEX, ns)
                if any(sel.matches(p.metadata.labels) for sel in sels)]

    async def _write_status(self, owner: Owner, status: dict[str, Any]) -> Owner:
        if not status_differs(owner, status):
            return owner
        status["observedGeneration"] = owner.metadata.generation or 0
        body = owner.to_dict()
        for attempt in range(2):  # upstream's statusUpdateRetries = 1
            body["status"] = status
            try:
                return self.kind.model.model_validate(
                    await self.client.update_status(self.kind.resource, body, owner.namespace))
            except errors.ApiError:
                if attempt:
                    raise
                body = await self.client.get(self.kind.resource, owner.name, owner.namespace)
                if (body.get("metadata") or {}).get("uid") != owner.metadata.uid:
                    return owner  # replaced by a namesake: its own sync will follow
        return owner


# Events carry upstream's source component, which differs between the two kinds.
class ReplicaSetController(_ReplicaManager):
    name = "replicaset"
    component = "replicaset-controller"
    kind = RS_KIND


class ReplicationControllerController(_ReplicaManager):
    name = "replicationcontroller"
    component = "replication-controller"
    kind = RC_KIND
