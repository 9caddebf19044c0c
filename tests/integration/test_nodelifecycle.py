"""Node lifecycle against a real etcd + apiserver + controller-manager + hollow nodes: a node
that stops heartbeating goes Unknown and gets the unreachable taints, its pods go not Ready and
are evicted when their toleration runs out; when it comes back the taints go. A node that posts
Ready=False gets the not-ready taints; one that never posts gets NodeStatusNeverUpdated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from harness.cluster import Cluster
from harness.objects import condition as cond
from harness.objects import pod
from harness.wait import gone, until

pytestmark = pytest.mark.integration

GRACE = 3  # --node-monitor-grace-period and --node-startup-grace-period, seconds
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def lifecycle() -> AsyncIterator[Cluster]:
    # Pods' default tolerations last 2s here instead of 300s.
    async with Cluster("--default-not-ready-toleration-seconds", "2",
                       "--default-unreachable-toleration-seconds", "2") as c:
        c.start_controller_manager("--controllers", "nodelifecycle,nodeipam",
                                   "--node-monitor-period", "0.5",
                                   "--node-monitor-grace-period", str(GRACE),
                                   "--node-startup-grace-period", str(GRACE))
        yield c


def taints(node: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t["key"], t["effect"]): t for t in (node.get("spec") or {}).get("taints") or []}


async def node_where(c: Cluster, name: str, check: Any, timeout: float = 30,
                     what: str = "") -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        try:
            n = await c.client.get("nodes", name)
        except errors.NotFound:
            return None
        return n if check(n) else None
    return await until(probe, timeout=timeout, what=what or f"node {name}")


async def bound_pod(c: Cluster, ns: str, name: str, node: str,
                    tolerations: list[dict[str, Any]] | None = None) -> None:
    spec: dict[str, Any] = {} if tolerations is None else {"tolerations": tolerations}
    await c.client.create("pods", pod(name, image="x", **spec), ns)
    await c.client.bind(ns, name, node)


async def post_status(c: Cluster, name: str, status: dict[str, Any]) -> None:
    """Write a node's status like a kubelet would: nodeipam and nodelifecycle write the fresh
    Node too (podCIDR, taints), so a stale resourceVersion gets Conflict; re-read and retry."""
    async def attempt() -> bool:
        node = await c.client.get("nodes", name)
        node["status"] = status
        try:
            await c.client.update_status("nodes", node)
        except errors.Conflict:
            return False
        return True
    await until(attempt, timeout=30, what=f"status of node {name} written")


async def pod_ready(c: Cluster, ns: str, name: str) -> bool:
    return cond(await c.client.get("pods", name, ns), "Ready").get("status") == "True"


async def events(c: Cluster, ns: str, reason: str) -> list[dict[str, Any]]:
    items, _ = await c.client.list_all("events", ns, field_selector=f"reason={reason}")
    return items


async def test_node_that_stops_heartbeating_is_tainted_and_its_pods_evicted(
        lifecycle: Cluster) -> None:
    c = lifecycle
    stay = c.start_hollow_nodes(1, "--name-prefix", "stay-", "--lease-interval", "0.5")
    doomed = c.start_hollow_nodes(1, "--name-prefix", "doomed-", "--lease-interval", "0.5")
    ns = await c.new_namespace()
    await node_where(c, "doomed-0", lambda n: cond(n, "Ready").get("status") == "True")
    await node_where(c, "stay-0", lambda n: cond(n, "Ready").get("status") == "True")
    forever = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
               {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}]
    long = [{**t, "tolerationSeconds": 3600} for t in forever]
    await bound_pod(c, ns, "default-tolerations", "doomed-0")
    await bound_pod(c, ns, "tolerates-forever", "doomed-0", forever)
    await bound_pod(c, ns, "tolerates-an-hour", "doomed-0", long)
    await bound_pod(c, ns, "elsewhere", "stay-0")
    for name in ("default-tolerations", "tolerates-forever", "tolerates-an-hour", "elsewhere"):
        await until(partial(pod_ready, c, ns, name), timeout=30, what=f"{name} ready")

    doomed.kill()  # the machine dies: no more heartbeats, nothing deletes its pods
    node = await node_where(c, "doomed-0",
                            lambda n: cond(n, "Ready").get("status") == "Unknown",
                            timeout=GRACE + 30, what="Ready Unknown")
    ready = cond(node, "Ready")
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready["message"] == "Kubelet stopped posting node status."
    assert cond(node, "MemoryPressure")["status"] == "Unknown"
    node = await node_where(c, "doomed-0", lambda n: (UNREACHABLE, "NoExecute") in taints(n),
                            what="unreachable taint")
    assert taints(node)[(UNREACHABLE, "NoExecute")]["timeAdded"]
    assert (UNREACHABLE, "NoSchedule") in taints(node)

    # Its pods are no longer Ready; the one with the 2s default toleration is evicted (marked
    # for deletion: its dead node cannot confirm), the ones that tolerate longer stay.
    async def not_ready() -> bool:
        return not await pod_ready(c, ns, "tolerates-forever")
    await until(not_ready, timeout=30, what="pods marked not ready")

    async def evicted() -> bool:
        p = await c.client.get("pods", "default-tolerations", ns)
        return bool(p["metadata"].get("deletionTimestamp"))
    await until(evicted, timeout=30, what="pod evicted")
    ev = await until(lambda: events(c, ns, "TaintManagerEviction"), timeout=30)
    assert ev[0]["message"] == f"Marking for deletion Pod {ns}/default-tolerations"
    for name in ("tolerates-forever", "tolerates-an-hour"):
        assert not (await c.client.get("pods", name, ns))["metadata"].get("deletionTimestamp")
    assert await pod_ready(c, ns, "elsewhere")
    stay_node = await c.client.get("nodes", "stay-0")
    assert cond(stay_node, "Ready")["status"] == "True" and not taints(stay_node)
    assert await until(lambda: events(c, ns, "NodeNotReady"), timeout=30)

    # The node comes back: Ready, taints gone, and it finishes the eviction it missed.
    doomed.start()
    await node_where(c, "doomed-0", lambda n: cond(n, "Ready").get("status") == "True"
                     and not taints(n), what="Ready again, untainted")
    await until(lambda: gone(c.client, "pods", "default-tolerations", ns), timeout=30,
                what="evicted pod deleted by its node")
    assert not (await c.client.get("pods", "tolerates-an-hour", ns))["metadata"].get(
        "deletionTimestamp")
    doomed.stop()
    stay.stop()


async def test_not_ready_and_never_posted_nodes(lifecycle: Cluster) -> None:
    c = lifecycle
    await c.client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": "silent"}})
    await c.client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": "sick"}})
    await post_status(c, "sick", {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KubeletNotReady",
         "message": "runtime down", "lastHeartbeatTime": "2030-01-01T00:00:00Z"}]})
    node = await node_where(c, "sick", lambda n: (NOT_READY, "NoExecute") in taints(n),
                            what="not-ready taint")
    assert (NOT_READY, "NoSchedule") in taints(node)
    assert (UNREACHABLE, "NoExecute") not in taints(node)

    silent = await node_where(c, "silent",
                              lambda n: cond(n, "Ready").get("status") == "Unknown",
                              timeout=GRACE + 30, what="never-posted node Unknown")
    assert cond(silent, "Ready")["reason"] == "NodeStatusNeverUpdated"
    assert cond(silent, "Ready")["message"] == "Kubelet never posted node status."

    # The sick node stops heartbeating too: not-ready is swapped for unreachable.
    node = await node_where(c, "sick", lambda n: (UNREACHABLE, "NoExecute") in taints(n),
                            timeout=GRACE + 30, what="swapped to unreachable")
    assert (NOT_READY, "NoExecute") not in taints(node)
