"""The deployment controller in the shared control plane (real etcd + apiserver + scheduler +
every controller + hollow nodes), named after the upstream e2e tests
(test/e2e/apps/deployment.go) they mirror. The hollow nodes make pods Running and Ready, or
not (annotation `hollow.tinykube.io/never-ready`), and delete terminating pods.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from api import errors
from harness.cluster import Cluster
from harness.objects import condition as cond
from harness.objects import deployment
from harness.wait import until

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
REV = "deployment.kubernetes.io/revision"


async def get(c: Cluster, ns: str, name: str) -> Obj:
    return await c.client.get("deployments", name, ns)


async def replica_sets(c: Cluster, ns: str) -> list[Obj]:
    items, _ = await c.client.list_all("replicasets", ns)
    return items


async def rolled_out(c: Cluster, ns: str, name: str) -> Obj | None:
    """The deployment once complete (kubectl rollout status's test), else None."""
    d = await get(c, ns, name)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    if (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want):
        return d
    return None


async def wait_rolled_out(c: Cluster, ns: str, name: str, timeout: float = 60) -> Obj:
    return await until(lambda: rolled_out(c, ns, name), timeout=timeout,
                       what=f"deployment {name} rolled out")


async def set_image(c: Cluster, ns: str, name: str, image: str) -> None:
    await c.client.patch("deployments", name, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": image}]}}}}, ns)


class PodWatch:
    """Every pod state seen on a watch, to check invariants at each observed moment."""

    def __init__(self, c: Cluster, ns: str) -> None:
        self.c, self.ns = c, ns
        self.pods: dict[str, Obj] = {}
        self.samples: list[tuple[int, int, dict[str, int]]] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodWatch:
        items, rv = await self.c.client.list_all("pods", self.ns)
        for p in items:
            self.pods[p["metadata"]["name"]] = p
        self.task = asyncio.create_task(self._run(rv))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _run(self, rv: str) -> None:
        async for ev in self.c.client.watch("pods", self.ns, resource_version=rv):
            name = ev.object["metadata"]["name"]
            if ev.type == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = ev.object
            self._sample()

    def _sample(self) -> None:
        """(live pods, ready live pods, all pods by template hash). Surge and availability
        count pods that are not terminating, as the ReplicaSet controller does; Recreate
        waits for terminating pods too, so the per-template count includes them."""
        live = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if cond(p, "Ready").get("status") == "True"]
        by_hash: dict[str, int] = {}
        for p in self.pods.values():
            h = p["metadata"].get("labels", {}).get("pod-template-hash", "")
            by_hash[h] = by_hash.get(h, 0) + 1
        self.samples.append((len(live), len(ready), by_hash))


async def test_rolling_update_deployment_should_delete_old_pods_and_create_new_ones(
        control_plane: Cluster, cp_namespace: str) -> None:
    """RollingUpdateDeployment: never more than replicas+maxSurge pods, never fewer than
    replicas-maxUnavailable available, at every observed moment."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment(
        "web", 4, strategy={"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}), ns)
    d = await wait_rolled_out(c, ns, "web")
    assert d["metadata"]["annotations"][REV] == "1"
    async with PodWatch(c, ns) as w:
        await set_image(c, ns, "web", "nginx:2")
        d = await until(lambda: rolled_out_gen(c, ns, "web", 2), timeout=60)
        await until(lambda: only_new_pods(w), timeout=30)
    assert d["metadata"]["annotations"][REV] == "2"
    assert w.samples, "the watch saw the rollout"
    assert max(total for total, _, _ in w.samples) <= 5
    # The first samples may precede the first Ready; after that availability never drops
    # below 3 (the hollow nodes make pods Ready in one step, so ready == available).
    assert min(ready for _, ready, _ in w.samples) >= 3
    rss = await replica_sets(c, ns)
    assert len(rss) == 2
    new = next(rs for rs in rss if rs["metadata"]["annotations"][REV] == "2")
    old = next(rs for rs in rss if rs["metadata"]["annotations"][REV] == "1")
    assert new["spec"]["replicas"] == 4 and old["spec"]["replicas"] == 0
    h = new["metadata"]["labels"]["pod-template-hash"]
    assert new["metadata"]["name"] == f"web-{h}"
    assert new["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
    assert new["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert cond(d, "Available")["reason"] == "MinimumReplicasAvailable"
    assert cond(d, "Progressing")["reason"] == "NewReplicaSetAvailable"

    async def scaling_recorded() -> bool:  # the recorder writes events after the scaling
        events, _ = await c.client.list_all("events", ns)
        msgs = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
        return (f"Scaled up replica set {new['metadata']['name']} from 0 to 1" in msgs
                and any(m.startswith(f"Scaled down replica set {old['metadata']['name']} "
                                     "from 4 to ") for m in msgs))
    await until(scaling_recorded, what="ScalingReplicaSet events of both replica sets")


async def rolled_out_gen(c: Cluster, ns: str, name: str, generation: int) -> Obj | None:
    d = await rolled_out(c, ns, name)
    return d if d and d["metadata"]["generation"] >= generation else None


async def wait_generation(c: Cluster, ns: str, name: str, generation: int) -> Obj:
    return await until(lambda: rolled_out_gen(c, ns, name, generation), timeout=60)


def only_new_pods(w: PodWatch) -> bool:
    """Old pods gone, terminating ones included."""
    return bool(w.samples) and len(w.samples[-1][2]) == 1 and w.samples[-1][0] == 4


async def test_recreate_deployment_should_delete_old_pods_and_create_new_ones(
        control_plane: Cluster, cp_namespace: str) -> None:
    """RecreateDeployment: old and new pods never exist at the same time."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("rec", 3, strategy={"type": "Recreate"}),
                          ns)
    await wait_rolled_out(c, ns, "rec")
    async with PodWatch(c, ns) as w:
        await set_image(c, ns, "rec", "nginx:2")
        await until(lambda: rolled_out_gen(c, ns, "rec", 2), timeout=60)
    assert all(len(by_hash) <= 1 for _, _, by_hash in w.samples), w.samples
    assert any(total == 0 for total, _, _ in w.samples)


async def test_deployment_should_support_rollover(control_plane: Cluster,
                                                  cp_namespace: str) -> None:
    """A new template while a rollout is stuck: the half-done ReplicaSet is scaled away."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment(
        "ro", 2, strategy={"type": "RollingUpdate",
                           "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}), ns)
    await wait_rolled_out(c, ns, "ro")
    # Revision 2 never becomes ready: the rollout stalls with one surge pod.
    await c.client.patch("deployments", "ro", {"spec": {"template": {"metadata": {
        "annotations": {"hollow.tinykube.io/never-ready": "true"}}}}}, ns)

    async def stalled() -> bool:
        rss = await replica_sets(c, ns)
        return len(rss) == 2 and any(rs["spec"]["replicas"] == 1 and rs["metadata"][
            "annotations"][REV] == "2" for rs in rss)
    await until(stalled, timeout=30)
    # Roll over to revision 3 (ready pods) before revision 2 finished.
    await c.client.patch("deployments", "ro", {"spec": {"template": {
        "metadata": {"annotations": {"hollow.tinykube.io/never-ready": None}},
        "spec": {"containers": [{"name": "app", "image": "nginx:3"}]}}}}, ns)
    d = await until(lambda: rolled_out_gen(c, ns, "ro", 3), timeout=60)
    assert d["metadata"]["annotations"][REV] == "3"
    rss = await replica_sets(c, ns)
    sizes = {rs["metadata"]["annotations"][REV]: rs["spec"]["replicas"] for rs in rss}
    assert sizes == {"1": 0, "2": 0, "3": 2}


async def test_deployment_should_support_proportional_scaling(control_plane: Cluster,
                                                              cp_namespace: str) -> None:
    """Scaling mid-rollout spreads the new replicas over the ReplicaSets by size."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment(
        "prop", 10, strategy={"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}), ns)
    await wait_rolled_out(c, ns, "prop")
    await c.client.patch("deployments", "prop", {"spec": {"template": {"metadata": {
        "annotations": {"hollow.tinykube.io/never-ready": "true"}}}}}, ns)

    async def stuck() -> list[Obj] | None:
        rss = await replica_sets(c, ns)
        d = await get(c, ns, "prop")
        sizes = sorted(rs["spec"]["replicas"] for rs in rss)
        ok = (sizes == [5, 8] and d["status"].get("observedGeneration") == 2
              and d["status"].get("availableReplicas") == 8)
        return rss if ok else None
    # Upstream's numbers: 10 replicas, surge 3, unavailable 2 → first RS 8, new RS 5 (13).
    await until(stuck, timeout=30)
    await c.client.patch("deployments", "prop", {"spec": {"replicas": 30}}, ns)

    async def scaled() -> bool:
        rss = await replica_sets(c, ns)
        by_rev = {rs["metadata"]["annotations"][REV]: rs for rs in rss}
        return (by_rev["1"]["spec"]["replicas"] == 20 and by_rev["2"]["spec"]["replicas"] == 13
                and all(rs["metadata"]["annotations"].get(
                    "deployment.kubernetes.io/desired-replicas") == "30" for rs in rss))
    # Upstream's e2e: 8 + 5 of 13 allowed grow to 20 + 13 of 33 (30 + surge 3).
    await until(scaled, timeout=30)


async def test_deployment_should_delete_old_replica_sets(control_plane: Cluster,
                                                         cp_namespace: str) -> None:
    """revisionHistoryLimit: only that many old (scaled-down) ReplicaSets are kept."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("hist", 1, revisionHistoryLimit=1), ns)
    for gen, image in enumerate(("nginx:2", "nginx:3", "nginx:4"), start=2):
        await wait_rolled_out(c, ns, "hist")
        await set_image(c, ns, "hist", image)
        await wait_generation(c, ns, "hist", gen)

    async def trimmed() -> list[str] | None:
        revs = sorted(rs["metadata"]["annotations"][REV] for rs in await replica_sets(c, ns))
        return revs if revs == ["3", "4"] else None
    await until(trimmed, timeout=30)


async def test_deployment_paused_no_rollout_but_scaling(control_plane: Cluster,
                                                        cp_namespace: str) -> None:
    """A paused Deployment does not roll out a new template but still scales."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("pz", 2), ns)
    await wait_rolled_out(c, ns, "pz")
    await c.client.patch("deployments", "pz", {"spec": {"paused": True}}, ns)
    await until(lambda: paused_cond(c, ns, "pz", "DeploymentPaused"), timeout=30)
    await set_image(c, ns, "pz", "nginx:2")
    await c.client.patch("deployments", "pz", {"spec": {"replicas": 3}}, ns)

    async def scaled() -> bool:
        rss = await replica_sets(c, ns)
        return len(rss) == 1 and rss[0]["spec"]["replicas"] == 3
    await until(scaled, timeout=30)
    d = await get(c, ns, "pz")
    assert d["metadata"]["annotations"][REV] == "1"
    await c.client.patch("deployments", "pz", {"spec": {"paused": False}}, ns)
    d = await until(lambda: rolled_out_gen(c, ns, "pz", 4), timeout=60)
    assert d["metadata"]["annotations"][REV] == "2"


async def paused_cond(c: Cluster, ns: str, name: str, reason: str) -> bool:
    return cond(await get(c, ns, name), "Progressing").get("reason") == reason


async def test_deployment_progress_deadline_exceeded(control_plane: Cluster,
                                                     cp_namespace: str) -> None:
    """Pods that never become ready: Progressing=False ProgressDeadlineExceeded."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment(
        "stuck", 1, progressDeadlineSeconds=2,
        pod_annotations={"hollow.tinykube.io/never-ready": "true"}), ns)

    async def timed_out() -> Obj | None:
        d = await get(c, ns, "stuck")
        return d if cond(d, "Progressing").get("reason") == "ProgressDeadlineExceeded" else None
    d = await until(timed_out, timeout=30)
    p = cond(d, "Progressing")
    assert p["status"] == "False"
    assert p["message"].endswith("has timed out progressing.")
    assert cond(d, "Available") == {**cond(d, "Available"), "status": "False",
                                    "reason": "MinimumReplicasUnavailable"}


async def test_deployment_scale_subresource(control_plane: Cluster,
                                            cp_namespace: str) -> None:
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("sc", 1), ns)
    await wait_rolled_out(c, ns, "sc")
    scale = await c.client.get("deployments", "sc", ns, subresource="scale")
    assert scale["spec"]["replicas"] == 1
    scale["spec"]["replicas"] = 3
    await c.client.update("deployments", scale, ns, subresource="scale")
    d = await until(lambda: rolled_out_gen(c, ns, "sc", 2), timeout=60)
    assert d["spec"]["replicas"] == 3
    rss = await replica_sets(c, ns)
    assert [rs["spec"]["replicas"] for rs in rss] == [3]


async def test_deployment_adopts_matching_replica_set(control_plane: Cluster,
                                                      cp_namespace: str) -> None:
    """An orphan ReplicaSet whose labels match is adopted (ownerReferences patched)."""
    c, ns = control_plane, cp_namespace
    d = deployment("adopt", 1)
    tmpl = d["spec"]["template"]
    await c.client.create("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "adopt-orphan", "labels": {"app": "adopt"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "adopt"}},
                 "template": tmpl}}, ns)
    await c.client.create("deployments", d, ns)

    async def adopted() -> Obj | None:
        # Adoption (the ownerReference) and the revision annotation are two writes, as
        # upstream's: wait for both.
        rs = await c.client.get("replicasets", "adopt-orphan", ns)
        refs = rs["metadata"].get("ownerReferences") or []
        owned = refs and refs[0]["name"] == "adopt" and refs[0]["controller"]
        return rs if owned and REV in (rs["metadata"].get("annotations") or {}) else None
    rs = await until(adopted, timeout=30)
    # Same template: it is the new ReplicaSet (revision 1), no second one is made.
    assert rs["metadata"]["annotations"][REV] == "1"
    await wait_rolled_out(c, ns, "adopt")
    assert len(await replica_sets(c, ns)) == 1


async def test_should_run_the_lifecycle_of_a_deployment(control_plane: Cluster,
                                                        cp_namespace: str) -> None:
    """Create, patch, read status, update status, delete (upstream's lifecycle test, minus
    the collection verbs other tests cover)."""
    c, ns = control_plane, cp_namespace
    await c.client.create("deployments", deployment("life", 1), ns)
    await wait_rolled_out(c, ns, "life")
    await c.client.patch("deployments", "life", {"metadata": {"labels": {"test": "patched"}},
                                                 "spec": {"replicas": 2}}, ns)
    d = await until(lambda: rolled_out_gen(c, ns, "life", 2), timeout=60)
    assert d["metadata"]["labels"]["test"] == "patched"
    st = await c.client.get("deployments", "life", ns)
    assert st["status"]["readyReplicas"] == 2
    await c.client.delete("deployments", "life", ns)
    with pytest.raises(errors.NotFound):
        await c.client.get("deployments", "life", ns)
