"""tk-scheduler against a real etcd + apiserver: upstream's SchedulerPredicates conformance tests.

The module runs its own Cluster with only a scheduler in it (short back-offs), and each test
creates the Node objects it needs with exactly the capacity, labels and taints it wants (no
kubelet: a Node is just an object to the scheduler), then removes them, so that the
"0/N nodes are available" messages count only that test's nodes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from harness.cluster import Cluster
from harness.wait import until

pytestmark = pytest.mark.integration

SCHEDULER_FLAGS = ("--pod-initial-backoff", "0.2", "--pod-max-backoff", "1")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sched() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_scheduler(*SCHEDULER_FLAGS)
        yield c


class Nodes:
    """Creates Nodes for one test and deletes them (and every pod of its namespace) after."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.client = cluster.client
        self.namespace = namespace
        self.names: list[str] = []

    async def add(self, *, cpu: str = "4", memory: str = "16Gi", pods: int = 110,
                  labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None,
                  unschedulable: bool = False) -> str:
        name = f"node-{uuid.uuid4().hex[:8]}"
        spec: dict[str, Any] = {"taints": taints} if taints else {}
        if unschedulable:
            spec["unschedulable"] = True
        await self.client.create("nodes", {
            "apiVersion": "v1", "kind": "Node", "spec": spec,
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}}})
        self.names.append(name)
        node = await self.client.get("nodes", name)
        resources = {"cpu": cpu, "memory": memory, "pods": str(pods)}
        node["status"] = {"capacity": resources, "allocatable": resources, "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
        await self.client.update_status("nodes", node)
        return name

    async def cleanup(self) -> None:
        await self.client.delete_collection("pods", self.namespace, grace_period_seconds=0)
        for name in self.names:
            try:
                await self.client.delete("nodes", name)
            except errors.NotFound:
                pass


@pytest_asyncio.fixture(loop_scope="session")
async def nodes(sched: Cluster) -> AsyncIterator[Nodes]:
    ns = await sched.new_namespace("sched-")
    n = Nodes(sched, ns)
    try:
        yield n
    finally:
        await n.cleanup()


def pod(name: str, *, cpu: str | None = None, memory: str | None = None,
        **spec: Any) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    container: dict[str, Any] = {"name": "c", "image": "pause"}
    if requests:
        container["resources"] = {"requests": requests}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    labels = spec.pop("labels", {})
    owner = spec.pop("owner", None)
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [container], **spec}}


async def create(n: Nodes, *pods: dict[str, Any]) -> None:
    await asyncio.gather(*(n.client.create("pods", p, n.namespace) for p in pods))


async def node_of(n: Nodes, name: str, timeout: float = 30) -> str:
    async def bound() -> str:
        p = await n.client.get("pods", name, n.namespace)
        return str(p["spec"].get("nodeName") or "")
    return await until(bound, timeout=timeout, what=f"pod {name} bound")


async def unschedulable_message(n: Nodes, name: str, expect: str | None = None,
                                timeout: float = 30) -> str:
    """The message of the pod's PodScheduled=False condition, once it has one (once it is
    `expect`, if given: Nodes created just before the pod reach the scheduler on a watch of
    their own, maybe after its first attempt; their add event retries the pod)."""
    async def condition() -> str:
        p = await n.client.get("pods", name, n.namespace)
        assert not p["spec"].get("nodeName"), f"{name} was bound to {p['spec']['nodeName']}"
        for c in (p.get("status") or {}).get("conditions") or []:
            if c["type"] == "PodScheduled" and c["status"] == "False":
                assert c["reason"] == "Unschedulable", c
                assert expect is None or c["message"] == expect, c["message"]
                return str(c["message"])
        return ""
    return await until(condition, timeout=timeout, what=f"pod {name} unschedulable")


async def event_messages(n: Nodes, name: str, reason: str) -> list[str]:
    evs = await n.client.list("events", n.namespace,
                              field_selector=f"involvedObject.name={name},reason={reason}")
    return [e["message"] for e in evs["items"]]


async def bound_nodes(n: Nodes) -> Counter[str]:
    pods = await n.client.list("pods", n.namespace)
    return Counter(p["spec"].get("nodeName") or "" for p in pods["items"])


# --- SchedulerPredicates [Serial] -------------------------------------------------------------

async def test_validates_resource_limits_of_pods_that_are_allowed_to_run(nodes: Nodes) -> None:
    """Fill two 1-cpu nodes with 500m pods; the next one stays Pending with upstream's reason,
    both in its PodScheduled condition and in a FailedScheduling event."""
    for _ in range(2):
        await nodes.add(cpu="1")
    await create(nodes, *(pod(f"filler-{i}", cpu="500m") for i in range(4)))
    where = [await node_of(nodes, f"filler-{i}") for i in range(4)]
    assert sorted(Counter(where).values()) == [2, 2]
    await create(nodes, pod("additional", cpu="500m"))
    msg = await unschedulable_message(nodes, "additional")
    assert msg == "0/2 nodes are available: 2 Insufficient cpu."
    events = await until(partial(event_messages, nodes, "additional", "FailedScheduling"),
                         what="FailedScheduling event")
    assert events[0] == msg
    scheduled = await until(partial(event_messages, nodes, "filler-0", "Scheduled"),
                            what="Scheduled event")
    assert scheduled == [f"Successfully assigned {nodes.namespace}/filler-0 to {where[0]}"]


async def test_validates_that_nodeselector_is_respected_if_matching(nodes: Nodes) -> None:
    await nodes.add()
    key = f"kubernetes.io/e2e-{uuid.uuid4().hex[:6]}"
    labelled = await nodes.add(labels={key: "42"})
    await create(nodes, pod("with-labels", nodeSelector={key: "42"}))
    assert await node_of(nodes, "with-labels") == labelled


async def test_validates_that_nodeselector_is_respected_if_not_matching(nodes: Nodes) -> None:
    for _ in range(2):
        await nodes.add()
    await create(nodes, pod("restricted", nodeSelector={"label": "nonempty"}))
    want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    assert await unschedulable_message(nodes, "restricted", want) == want


async def test_validates_that_required_nodeaffinity_setting_is_respected_if_matching(
        nodes: Nodes) -> None:
    """Required terms are ORed, expressions ANDed; matchFields selects metadata.name."""
    a = await nodes.add(labels={"zone": "a", "size": "8"})
    b = await nodes.add(labels={"zone": "b", "size": "16"})
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]},
                                  {"key": "size", "operator": "Gt", "values": ["10"]}]}]}}}
    by_name = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [a]}]}]}}}
    await create(nodes, pod("by-labels", affinity=affinity), pod("by-name", affinity=by_name))
    assert await node_of(nodes, "by-labels") == b
    assert await node_of(nodes, "by-name") == a


async def test_validates_that_taints_tolerations_is_respected_if_matching(nodes: Nodes) -> None:
    key = f"kubernetes.io/e2e-taint-key-{uuid.uuid4().hex[:6]}"
    tainted = await nodes.add(labels={"e2e": "tainted"},
                              taints=[{"key": key, "value": "testing-taint-value",
                                       "effect": "NoSchedule"}])
    await nodes.add()
    await create(nodes, pod("with-tolerations", nodeSelector={"e2e": "tainted"}, tolerations=[
        {"key": key, "value": "testing-taint-value", "effect": "NoSchedule"}]))
    assert await node_of(nodes, "with-tolerations") == tainted


async def test_validates_that_taints_tolerations_is_respected_if_not_matching(
        nodes: Nodes) -> None:
    """The tainted node is rejected by TaintToleration (it runs before NodeAffinity), the other
    by the nodeSelector; the histogram is sorted as strings, as upstream's."""
    key = f"kubernetes.io/e2e-taint-key-{uuid.uuid4().hex[:6]}"
    await nodes.add(labels={"e2e": "tainted"},
                    taints=[{"key": key, "value": "testing-taint-value", "effect": "NoExecute"}])
    await nodes.add()
    await create(nodes, pod("still-no-tolerations", nodeSelector={"e2e": "tainted"}))
    want = ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            f"1 node(s) had untolerated taint {{{key}: testing-taint-value}}.")
    assert await unschedulable_message(nodes, "still-no-tolerations", want) == want


async def test_validates_that_there_is_no_conflict_between_pods_with_same_hostport_but_different_hostip_and_protocol(  # noqa: E501
        nodes: Nodes) -> None:
    only = await nodes.add()
    ports = [("127.0.0.1", "TCP"), ("127.0.0.2", "TCP"), ("127.0.0.2", "UDP")]
    await create(nodes, *(pod(f"pod{i}", ports=[{"containerPort": 8080, "hostPort": 54321,
                                                 "hostIP": ip, "protocol": proto}])
                          for i, (ip, proto) in enumerate(ports)))
    for i in range(3):
        assert await node_of(nodes, f"pod{i}") == only


async def test_validates_that_there_exists_conflict_between_pods_with_same_hostport_and_protocol_but_one_using_0000_hostip(  # noqa: E501
        nodes: Nodes) -> None:
    await nodes.add()
    await create(nodes, pod("pod4", ports=[{"containerPort": 8080, "hostPort": 54322,
                                            "hostIP": "0.0.0.0", "protocol": "TCP"}]))
    await node_of(nodes, "pod4")
    await create(nodes, pod("pod5", ports=[{"containerPort": 8080, "hostPort": 54322,
                                            "hostIP": "127.0.0.1", "protocol": "TCP"}]))
    assert await unschedulable_message(nodes, "pod5") == (
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.")


async def test_unschedulable_node_keeps_pods_pending_until_uncordoned(nodes: Nodes) -> None:
    """A cordoned node is filtered out (NodeUnschedulable); the node update that uncordons it
    moves the parked pod back to the active queue."""
    name = await nodes.add(unschedulable=True)
    await create(nodes, pod("waiting"))
    want = "0/1 nodes are available: 1 node(s) were unschedulable."
    assert await unschedulable_message(nodes, "waiting", want) == want
    await nodes.client.patch("nodes", name, {"spec": {"unschedulable": False}})
    assert await node_of(nodes, "waiting") == name


async def test_pod_tolerating_unschedulable_taint_lands_on_cordoned_node(nodes: Nodes) -> None:
    name = await nodes.add(unschedulable=True)
    await create(nodes, pod("tolerant", tolerations=[
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
         "effect": "NoSchedule"}]))
    assert await node_of(nodes, "tolerant") == name


async def test_pods_of_one_controller_spread_over_nodes(nodes: Nodes) -> None:
    names = [await nodes.add() for _ in range(3)]
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
             "uid": str(uuid.uuid4()), "controller": True}
    await create(nodes, *(pod(f"web-{i}", labels={"app": "web"}, owner=owner)
                          for i in range(9)))
    for i in range(9):
        await node_of(nodes, f"web-{i}")
    assert await bound_nodes(nodes) == Counter({n: 3 for n in names})


async def test_assume_cache_never_overcommits_a_node_in_a_burst(nodes: Nodes) -> None:
    """Ten 1-cpu pods at once onto two 2-cpu nodes: every decision sees the ones before it
    (assumed, not yet bound), so exactly four are placed, two per node."""
    for _ in range(2):
        await nodes.add(cpu="2")
    await create(nodes, *(pod(f"burst-{i}", cpu="1") for i in range(10)))
    for i in range(10):
        await until(partial(_placed_or_unschedulable, nodes, f"burst-{i}"),
                    what=f"burst-{i} decided")
    placed = await bound_nodes(nodes)
    assert placed.pop("") == 6
    assert sorted(placed.values()) == [2, 2]


async def _placed_or_unschedulable(n: Nodes, name: str) -> bool:
    p = await n.client.get("pods", name, n.namespace)
    if p["spec"].get("nodeName"):
        return True
    return any(c["type"] == "PodScheduled" and c["status"] == "False"
               for c in (p.get("status") or {}).get("conditions") or [])


async def test_pending_pod_is_retried_with_backoff_when_a_node_appears(nodes: Nodes) -> None:
    """With no node it fits nowhere; the node add event moves it back and it gets bound."""
    await until(partial(_no_nodes, nodes), what="no nodes left by earlier tests")
    await create(nodes, pod("early"))
    assert await unschedulable_message(nodes, "early") == "no nodes available to schedule pods"
    name = await nodes.add()
    assert await node_of(nodes, "early") == name


async def _no_nodes(n: Nodes) -> bool:
    return not (await n.client.list("nodes"))["items"]


async def test_freed_resources_let_a_parked_pod_fit(nodes: Nodes) -> None:
    """Deleting a bound pod is a cluster event (AssignedPodDelete) that retries parked pods."""
    await nodes.add(cpu="1")
    await create(nodes, pod("big", cpu="800m"))
    await node_of(nodes, "big")
    await create(nodes, pod("next", cpu="800m"))
    await unschedulable_message(nodes, "next")
    await nodes.client.delete("pods", "big", nodes.namespace, grace_period_seconds=0)
    await node_of(nodes, "next")


async def test_only_pods_for_this_scheduler_name_are_scheduled(nodes: Nodes) -> None:
    await nodes.add()
    await create(nodes, pod("other", schedulerName="other-scheduler"))
    await create(nodes, pod("ours"))
    await node_of(nodes, "ours")
    other = await nodes.client.get("pods", "other", nodes.namespace)
    assert not other["spec"].get("nodeName")
    assert not (other.get("status") or {}).get("conditions")


async def test_scheduler_holds_the_kube_scheduler_lease(sched: Cluster) -> None:
    lease = await until(partial(_lease, sched), what="kube-scheduler lease")
    assert lease is not None and lease["spec"]["holderIdentity"]


async def _lease(c: Cluster) -> dict[str, Any] | None:
    try:
        return await c.client.get("leases", "kube-scheduler", "kube-system")
    except errors.NotFound:
        return None


async def test_scheduler_keeps_scheduling_across_an_apiserver_restart() -> None:
    """The apiserver dies and comes back on the same etcd: the scheduler's informers re-list or
    resume and it goes on placing pods, seeing what changed meanwhile (a freed node)."""
    async with Cluster() as c:
        c.start_scheduler("--no-leader-elect", *SCHEDULER_FLAGS)
        n = Nodes(c, await c.new_namespace("sched-"))
        await n.add(cpu="1")
        await create(n, pod("first", cpu="800m"))
        await node_of(n, "first", timeout=60)
        await create(n, pod("parked", cpu="800m"))
        await unschedulable_message(n, "parked", timeout=60)

        assert c.apiserver is not None
        c.apiserver.kill()  # SIGKILL: every watch breaks
        await c.apiserver.start()
        await until(partial(_reachable, c), timeout=60, what="apiserver back")
        await c.client.delete("pods", "first", n.namespace, grace_period_seconds=0)
        assert await node_of(n, "parked", timeout=60)
        await create(n, pod("after", cpu="100m"))
        assert await node_of(n, "after", timeout=60)


async def _reachable(c: Cluster) -> bool:
    try:
        await c.client.list("namespaces")
    except (errors.ApiError, OSError):
        return False
    return True
