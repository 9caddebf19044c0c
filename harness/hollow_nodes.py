"""tk-hollow-nodes: N fake nodes in one process, to test and measure the control plane at scale.

Like kubemark's hollow nodes or kwok, this registers Node objects with capacity, renews a Lease
per node in kube-node-lease and plays the kubelet for the pods bound to them — Running, Ready,
a podIP from the node's podCIDR, deleted once they are marked for deletion — without running a
single container. The scheduler, the controllers and the node lifecycle loop cannot tell the
difference, which is the point: a thousand nodes fit on a laptop. It is not the kubelet; tests
that claim to test the kubelet use the real one.

One process, few tasks, whatever the count: one lease loop spreads the renewals over the
interval (1000 nodes at 10s → one renewal every 10ms, never a burst of 1000), one pod informer
for all bound pods and a small pool of workers that write pod status. SIGTERM leaves the Nodes
behind, like a kubelet that stops; a restart reuses them and their pods' addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from api import errors
from api.core import Node, Pod
from api.meta import now_rfc3339
from api.podutil import (
    NO_EXECUTE,
    NO_SCHEDULE,
    PREFER_NO_SCHEDULE,
    is_node_ready,
    is_terminating,
    pod_phase,
)
from api.quantity import parse_quantity
from client.apiclient import ApiClient
from client.flags import Parser, add_client_flags, make_client, run_main, setup_logging
from client.informer import SharedInformerFactory
from client.leaderelection import now_micro
from client.store import meta_namespace_key, split_meta_namespace_key
from client.workqueue import RateLimitingQueue, run_workers
from harness.hollow_pods import PodCIDRAllocator, desired_status, same_status

PROG = "tk-hollow-nodes"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40  # seconds, kubelet's default (nodeLeaseDurationSeconds)
HOLLOW_LABEL = "node.kubernetes.io/hollow"
# Pods land on a node before the node IPAM controller gave it a podCIDR only in a cluster run
# without that controller: then addresses come from a per-node /24 of this range instead.
FALLBACK_RANGE = ipaddress.ip_network("172.16.0.0/12")
PODCIDR_WAIT = 2.0  # seconds a pod waits for its node's podCIDR before using the fallback
log = logging.getLogger("hollow-nodes")

_NODE_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class NodeSpecFlags:
    """What every hollow node of this process looks like (from the flags)."""

    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


@dataclass
class HollowNode:
    name: str
    index: int
    internal_ip: str
    lease: dict[str, Any] | None = None
    deleted: bool = False
    allocator: PodCIDRAllocator | None = None
    fallback: PodCIDRAllocator | None = None


def internal_ip(index: int) -> str:
    """A fake, unique InternalIP per node: 10.254.0.0/16 minus network/broadcast per /24."""
    return f"10.254.{index // 254 % 256}.{index % 254 + 1}"


def fallback_cidr(index: int) -> str:
    sub = FALLBACK_RANGE.network_address + (index % (FALLBACK_RANGE.num_addresses // 256)) * 256
    return f"{sub}/24"


def node_object(node: HollowNode, spec: NodeSpecFlags) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", HOLLOW_LABEL: "true", **spec.labels}
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "Node",
                           "metadata": {"name": node.name, "labels": labels}, "spec": {}}
    if spec.taints:
        out["spec"]["taints"] = spec.taints
    return out


def node_status(node: HollowNode, spec: NodeSpecFlags, current: dict[str, Any],
                t: str) -> dict[str, Any]:
    """The status a healthy kubelet posts (transition times kept where nothing changed)."""
    old = {c.get("type"): c for c in current.get("conditions") or []}
    conds = []
    for type_, status, reason, message in _NODE_CONDITIONS:
        prev = old.get(type_) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        conds.append({"type": type_, "status": status, "reason": reason, "message": message,
                      "lastHeartbeatTime": t, "lastTransitionTime": since or t})
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": str(spec.pods),
                 "ephemeral-storage": "100Gi"}
    return {
        **current,
        "capacity": resources, "allocatable": dict(resources),
        "conditions": conds,
        "addresses": [{"type": "InternalIP", "address": node.internal_ip},
                      {"type": "Hostname", "address": node.name}],
        "nodeInfo": {"machineID": node.name, "systemUUID": node.name, "bootID": node.name,
                     "kernelVersion": "hollow", "osImage": "hollow",
                     "containerRuntimeVersion": "hollow://0", "kubeletVersion": "hollow",
                     "kubeProxyVersion": "hollow", "operatingSystem": "linux",
                     "architecture": "amd64"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


class HollowNodes:
    """Register the nodes, keep their leases fresh, run their pods; `run()` until cancelled."""

    def __init__(self, client: ApiClient, names: list[str], spec: NodeSpecFlags,
                 lease_interval: float = 10.0, workers: int = 8, concurrency: int = 32) -> None:
        self.client = client
        self.spec = spec
        self.lease_interval = lease_interval
        self.nodes = {n: HollowNode(n, i, internal_ip(i)) for i, n in enumerate(names)}
        self.workers = workers
        self._sem = asyncio.Semaphore(concurrency)
        self.factory = SharedInformerFactory(client)
        self.pod_queue: RateLimitingQueue[str] = RateLimitingQueue(name="hollow-pods")
        self.node_queue: RateLimitingQueue[str] = RateLimitingQueue(name="hollow-node-status")
        self._renewing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting_cidr: dict[str, float] = {}  # pod key → when it started waiting
        self._assigned: dict[str, tuple[str, str]] = {}  # pod key → (node, uid) with an IP
        self.nodes_inf = self.factory.informer_for(Node)
        self.pods_inf = self.factory.informer_for(Pod, field_selector="spec.nodeName!=")

    # --- wiring -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.nodes_inf.add_event_handler(on_add=self._node_changed,
                                         on_update=lambda _o, n: self._node_changed(n),
                                         on_delete=self._node_deleted)
        await self.register()
        self.factory.start()
        await self.factory.wait_for_cache_sync()
        self._claim_existing_addresses()
        self.pods_inf.add_event_handler(on_add=self._pod_changed,
                                        on_update=lambda _o, p: self._pod_changed(p),
                                        on_delete=self._pod_changed)
        log.info("%d hollow nodes registered; running", len(self.nodes))
        try:
            await asyncio.gather(
                self._lease_loop(),
                run_workers(self.pod_queue, self.sync_pod, self.workers, name="hollow-pods"),
                run_workers(self.node_queue, self.sync_node_status, 2, name="hollow-nodes"),
            )
        finally:
            self.pod_queue.shut_down()
            self.node_queue.shut_down()
            for t in list(self._tasks):
                t.cancel()
            await self.factory.shutdown()

    async def _bounded(self, coro: Any) -> Any:
        async with self._sem:
            return await coro

    # --- registration -----------------------------------------------------------------------

    async def register(self) -> None:
        """Create every Node (or reuse it) and its Lease, then post a Ready status."""
        await asyncio.gather(*(self._bounded(self._register_one(n))
                               for n in self.nodes.values()))

    async def _register_one(self, node: HollowNode) -> None:
        for attempt in range(10):
            try:
                try:
                    cur = await self.client.create("nodes", node_object(node, self.spec))
                except errors.AlreadyExists:
                    cur = await self.client.get("nodes", node.name)
                await self._post_status(node, cur)
                await self._renew(node)
                return
            except (errors.Conflict, errors.ServiceUnavailable, errors.Timeout) as e:
                log.info("registering %s: %s; retrying", node.name, e)
                await asyncio.sleep(min(0.1 * 2 ** attempt, 2.0))
        raise RuntimeError(f"could not register node {node.name}")

    async def _post_status(self, node: HollowNode, cur: dict[str, Any]) -> None:
        body = {**cur, "status": node_status(node, self.spec, cur.get("status") or {},
                                             now_rfc3339())}
        await self.client.update_status("nodes", body)

    # --- node status ------------------------------------------------------------------------

    def _node_changed(self, obj: Node) -> None:
        node = self.nodes.get(obj.name)
        if node is None:
            return
        node.deleted = False
        cidr = obj.spec.pod_cidr if obj.spec else None
        if cidr and (node.allocator is None or str(node.allocator.network) != cidr):
            node.allocator = PodCIDRAllocator(cidr)
            for key in [k for k in self._waiting_cidr if self._on(k) == node.name]:
                self.pod_queue.add(key)
        if not is_node_ready(obj):
            # Someone (the node lifecycle controller) says we are not ready: we are, say so.
            self.node_queue.add(node.name)

    def _node_deleted(self, obj: Node) -> None:
        node = self.nodes.get(obj.name)
        if node is not None:
            node.deleted = True  # a deleted node stops heartbeating, like a kubelet whose
            node.lease = None    # Node is gone; it comes back when the process restarts

    def _on(self, pod_key: str) -> str:
        pod = self.pods_inf.store.get(pod_key)
        return (pod.spec.node_name or "") if pod and pod.spec else ""

    async def sync_node_status(self, name: str) -> None:
        node = self.nodes[name]
        if node.deleted:
            return
        try:
            cur = await self.client.get("nodes", name)
        except errors.NotFound:
            return
        await self._post_status(node, cur)

    # --- leases -----------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        """Renew every node's lease once per interval, one node every interval/N seconds."""
        loop = asyncio.get_running_loop()
        names = list(self.nodes)
        slot = self.lease_interval / max(1, len(names))
        i, next_at = 0, loop.time() + slot
        while True:
            await asyncio.sleep(max(0.01, next_at - loop.time()))
            while next_at <= loop.time():
                name = names[i % len(names)]
                i, next_at = i + 1, next_at + slot
                if name in self._renewing or self.nodes[name].deleted:
                    continue
                self._renewing.add(name)
                self._spawn(self._renew_logged(self.nodes[name]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_logged(self, node: HollowNode) -> None:
        try:
            await self._bounded(self._renew(node))
        except errors.ApiError as e:
            log.warning("renewing lease of %s: %s", node.name, e)
        except Exception:
            log.exception("renewing lease of %s", node.name)
        finally:
            self._renewing.discard(node.name)

    async def _renew(self, node: HollowNode) -> None:
        """Update the cached Lease (a CAS, like the kubelet); re-read it on a conflict."""
        if node.lease is None:
            node.lease = await self._get_or_create_lease(node)
        lease = node.lease
        lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": node.name,
                         "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro()}
        try:
            node.lease = await self.client.update("leases", lease, LEASE_NAMESPACE)
        except (errors.Conflict, errors.NotFound):
            node.lease = None  # the next renewal starts from a fresh read

    async def _get_or_create_lease(self, node: HollowNode) -> dict[str, Any]:
        try:
            return await self.client.get("leases", node.name, LEASE_NAMESPACE)
        except errors.NotFound:
            pass
        n = self.nodes_inf.store.get(node.name)
        uid = n.metadata.uid if n is not None else None
        if uid is None:
            uid = (await self.client.get("nodes", node.name))["metadata"]["uid"]
        # Owned by the Node, as the kubelet does it: the garbage collector removes the Lease
        # with the Node.
        owner = [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": uid}]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": owner},
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_DURATION,
                         "renewTime": now_micro()}}
        try:
            return await self.client.create("leases", body, LEASE_NAMESPACE)
        except errors.AlreadyExists:
            return await self.client.get("leases", node.name, LEASE_NAMESPACE)

    # --- pods -------------------------------------------------------------------------------

    def _claim_existing_addresses(self) -> None:
        """After a restart, record the addresses our pods already have before handing out any."""
        for pod in self.pods_inf.store.list():
            node = self.nodes.get((pod.spec.node_name or "") if pod.spec else "")
            ip = pod.status.pod_ip if pod.status else None
            if node is None or not ip:
                continue
            uid = pod.metadata.uid or ""
            for alloc in self._allocators(node):
                if alloc.claim(uid, ip):
                    self._assigned[meta_namespace_key(pod)] = (node.name, uid)
                    break

    def _allocators(self, node: HollowNode) -> list[PodCIDRAllocator]:
        if node.fallback is None:
            node.fallback = PodCIDRAllocator(fallback_cidr(node.index))
        return [a for a in (node.allocator, node.fallback) if a is not None]

    def _pod_changed(self, pod: Pod) -> None:
        if pod.spec is not None and pod.spec.node_name in self.nodes:
            self.pod_queue.add(meta_namespace_key(pod))

    def _release(self, node_name: str, uid: str) -> None:
        node = self.nodes.get(node_name)
        if node is not None:
            for alloc in self._allocators(node):
                alloc.release(uid)

    async def sync_pod(self, key: str) -> None:
        pod = self.pods_inf.store.get(key)
        if pod is None or pod.spec is None or pod.spec.node_name not in self.nodes:
            self._forget_pod(key)
            return
        node = self.nodes[pod.spec.node_name or ""]
        uid = pod.metadata.uid or ""
        if is_terminating(pod):
            # The containers "stopped" at once: confirm the deletion, for this very pod only.
            self._release(node.name, uid)
            ns, name = split_meta_namespace_key(key)
            with contextlib.suppress(errors.NotFound, errors.Conflict):
                await self.client.delete("pods", name, ns, grace_period_seconds=0,
                                         precondition_uid=uid)
            return
        if pod_phase(pod) in ("Succeeded", "Failed"):
            self._release(node.name, uid)
            return
        ip = self._address(node, pod, key)
        if ip is None:
            return
        data = pod.to_dict()
        status, requeue = desired_status(data, node.internal_ip, ip, now())
        if not same_status(data.get("status") or {}, status):
            data["status"] = status
            try:
                await self.client.update_status("pods", data)
            except errors.NotFound:
                self._forget_pod(key)
                return
        if requeue is not None:
            self.pod_queue.add_after(key, requeue + 0.05)

    def _forget_pod(self, key: str) -> None:
        self._waiting_cidr.pop(key, None)
        gone = self._assigned.pop(key, None)
        if gone is not None:
            self._release(*gone)

    def _address(self, node: HollowNode, pod: Pod, key: str) -> str | None:
        """The pod's IP: the one it has, else a new one from the node's podCIDR; None (and a
        retry) while we wait briefly for the node IPAM controller to give the node a podCIDR."""
        uid = pod.metadata.uid or ""
        have = pod.status.pod_ip if pod.status else None
        if have:
            for alloc in self._allocators(node):
                if alloc.claim(uid, have):
                    self._assigned[key] = (node.name, uid)
                    return have
        if node.allocator is None:
            loop = asyncio.get_running_loop()
            since = self._waiting_cidr.setdefault(key, loop.time())
            if loop.time() - since < PODCIDR_WAIT:
                self.pod_queue.add_after(key, 0.25)
                return None
        self._waiting_cidr.pop(key, None)
        for alloc in self._allocators(node):
            ip = alloc.allocate(uid)
            if ip is not None:
                self._assigned[key] = (node.name, uid)
                return ip
        log.warning("node %s: no pod address left for %s", node.name, key)
        return ""


# --- command line ---------------------------------------------------------------------------

def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise argparse.ArgumentTypeError(f"invalid label {item!r} (want key=value)")
        out[k] = v
    return out


def _taints(text: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        kv, sep, effect = item.rpartition(":")
        if not sep or effect not in (NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE):
            raise argparse.ArgumentTypeError(
                f"invalid taint {item!r} (want key[=value]:NoSchedule|PreferNoSchedule|NoExecute)")
        k, _, v = kv.partition("=")
        out.append({"key": k, "effect": effect, **({"value": v} if v else {})})
    return out


def _quantity(text: str) -> str:
    try:
        parse_quantity(text)
    except (ValueError, errors.ApiError):
        raise argparse.ArgumentTypeError(f"invalid quantity {text!r}") from None
    return text


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="Registers N fake nodes that heartbeat and run bound "
                                      "pods without containers (kubemark / kwok style).")
    add_client_flags(p)
    p.add_argument("--count", type=int, required=True, metavar="N", help="how many nodes")
    p.add_argument("--name-prefix", default="hollow-", help="node names are PREFIX0..PREFIXN-1")
    p.add_argument("--cpu", type=_quantity, default="4", help="capacity per node (default 4)")
    p.add_argument("--memory", type=_quantity, default="16Gi", help="default 16Gi")
    p.add_argument("--pods", type=int, default=110, help="pods per node (default 110)")
    p.add_argument("--lease-interval", type=float, default=10.0, metavar="SECONDS",
                   help="renew each node's Lease this often (default 10)")
    p.add_argument("--node-labels", type=_labels, default={}, metavar="K=V,...",
                   help="extra labels on every node (the kubelet's flag)")
    p.add_argument("--register-with-taints", type=_taints, default=[],
                   metavar="K=V:EFFECT,...", help="taints the nodes register with")
    p.add_argument("--workers", type=int, default=8, help="concurrent pod status writers")
    a = p.parse_args(argv)
    if a.count < 1:
        p.error("--count: must be at least 1")
    if a.pods < 1:
        p.error("--pods: must be at least 1")
    if not a.lease_interval > 0:
        p.error("--lease-interval: must be positive")
    if a.workers < 1:
        p.error("--workers: must be at least 1")
    return a, p


async def _run(a: argparse.Namespace, p: Parser) -> None:
    client = make_client(p, a, PROG)
    spec = NodeSpecFlags(cpu=a.cpu, memory=a.memory, pods=a.pods, labels=a.node_labels,
                         taints=a.register_with_taints)
    hollow = HollowNodes(client, [f"{a.name_prefix}{i}" for i in range(a.count)], spec,
                         lease_interval=a.lease_interval, workers=a.workers)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        # SIGTERM: stop like a kubelet does, leaving the Nodes for the lifecycle controller.
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await client.wait_ready()
        await hollow.run()
    except asyncio.CancelledError:
        log.info("stopping; the nodes stay registered")
    finally:
        await client.close()


def main() -> None:
    a, p = parse(sys.argv[1:])
    setup_logging(a.verbose)
    run_main(_run(a, p), PROG)


if __name__ == "__main__":
    main()
