"""The pods/eviction subresource (policy/v1 Eviction) and the apiserver's default toleration
flags, against a real etcd + apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from api import errors
from harness.cluster import Cluster
from harness.objects import pod

pytestmark = pytest.mark.integration


def eviction(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                            "metadata": {"name": name}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def test_eviction_deletes_the_pod_and_answers_success(cluster: Cluster,
                                                            namespace: str) -> None:
    c = cluster.client
    await c.create("pods", pod("victim"), namespace)
    status = await c.create("pods", eviction("victim"), namespace, name="victim",
                            subresource="eviction")
    assert status["kind"] == "Status" and status["status"] == "Success"
    with pytest.raises(errors.NotFound):
        await c.get("pods", "victim", namespace)


async def test_eviction_of_a_bound_pod_is_graceful(cluster: Cluster, namespace: str) -> None:
    c = cluster.client
    await c.create("pods", pod("bound", nodeName="nowhere"), namespace)
    await c.create("pods", eviction("bound", gracePeriodSeconds=17), namespace, name="bound",
                   subresource="eviction")
    p = await c.get("pods", "bound", namespace)
    assert p["metadata"]["deletionTimestamp"]
    assert p["metadata"]["deletionGracePeriodSeconds"] == 17
    # Upstream (PodDisruptionConditions, GA 1.31) says why the pod goes.
    target = [x for x in p["status"]["conditions"] if x["type"] == "DisruptionTarget"]
    assert [{k: v for k, v in x.items() if k != "lastTransitionTime"} for x in target] == [
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
         "message": "Eviction API: evicting"}]
    assert target[0]["lastTransitionTime"]
    await c.delete("pods", "bound", namespace, grace_period_seconds=0)


async def test_eviction_errors(cluster: Cluster, namespace: str) -> None:
    c = cluster.client
    with pytest.raises(errors.NotFound, match='pods "ghost" not found'):
        await c.create("pods", eviction("ghost"), namespace, name="ghost",
                       subresource="eviction")
    await c.create("pods", pod("p1"), namespace)
    with pytest.raises(errors.BadRequest, match="name in URL does not match"):
        await c.create("pods", eviction("other"), namespace, name="p1", subresource="eviction")
    with pytest.raises(errors.Conflict, match="Precondition failed: UID"):
        await c.create("pods", eviction("p1", preconditions={"uid": "nope"}), namespace,
                       name="p1", subresource="eviction")
    with pytest.raises(errors.Conflict, match="Precondition failed: ResourceVersion"):
        await c.create("pods", eviction("p1", preconditions={"resourceVersion": "1"}),
                       namespace, name="p1", subresource="eviction")
    dry = {**eviction("p1"), "deleteOptions": {"dryRun": ["All"]}}
    await c.create("pods", dry, namespace, name="p1", subresource="eviction")
    p1 = await c.get("pods", "p1", namespace)
    assert not [x for x in (p1.get("status") or {}).get("conditions") or []
                if x["type"] == "DisruptionTarget"]  # a dry run changes nothing
    # A resourceVersion precondition holds for the pod as the caller saw it, although the
    # eviction updates the pod (its condition) before deleting it.
    await c.create("pods", eviction("p1", preconditions={
        "resourceVersion": p1["metadata"]["resourceVersion"]}), namespace, name="p1",
        subresource="eviction")
    with pytest.raises(errors.NotFound):
        await c.get("pods", "p1", namespace)
    with pytest.raises(errors.NotFound):
        await c.create("configmaps", eviction("p1"), namespace, name="p2",
                       subresource="eviction")


async def test_default_toleration_seconds_come_from_the_flags() -> None:
    async with Cluster("--default-not-ready-toleration-seconds", "7",
                       "--default-unreachable-toleration-seconds", "9") as c:
        created = await c.client.create("pods", pod("p"), "default")
        tols = {t["key"]: t for t in created["spec"]["tolerations"]}
        assert tols["node.kubernetes.io/not-ready"]["tolerationSeconds"] == 7
        assert tols["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 9
        assert tols["node.kubernetes.io/unreachable"]["effect"] == "NoExecute"
        assert tols["node.kubernetes.io/unreachable"]["operator"] == "Exists"
