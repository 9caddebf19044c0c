"""Node lifecycle: notice nodes that stopped heartbeating, taint them, evict what cannot stay.

A node proves it is alive by renewing its Lease in kube-node-lease (and, rarely, by posting its
status). Nobody else can tell that a machine died, so this controller watches the heartbeats:

- every `--node-monitor-period` it checks each node; when neither its Lease nor its Ready
  condition's heartbeat moved for `--node-monitor-grace-period` (`--node-startup-grace-period` for
  a node that never posted a status), it sets Ready and the kubelet's other conditions to
  Unknown ("Kubelet stopped posting node status.") and marks the node's pods not Ready, so the
  endpoints controller takes them out of Services at once;
- it keeps the node's taints in line with its conditions: `node.kubernetes.io/unreachable`
  (Ready Unknown) or `node.kubernetes.io/not-ready` (Ready False), each as NoExecute (with
  timeAdded) and NoSchedule, the pressure conditions and `spec.unschedulable` as NoSchedule
  taints; they go when the node is Ready again;
- taint eviction (upstream's TaintEvictionController): a pod on a node with a NoExecute taint it
  does not tolerate is deleted at once; one that tolerates it for `tolerationSeconds` is deleted
  when that runs out (counted from the taint's timeAdded), unless the taint goes first.
  Admission gives every pod 300s for not-ready and unreachable, so a dead node's pods are
  replaced elsewhere five minutes later.

Heartbeats are judged by this process's clock: "the heartbeat changed since I last looked",
never "the node's timestamp is old", so clock skew between nodes and the control plane does not
matter (upstream's probeTimestamp). A restarted controller gives every node a fresh grace period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from api import errors
from api.coordination import Lease
from api.core import Node, Pod, Taint, Toleration
from api.meta import now_rfc3339, parse_rfc3339
from api.podutil import (
    NO_EXECUTE,
    NO_SCHEDULE,
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_UNSCHEDULABLE,
    node_condition,
    node_taints,
    pod_tolerations,
    tolerates,
)
from client.store import field_index, meta_namespace_key, split_meta_namespace_key
from client.workqueue import RateLimitingQueue, run_workers
from controllers.base import Controller, ControllerContext

LEASE_NAMESPACE = "kube-node-lease"
NODE_NAME_INDEX = "spec.nodeName"
# The conditions the kubelet owns; all go Unknown when it stops posting.
KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
# Condition status → NoSchedule taint (upstream's nodeConditionToTaintKeyStatusMap).
CONDITION_TAINTS: dict[tuple[str, str], str] = {
    ("Ready", "False"): TAINT_NOT_READY,
    ("Ready", "Unknown"): TAINT_UNREACHABLE,
    ("MemoryPressure", "True"): "node.kubernetes.io/memory-pressure",
    ("DiskPressure", "True"): "node.kubernetes.io/disk-pressure",
    ("PIDPressure", "True"): "node.kubernetes.io/pid-pressure",
    ("NetworkUnavailable", "True"): "node.kubernetes.io/network-unavailable",
}
MANAGED_NO_SCHEDULE = frozenset([*CONDITION_TAINTS.values(), TAINT_UNSCHEDULABLE])
MANAGED_NO_EXECUTE = frozenset([TAINT_NOT_READY, TAINT_UNREACHABLE])


# --- pure decisions (unit-tested) -----------------------------------------------------------

def desired_taints(node: Node, now: str) -> list[Taint]:
    """The node's taints with the controller-managed ones made to match its conditions.

    Taints someone else set are kept as they are; a managed taint that should stay keeps its
    timeAdded, so the eviction clock does not restart on every pass.
    """
    current = node_taints(node)
    want_ns: set[str] = set()
    for (type_, status), key in CONDITION_TAINTS.items():
        c = node_condition(node, type_)
        if c is not None and c.status == status:
            want_ns.add(key)
    if node.spec is not None and node.spec.unschedulable:
        want_ns.add(TAINT_UNSCHEDULABLE)
    ready = node_condition(node, "Ready")
    want_ne: set[str] = set()
    if ready is not None and ready.status == "False":
        want_ne.add(TAINT_NOT_READY)
    elif ready is not None and ready.status == "Unknown":
        want_ne.add(TAINT_UNREACHABLE)

    def managed(t: Taint) -> bool:
        return ((t.effect == NO_SCHEDULE and t.key in MANAGED_NO_SCHEDULE)
                or (t.effect == NO_EXECUTE and t.key in MANAGED_NO_EXECUTE))

    out = [t for t in current if not managed(t)]
    have = {(t.key, t.effect): t for t in current if managed(t)}
    for key in sorted(want_ns):
        out.append(have.get((key, NO_SCHEDULE)) or Taint(key=key, effect=NO_SCHEDULE))
    for key in sorted(want_ne):
        out.append(have.get((key, NO_EXECUTE))
                   or Taint(key=key, effect=NO_EXECUTE, time_added=now))
    return out


def same_taints(a: list[Taint], b: list[Taint]) -> bool:
    def norm(ts: list[Taint]) -> list[tuple[str, str, str, str]]:
        return sorted((t.key, t.value or "", t.effect, t.time_added or "") for t in ts)
    return norm(a) == norm(b)


@dataclass(frozen=True)
class Eviction:
    """What to do about one pod: delete now, at `at` (epoch seconds), or never (both None)."""

    now: bool = False
    at: float | None = None


def eviction_for(taints: list[Taint], tolerations: list[Toleration],
                 now: float) -> Eviction:
    """upstream's processPodOnNode: untolerated NoExecute → now; otherwise the earliest time a
    used toleration's tolerationSeconds runs out, counted from the taint's timeAdded."""
    deadline: float | None = None
    for taint in taints:
        if taint.effect != NO_EXECUTE:
            continue
        used = [t for t in tolerations if tolerates(t, taint)]
        if not used:
            return Eviction(now=True)
        secs = [t.toleration_seconds for t in used]
        if any(s is None for s in secs):
            continue  # tolerated forever
        wait = max(0, min(s for s in secs if s is not None))
        added = parse_rfc3339(taint.time_added).timestamp() if taint.time_added else now
        at = added + wait
        deadline = at if deadline is None else min(deadline, at)
    if deadline is not None and deadline <= now:
        return Eviction(now=True)
    return Eviction(at=deadline)


def unknown_conditions(node: Node, now: str) -> list[dict[str, Any]] | None:
    """The node's conditions with the kubelet's set to Unknown, or None if they already are.

    A condition the kubelet never posted appears as Unknown "NodeStatusNeverUpdated".
    """
    conds = [c.to_dict() for c in ((node.status.conditions if node.status else None) or [])]
    by_type = {c["type"]: c for c in conds}
    changed = False
    created = node.metadata.creation_timestamp or now
    for type_ in KUBELET_CONDITIONS:
        c = by_type.get(type_)
        if c is None:
            conds.append({"type": type_, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                          "message": "Kubelet never posted node status.",
                          "lastHeartbeatTime": created, "lastTransitionTime": now})
            changed = True
        elif c.get("status") != "Unknown":
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.", lastTransitionTime=now)
            changed = True
    return conds if changed else None


# --- the controller -------------------------------------------------------------------------

@dataclass
class _Health:
    """What we last saw of a node's heartbeats, and when (our monotonic clock)."""

    heartbeat: tuple[str, str]  # (lease renewTime, Ready lastHeartbeatTime)
    probe: float
    ready: str  # the Ready status we last observed


class NodeLifecycleController(Controller):
    """The base queue holds node names (taint reconciliation); `evictions` holds pod keys."""

    name = "nodelifecycle"
    component = "node-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.evictions: RateLimitingQueue[str] = RateLimitingQueue(name="taint-eviction")
        # Upstream moved taint eviction into its own controller (1.29); its Events say so.
        self.eviction_recorder = ctx.recorder_for("taint-eviction-controller")
        self.health: dict[str, _Health] = {}
        self._scheduled: dict[str, float] = {}  # pod key → when its eviction is due
        self._tasks: set[asyncio.Future[None]] = set()

    def setup(self) -> None:
        self.nodes = self.factory.informer_for(Node)
        self.leases = self.factory.informer_for(Lease, LEASE_NAMESPACE)
        self.pods = self.factory.informer_for(
            Pod, indexers={NODE_NAME_INDEX: field_index(NODE_NAME_INDEX)})
        self.nodes.add_event_handler(on_add=self._node_changed,
                                     on_update=self._node_updated,
                                     on_delete=self._node_deleted)
        self.pods.add_event_handler(on_add=self._pod_changed,
                                    on_update=lambda _o, p: self._pod_changed(p))

    # --- handlers ---------------------------------------------------------------------------

    def _node_changed(self, node: Node) -> None:
        self.enqueue(node)
        if any(t.effect == NO_EXECUTE for t in node_taints(node)):
            self._enqueue_pods(node.name)

    def _node_updated(self, old: Node, new: Node) -> None:
        self.enqueue(new)
        before = [t for t in node_taints(old) if t.effect == NO_EXECUTE]
        after = [t for t in node_taints(new) if t.effect == NO_EXECUTE]
        if not same_taints(before, after):
            self._enqueue_pods(new.name)

    def _node_deleted(self, node: Node) -> None:
        self.health.pop(node.name, None)

    def _enqueue_pods(self, node_name: str) -> None:
        for pod in self.pods.store.by_index(NODE_NAME_INDEX, node_name):
            self.evictions.add(meta_namespace_key(pod))

    def _pod_changed(self, pod: Pod) -> None:
        if pod.spec is not None and pod.spec.node_name:
            self.evictions.add(meta_namespace_key(pod))

    # --- run --------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await asyncio.gather(
                self._monitor_loop(),
                run_workers(self.queue, self.sync, self.workers, name=self.name),
                run_workers(self.evictions, self.sync_pod, self.workers,
                            name="taint-eviction"),
            )
        finally:
            self.queue.shut_down()
            self.evictions.shut_down()

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor_node_health()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("monitoring node health")
            await asyncio.sleep(self.options.node_monitor_period)

    # --- node health ------------------------------------------------------------------------

    async def monitor_node_health(self) -> None:
        now = time.monotonic()
        stale: list[Node] = []
        for node in self.nodes.store.list():
            if self._observe(node, now):
                stale.append(node)
        for node in stale:
            await self._mark_unknown(node)

    def _observe(self, node: Node, now: float) -> bool:
        """Record the node's heartbeats; True if it is past its grace period and not yet
        marked Unknown."""
        lease = self.leases.store.get(f"{LEASE_NAMESPACE}/{node.name}")
        renew = (lease.spec.renew_time or "") if lease and lease.spec else ""
        ready = node_condition(node, "Ready")
        beat = (renew, (ready.last_heartbeat_time or "") if ready else "")
        status = ready.status if ready else "Unknown"
        h = self.health.get(node.name)
        if ready is None:
            grace = self.options.node_startup_grace_period
            if h is None:
                h = _Health(beat, now - _age(node), status)
        else:
            grace = self.options.node_monitor_grace_period
            if h is None:
                h = _Health(beat, now, status)
        if beat != h.heartbeat:
            h.heartbeat, h.probe = beat, now
        if status != h.ready:
            self._readiness_changed(node, h.ready, status)
            h.ready = status
        self.health[node.name] = h
        return now > h.probe + grace and (ready is None or ready.status != "Unknown"
                                          or _any_known(node))

    def _readiness_changed(self, node: Node, before: str, after: str) -> None:
        if before == "True" and after != "True":
            self.recorder.event(node, "Normal", "NodeNotReady",
                                f"Node {node.name} status is now: NodeNotReady")
            self._spawn_mark_pods_not_ready(node.name)

    async def _mark_unknown(self, node: Node) -> None:
        conds = unknown_conditions(node, now_rfc3339())
        if conds is None:
            return
        body = node.to_dict()
        body.setdefault("status", {})["conditions"] = conds
        try:
            updated = await self.client.update_status("nodes", body)
        except (errors.Conflict, errors.NotFound) as e:
            self.log.info("marking node %s unknown: %s; next pass", node.name, e)
            return
        self.log.info("node %s: no heartbeat within the grace period; conditions Unknown",
                      node.name)
        new = Node.model_validate(updated)
        h = self.health.get(node.name)
        if h is not None and h.ready != "Unknown":
            self._readiness_changed(new, h.ready, "Unknown")
            h.ready = "Unknown"
        self.enqueue(new)

    def _spawn_mark_pods_not_ready(self, node_name: str) -> None:
        # Off the monitor pass: a node with many pods must not delay the other nodes' checks.
        task = asyncio.ensure_future(self._mark_pods_not_ready(node_name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """upstream's MarkPodsNotReady: Ready=False on every pod of the node."""
        for pod in self.pods.store.by_index(NODE_NAME_INDEX, node_name):
            body = pod_marked_not_ready(pod.to_dict(), node_name, now_rfc3339())
            if body is None:
                continue
            if await self._write_not_ready(body, node_name):
                self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")

    async def _write_not_ready(self, body: dict[str, Any], node_name: str) -> bool:
        """Write the pod's Ready=False; on a Conflict (our cached copy was stale) re-read it and
        try again, as upstream retries the node's pods. False if there was nothing to write or
        it could not be written."""
        md = body["metadata"]
        for _ in range(5):
            try:
                await self.client.update_status("pods", body)
                return True
            except errors.Conflict:
                try:
                    fresh = await self.client.get("pods", md["name"], md["namespace"])
                except errors.ApiError as e:
                    self.log.info("marking pod %s/%s not ready: %s", md["namespace"],
                                  md["name"], e)
                    return False
                if fresh["metadata"].get("uid") != md.get("uid"):
                    return False
                again = pod_marked_not_ready(fresh, node_name, now_rfc3339())
                if again is None:
                    return False
                body = again
            except errors.ApiError as e:  # gone, or the apiserver away: next pod
                self.log.info("marking pod %s/%s not ready: %s", md["namespace"], md["name"], e)
                return False
        return False

    # --- taints (the node queue) ------------------------------------------------------------

    async def sync(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None:
            return
        want = desired_taints(node, now_rfc3339())
        if same_taints(node_taints(node), want):
            return
        body = node.to_dict()
        spec = body.setdefault("spec", {})
        spec["taints"] = [t.to_dict() for t in want]
        if not want:
            del spec["taints"]
        await self.client.update("nodes", body)  # a Conflict retries from a fresher cache

    # --- taint eviction (the pod queue) -----------------------------------------------------

    async def sync_pod(self, key: str) -> None:
        pod = self.pods.store.get(key)
        if pod is None or pod.spec is None or not pod.spec.node_name:
            self._scheduled.pop(key, None)
            return
        if pod.metadata.deletion_timestamp is not None:
            self._scheduled.pop(key, None)
            return
        node = self.nodes.store.get(pod.spec.node_name)
        taints = node_taints(node) if node is not None else []
        decision = eviction_for(taints, pod_tolerations(pod), time.time())
        if decision.now:
            await self._evict(pod, key)
            return
        if decision.at is None:
            if self._scheduled.pop(key, None) is not None:
                self.eviction_recorder.event(pod, "Normal", "TaintManagerEviction",
                                             f"Cancelling deletion of Pod {key}")
            return
        self._scheduled[key] = decision.at
        self.evictions.add_after(key, max(0.0, decision.at - time.time()) + 0.01)

    async def _evict(self, pod: Pod, key: str) -> None:
        self._scheduled.pop(key, None)
        self.eviction_recorder.event(pod, "Normal", "TaintManagerEviction",
                                     f"Marking for deletion Pod {key}")
        await self._add_disruption_condition(pod)
        ns, name = split_meta_namespace_key(key)
        try:
            await self.client.delete("pods", name, ns, precondition_uid=pod.metadata.uid or "")
        except (errors.NotFound, errors.Conflict):
            return
        self.log.info("evicted pod %s: NoExecute taint on node %s", key,
                      pod.spec.node_name if pod.spec else "")

    async def _add_disruption_condition(self, pod: Pod) -> None:
        """The DisruptionTarget condition upstream adds before deleting (best effort)."""
        body = pod.to_dict()
        conds = [c for c in (body.get("status") or {}).get("conditions") or []
                 if c.get("type") != "DisruptionTarget"]
        conds.append({"type": "DisruptionTarget", "status": "True",
                      "reason": "DeletionByTaintManager",
                      "message": "Taint manager: deleting due to NoExecute taint",
                      "lastTransitionTime": now_rfc3339()})
        body.setdefault("status", {})["conditions"] = conds
        try:
            await self.client.update_status("pods", body)
        except errors.ApiError as e:
            self.log.debug("DisruptionTarget on %s: %s", pod.key, e)


def pod_marked_not_ready(pod: dict[str, Any], node_name: str,
                         now: str) -> dict[str, Any] | None:
    """The pod with its Ready condition set to False, or None if there is nothing to do (not on
    that node, terminating, no Ready condition, or already not Ready)."""
    if (pod.get("spec") or {}).get("nodeName") != node_name \
            or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    conds = (pod.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    if ready is None or ready.get("status") == "False":
        return None
    ready.update(status="False", lastTransitionTime=now)
    return pod


def _age(node: Node) -> float:
    """Seconds since the node was created (0 if unknown)."""
    created = node.metadata.creation_timestamp
    if not created:
        return 0.0
    return max(0.0, (dt.datetime.now(dt.UTC) - parse_rfc3339(created)).total_seconds())


def _any_known(node: Node) -> bool:
    """Whether any kubelet condition is still not Unknown (Ready may be Unknown already)."""
    return any((c := node_condition(node, t)) is None or c.status != "Unknown"
               for t in KUBELET_CONDITIONS)
