"""The ReplicationController controller (the ReplicaSet controller with a map selector) against a
real etcd + apiserver + tk-controller-manager; names follow test/e2e/apps/rc.go.

Most tests run their own cluster with only the replica controllers and play the kubelet by hand;
"should serve a basic image on each replica" uses the shared control plane, whose scheduler and
hollow nodes make the pods Running and Ready.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from client.apiclient import ApiClient
from harness.cluster import Cluster
from harness.pods import live_pods, run_ready, wait_pods
from harness.wait import until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rc_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "replicationcontroller", "--no-leader-elect")
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(rc_cluster: Cluster) -> str:
    return await rc_cluster.new_namespace("rc-")


def rc(name: str, replicas: int, selector: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name, **meta},
        "spec": {"replicas": replicas, "selector": selector,
                 "template": {"metadata": {"labels": selector},
                              "spec": {"containers": [{"name": "c", "image": "pause"}]}}},
    }


async def rc_status(client: ApiClient, ns: str, name: str) -> dict[str, Any]:
    obj = await client.get("replicationcontrollers", name, ns)
    st: dict[str, Any] = obj.get("status") or {}
    return st


async def test_replicationcontroller_should_adopt_matching_pods_on_creation(
        rc_cluster: Cluster, ns: str) -> None:
    c = rc_cluster.client
    await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "pod-adoption",
                                         "labels": {"name": "pod-adoption"}},
                            "spec": {"containers": [{"name": "c", "image": "pause"}]}}, ns)
    owner = await c.create("replicationcontrollers",
                           rc("pod-adoption", 1, {"name": "pod-adoption"}), ns)

    async def adopted() -> bool:
        p = await c.get("pods", "pod-adoption", ns)
        refs = p["metadata"].get("ownerReferences") or []
        return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") and
                   r["kind"] == "ReplicationController" and r["apiVersion"] == "v1"
                   for r in refs)
    await until(adopted, what="pod adopted by the RC")
    assert len(await live_pods(c, ns, "name=pod-adoption")) == 1


async def test_replicationcontroller_should_release_no_longer_matching_pods(
        rc_cluster: Cluster, ns: str) -> None:
    c = rc_cluster.client
    await c.create("replicationcontrollers", rc("pod-release", 1, {"name": "pod-release"}), ns)
    (pod,) = await wait_pods(c, ns, "name=pod-release", 1)
    name = pod["metadata"]["name"]
    await c.patch("pods", name, {"metadata": {"labels": {"name": "not-matching"}}}, ns)

    async def released() -> bool:
        p = await c.get("pods", name, ns)
        return not p["metadata"].get("ownerReferences")
    await until(released, what="pod released")
    (replacement,) = await wait_pods(c, ns, "name=pod-release", 1)
    assert replacement["metadata"]["name"] != name


async def test_replicationcontroller_should_test_the_lifecycle_of_a_replicationcontroller(
        rc_cluster: Cluster, ns: str) -> None:
    c = rc_cluster.client
    labels = {"test-rc-static": "true"}
    await c.create("replicationcontrollers", rc("rc-test", 1, labels, labels=labels), ns)
    for p in await wait_pods(c, ns, "test-rc-static=true", 1):
        await run_ready(c, ns, p)

    async def ready(n: int) -> bool:
        st = await rc_status(c, ns, "rc-test")
        return st.get("readyReplicas") == n and st.get("availableReplicas") == n
    await until(lambda: ready(1), what="1 ready replica")

    patched = await c.patch("replicationcontrollers", "rc-test",
                            {"metadata": {"labels": {"test-rc": "patched"}}}, ns)
    assert patched["metadata"]["labels"]["test-rc"] == "patched"

    scale = await c.get("replicationcontrollers", "rc-test", ns, subresource="scale")
    assert scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    assert scale["status"]["selector"] == "test-rc-static=true"
    await c.patch("replicationcontrollers", "rc-test", {"spec": {"replicas": 2}}, ns,
                  subresource="scale")
    pods = await wait_pods(c, ns, "test-rc-static=true", 2)
    for p in pods:
        if not p["spec"].get("nodeName"):
            await run_ready(c, ns, p)
    await until(lambda: ready(2), what="2 ready replicas")
    st = await rc_status(c, ns, "rc-test")
    assert st["replicas"] == 2 and st["fullyLabeledReplicas"] == 2
    assert st["observedGeneration"] == 2

    # Background: this cluster runs no garbage collector to handle the default (orphan).
    await c.delete_collection("replicationcontrollers", ns, label_selector="test-rc-static=true",
                              propagation_policy="Background")

    async def gone() -> bool:
        items, _ = await c.list_all("replicationcontrollers", ns)
        return not items
    await until(gone, what="RC deleted")


async def test_replicationcontroller_scale_down_and_status_subresource(
        rc_cluster: Cluster, ns: str) -> None:
    c = rc_cluster.client
    await c.create("replicationcontrollers", rc("down", 3, {"app": "down"}), ns)
    await wait_pods(c, ns, "app=down", 3)

    async def scale_to(n: int) -> bool:
        cur = await c.get("replicationcontrollers", "down", ns)
        cur["spec"]["replicas"] = n
        try:
            await c.update("replicationcontrollers", cur, ns)
        except errors.Conflict:
            return False
        return True
    await until(lambda: scale_to(1), what="scaled")
    await wait_pods(c, ns, "app=down", 1)

    async def counted() -> bool:
        return (await rc_status(c, ns, "down")).get("replicas") == 1
    await until(counted, what="status.replicas 1")
    got = await c.get("replicationcontrollers", "down", ns, subresource="status")
    assert got["status"]["replicas"] == 1


async def test_replicationcontroller_should_serve_a_basic_image_on_each_replica(
        control_plane: Cluster, cp_namespace: str) -> None:
    """The shared control plane: scheduled onto hollow nodes, Running and Ready there."""
    c, ns = control_plane.client, cp_namespace
    name = "my-hostname-basic"
    await c.create("replicationcontrollers", rc(name, 2, {"name": name}), ns)

    async def running() -> list[dict[str, Any]] | None:
        pods = await live_pods(c, ns, f"name={name}")
        ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
              and any(cond["type"] == "Ready" and cond["status"] == "True"
                      for cond in p["status"].get("conditions") or [])]
        return ok if len(ok) == 2 and len(pods) == 2 else None
    pods = await until(running, timeout=60, what="2 pods Running and Ready")
    assert all(p["spec"]["nodeName"].startswith("hollow-") for p in pods)
    assert all(p["status"].get("podIP") for p in pods)

    async def available() -> bool:
        return (await rc_status(c, ns, name)).get("availableReplicas") == 2
    await until(available, timeout=30, what="2 available replicas")
