"""The namespace controller against a real etcd + apiserver + controller-manager: deleting a
namespace deletes its content, reports what remains, then the namespace.

Named after upstream's conformance tests ("Namespaces [Serial] should ensure that all pods are
removed when a namespace is deleted", "... all services are removed ..."). The
controller-manager runs only the namespace controller and the garbage collector; a pod bound to a
node is deleted gracefully and stays until "its kubelet" (the test) confirms with grace 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from client.apiclient import ApiClient
from harness import objects
from harness.cluster import Cluster
from harness.wait import gone, until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ns_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "namespace,garbagecollector",
                                   "--no-leader-elect")
        yield c


async def pod(client: ApiClient, ns: str, name: str, node: str = "") -> Obj:
    spec: Obj = {"nodeName": node} if node else {}
    return await client.create(
        "pods", objects.pod(name, terminationGracePeriodSeconds=30, **spec), ns)


async def service(client: ApiClient, ns: str, name: str) -> Obj:
    return await client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}, ns)


async def condition(client: ApiClient, name: str, ctype: str) -> Obj | None:
    ns = await client.get("namespaces", name)
    for c in (ns.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


async def test_should_ensure_that_all_pods_are_removed_when_a_namespace_is_deleted(
        ns_cluster: Cluster) -> None:
    client = ns_cluster.client
    ns = await ns_cluster.new_namespace("nsdeletetest-")
    for i in range(3):
        await pod(client, ns, f"test-pod-{i}")
    deleting = await client.delete("namespaces", ns)
    assert deleting["status"]["phase"] == "Terminating"
    await until(lambda: gone(client, "namespaces", ns), timeout=30, what="namespace deleted")
    items, _ = await client.list_all("pods", ns)
    assert items == []


async def test_should_ensure_that_all_services_are_removed_when_a_namespace_is_deleted(
        ns_cluster: Cluster) -> None:
    client = ns_cluster.client
    ns = await ns_cluster.new_namespace("nsdeletetest-")
    await service(client, ns, "test-service")
    await client.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "cm"}}, ns)
    await client.delete("namespaces", ns)
    await until(lambda: gone(client, "namespaces", ns), timeout=30, what="namespace deleted")
    for resource in ("services", "configmaps", "endpoints"):
        items, _ = await client.list_all(resource, ns)
        assert items == [], resource


async def test_namespace_waits_for_graceful_pod_deletion(ns_cluster: Cluster) -> None:
    client = ns_cluster.client
    ns = await ns_cluster.new_namespace("nsgrace-")
    await pod(client, ns, "bound", node="node-that-does-not-answer")
    await client.delete("namespaces", ns)

    async def reported() -> Obj | None:
        c = await condition(client, ns, "NamespaceContentRemaining")
        return c if c and c["status"] == "True" else None

    remaining = await until(reported, timeout=30, what="NamespaceContentRemaining=True")
    assert remaining["reason"] == "SomeResourcesRemain"
    assert remaining["message"] == "Some resources are remaining: pods has 1 resource instances"
    p = await client.get("pods", "bound", ns)
    assert p["metadata"]["deletionTimestamp"], "deleted gracefully, waiting for its node"
    assert not await gone(client, "namespaces", ns)

    # The node confirms the stop (what a kubelet does): the namespace goes right after.
    await client.delete("pods", "bound", ns, grace_period_seconds=0)
    await until(lambda: gone(client, "namespaces", ns), timeout=15, what="namespace deleted")


async def test_namespace_waits_for_content_finalizers(ns_cluster: Cluster) -> None:
    client = ns_cluster.client
    ns = await ns_cluster.new_namespace("nsfin-")
    await client.create("configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}, ns)
    await client.delete("namespaces", ns)

    async def reported() -> Obj | None:
        c = await condition(client, ns, "NamespaceFinalizersRemaining")
        return c if c and c["status"] == "True" else None

    fin = await until(reported, timeout=30, what="NamespaceFinalizersRemaining=True")
    assert fin["message"] == ("Some content in the namespace has finalizers remaining: "
                              "example.com/hold in 1 resource instances")
    await client.patch("configmaps", "held", {"metadata": {"finalizers": None}}, ns)
    # Upstream's estimate for finalizers is 15 s, checked again after half of it.
    await until(lambda: gone(client, "namespaces", ns), timeout=40, what="namespace deleted")
