"""The apiserver's storage semantics, through the real gRPC server over a real etcd."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from api import errors
from client.apiclient import WatchEvent
from harness.cluster import Cluster


def configmap(name: str, data: dict[str, str] | None = None,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md,
            "data": {"k": "v"} if data is None else data}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
        },
    }


def pod(name: str, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


async def collect(it: Any, n: int, timeout: float = 5.0) -> list[WatchEvent]:
    out: list[WatchEvent] = []

    async def run() -> None:
        async for ev in it:
            if ev.type != "BOOKMARK":
                out.append(ev)
                if len(out) >= n:
                    return

    await asyncio.wait_for(run(), timeout)
    return out


# --- create / get / update ----------------------------------------------------------------


async def test_create_sets_system_metadata(cluster: Cluster, namespace: str) -> None:
    obj = await cluster.client.create("configmaps", configmap("a"), namespace)
    md = obj["metadata"]
    assert md["namespace"] == namespace
    assert md["uid"] and md["creationTimestamp"].endswith("Z")
    assert int(md["resourceVersion"]) > 0
    got = await cluster.client.get("configmaps", "a", namespace)
    assert got == obj


async def test_create_twice_is_already_exists(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("configmaps", configmap("a"), namespace)
    with pytest.raises(errors.AlreadyExists, match='configmaps "a" already exists'):
        await cluster.client.create("configmaps", configmap("a"), namespace)


async def test_generate_name(cluster: Cluster, namespace: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-"}}
    a = await cluster.client.create("configmaps", body, namespace)
    b = await cluster.client.create("configmaps", body, namespace)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


async def test_get_missing_is_not_found(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(errors.NotFound, match='deployments.apps "nope" not found'):
        await cluster.client.get("deployments", "nope", namespace)


async def test_concurrent_updates_conflict(cluster: Cluster, namespace: str) -> None:
    """Two writers read the same version; exactly one update wins, the other gets Conflict."""
    cur = await cluster.client.create("configmaps", configmap("race"), namespace)
    a = json.loads(json.dumps(cur))
    b = json.loads(json.dumps(cur))
    a["data"] = {"who": "a"}
    b["data"] = {"who": "b"}
    results = await asyncio.gather(cluster.client.update("configmaps", a),
                                   cluster.client.update("configmaps", b),
                                   return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, errors.Conflict)]
    wins = [r for r in results if isinstance(r, dict)]
    assert len(conflicts) == 1 and len(wins) == 1, results
    assert "the object has been modified" in str(conflicts[0])
    final = await cluster.client.get("configmaps", "race", namespace)
    assert final["data"] == wins[0]["data"]


async def test_many_concurrent_unconditional_patches_all_apply(cluster: Cluster,
                                                                namespace: str) -> None:
    """Patches carry no resourceVersion: the server retries its own CAS, nothing is lost."""
    await cluster.client.create("configmaps", configmap("counter", {}), namespace)
    await asyncio.gather(*(
        cluster.client.patch("configmaps", "counter", {"data": {f"k{i}": str(i)}}, namespace)
        for i in range(20)))
    final = await cluster.client.get("configmaps", "counter", namespace)
    assert final["data"] == {f"k{i}": str(i) for i in range(20)}


async def test_noop_update_keeps_resource_version(cluster: Cluster, namespace: str) -> None:
    cur = await cluster.client.create("configmaps", configmap("same"), namespace)
    again = await cluster.client.update("configmaps", cur)
    assert again["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]


async def test_generation_tracks_spec_not_status(cluster: Cluster, namespace: str) -> None:
    d = await cluster.client.create("deployments", deployment("gen"), namespace)
    assert d["metadata"]["generation"] == 1
    assert "status" not in d or not d["status"].get("replicas")
    # A status write through the main resource is ignored...
    d["status"] = {"replicas": 7}
    d["metadata"]["labels"] = {"x": "y"}
    d = await cluster.client.update("deployments", d)
    assert d["metadata"]["generation"] == 1
    assert (d.get("status") or {}).get("replicas") is None
    # ...through the status subresource it lands, and the generation stays.
    d["status"] = {"replicas": 7, "observedGeneration": 1}
    d = await cluster.client.update_status("deployments", d)
    assert d["status"]["replicas"] == 7 and d["metadata"]["generation"] == 1
    # A status update cannot change the spec.
    d["spec"]["replicas"] = 9
    d["status"]["replicas"] = 8
    d = await cluster.client.update_status("deployments", d)
    assert d["spec"]["replicas"] == 1 and d["status"]["replicas"] == 8
    # A spec change bumps the generation.
    d = await cluster.client.patch("deployments", "gen", {"spec": {"replicas": 3}}, namespace)
    assert d["metadata"]["generation"] == 2 and d["status"]["replicas"] == 8


async def test_stale_resource_version_update_is_conflict(cluster: Cluster,
                                                         namespace: str) -> None:
    v1 = await cluster.client.create("configmaps", configmap("stale"), namespace)
    await cluster.client.patch("configmaps", "stale", {"data": {"k": "v2"}}, namespace)
    v1["data"] = {"k": "from-stale"}
    with pytest.raises(errors.Conflict, match='Operation cannot be fulfilled on configmaps'):
        await cluster.client.update("configmaps", v1)


async def test_update_cannot_change_uid_or_creation(cluster: Cluster, namespace: str) -> None:
    cur = await cluster.client.create("configmaps", configmap("meta"), namespace)
    changed = json.loads(json.dumps(cur))
    changed["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    changed["data"] = {"k": "2"}
    out = await cluster.client.update("configmaps", changed)
    assert out["metadata"]["creationTimestamp"] == cur["metadata"]["creationTimestamp"]
    assert out["metadata"]["uid"] == cur["metadata"]["uid"]


async def test_json_patch_and_merge_patch(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("configmaps", configmap("p", {"a": "1", "b": "2"}), namespace)
    out = await cluster.client.patch("configmaps", "p", {"data": {"a": None, "c": "3"}},
                                     namespace)
    assert out["data"] == {"b": "2", "c": "3"}
    out = await cluster.client.patch(
        "configmaps", "p", [{"op": "replace", "path": "/data/b", "value": "20"},
                            {"op": "test", "path": "/data/c", "value": "3"}],
        namespace, patch_type="json")
    assert out["data"] == {"b": "20", "c": "3"}
    with pytest.raises(errors.Invalid, match="could not be applied"):
        await cluster.client.patch("configmaps", "p",
                                   [{"op": "test", "path": "/data/c", "value": "nope"}],
                                   namespace, patch_type="json")
    with pytest.raises(errors.BadRequest, match='patch type "yaml" is not supported'):
        await cluster.client.patch("configmaps", "p", {}, namespace, patch_type="yaml")


async def test_scale_subresource(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("deployments", deployment("sc", 2), namespace)
    scale = await cluster.client.get("deployments", "sc", namespace, subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=sc"
    scale["spec"]["replicas"] = 5
    out = await cluster.client.update("deployments", scale, namespace, subresource="scale")
    assert out["spec"]["replicas"] == 5
    d = await cluster.client.get("deployments", "sc", namespace)
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 2
    scale["spec"]["replicas"] = -1
    with pytest.raises(errors.Invalid, match="spec.replicas"):
        await cluster.client.update("deployments", scale, namespace, subresource="scale")


async def test_dry_run_stores_nothing(cluster: Cluster, namespace: str) -> None:
    out = await cluster.client.create("configmaps", configmap("dry"), namespace, dry_run=True)
    assert out["metadata"]["name"] == "dry"
    with pytest.raises(errors.NotFound):
        await cluster.client.get("configmaps", "dry", namespace)


# --- validation and bad input -------------------------------------------------------------


async def test_bad_manifests_give_field_path_errors(cluster: Cluster, namespace: str) -> None:
    bad = deployment("bad", replicas=-1)
    with pytest.raises(errors.Invalid) as e:
        await cluster.client.create("deployments", bad, namespace)
    assert "spec.replicas" in str(e.value)
    assert any(c.field == "spec.replicas" for c in e.value.causes)

    bad = deployment("bad2")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(errors.Invalid, match="spec.template.metadata.labels"):
        await cluster.client.create("deployments", bad, namespace)

    bad = pod("Bad_Name")
    with pytest.raises(errors.Invalid, match="metadata.name"):
        await cluster.client.create("pods", bad, namespace)

    bad = pod("typed")
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
    with pytest.raises(errors.Invalid, match=r"spec.containers\[0\].ports\[0\].containerPort"):
        await cluster.client.create("pods", bad, namespace)


async def test_unknown_fields_are_dropped_with_a_warning(cluster: Cluster,
                                                         namespace: str) -> None:
    d = deployment("unk")
    d["spec"]["replcas"] = 3
    out = await cluster.client.create("deployments", d, namespace)
    assert "replcas" not in out["spec"]
    assert any('unknown field "spec.replcas"' in w for w in cluster.client.last_warnings)


async def test_missing_and_terminating_namespace_refused(cluster: Cluster) -> None:
    with pytest.raises(errors.NotFound, match='namespaces "no-such-ns" not found'):
        await cluster.client.create("configmaps", configmap("x"), "no-such-ns")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed-ns"}}
    await cluster.client.create("namespaces", ns)
    deleted = await cluster.client.delete("namespaces", "doomed-ns")
    # The namespace controller finishes the job; until then the namespace is Terminating.
    assert deleted["status"]["phase"] == "Terminating"
    assert deleted["metadata"]["deletionTimestamp"]
    with pytest.raises(errors.Forbidden, match="because it is being terminated"):
        await cluster.client.create("configmaps", configmap("x"), "doomed-ns")


async def test_bootstrap_namespaces_exist_and_are_protected(cluster: Cluster) -> None:
    for name in ("default", "kube-system", "kube-node-lease"):
        ns = await cluster.client.get("namespaces", name)
        assert ns["status"]["phase"] == "Active"
    with pytest.raises(errors.Forbidden, match="may not be deleted"):
        await cluster.client.delete("namespaces", "kube-system")


async def test_object_over_limit_refused(cluster: Cluster, namespace: str) -> None:
    big = pod("big")
    big["spec"]["containers"][0]["args"] = ["x" * 1000] * 1600
    with pytest.raises(errors.RequestEntityTooLarge, match="the limit is 1572864 bytes"):
        await cluster.client.create("pods", big, namespace)
    with pytest.raises(errors.NotFound):
        await cluster.client.get("pods", "big", namespace)


async def test_unknown_resource_and_bad_selector(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(errors.BadRequest):
        await cluster.client.list("pods", namespace, label_selector="app in (a,")
    with pytest.raises(errors.BadRequest, match="field label not supported: spec.bogus"):
        await cluster.client.list("pods", namespace, field_selector="spec.bogus=1")


# --- list ---------------------------------------------------------------------------------


async def test_pagination_returns_everything_once(cluster: Cluster, namespace: str) -> None:
    for i in range(25):
        await cluster.client.create("configmaps", configmap(f"cm-{i:02}"), namespace)
    page = await cluster.client.list("configmaps", namespace, limit=10)
    assert len(page["items"]) == 10
    assert page["metadata"]["remainingItemCount"] == 15
    seen = [i["metadata"]["name"] for i in page["items"]]
    rv = page["metadata"]["resourceVersion"]
    # Writes after the first page are not in the snapshot that the token continues.
    await cluster.client.create("configmaps", configmap("cm-zz-late"), namespace)
    token = page["metadata"]["continue"]
    while token:
        page = await cluster.client.list("configmaps", namespace, limit=10, continue_token=token)
        assert page["metadata"]["resourceVersion"] == rv
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
    assert seen == [f"cm-{i:02}" for i in range(25)]


async def test_paginated_list_with_label_selector(cluster: Cluster, namespace: str) -> None:
    for i in range(12):
        await cluster.client.create(
            "configmaps", configmap(f"l-{i:02}", labels={"even": str(i % 2 == 0).lower()}),
            namespace)
    items, _ = await cluster.client.list_all("configmaps", namespace, label_selector="even=true",
                                             page_size=2)
    assert [i["metadata"]["name"] for i in items] == [f"l-{i:02}" for i in range(0, 12, 2)]
    odd = await cluster.client.list("configmaps", namespace, label_selector="even!=true,!nope")
    assert len(odd["items"]) == 6


async def test_field_selector(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("pods", pod("on-n1", "n1"), namespace)
    await cluster.client.create("pods", pod("on-n2", "n2"), namespace)
    out = await cluster.client.list("pods", namespace, field_selector="spec.nodeName=n1")
    assert [p["metadata"]["name"] for p in out["items"]] == ["on-n1"]
    out = await cluster.client.list("pods", namespace,
                                    field_selector="metadata.name!=on-n1,status.phase=Pending")
    assert [p["metadata"]["name"] for p in out["items"]] == ["on-n2"]


async def test_continue_token_after_compaction_is_gone(cluster: Cluster, namespace: str) -> None:
    for i in range(4):
        await cluster.client.create("configmaps", configmap(f"c-{i}"), namespace)
    page = await cluster.client.list("configmaps", namespace, limit=2)
    for i in range(3):
        await cluster.client.patch("configmaps", "c-0", {"data": {"n": str(i)}}, namespace)
    rev = int((await cluster.client.get("configmaps", "c-0", namespace))["metadata"][
        "resourceVersion"])
    cluster.etcd.etcdctl("compact", str(rev))
    with pytest.raises(errors.Gone, match="continue parameter is too old"):
        await cluster.client.list("configmaps", namespace, limit=2,
                                  continue_token=page["metadata"]["continue"])


async def test_forged_continue_token_is_bad_request(cluster: Cluster, namespace: str) -> None:
    with pytest.raises(errors.BadRequest, match="continue key is not valid"):
        await cluster.client.list("configmaps", namespace, limit=2, continue_token="garbage")


# --- delete -------------------------------------------------------------------------------


async def test_finalizers_hold_the_object_until_removed(cluster: Cluster,
                                                        namespace: str) -> None:
    cm = configmap("fin")
    cm["metadata"]["finalizers"] = ["example.com/hold"]
    await cluster.client.create("configmaps", cm, namespace)
    out = await cluster.client.delete("configmaps", "fin", namespace)
    assert out["metadata"]["deletionTimestamp"]
    still = await cluster.client.get("configmaps", "fin", namespace)
    assert still["metadata"]["finalizers"] == ["example.com/hold"]
    with pytest.raises(errors.Invalid, match="no new finalizers can be added"):
        await cluster.client.patch("configmaps", "fin",
                                   {"metadata": {"finalizers": ["example.com/hold", "x/y"]}},
                                   namespace)
    gone = await cluster.client.patch("configmaps", "fin", {"metadata": {"finalizers": None}},
                                      namespace)
    with pytest.raises(errors.NotFound):
        await cluster.client.get("configmaps", "fin", namespace)
    # The answer is the object as deleted: the deletion's resourceVersion, not the one before
    # (tkctl said "patched (no change)" when they were equal).
    assert int(gone["metadata"]["resourceVersion"]) > int(still["metadata"]["resourceVersion"])
    assert not gone["metadata"].get("finalizers")


async def test_delete_answers_with_the_deletions_resource_version(cluster: Cluster,
                                                                  namespace: str) -> None:
    created = await cluster.client.create("configmaps", configmap("rv-del"), namespace)
    listed = await cluster.client.list("configmaps", namespace)
    stream = cluster.client.watch("configmaps", namespace,
                                  resource_version=listed["metadata"]["resourceVersion"])
    try:
        out = await cluster.client.delete("configmaps", "rv-del", namespace)
        while True:
            ev = await asyncio.wait_for(anext(stream), 10)
            if ev.type == "DELETED":
                break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert int(out["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert out["metadata"]["resourceVersion"] == ev.object["metadata"]["resourceVersion"]


async def test_propagation_policy_is_recorded_as_gc_finalizer(cluster: Cluster,
                                                              namespace: str) -> None:
    await cluster.client.create("deployments", deployment("fg"), namespace)
    out = await cluster.client.delete("deployments", "fg", namespace,
                                      propagation_policy="Foreground")
    assert out["metadata"]["finalizers"] == ["foregroundDeletion"]
    await cluster.client.create("deployments", deployment("orph"), namespace)
    out = await cluster.client.delete("deployments", "orph", namespace,
                                      propagation_policy="Orphan")
    assert out["metadata"]["finalizers"] == ["orphan"]
    with pytest.raises(errors.BadRequest, match="propagationPolicy"):
        await cluster.client.delete("deployments", "orph", namespace, propagation_policy="Later")


async def test_delete_preconditions(cluster: Cluster, namespace: str) -> None:
    cur = await cluster.client.create("configmaps", configmap("pre"), namespace)
    with pytest.raises(errors.Conflict, match="Precondition failed: UID"):
        await cluster.client.delete("configmaps", "pre", namespace, precondition_uid="other")
    with pytest.raises(errors.Conflict, match="Precondition failed: ResourceVersion"):
        await cluster.client.delete("configmaps", "pre", namespace,
                                    precondition_resource_version="1")
    await cluster.client.delete("configmaps", "pre", namespace,
                                precondition_uid=cur["metadata"]["uid"])
    with pytest.raises(errors.NotFound):
        await cluster.client.delete("configmaps", "pre", namespace)


async def test_pod_graceful_deletion(cluster: Cluster, namespace: str) -> None:
    # An unscheduled pod has nobody to stop it: it goes at once.
    await cluster.client.create("pods", pod("unsched"), namespace)
    await cluster.client.delete("pods", "unsched", namespace)
    with pytest.raises(errors.NotFound):
        await cluster.client.get("pods", "unsched", namespace)
    # A scheduled pod waits for its kubelet, which finally deletes with grace 0.
    await cluster.client.create("pods", pod("sched", "node-1"), namespace)
    out = await cluster.client.delete("pods", "sched", namespace, grace_period_seconds=30)
    assert out["metadata"]["deletionGracePeriodSeconds"] == 30
    assert out["metadata"]["deletionTimestamp"]
    shorter = await cluster.client.delete("pods", "sched", namespace, grace_period_seconds=5)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    await cluster.client.get("pods", "sched", namespace)
    await cluster.client.delete("pods", "sched", namespace, grace_period_seconds=0)
    with pytest.raises(errors.NotFound):
        await cluster.client.get("pods", "sched", namespace)


async def test_delete_collection_by_label(cluster: Cluster, namespace: str) -> None:
    for i in range(5):
        await cluster.client.create(
            "configmaps", configmap(f"dc-{i}", labels={"group": "a" if i < 3 else "b"}),
            namespace)
    out = await cluster.client.delete_collection("configmaps", namespace, label_selector="group=a")
    assert sorted(i["metadata"]["name"] for i in out["items"]) == ["dc-0", "dc-1", "dc-2"]
    left = await cluster.client.list("configmaps", namespace)
    assert sorted(i["metadata"]["name"] for i in left["items"]) == ["dc-3", "dc-4"]


# --- pods/binding ---------------------------------------------------------------------------


async def test_bind(cluster: Cluster, namespace: str) -> None:
    created = await cluster.client.create("pods", pod("b"), namespace)
    assert created["status"]["phase"] == "Pending"
    assert created["spec"]["serviceAccountName"] == "default"
    keys = {t["key"] for t in created["spec"]["tolerations"]}
    assert keys == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    await cluster.client.bind(namespace, "b", "node-7")
    bound = await cluster.client.get("pods", "b", namespace)
    assert bound["spec"]["nodeName"] == "node-7"
    cond = {c["type"]: c["status"] for c in bound["status"]["conditions"]}
    assert cond["PodScheduled"] == "True"
    with pytest.raises(errors.Conflict, match='already assigned to node "node-7"'):
        await cluster.client.bind(namespace, "b", "node-8")


# --- services -----------------------------------------------------------------------------


def service(name: str, type_: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def test_fifty_concurrent_services_get_distinct_cluster_ips(cluster: Cluster,
                                                                  namespace: str) -> None:
    created = await asyncio.gather(*(
        cluster.client.create("services", service(f"s{i}", "NodePort"), namespace)
        for i in range(50)))
    ips = {s["spec"]["clusterIP"] for s in created}
    ports = {s["spec"]["ports"][0]["nodePort"] for s in created}
    assert len(ips) == 50 and len(ports) == 50
    assert all(ip.startswith("10.96.") for ip in ips)
    assert all(30000 <= p <= 32767 for p in ports)


async def test_service_ip_rules(cluster: Cluster, namespace: str) -> None:
    a = await cluster.client.create("services", service("fixed", clusterIP="10.96.77.77"),
                                    namespace)
    assert a["spec"]["clusterIP"] == "10.96.77.77"
    with pytest.raises(errors.Invalid, match="provided IP is already allocated"):
        await cluster.client.create("services", service("dup", clusterIP="10.96.77.77"),
                                    namespace)
    with pytest.raises(errors.Invalid, match="not in the valid range"):
        await cluster.client.create("services", service("out", clusterIP="192.168.1.1"),
                                    namespace)
    headless = await cluster.client.create("services", service("hl", clusterIP="None"),
                                           namespace)
    assert headless["spec"]["clusterIP"] == "None"
    # Replacing the manifest (no clusterIP in it) keeps the allocated IP.
    replaced = service("fixed")
    replaced["metadata"]["labels"] = {"v": "2"}
    out = await cluster.client.update("services", replaced, namespace)
    assert out["spec"]["clusterIP"] == "10.96.77.77"
    # Deleting releases the IP for the next Service.
    await cluster.client.delete("services", "fixed", namespace)
    again = await cluster.client.create("services", service("again", clusterIP="10.96.77.77"),
                                        namespace)
    assert again["spec"]["clusterIP"] == "10.96.77.77"


async def test_node_port_rules(cluster: Cluster, namespace: str) -> None:
    # The port is the allocator's pick, not a fixed number: other tests sharing this cluster
    # allocate node ports too, and any fixed number could already be theirs.
    svc = service("np", "NodePort")
    svc["spec"]["ports"] = [{"port": 80}]
    out = await cluster.client.create("services", svc, namespace)
    port = out["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    clash = service("np2", "NodePort")
    clash["spec"]["ports"] = [{"port": 80, "nodePort": port}]
    with pytest.raises(errors.Invalid):
        await cluster.client.create("services", clash, namespace)
    bad = service("np3", "NodePort")
    bad["spec"]["ports"] = [{"port": 80, "nodePort": 80}]
    with pytest.raises(errors.Invalid, match="spec.ports\\[0\\].nodePort"):
        await cluster.client.create("services", bad, namespace)
    # Switching to ClusterIP releases the node port.
    out = await cluster.client.patch("services", "np", {"spec": {"type": "ClusterIP"}},
                                     namespace)
    assert "nodePort" not in out["spec"]["ports"][0]
    out = await cluster.client.create("services", clash, namespace)
    assert out["spec"]["ports"][0]["nodePort"] == port


# --- watch --------------------------------------------------------------------------------


async def test_watch_from_resource_version_sees_exactly_later_events(cluster: Cluster,
                                                                     namespace: str) -> None:
    a = await cluster.client.create("configmaps", configmap("w-a"), namespace)
    rv = a["metadata"]["resourceVersion"]
    await cluster.client.patch("configmaps", "w-a", {"data": {"n": "1"}}, namespace)
    await cluster.client.create("configmaps", configmap("w-b"), namespace)
    await cluster.client.delete("configmaps", "w-a", namespace)
    events = await collect(cluster.client.watch("configmaps", namespace, resource_version=rv), 3)
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "w-a"), ("ADDED", "w-b"), ("DELETED", "w-a")]
    rvs = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)


async def test_watch_from_zero_replays_state_then_streams(cluster: Cluster,
                                                          namespace: str) -> None:
    await cluster.client.create("configmaps", configmap("z-1"), namespace)
    it = cluster.client.watch("configmaps", namespace, resource_version="0")
    first = await collect(it, 1)
    assert (first[0].type, first[0].object["metadata"]["name"]) == ("ADDED", "z-1")
    await cluster.client.create("configmaps", configmap("z-2"), namespace)
    nxt = await collect(it, 1)
    assert (nxt[0].type, nxt[0].object["metadata"]["name"]) == ("ADDED", "z-2")
    await it.aclose()  # type: ignore[attr-defined]


async def test_watch_right_after_list_is_served(cluster: Cluster, namespace: str) -> None:
    """A List's resourceVersion is immediately watchable (no 'too large resource version')."""
    for i in range(5):
        await cluster.client.create("configmaps", configmap(f"lw-{i}"), namespace)
        listed = await cluster.client.list("configmaps", namespace)
        it = cluster.client.watch("configmaps", namespace,
                                  resource_version=listed["metadata"]["resourceVersion"])
        await cluster.client.patch("configmaps", f"lw-{i}", {"data": {"x": "1"}}, namespace)
        ev = await collect(it, 1)
        assert (ev[0].type, ev[0].object["metadata"]["name"]) == ("MODIFIED", f"lw-{i}")
        await it.aclose()  # type: ignore[attr-defined]


async def test_selector_watch_sees_deleted_when_object_stops_matching(
        cluster: Cluster, namespace: str) -> None:
    a = await cluster.client.create("configmaps", configmap("sel", labels={"app": "web"}),
                                    namespace)
    rv = a["metadata"]["resourceVersion"]
    await cluster.client.patch("configmaps", "sel", {"metadata": {"labels": {"app": "db"}}},
                               namespace)
    await cluster.client.patch("configmaps", "sel", {"metadata": {"labels": {"app": "web"}}},
                               namespace)
    await cluster.client.patch("configmaps", "sel", {"data": {"z": "1"}}, namespace)
    events = await collect(cluster.client.watch("configmaps", namespace, resource_version=rv,
                                                label_selector="app=web"), 3)
    assert [e.type for e in events] == ["DELETED", "ADDED", "MODIFIED"]
    # The DELETED carries the last matching state, stamped with the change's version.
    assert events[0].object["metadata"]["labels"] == {"app": "web"}
    assert int(events[0].object["metadata"]["resourceVersion"]) > int(rv)


async def test_watch_field_selector_on_node_name(cluster: Cluster, namespace: str) -> None:
    it = cluster.client.watch("pods", namespace, field_selector="spec.nodeName=n9",
                              resource_version="0")
    await cluster.client.create("pods", pod("elsewhere", "n1"), namespace)
    await cluster.client.create("pods", pod("mine"), namespace)
    await cluster.client.bind(namespace, "mine", "n9")
    ev = await collect(it, 1)
    assert (ev[0].type, ev[0].object["metadata"]["name"]) == ("ADDED", "mine")
    await it.aclose()  # type: ignore[attr-defined]


async def test_watch_bookmarks_advance(cluster: Cluster, namespace: str) -> None:
    a = await cluster.client.create("configmaps", configmap("bm"), namespace)
    it = cluster.client.watch("configmaps", namespace,
                              resource_version=a["metadata"]["resourceVersion"],
                              allow_bookmarks=True)
    ev = await asyncio.wait_for(it.__anext__(), 5)
    assert ev.type == "BOOKMARK"
    assert int(ev.object["metadata"]["resourceVersion"]) >= int(a["metadata"]["resourceVersion"])
    await it.aclose()  # type: ignore[attr-defined]


async def test_watch_timeout_ends_stream(cluster: Cluster, namespace: str) -> None:
    events = []
    async for ev in cluster.client.watch("configmaps", namespace, resource_version="0",
                                         timeout_seconds=1):
        events.append(ev)
    assert events == []


async def test_too_old_resource_version_is_gone() -> None:
    async with Cluster("--watch-cache-size", "5") as c:
        first = await c.client.create("configmaps", configmap("old"), "default")
        for i in range(10):
            await c.client.patch("configmaps", "old", {"data": {"n": str(i)}}, "default")
        with pytest.raises(errors.Gone, match="too old resource version"):
            await collect(c.client.watch("configmaps", "default",
                                         resource_version=first["metadata"]["resourceVersion"]),
                          1)
        # The most recent 5 events are still there to resume from.
        latest = await c.client.get("configmaps", "old", "default")
        rv = int(latest["metadata"]["resourceVersion"]) - 3
        it = c.client.watch("configmaps", "default", resource_version=str(rv))
        assert len(await collect(it, 1)) == 1
        await it.aclose()  # type: ignore[attr-defined]


async def test_watch_survives_etcd_compaction_of_old_events(cluster: Cluster,
                                                            namespace: str) -> None:
    """Compaction affects etcd; watches from the cache keep working from recent versions."""
    a = await cluster.client.create("configmaps", configmap("cmp"), namespace)
    b = await cluster.client.patch("configmaps", "cmp", {"data": {"n": "1"}}, namespace)
    cluster.etcd.etcdctl("compact", b["metadata"]["resourceVersion"])
    it = cluster.client.watch("configmaps", namespace,
                              resource_version=a["metadata"]["resourceVersion"])
    ev = await collect(it, 1)
    assert ev[0].object["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    await it.aclose()  # type: ignore[attr-defined]


# --- the server process -------------------------------------------------------------------


async def test_discovery_health_and_metrics(cluster: Cluster) -> None:
    doc = await cluster.client.discovery()
    deploy = next(r for r in doc["resources"] if r["name"] == "deployments")
    assert deploy["apiVersion"] == "apps/v1" and deploy["shortNames"] == ["deploy"]
    assert "scale" in deploy["subresources"]
    assert doc["serverVersion"]["gitVersion"]
    async with cluster.channel() as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert cluster.apiserver is not None
    url = f"http://127.0.0.1:{cluster.apiserver.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'apiserver_request_total{code="200",resource="namespaces",verb="get"}' in text
    assert "apiserver_request_duration_seconds_bucket" in text
    assert "etcd_request_duration_seconds_bucket" in text
    assert "apiserver_registered_watchers" in text


async def test_sigterm_is_graceful_and_restart_keeps_state() -> None:
    async with Cluster() as c:
        assert c.apiserver is not None and c.apiserver.proc is not None
        await c.client.create("configmaps", configmap("keep"), "default")
        it = c.client.watch("configmaps", "default", resource_version="0")
        await collect(it, 1)
        c.apiserver.kill(15)  # SIGTERM
        assert c.apiserver.proc.returncode == 0
        # The open watch ended cleanly (no error), as a client expects on server shutdown.
        rest = [ev async for ev in it]
        assert rest == []
        await c.apiserver.start()
        async with c.new_client() as again:
            await asyncio.sleep(0)
            for _ in range(50):
                try:
                    got = await again.get("configmaps", "keep", "default")
                    break
                except errors.ServiceUnavailable:
                    await asyncio.sleep(0.1)
            assert got["data"] == {"k": "v"}


async def test_events_expire_after_event_ttl() -> None:
    async with Cluster("--event-ttl", "2") as c:
        ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
              "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
              "reason": "Test", "message": "hello", "type": "Normal"}
        await c.client.create("events", ev, "default")
        cm = await c.client.create("configmaps", configmap("stays"), "default")
        assert (await c.client.get("events", "e1", "default"))["reason"] == "Test"
        for _ in range(100):
            await asyncio.sleep(0.1)
            try:
                await c.client.get("events", "e1", "default")
            except errors.NotFound:
                break
        else:
            pytest.fail("event did not expire")
        # Expiry is the event's alone: other objects stay.
        assert (await c.client.get("configmaps", "stays", "default"))["metadata"]["uid"] == \
            cm["metadata"]["uid"]


@pytest.mark.parametrize(("args", "message"), [
    (["--etcd-servers", "foo://x"], "--etcd-servers: not an etcd URL"),
    (["--service-cluster-ip-range", "10.0.0.0/33"], "--service-cluster-ip-range: '10.0.0.0/33'"),
    (["--service-node-port-range", "3-2"], "--service-node-port-range"),
    (["--grpc-port", "99999"], "--grpc-port: 99999 is not a TCP port"),
    (["--secure-port", "7000", "--grpc-port", "7000"], "--grpc-port: 7000 is --secure-port too"),
    (["--port", "6443"], "unrecognized arguments: --port"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_give_one_clear_line(args: list[str], message: str) -> None:
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "apiserver", *args], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


# --- regressions found in review --------------------------------------------------------------


async def test_lost_allocation_races_pick_again() -> None:
    """20 concurrent NodePort Services in a 20-port range: random picks collide constantly, and
    every collision must be retried with a new pick, never reported as the user's conflict."""
    async with Cluster("--service-node-port-range", "30000-30019") as c:
        created = await asyncio.gather(*(
            c.client.create("services", service(f"r{i}", "NodePort"), "default")
            for i in range(20)))
        assert sorted(s["spec"]["ports"][0]["nodePort"] for s in created) == list(
            range(30000, 30020))
        with pytest.raises(errors.InternalError, match="range 30000-30019 is full"):
            await c.client.create("services", service("one-too-many", "NodePort"), "default")


async def test_scale_only_where_the_resource_has_it(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("configmaps", configmap("noscale"), namespace)
    with pytest.raises(errors.NotFound, match="configmaps/scale"):
        await cluster.client.update("configmaps", {"spec": {"replicas": 3}, "metadata": {
            "name": "noscale"}}, namespace, subresource="scale")
    with pytest.raises(errors.NotFound, match="configmaps/scale"):
        await cluster.client.patch("configmaps", "noscale", {"spec": {"replicas": 3}}, namespace,
                                   subresource="scale")
    assert "spec" not in await cluster.client.get("configmaps", "noscale", namespace)


async def test_wrongly_shaped_bodies_are_bad_requests(cluster: Cluster, namespace: str) -> None:
    await cluster.client.create("deployments", deployment("shape"), namespace)
    await cluster.client.create("pods", pod("shape"), namespace)
    with pytest.raises(errors.ApiError) as e:
        await cluster.client.patch("deployments", "shape", {"metadata": "x"}, namespace)
    assert not isinstance(e.value, errors.InternalError), e.value
    with pytest.raises(errors.BadRequest):
        await cluster.client.update("deployments", {"metadata": {"name": "shape"}, "spec": "s"},
                                    namespace, subresource="scale")
    # A continue token from the future (well-formed, revision not yet reached).
    page = await cluster.client.list("deployments", namespace, limit=1)
    assert "continue" not in page["metadata"]
    future = base64.urlsafe_b64encode(json.dumps({
        "v": 1, "rv": 10**9,
        "start": base64.b64encode(f"/registry/deployments/{namespace}/".encode()).decode(),
    }).encode()).decode()
    with pytest.raises(errors.BadRequest, match="continue key is not valid"):
        await cluster.client.list("deployments", namespace, limit=1, continue_token=future)


async def test_undecodable_value_in_etcd_does_not_freeze_watches(cluster: Cluster,
                                                                 namespace: str) -> None:
    cluster.etcd.etcdctl("put", f"/registry/configmaps/{namespace}/handmade", "[1]")
    made = await cluster.client.create("configmaps", configmap("after-bad"), namespace)
    listed = await cluster.client.list("configmaps", namespace)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["after-bad"]
    cached = await cluster.client.list("configmaps", namespace, resource_version="0")
    assert [i["metadata"]["name"] for i in cached["items"]] == ["after-bad"]
    it = cluster.client.watch("configmaps", namespace,
                              resource_version=made["metadata"]["resourceVersion"])
    await cluster.client.patch("configmaps", "after-bad", {"data": {"n": "1"}}, namespace)
    assert (await collect(it, 1))[0].type == "MODIFIED"
    await it.aclose()  # type: ignore[attr-defined]


async def test_namespace_finalizers_change_only_through_finalize(cluster: Cluster) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fin-ns"}}
    await cluster.client.create("namespaces", ns)
    cur = await cluster.client.delete("namespaces", "fin-ns")
    cur["spec"]["finalizers"] = []
    kept = await cluster.client.update("namespaces", cur)
    assert kept["spec"]["finalizers"] == ["kubernetes"]
    await cluster.client.update("namespaces", cur, subresource="finalize")
    with pytest.raises(errors.NotFound):
        await cluster.client.get("namespaces", "fin-ns")


async def test_update_with_another_uid_is_conflict(cluster: Cluster, namespace: str) -> None:
    old = await cluster.client.create("configmaps", configmap("reborn"), namespace)
    await cluster.client.delete("configmaps", "reborn", namespace)
    await cluster.client.create("configmaps", configmap("reborn", {"gen": "2"}), namespace)
    stale = {**old, "metadata": {k: v for k, v in old["metadata"].items()
                                 if k != "resourceVersion"}}
    with pytest.raises(errors.Conflict, match="Precondition failed: UID"):
        await cluster.client.update("configmaps", stale)
    assert (await cluster.client.get("configmaps", "reborn", namespace))["data"] == {"gen": "2"}


async def test_long_generate_name_is_cut_to_fit(cluster: Cluster, namespace: str) -> None:
    body = service("x")
    body["metadata"] = {"generateName": "a" * 62}
    out = await cluster.client.create("services", body, namespace)
    assert len(out["metadata"]["name"]) == 63


async def test_tcp_and_udp_share_a_node_port(cluster: Cluster, namespace: str) -> None:
    # A port known to be free: the allocator's pick, released again. (A fixed number may already
    # belong to a Service another test in this shared cluster got at random.)
    probe = service("probe", "NodePort")
    port = (await cluster.client.create("services", probe, namespace))["spec"]["ports"][0][
        "nodePort"]
    await cluster.client.delete("services", "probe", namespace)
    dns = service("dns", "NodePort")
    dns["spec"]["ports"] = [{"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": port},
                            {"name": "dns-udp", "port": 53, "protocol": "UDP", "nodePort": port}]
    out = await cluster.client.create("services", dns, namespace)
    assert [p["nodePort"] for p in out["spec"]["ports"]] == [port, port]
    await cluster.client.delete("services", "dns", namespace)
    again = await cluster.client.create("services", dns, namespace)  # released once, reusable
    assert again["spec"]["ports"][0]["nodePort"] == port


async def test_strategic_merge_patch(cluster: Cluster, namespace: str) -> None:
    """kubectl apply's patch of a Deployment: one container's image and env change by name,
    the other container stays, an env var goes with `$patch: delete`, the strategy switches to
    Recreate with `$retainKeys`; the scale subresource takes a strategic patch too."""
    d = deployment("smp", 2)
    d["spec"]["template"]["spec"]["containers"] = [
        {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"},
                                                    {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "busybox:1"}]
    await cluster.client.create("deployments", d, namespace)
    out = await cluster.client.patch("deployments", "smp", {"spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
        "template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "web", "image": "nginx:2",
                            "env": [{"$patch": "delete", "name": "A"},
                                    {"name": "C", "value": "3"}]}]}}}},
        namespace, patch_type="strategic")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:2"),
                                                             ("sidecar", "busybox:1")]
    # Without $setElementOrder for env, upstream puts the patch's items first.
    assert [e["name"] for e in containers[0]["env"]] == ["C", "B"]
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    assert out["metadata"]["generation"] == 2
    with pytest.raises(errors.BadRequest, match=r"containers\[0\]: does not contain the merge key"):
        await cluster.client.patch("deployments", "smp", {"spec": {"template": {"spec": {
            "containers": [{"image": "x"}]}}}}, namespace, patch_type="strategic")
    scaled = await cluster.client.patch("deployments", "smp", {"spec": {"replicas": 4}},
                                        namespace, patch_type="strategic", subresource="scale")
    assert scaled["spec"]["replicas"] == 4
    cm = await cluster.client.create("configmaps", configmap("smp", {"a": "1"}), namespace)
    assert cm["data"] == {"a": "1"}
    out = await cluster.client.patch("configmaps", "smp", {
        "data": {"a": None, "b": "2"}, "metadata": {"finalizers": ["x/y"]}},
        namespace, patch_type="strategic")
    assert out["data"] == {"b": "2"} and out["metadata"]["finalizers"] == ["x/y"]
    out = await cluster.client.patch("configmaps", "smp", {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["x/y"]}}, namespace,
        patch_type="strategic")
    assert not out["metadata"].get("finalizers")


# --- strategies through the registry (apiserver/strategies.py) ------------------------------


async def test_bind_refusals_and_races_through_the_shared_update_loop(cluster: Cluster,
                                                                      namespace: str) -> None:
    """pods/binding goes through the registry's one compare-and-swap loop: a refusal found
    against the watch cache is checked against etcd, and of concurrent binds exactly one wins."""
    created = await cluster.client.create("pods", pod("br"), namespace)
    with pytest.raises(errors.Conflict, match="UID in precondition: not-the-uid"):
        await cluster.client.bind(namespace, "br", "node-1", uid="not-the-uid")
    await cluster.client.bind(namespace, "br", "node-1", uid=created["metadata"]["uid"])
    with pytest.raises(errors.Conflict, match='already assigned to node "node-1"'):
        await cluster.client.bind(namespace, "br", "node-2")
    # A pod that is being deleted is never assigned.
    held = pod("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await cluster.client.create("pods", held, namespace)
    await cluster.client.delete("pods", "held", namespace)
    with pytest.raises(errors.Conflict, match="is being deleted, cannot be assigned"):
        await cluster.client.bind(namespace, "held", "node-1")
    await cluster.client.patch("pods", "held", {"metadata": {"finalizers": None}}, namespace)
    with pytest.raises(errors.NotFound):
        await cluster.client.bind(namespace, "missing", "node-1")
    # Ten schedulers race for one pod: one binds, nine are refused, whatever the cache said.
    await cluster.client.create("pods", pod("race"), namespace)
    results = await asyncio.gather(*(cluster.client.bind(namespace, "race", f"node-{i}")
                                     for i in range(10)), return_exceptions=True)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, errors.Conflict) for r in results if r is not None)
    bound = await cluster.client.get("pods", "race", namespace)
    assert bound["spec"]["nodeName"] == f"node-{winners[0]}"
    assert bound["metadata"]["generation"] == 1  # pods track no generation


async def test_updates_only_through_subresources_a_strategy_serves(cluster: Cluster,
                                                                   namespace: str) -> None:
    cm = await cluster.client.create("configmaps", configmap("sub"), namespace)
    for resource, obj, sub in (("configmaps", cm, "status"), ("configmaps", cm, "finalize"),
                               ("pods", pod("sub"), "finalize"),
                               ("pods", pod("sub"), "binding")):
        with pytest.raises(errors.NotFound, match=f"{resource}/{sub}"):
            await cluster.client.update(resource, obj, namespace, subresource=sub)
    # A plain update of a Service keeps its ClusterIP; its status only changes through status.
    svc = await cluster.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "keep"},
        "spec": {"selector": {"app": "keep"}, "ports": [{"port": 80}]}}, namespace)
    ip = svc["spec"]["clusterIP"]
    replaced = await cluster.client.update("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "keep"},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}, namespace)
    assert replaced["spec"]["clusterIP"] == ip
    assert replaced["spec"]["selector"] == {"app": "other"}
    assert not (replaced.get("status") or {}).get("loadBalancer", {}).get("ingress")
