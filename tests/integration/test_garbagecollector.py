"""The garbage collector against a real etcd + apiserver + controller-manager: background,
foreground and orphan propagation, multiple owners, dependency cycles, absent and invalid owners.

Named after upstream's conformance tests ("Garbage collector should ..."). The owner/dependent
graphs are built by hand (ReplicationControllers, ReplicaSets, Deployments and Pods with the
ownerReferences their controllers would write) on a cluster whose controller-manager runs only
the garbage collector and the namespace controller, so no other controller adds or removes
objects behind the test's back; pods are never scheduled, so their deletion is immediate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio

from client.apiclient import ApiClient
from harness.cluster import Cluster
from harness.wait import gone, until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
LABELS = {"app": "gc"}
TEMPLATE = {"metadata": {"labels": LABELS},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gc_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "garbagecollector,namespace",
                                   "--no-leader-elect")
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(gc_cluster: Cluster) -> str:
    return await gc_cluster.new_namespace("gc-")


def ref(owner: Obj, *, block: bool = True, controller: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": controller, "blockOwnerDeletion": block}


async def rc(client: ApiClient, ns: str, name: str) -> Obj:
    return await client.create("replicationcontrollers", {
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": LABELS, "template": TEMPLATE}}, ns)


async def rs(client: ApiClient, ns: str, name: str, owners: Sequence[Obj] = ()) -> Obj:
    return await client.create("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "ownerReferences": list(owners)},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS}, "template": TEMPLATE}}, ns)


async def deployment(client: ApiClient, ns: str, name: str) -> Obj:
    return await client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": LABELS}, "template": TEMPLATE}}, ns)


async def pod(client: ApiClient, ns: str, name: str, owners: Sequence[Obj] = (),
              finalizers: Sequence[str] = ()) -> Obj:
    md: Obj = {"name": name, "labels": LABELS, "ownerReferences": list(owners)}
    if finalizers:
        md["finalizers"] = list(finalizers)
    return await client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": md,
        "spec": {"containers": [{"name": "c", "image": "pause"}]}}, ns)


async def configmap(client: ApiClient, ns: str, name: str, owners: Sequence[Obj] = ()) -> Obj:
    return await client.create("configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": list(owners)}}, ns)


async def names(client: ApiClient, resource: str, ns: str) -> set[str]:
    items, _ = await client.list_all(resource, ns)
    return {i["metadata"]["name"] for i in items}


async def test_should_delete_pods_created_by_rc_when_not_orphaning(
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    owner = await rc(client, ns, "simpletest.rc")
    for i in range(3):
        await pod(client, ns, f"simpletest.rc-{i}", [ref(owner)])
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Background")
    await until(lambda: _no_pods(client, ns), timeout=30, what="pods deleted")
    assert await gone(client, "replicationcontrollers", "simpletest.rc", ns)


async def _no_pods(client: ApiClient, ns: str) -> bool:
    return not await names(client, "pods", ns)


async def test_should_orphan_pods_created_by_rc_if_delete_options_say_so(
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    owner = await rc(client, ns, "simpletest.rc")
    for i in range(3):
        await pod(client, ns, f"simpletest.rc-{i}", [ref(owner)])
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Orphan")
    await until(lambda: gone(client, "replicationcontrollers", "simpletest.rc", ns),
                timeout=30, what="rc deleted after orphaning")
    items, _ = await client.list_all("pods", ns)
    assert len(items) == 3
    assert all(not i["metadata"].get("ownerReferences") for i in items)


async def test_a_replication_controller_deleted_with_no_policy_orphans_its_pods(
        gc_cluster: Cluster, ns: str) -> None:
    """core/v1 ReplicationControllers default to orphaning (upstream's backward-compatible
    DefaultGarbageCollectionPolicy); ReplicaSets default to background."""
    client = gc_cluster.client
    owner = await rc(client, ns, "simpletest.rc")
    for i in range(2):
        await pod(client, ns, f"simpletest.rc-{i}", [ref(owner)])
    await client.delete("replicationcontrollers", "simpletest.rc", ns)
    await until(lambda: gone(client, "replicationcontrollers", "simpletest.rc", ns),
                timeout=30, what="rc deleted after orphaning")
    items, _ = await client.list_all("pods", ns)
    assert sorted(i["metadata"]["name"] for i in items) == ["simpletest.rc-0", "simpletest.rc-1"]
    assert all(not i["metadata"].get("ownerReferences") for i in items)


async def test_should_keep_the_rc_around_until_all_its_pods_are_deleted_if_the_delete_options_say_so(  # noqa: E501
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    owner = await rc(client, ns, "simpletest.rc")
    # One pod held by a finalizer of ours: the rc must wait for it.
    await pod(client, ns, "held", [ref(owner)], finalizers=["example.com/hold"])
    for i in range(2):
        await pod(client, ns, f"simpletest.rc-{i}", [ref(owner)])
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Foreground")

    async def only_held_left() -> bool:
        # The collector deletes each dependent in its own write, in no set order: the held
        # pod's deletionTimestamp may come after the others are gone. Wait for both.
        if await names(client, "pods", ns) != {"held"}:
            return False
        return bool((await client.get("pods", "held", ns))["metadata"].get(
            "deletionTimestamp"))

    await until(only_held_left, timeout=30, what="unheld pods deleted, the held one deleting")
    held = await client.get("pods", "held", ns)
    assert held["metadata"].get("deletionTimestamp"), "the held pod is being deleted"
    kept = await client.get("replicationcontrollers", "simpletest.rc", ns)
    assert kept["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in kept["metadata"]["finalizers"]

    await client.patch("pods", "held", {"metadata": {"finalizers": None}}, ns)
    await until(lambda: gone(client, "replicationcontrollers", "simpletest.rc", ns),
                timeout=30, what="rc deleted once its last pod is gone")


async def test_should_not_delete_dependents_that_have_both_valid_owner_and_owner_thats_waiting_for_dependents_to_be_deleted(  # noqa: E501
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    rc1 = await rc(client, ns, "simpletest-rc-to-be-deleted")
    rc2 = await rc(client, ns, "simpletest-rc-to-stay")
    for i in range(4):
        owners = [ref(rc1)] + ([ref(rc2, controller=False)] if i >= 2 else [])
        await pod(client, ns, f"p{i}", owners)
    await client.delete("replicationcontrollers", rc1["metadata"]["name"], ns,
                        propagation_policy="Foreground")
    await until(lambda: gone(client, "replicationcontrollers", rc1["metadata"]["name"], ns),
                timeout=30, what="rc1 deleted")

    async def two_left() -> bool:
        return await names(client, "pods", ns) == {"p2", "p3"}

    await until(two_left, timeout=30, what="pods owned only by rc1 deleted")
    for name in ("p2", "p3"):
        p = await client.get("pods", name, ns)
        assert [r["uid"] for r in p["metadata"]["ownerReferences"]] == [
            rc2["metadata"]["uid"]]
    assert await client.get("replicationcontrollers", rc2["metadata"]["name"], ns)


async def test_should_not_be_blocked_by_dependency_circle(gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    pods = [await pod(client, ns, f"pod{i}") for i in (1, 2, 3)]
    # pod1 ← pod3, pod2 ← pod1, pod3 ← pod2: a cycle of blocking references.
    for i, owner in ((0, pods[2]), (1, pods[0]), (2, pods[1])):
        await client.patch("pods", pods[i]["metadata"]["name"],
                           {"metadata": {"ownerReferences": [ref(owner)]}}, ns)
    await client.delete("pods", "pod1", ns, propagation_policy="Foreground",
                        precondition_uid=pods[0]["metadata"]["uid"])
    await until(lambda: _no_pods(client, ns), timeout=60, what="the whole cycle deleted")


async def test_should_delete_rs_created_by_deployment_when_not_orphaning(
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    d = await deployment(client, ns, "simpletest.deployment")
    r = await rs(client, ns, "simpletest.deployment-abc", [ref(d)])
    await pod(client, ns, "simpletest.deployment-abc-1", [ref(r)])
    await client.delete("deployments", "simpletest.deployment", ns,
                        propagation_policy="Background")

    async def all_gone() -> bool:
        return not await names(client, "replicasets", ns) and await _no_pods(client, ns)

    await until(all_gone, timeout=30, what="replica set and its pods deleted")


async def test_should_orphan_rs_created_by_deployment_when_delete_options_propagation_policy_is_orphan(  # noqa: E501
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    d = await deployment(client, ns, "simpletest.deployment")
    r = await rs(client, ns, "simpletest.deployment-abc", [ref(d)])
    await pod(client, ns, "simpletest.deployment-abc-1", [ref(r)])
    await client.delete("deployments", "simpletest.deployment", ns,
                        propagation_policy="Orphan")
    await until(lambda: gone(client, "deployments", "simpletest.deployment", ns),
                timeout=30, what="deployment deleted")
    kept = await client.get("replicasets", "simpletest.deployment-abc", ns)
    assert not kept["metadata"].get("ownerReferences")
    # The replica set still owns its pod: orphaning goes one level only.
    p = await client.get("pods", "simpletest.deployment-abc-1", ns)
    assert p["metadata"]["ownerReferences"][0]["uid"] == r["metadata"]["uid"]


async def test_dependent_of_an_owner_that_never_existed_is_deleted(
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    cm = await configmap(client, ns, "real-owner")
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
             "uid": "00000000-0000-0000-0000-000000000001"}
    # Same name as a live object, other uid: the uid decides.
    impostor = {**ref(cm), "uid": "00000000-0000-0000-0000-000000000002"}
    await configmap(client, ns, "orphan-of-ghost", [ghost])
    await configmap(client, ns, "orphan-of-impostor", [impostor])
    await configmap(client, ns, "two-owners", [ghost, ref(cm, controller=False)])

    async def collected() -> bool:
        return await names(client, "configmaps", ns) == {"real-owner", "two-owners"}

    await until(collected, timeout=30, what="dependents of absent owners deleted")

    async def dangling_ref_removed() -> bool:
        obj = await client.get("configmaps", "two-owners", ns)
        return [r["uid"] for r in obj["metadata"]["ownerReferences"]] == [
            cm["metadata"]["uid"]]

    await until(dangling_ref_removed, timeout=30, what="dangling ownerReference removed")


async def test_owner_in_another_namespace_is_invalid(gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    other = await gc_cluster.new_namespace("gc-other-")
    owner = await configmap(client, other, "owner")
    dep = await configmap(client, ns, "dependent", [ref(owner)])
    await until(lambda: gone(client, "configmaps", "dependent", ns), timeout=30,
                what="dependent with a cross-namespace owner deleted")
    assert await client.get("configmaps", "owner", other)

    async def warned() -> list[Obj]:
        items, _ = await client.list_all(
            "events", ns, field_selector="reason=OwnerRefInvalidNamespace")
        return [e for e in items if e["involvedObject"].get("uid") == dep["metadata"]["uid"]]

    events = await until(warned, timeout=30, what="OwnerRefInvalidNamespace event")
    assert events[0]["type"] == "Warning"
    assert events[0]["message"] == (
        f"ownerRef [v1/ConfigMap, namespace: {ns}, name: owner, uid: "
        f"{owner['metadata']['uid']}] does not exist in namespace \"{ns}\"")


async def test_dependents_are_collected_after_a_restart(gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    cm = await configmap(client, ns, "owner")
    await configmap(client, ns, "dependent", [ref(cm)])
    manager = gc_cluster.components[0]
    manager.kill()
    try:
        await client.delete("configmaps", "owner", ns)
    finally:
        manager.start()
    await until(lambda: gone(client, "configmaps", "dependent", ns), timeout=60,
                what="dependent of an owner deleted while the collector was down")


# --- with the real replication controller, replica set and deployment controllers ----------
# The shared control plane: pods are scheduled onto hollow nodes and run, so their deletion is
# graceful (the hollow node confirms it), as on a real cluster.


async def live_pods(client: ApiClient, ns: str) -> list[Obj]:
    items, _ = await client.list_all("pods", ns)
    return items


async def wait_for_pods(client: ApiClient, ns: str, n: int) -> list[Obj]:
    async def check() -> list[Obj] | None:
        items = [p for p in await live_pods(client, ns)
                 if not p["metadata"].get("deletionTimestamp")]
        return items if len(items) == n else None

    return await until(check, timeout=60, what=f"{n} pods")


async def real_rc(client: ApiClient, ns: str, name: str, replicas: int = 2) -> Obj:
    labels = {"name": name}
    return await client.create("replicationcontrollers", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": labels,
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "pause"}]}}}},
        ns)


async def real_deployment(client: ApiClient, ns: str, name: str) -> Obj:
    labels = {"name": name}
    return await client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": "pause"}]}}}},
        ns)


async def test_rc_pods_deleted_when_not_orphaning_with_controllers(
        control_plane: Cluster, cp_namespace: str) -> None:
    client, ns = control_plane.client, cp_namespace
    await real_rc(client, ns, "simpletest.rc")
    await wait_for_pods(client, ns, 2)
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Background")

    async def all_gone() -> bool:
        return not await live_pods(client, ns)

    await until(all_gone, timeout=60, what="pods of the deleted rc gone")


async def test_rc_pods_orphaned_if_delete_options_say_so_with_controllers(
        control_plane: Cluster, cp_namespace: str) -> None:
    client, ns = control_plane.client, cp_namespace
    await real_rc(client, ns, "simpletest.rc")
    await wait_for_pods(client, ns, 2)
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Orphan")
    await until(lambda: gone(client, "replicationcontrollers", "simpletest.rc", ns),
                timeout=60, what="rc deleted")
    pods = await wait_for_pods(client, ns, 2)
    assert all(not p["metadata"].get("ownerReferences") for p in pods)


async def test_rc_kept_until_all_its_pods_are_deleted_with_controllers(
        control_plane: Cluster, cp_namespace: str) -> None:
    client, ns = control_plane.client, cp_namespace
    await real_rc(client, ns, "simpletest.rc", replicas=3)
    await wait_for_pods(client, ns, 3)
    await client.delete("replicationcontrollers", "simpletest.rc", ns,
                        propagation_policy="Foreground")

    async def rc_outlives_its_pods() -> bool:
        pods = await live_pods(client, ns)
        rc_gone = await gone(client, "replicationcontrollers", "simpletest.rc", ns)
        assert not (rc_gone and pods), f"rc gone while {len(pods)} pods remain"
        return rc_gone

    await until(rc_outlives_its_pods, timeout=60, what="rc deleted after its pods")


async def test_deployment_rs_deleted_when_not_orphaning_with_controllers(
        control_plane: Cluster, cp_namespace: str) -> None:
    client, ns = control_plane.client, cp_namespace
    await real_deployment(client, ns, "simpletest.deployment")
    await wait_for_pods(client, ns, 2)
    await client.delete("deployments", "simpletest.deployment", ns,
                        propagation_policy="Background")

    async def all_gone() -> bool:
        return not await names(client, "replicasets", ns) and not await live_pods(client, ns)

    await until(all_gone, timeout=60, what="replica sets and pods gone")


async def test_deployment_rs_orphaned_when_propagation_policy_is_orphan_with_controllers(
        control_plane: Cluster, cp_namespace: str) -> None:
    client, ns = control_plane.client, cp_namespace
    await real_deployment(client, ns, "simpletest.deployment")
    await wait_for_pods(client, ns, 2)
    await client.delete("deployments", "simpletest.deployment", ns,
                        propagation_policy="Orphan")
    await until(lambda: gone(client, "deployments", "simpletest.deployment", ns),
                timeout=60, what="deployment deleted")
    items, _ = await client.list_all("replicasets", ns)
    assert len(items) == 1
    assert not items[0]["metadata"].get("ownerReferences")
    await wait_for_pods(client, ns, 2)  # the orphaned replica set keeps its pods


async def test_dependents_of_a_cluster_scoped_owner_are_collected(
        gc_cluster: Cluster, ns: str) -> None:
    client = gc_cluster.client
    node_name = f"gc-node-{ns}"
    node = await client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                         "metadata": {"name": node_name}})
    await configmap(client, ns, "owned-by-node", [ref(node)])
    await client.delete("nodes", node_name)
    await until(lambda: gone(client, "configmaps", "owned-by-node", ns), timeout=30,
                what="dependent of a deleted node collected")
