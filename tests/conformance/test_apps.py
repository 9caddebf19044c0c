"""Apps and the garbage collector: ReplicaSet/ReplicationController replicas, adoption, scale and
self-healing, cascading and orphaning deletes (tier api: the controllers alone do all of it,
whether or not the pods ever run), and a ReplicaSet serving on each replica and a Deployment's
rolling update and rollback (tier node: they need pods that run and become Ready).

Upstream: test/e2e/apps/{replica_set,rc,deployment}.go, test/e2e/apimachinery/garbage_collector.go.
"""

from __future__ import annotations

import pytest

from api import errors
from tests.conformance.framework import (
    BUSYBOX,
    SERVE_HOSTNAME,
    SERVE_PORT,
    Conformance,
    Obj,
    busybox_pod,
    container,
    controller_of,
    gone,
    pod_template,
    replicaset,
    until,
)

# Every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("lab")

TIMEOUT = 60.0


def sleeper_template(labels: Obj) -> Obj:
    return pod_template(labels, container("c", BUSYBOX, ["sleep", "3600"]))


async def owned_pods(c: Conformance, ns: str, owner_uid: str) -> list[Obj]:
    return [p for p in await c.pods(ns)
            if controller_of(p) == owner_uid and not p["metadata"].get("deletionTimestamp")]


async def wait_owned(c: Conformance, ns: str, owner_uid: str, count: int,
                     what: str) -> list[Obj]:
    async def check() -> list[Obj] | None:
        pods = await owned_pods(c, ns, owner_uid)
        return pods if len(pods) == count else None
    result: list[Obj] = await until(check, TIMEOUT, what=f"{count} pod(s) of {what}")
    return result


# --- tier api ---------------------------------------------------------------------------------

@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-apps] ReplicaSet should adopt matching pods on creation and release "
                      "no longer matching pods [Conformance]")
async def test_replicaset_adopts_and_releases(conformance: Conformance, ns: str) -> None:
    c = conformance
    labels = {"name": "pod-adoption-release"}
    orphan = await c.create("pods", busybox_pod("pod-adoption-release", "sleep 3600",
                                                labels=labels), ns)
    rs = await c.create("replicasets", replicaset("pod-adoption-release", 1,
                                                  sleeper_template(labels)), ns)
    uid = rs["metadata"]["uid"]

    async def adopted() -> bool:
        pod = await c.api.get("pods", "pod-adoption-release", ns)
        return controller_of(pod) == uid
    await until(adopted, TIMEOUT, what="the orphan pod adopted by the ReplicaSet")
    # Adopted, not replaced: the ReplicaSet's one replica is the orphan itself.
    (pod,) = await owned_pods(c, ns, uid)
    assert pod["metadata"]["uid"] == orphan["metadata"]["uid"]

    await c.api.patch("pods", "pod-adoption-release", {"metadata": {"labels": {"name": "x"}}}, ns)

    async def released() -> bool:
        pod = await c.api.get("pods", "pod-adoption-release", ns)
        return controller_of(pod) is None
    await until(released, TIMEOUT, what="the relabelled pod released by the ReplicaSet")
    (replacement,) = await wait_owned(c, ns, uid, 1, "the ReplicaSet after the release")
    assert replacement["metadata"]["name"] != "pod-adoption-release"


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-apps] ReplicaSet Replicaset should have a working scale subresource "
                      "[Conformance]")
async def test_replicaset_scale_subresource(conformance: Conformance, ns: str) -> None:
    c = conformance
    rs = await c.create("replicasets", replicaset("test-rs", 1, sleeper_template({"app": "rs"})),
                        ns)
    uid = rs["metadata"]["uid"]
    await wait_owned(c, ns, uid, 1, "test-rs")
    scale = await c.api.get("replicasets", "test-rs", ns, subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    # Unconditional, as upstream's: the controller may write the status meanwhile.
    scale["metadata"]["resourceVersion"] = ""
    scale["spec"]["replicas"] = 2
    await c.api.update("replicasets", scale, ns, subresource="scale")
    assert (await c.api.get("replicasets", "test-rs", ns))["spec"]["replicas"] == 2
    await wait_owned(c, ns, uid, 2, "test-rs scaled to 2")
    await c.api.patch("replicasets", "test-rs", {"spec": {"replicas": 3}}, ns,
                      subresource="scale")
    assert (await c.api.get("replicasets", "test-rs", ns, subresource="scale"))["spec"][
        "replicas"] == 3
    await wait_owned(c, ns, uid, 3, "test-rs scaled to 3")

    async def status_counts() -> bool:
        st = (await c.api.get("replicasets", "test-rs", ns)).get("status") or {}
        return st.get("replicas") == 3
    await until(status_counts, TIMEOUT, what="test-rs status.replicas == 3")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-apps] ReplicationController should get and update a "
                      "ReplicationController scale [Conformance]")
async def test_replicationcontroller_scale_and_self_heal(conformance: Conformance,
                                                        ns: str) -> None:
    """Scale through the subresource; then a deleted replica is replaced (the controller's
    self-healing, which upstream's RC and ReplicaSet tests rely on throughout)."""
    c = conformance
    rc = await c.create("replicationcontrollers",
                        replicaset("e2e-rc", 1, sleeper_template({"app": "e2e-rc"}),
                                   kind="ReplicationController"), ns)
    uid = rc["metadata"]["uid"]
    scale = await c.api.get("replicationcontrollers", "e2e-rc", ns, subresource="scale")
    assert scale["spec"]["replicas"] == 1
    scale["metadata"]["resourceVersion"] = ""  # unconditional, as upstream's
    scale["spec"]["replicas"] = 2
    await c.api.update("replicationcontrollers", scale, ns, subresource="scale")
    assert (await c.api.get("replicationcontrollers", "e2e-rc", ns))["spec"]["replicas"] == 2
    pods = await wait_owned(c, ns, uid, 2, "e2e-rc")
    victim = pods[0]["metadata"]["name"]
    await c.api.delete("pods", victim, ns, grace_period_seconds=0)

    async def healed() -> bool:
        names = {p["metadata"]["name"] for p in await owned_pods(c, ns, uid)}
        return len(names) == 2 and victim not in names
    await until(healed, TIMEOUT, what=f"e2e-rc replacing the deleted pod {victim}")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should delete pods created by rc "
                      "when not orphaning [Conformance]")
async def test_gc_deletes_pods_of_rc(conformance: Conformance, ns: str) -> None:
    c = conformance
    rc = await c.create("replicationcontrollers",
                        replicaset("simpletest.rc", 2, sleeper_template({"app": "gc-bg"}),
                                   kind="ReplicationController"), ns)
    await wait_owned(c, ns, rc["metadata"]["uid"], 2, "simpletest.rc")
    await c.api.delete("replicationcontrollers", "simpletest.rc", ns,
                       propagation_policy="Background")

    async def pods_gone() -> bool:
        return not await c.pods(ns, "app=gc-bg")
    await until(pods_gone, TIMEOUT, what="the RC's pods garbage-collected")
    assert await gone(c.api, "replicationcontrollers", "simpletest.rc", ns)


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should orphan pods created by rc if "
                      "delete options say so [Conformance]")
async def test_gc_orphans_pods_of_rc(conformance: Conformance, ns: str) -> None:
    c = conformance
    rc = await c.create("replicationcontrollers",
                        replicaset("simpletest.rc", 2, sleeper_template({"app": "gc-orphan"}),
                                   kind="ReplicationController"), ns)
    pods = await wait_owned(c, ns, rc["metadata"]["uid"], 2, "simpletest.rc")
    await c.api.delete("replicationcontrollers", "simpletest.rc", ns, propagation_policy="Orphan")
    await until(lambda: gone(c.api, "replicationcontrollers", "simpletest.rc", ns), TIMEOUT,
                what="the RC deleted")

    async def orphaned() -> bool:
        now = {p["metadata"]["name"]: p for p in await c.pods(ns, "app=gc-orphan")}
        return all(p["metadata"]["name"] in now and
                   not now[p["metadata"]["name"]]["metadata"].get("ownerReferences")
                   for p in pods)
    await until(orphaned, TIMEOUT, what="both pods kept, without ownerReferences")
    # ... and they stay: nothing collects an orphan.
    for p in pods:
        got = await c.api.get("pods", p["metadata"]["name"], ns)
        assert not got["metadata"].get("deletionTimestamp")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should keep the rc around until all "
                      "its pods are deleted if the deleteOptions says so [Conformance]")
async def test_gc_foreground_keeps_rc_until_pods_gone(conformance: Conformance, ns: str) -> None:
    c = conformance
    rc = await c.create("replicationcontrollers",
                        replicaset("simpletest.rc", 3, sleeper_template({"app": "gc-fg"}),
                                   kind="ReplicationController"), ns)
    await wait_owned(c, ns, rc["metadata"]["uid"], 3, "simpletest.rc")
    after = await c.api.delete("replicationcontrollers", "simpletest.rc", ns,
                               propagation_policy="Foreground")
    # Foreground: the owner stays, marked, while it has dependents.
    assert after["metadata"].get("deletionTimestamp")
    assert "foregroundDeletion" in (after["metadata"].get("finalizers") or [])

    async def rc_gone() -> bool:
        pods = await c.pods(ns, "app=gc-fg")
        try:
            await c.api.get("replicationcontrollers", "simpletest.rc", ns)
        except errors.NotFound:
            left = await c.pods(ns, "app=gc-fg")
            assert not pods and not left, \
                f"the RC went while its pods remained: {[p['metadata']['name'] for p in left]}"
            return True
        return False
    await until(rc_gone, TIMEOUT, interval=0.1, what="the RC gone after its pods")


@pytest.mark.conformance_api
@pytest.mark.upstream("[sig-api-machinery] Garbage collector should delete RS created by "
                      "deployment when not orphaning [Conformance]")
async def test_gc_deletes_rs_of_deployment(conformance: Conformance, ns: str) -> None:
    c = conformance
    d = await c.create("deployments", deployment("simpletest-deployment", 2,
                                                 sleeper_template({"app": "gc-dep"})), ns)

    async def rs_created() -> list[Obj] | None:
        rss = [r for r in (await c.api.list("replicasets", ns))["items"]
               if controller_of(r) == d["metadata"]["uid"]]
        return rss or None
    await until(rs_created, TIMEOUT, what="the Deployment's ReplicaSet")
    await c.api.delete("deployments", "simpletest-deployment", ns,
                       propagation_policy="Background")

    async def all_gone() -> bool:
        return not (await c.api.list("replicasets", ns))["items"] and \
            not await c.pods(ns, "app=gc-dep")
    await until(all_gone, TIMEOUT, what="the ReplicaSet and its pods garbage-collected")


def deployment(name: str, replicas: int, template: Obj, **spec: object) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": dict(template["metadata"]["labels"])},
                     "template": template, **spec}}


# --- tier node --------------------------------------------------------------------------------

@pytest.mark.conformance_node
@pytest.mark.upstream("[sig-apps] ReplicaSet should serve a basic image on each replica with a "
                      "public image [Conformance]")
async def test_replicaset_serves_on_each_replica(conformance: Conformance, ns: str) -> None:
    """Every replica runs, becomes Ready and answers with its own name. Each is asked from a
    busybox sidecar in its own pod (localhost: the pod's network namespace), so that this
    needs a node, not the overlay; tier network asks across nodes."""
    c = conformance
    labels = {"name": "my-hostname-basic"}
    template = pod_template(labels,
                            container("c", SERVE_HOSTNAME,
                                      ports=[{"containerPort": SERVE_PORT}]),
                            container("client", BUSYBOX, ["sleep", "3600"]))
    rs = await c.create("replicasets", replicaset("my-hostname-basic", 2, template), ns)
    pods = await wait_owned(c, ns, rs["metadata"]["uid"], 2, "my-hostname-basic")
    for p in pods:
        name = p["metadata"]["name"]
        await c.wait_running(ns, name)

        async def answers(name: str = name) -> bool:
            out = await c.http_from_pod(ns, name, f"http://127.0.0.1:{SERVE_PORT}/",
                                        container="client")
            return out == name
        await until(answers, TIMEOUT, interval=1, what=f"{name} answering its name")

    async def ready() -> bool:
        st = (await c.api.get("replicasets", "my-hostname-basic", ns)).get("status") or {}
        return st.get("readyReplicas") == 2 and st.get("availableReplicas") == 2
    await until(ready, TIMEOUT, what="ReplicaSet status: 2 ready, 2 available")


@pytest.mark.conformance_node
@pytest.mark.upstream("[sig-apps] Deployment RollingUpdateDeployment should delete old pods and "
                      "create new ones [Conformance]")
async def test_deployment_rolling_update_and_rollback(conformance: Conformance, ns: str) -> None:
    """A template change rolls out through a new ReplicaSet (revision 2) and the old pods go;
    then `tkctl rollout undo` (kubectl's: the old template copied back) scales the first
    ReplicaSet up again as revision 3, without a third ReplicaSet. Upstream has no conformance
    test of its own for the rollback since extensions/v1beta1's rollback subresource went;
    it is checked here, after the rolling update it builds on."""
    c = conformance
    labels = {"name": "sample-pod"}
    template = pod_template(labels, container("c", SERVE_HOSTNAME,
                                              ports=[{"containerPort": SERVE_PORT}]))
    await c.create("deployments", deployment("test-rolling-update-deployment", 2, template), ns)
    name = "test-rolling-update-deployment"

    async def rolled_out(revision: str) -> dict[str, Obj] | None:
        d = await c.api.get("deployments", name, ns)
        st = d.get("status") or {}
        if st.get("observedGeneration") != d["metadata"]["generation"] or \
                st.get("updatedReplicas") != 2 or st.get("replicas") != 2 or \
                st.get("availableReplicas") != 2:
            return None
        rss = {r["metadata"]["annotations"].get("deployment.kubernetes.io/revision", ""): r
               for r in (await c.api.list("replicasets", ns))["items"]}
        current = rss.get(revision)
        if current is None or (current.get("status") or {}).get("readyReplicas") != 2:
            return None
        if any((r.get("spec") or {}).get("replicas") for k, r in rss.items() if k != revision):
            return None
        pods = await c.pods(ns, "name=sample-pod")
        if {controller_of(p) for p in pods} != {current["metadata"]["uid"]}:
            return None  # an old pod still terminating
        return rss
    first = await until(lambda: rolled_out("1"), TIMEOUT * 2, interval=0.5,
                        what="revision 1 rolled out")
    rs1 = first["1"]["metadata"]["uid"]
    old_pods = {p["metadata"]["name"] for p in await c.pods(ns, "name=sample-pod")}

    # A merge patch replaces the containers list: the whole container, with an env var more.
    await c.api.patch("deployments", name, {"spec": {"template": {"spec": {"containers": [
        {**container("c", SERVE_HOSTNAME, ports=[{"containerPort": SERVE_PORT}]),
         "env": [{"name": "VERSION", "value": "2"}]}]}}}}, ns)
    second = await until(lambda: rolled_out("2"), TIMEOUT * 2, interval=0.5,
                         what="revision 2 rolled out")
    assert second["2"]["metadata"]["uid"] != rs1
    new_pods = {p["metadata"]["name"] for p in await c.pods(ns, "name=sample-pod")}
    assert not old_pods & new_pods, "old pods survived the rolling update"

    code, _, err = await c.tkctl("rollout", "undo", "-n", ns, f"deployment/{name}")
    assert code == 0, f"tkctl rollout undo: {err}"
    third = await until(lambda: rolled_out("3"), TIMEOUT * 2, interval=0.5,
                        what="the rollback rolled out as revision 3")
    assert third["3"]["metadata"]["uid"] == rs1, "the rollback did not reuse the first RS"
    assert len((await c.api.list("replicasets", ns))["items"]) == 2
    env = (await c.api.get("deployments", name, ns))["spec"]["template"]["spec"][
        "containers"][0].get("env")
    assert not env, f"the rolled-back template still has {env}"
