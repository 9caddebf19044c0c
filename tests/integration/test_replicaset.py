"""The ReplicaSet controller against a real etcd + apiserver + tk-controller-manager.

Its own cluster runs only the replica controllers and no scheduler or nodes, so that every pod
state a test needs (bound, Running, Ready) is set by hand and nothing else acts on the pods.
Names follow the upstream conformance tests they mirror (test/e2e/apps/replica_set.go).
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
async def rs_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "replicaset,replicationcontroller",
                                   "--no-leader-elect")
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(rs_cluster: Cluster) -> str:
    return await rs_cluster.new_namespace("rs-")


def replicaset(name: str, replicas: int, labels: dict[str, str] | None = None,
               min_ready: int = 0) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "pause"}]}}},
    }


async def status_of(client: ApiClient, ns: str, name: str) -> dict[str, Any]:
    rs = await client.get("replicasets", name, ns)
    st: dict[str, Any] = rs.get("status") or {}
    return st


async def reasons(client: ApiClient, ns: str, name: str) -> list[str]:
    items, _ = await client.list_all("events", ns)
    return [e["reason"] for e in items if e["involvedObject"]["name"] == name]


async def wait_events(client: ApiClient, ns: str, name: str, reason: str, n: int,
                      exact: bool = True) -> None:
    """Wait for n events of a reason (at least n unless exact): the recorder writes them
    after the action they report."""
    async def recorded() -> bool:
        count = (await reasons(client, ns, name)).count(reason)
        return count == n if exact else count >= n
    await until(recorded, what=f"{n} {reason} event(s) for {name}")


async def test_replicaset_creates_pods_owned_by_it_and_reports_status(
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    rs = await c.create("replicasets", replicaset("web", 3), ns)
    pods = await wait_pods(c, ns, "app=web", 3)
    for p in pods:
        md = p["metadata"]
        assert md["name"].startswith("web-") and md["generateName"] == "web-"
        assert md["ownerReferences"] == [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
            "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    await until(lambda: status_of(c, ns, "web"), what="status")
    for p in pods:
        await run_ready(c, ns, p)

    async def settled() -> bool:
        st = await status_of(c, ns, "web")
        return (st.get("replicas"), st.get("fullyLabeledReplicas"), st.get("readyReplicas"),
                st.get("availableReplicas"), st.get("observedGeneration")) == (3, 3, 3, 3, 1)
    await until(settled, timeout=20, what="status 3/3/3/3")
    await wait_events(c, ns, "web", "SuccessfulCreate", 3)
    # Deleting a pod gets it replaced; still exactly three.
    await c.delete("pods", pods[0]["metadata"]["name"], ns, grace_period_seconds=0)
    replaced = await wait_pods(c, ns, "app=web", 3)
    assert pods[0]["metadata"]["name"] not in {p["metadata"]["name"] for p in replaced}


async def test_replicaset_should_adopt_matching_pods_on_creation_and_release_no_longer_matching_pods(  # noqa: E501
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    orphan = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "pod-adoption-release", "labels": {"name": "adopt"}},
              "spec": {"containers": [{"name": "c", "image": "pause"}]}}
    await c.create("pods", orphan, ns)
    rs = await c.create("replicasets", replicaset("adopt", 1, {"name": "adopt"}), ns)

    async def adopted() -> bool:
        p = await c.get("pods", "pod-adoption-release", ns)
        refs = p["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs if r.get("controller")] == [rs["metadata"]["uid"]]
    await until(adopted, what="the orphan adopted")
    assert len(await live_pods(c, ns, "name=adopt")) == 1  # adopted, not one more created

    await c.patch("pods", "pod-adoption-release", {"metadata": {"labels": {"name": "gone"}}},
                  ns)

    async def released() -> bool:
        p = await c.get("pods", "pod-adoption-release", ns)
        return not p["metadata"].get("ownerReferences")
    await until(released, what="the pod released")
    await wait_pods(c, ns, "name=adopt", 1)  # and a replacement created


async def test_replicaset_should_have_a_working_scale_subresource(
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("scaled", 1), ns)
    await wait_pods(c, ns, "app=scaled", 1)
    for attempt in range(10):  # the controller's status writes move the resourceVersion
        scale = await c.get("replicasets", "scaled", ns, subresource="scale")
        assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
        scale["spec"]["replicas"] = 2
        try:
            await c.update("replicasets", scale, ns, subresource="scale")
            break
        except errors.Conflict:
            assert attempt < 9, "scale update kept conflicting"
    assert (await c.get("replicasets", "scaled", ns))["spec"]["replicas"] == 2
    await wait_pods(c, ns, "app=scaled", 2)
    await c.patch("replicasets", "scaled", {"spec": {"replicas": 4}}, ns, subresource="scale")
    await wait_pods(c, ns, "app=scaled", 4)


async def test_scale_down_deletes_unscheduled_then_pending_then_not_ready_pods_first(
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("order", 5), ns)
    pods = await wait_pods(c, ns, "app=order", 5)
    names = [p["metadata"]["name"] for p in pods]
    ready_old, ready_new, not_ready, pending, unscheduled = names
    # The second Ready pod last: a status with 2 ready then comes from a controller cache
    # that has seen every earlier pod write too (one watch, in order), the bind included.
    await run_ready(c, ns, pods[2], "node-a", ready=False)
    await c.bind(ns, pending, "node-b")
    await run_ready(c, ns, pods[0], "node-a")
    await run_ready(c, ns, pods[1], "node-b")
    await until(lambda: _ready_count(c, ns, "order", 2), what="2 ready")

    async def left(n: int) -> set[str]:
        await c.patch("replicasets", "order", {"spec": {"replicas": n}}, ns)
        return {p["metadata"]["name"] for p in await wait_pods(c, ns, "app=order", n)}
    assert await left(4) == set(names) - {unscheduled}
    assert await left(3) == {ready_old, ready_new, not_ready}
    assert await left(2) == {ready_old, ready_new}
    await wait_events(c, ns, "order", "SuccessfulDelete", 3)


async def _ready_count(c: ApiClient, ns: str, name: str, n: int) -> bool:
    return (await status_of(c, ns, name)).get("readyReplicas") == n


async def test_available_replicas_wait_for_min_ready_seconds(
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("slow", 2, min_ready=2), ns)
    for p in await wait_pods(c, ns, "app=slow", 2):
        await run_ready(c, ns, p)
    await until(lambda: _ready_count(c, ns, "slow", 2), what="2 ready")
    # No pod changes after this: only the controller's own requeue can make them available.

    async def available() -> bool:
        return (await status_of(c, ns, "slow")).get("availableReplicas") == 2
    await until(available, timeout=15, what="2 available after minReadySeconds")


async def test_many_replicas_are_never_over_created(rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("many", 30), ns)
    await wait_pods(c, ns, "app=many", 30)

    async def counted() -> bool:
        return (await status_of(c, ns, "many")).get("replicas") == 30
    await until(counted, what="status.replicas 30")
    items, _ = await c.list_all("pods", ns, label_selector="app=many")
    assert len(items) == 30


async def test_replicaset_replace_and_patch_tests(rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("affinity-rs", 1), ns)
    await wait_pods(c, ns, "app=affinity-rs", 1)

    async def replace() -> dict[str, Any] | None:
        cur = await c.get("replicasets", "affinity-rs", ns)
        cur["spec"]["replicas"] = 2
        cur["spec"]["template"]["spec"]["containers"][0]["image"] = "pause:2"
        try:
            return await c.update("replicasets", cur, ns)
        except errors.Conflict:
            return None  # the controller's status write came first: read again
    replaced = await until(replace, what="replaced")
    assert replaced["metadata"]["generation"] == 2
    await wait_pods(c, ns, "app=affinity-rs", 2)
    await c.patch("replicasets", "affinity-rs",
                  {"spec": {"replicas": 3}, "metadata": {"labels": {"patched": "yes"}}}, ns)
    await wait_pods(c, ns, "app=affinity-rs", 3)

    async def observed() -> bool:
        st = await status_of(c, ns, "affinity-rs")
        return st.get("observedGeneration") == 3 and st.get("replicas") == 3
    await until(observed, what="observedGeneration 3")


async def test_should_list_and_delete_a_collection_of_replicasets(
        rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    for i in range(3):
        await c.create("replicasets", replicaset(f"coll-{i}", 1, {"coll": "yes"}), ns)
    items, _ = await c.list_all("replicasets", ns, label_selector="coll=yes")
    assert len(items) == 3
    await c.delete_collection("replicasets", ns, label_selector="coll=yes")

    async def gone() -> bool:
        left, _ = await c.list_all("replicasets", ns, label_selector="coll=yes")
        return not left
    await until(gone, what="the collection deleted")


async def test_should_validate_replicaset_status_endpoints(rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("status-rs", 1), ns)
    await wait_pods(c, ns, "app=status-rs", 1)
    # The first status write may predate the informer seeing the pod (replicas 0): wait for
    # the one that counts it.
    await until(lambda: _status_written(c, ns, "status-rs", replicas=1), what="status written")
    got = await c.get("replicasets", "status-rs", ns, subresource="status")
    assert got["status"]["replicas"] == 1
    cond = {"type": "StatusUpdate", "status": "True", "reason": "E2E",
            "message": "Set from e2e test"}

    async def put_condition() -> bool:
        cur = await c.get("replicasets", "status-rs", ns)
        cur["status"]["conditions"] = [cond]
        try:
            await c.update_status("replicasets", cur, ns)
        except errors.Conflict:
            return False  # the controller wrote in between: try again
        return True
    await until(put_condition, what="status updated")
    patched = await c.patch("replicasets", "status-rs",
                            {"status": {"conditions": [{**cond, "type": "StatusPatched"}]}},
                            ns, subresource="status")
    assert patched["status"]["conditions"][0]["type"] == "StatusPatched"
    # The controller keeps conditions it does not own.
    await c.patch("replicasets", "status-rs", {"spec": {"replicas": 2}}, ns)
    await wait_pods(c, ns, "app=status-rs", 2)

    async def kept() -> bool:
        st = await status_of(c, ns, "status-rs")
        return st.get("replicas") == 2 and [x["type"] for x in st.get("conditions", [])] == [
            "StatusPatched"]
    await until(kept, what="condition kept after the controller's write")


async def _status_written(c: ApiClient, ns: str, name: str, replicas: int | None = None) -> bool:
    st = await status_of(c, ns, name)
    return st.get("observedGeneration") == 1 and (
        replicas is None or st.get("replicas", 0) == replicas)


async def test_pods_being_deleted_are_replaced_at_once(rs_cluster: Cluster, ns: str) -> None:
    c = rs_cluster.client
    await c.create("replicasets", replicaset("graceful", 2), ns)
    pods = await wait_pods(c, ns, "app=graceful", 2)
    await run_ready(c, ns, pods[0])
    # A bound pod deletes gracefully: it stays, with a deletionTimestamp, until its node says.
    await c.delete("pods", pods[0]["metadata"]["name"], ns)
    await wait_pods(c, ns, "app=graceful", 2)
    items, _ = await c.list_all("pods", ns, label_selector="app=graceful")
    assert len(items) == 3  # the terminating one is not counted


async def test_replica_failure_condition_surfaces_create_errors_and_clears(
        rs_cluster: Cluster, ns: str) -> None:
    """Like "should surface a failure condition on a common issue like exceeded quota", with a
    template whose pods the apiserver refuses (an invalid finalizer) instead of a quota."""
    c = rs_cluster.client
    body = replicaset("broken", 2)
    body["spec"]["template"]["metadata"]["finalizers"] = ["not a finalizer!"]
    await c.create("replicasets", body, ns)

    async def failure() -> dict[str, Any] | None:
        conds = (await status_of(c, ns, "broken")).get("conditions") or []
        return next((x for x in conds if x["type"] == "ReplicaFailure"), None)
    cond = await until(failure, what="ReplicaFailure condition")
    assert (cond["status"], cond["reason"]) == ("True", "FailedCreate")
    assert "finalizers" in cond["message"]
    await wait_events(c, ns, "broken", "FailedCreate", 1, exact=False)
    assert await live_pods(c, ns, "app=broken") == []

    await c.patch("replicasets", "broken",
                  {"spec": {"template": {"metadata": {"finalizers": None}}}}, ns)
    await wait_pods(c, ns, "app=broken", 2)

    async def cleared() -> bool:
        return await failure() is None
    await until(cleared, what="ReplicaFailure condition removed")


async def test_replicaset_should_serve_a_basic_image_on_each_replica(
        control_plane: Cluster, cp_namespace: str) -> None:
    """The shared control plane: the scheduler binds the pods to hollow nodes, which run them."""
    c, ns = control_plane.client, cp_namespace
    await c.create("replicasets", replicaset("my-hostname-basic", 3), ns)

    async def available() -> bool:
        st = await status_of(c, ns, "my-hostname-basic")
        return (st.get("readyReplicas"), st.get("availableReplicas")) == (3, 3)
    await until(available, timeout=60, what="3 available replicas")
    pods = await live_pods(c, ns, "app=my-hostname-basic")
    assert len(pods) == 3
    assert all(p["status"]["phase"] == "Running" and p["status"].get("podIP") for p in pods)
    assert all(p["spec"]["nodeName"].startswith("hollow-") for p in pods)
