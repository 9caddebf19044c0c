"""tk-hollow-nodes against a real etcd + apiserver: nodes register, heartbeat, run bound pods,
delete pods marked for deletion, and survive their own restart."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from harness.cluster import Cluster, Component
from harness.objects import condition
from harness.wait import gone, until

pytestmark = pytest.mark.integration

PREFIX = "hn-"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hollow() -> AsyncIterator[tuple[Cluster, Component]]:
    async with Cluster() as c:
        comp = c.start_hollow_nodes(2, "--name-prefix", PREFIX, "--lease-interval", "0.5",
                                    "--cpu", "2", "--memory", "4Gi", "--pods", "20",
                                    "--node-labels", "zone=a")
        yield c, comp


async def ready_node(c: Cluster, name: str) -> dict[str, Any] | None:
    try:
        node = await c.client.get("nodes", name)
    except errors.NotFound:
        return None
    return node if condition(node, "Ready").get("status") == "True" else None


async def make_pod(c: Cluster, ns: str, name: str, node: str,
                   annotations: dict[str, str] | None = None, policy: str = "Always",
                   ) -> dict[str, Any]:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "annotations": annotations or {}},
           "spec": {"containers": [{"name": "app", "image": "busybox"}],
                    "restartPolicy": policy}}
    await c.client.create("pods", pod, ns)
    await c.client.bind(ns, name, node)
    return pod


async def pod_where(c: Cluster, ns: str, name: str, check: Any, timeout: float = 30) -> Any:
    async def probe() -> Any:
        p = await c.client.get("pods", name, ns)
        return p if check(p) else None
    return await until(probe, timeout=timeout, what=f"pod {name}")


def running_ready(p: dict[str, Any]) -> bool:
    return (p["status"].get("phase") == "Running"
            and condition(p, "Ready").get("status") == "True")


async def test_nodes_register_with_capacity_conditions_and_addresses(
        hollow: tuple[Cluster, Component]) -> None:
    c, _ = hollow
    node = await until(lambda: ready_node(c, f"{PREFIX}0"), timeout=30, what="node ready")
    st = node["status"]
    assert st["capacity"]["cpu"] == "2" and st["allocatable"]["memory"] == "4Gi"
    assert st["allocatable"]["pods"] == "20"
    for type_ in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert condition(node, type_)["status"] == "False"
    assert condition(node, "Ready")["reason"] == "KubeletReady"
    kinds = {a["type"]: a["address"] for a in st["addresses"]}
    assert kinds["Hostname"] == f"{PREFIX}0" and kinds["InternalIP"].startswith("10.254.")
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == f"{PREFIX}0"
    assert labels["kubernetes.io/os"] == "linux" and labels["zone"] == "a"
    assert st["nodeInfo"]["kubeletVersion"] == "hollow"


async def test_leases_are_renewed_in_kube_node_lease(hollow: tuple[Cluster, Component]) -> None:
    c, _ = hollow
    lease = await until(lambda: _lease(c, f"{PREFIX}1"), timeout=30, what="lease")
    assert lease["spec"]["holderIdentity"] == f"{PREFIX}1"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
    first = lease["spec"]["renewTime"]

    async def renewed() -> bool:
        later = await c.client.get("leases", f"{PREFIX}1", "kube-node-lease")
        return bool(later["spec"]["renewTime"] > first)
    await until(renewed, timeout=15, what="lease renewed")


async def _lease(c: Cluster, name: str) -> dict[str, Any] | None:
    try:
        return await c.client.get("leases", name, "kube-node-lease")
    except errors.NotFound:
        return None


async def test_bound_pod_runs_and_is_deleted_gracefully(hollow: tuple[Cluster, Component]) -> None:
    c, _ = hollow
    ns = await c.new_namespace()
    await make_pod(c, ns, "web", f"{PREFIX}0")
    p = await pod_where(c, ns, "web", running_ready)
    st = p["status"]
    assert st["podIP"] and st["hostIP"].startswith("10.254.")
    assert st["containerStatuses"][0]["state"]["running"]
    await make_pod(c, ns, "web2", f"{PREFIX}0")
    p2 = await pod_where(c, ns, "web2", running_ready)
    assert p2["status"]["podIP"] != st["podIP"]
    await c.client.delete("pods", "web", ns)  # graceful: the node confirms it
    await until(lambda: gone(c.client, "pods", "web", ns), timeout=30,
                what="pod deleted by its node")


async def test_annotations_steer_readiness_and_exit(hollow: tuple[Cluster, Component]) -> None:
    c, _ = hollow
    ns = await c.new_namespace()
    await make_pod(c, ns, "slow", f"{PREFIX}1", {"hollow.tinykube.io/ready-after": "2"})
    await make_pod(c, ns, "never", f"{PREFIX}1", {"hollow.tinykube.io/never-ready": "true"})
    await make_pod(c, ns, "job-ok", f"{PREFIX}1", {"hollow.tinykube.io/exit": "0"}, "Never")
    await make_pod(c, ns, "job-bad", f"{PREFIX}1", {"hollow.tinykube.io/exit": "2"}, "Never")
    await make_pod(c, ns, "crash", f"{PREFIX}1", {"hollow.tinykube.io/exit": "1"})
    slow = await pod_where(c, ns, "slow", lambda p: p["status"].get("phase") == "Running")
    assert condition(slow, "Ready")["status"] == "False"
    await pod_where(c, ns, "slow", running_ready)
    # Its own status write: "slow" being Ready says nothing about whether "never" has one yet.
    never = await pod_where(c, ns, "never", lambda p: p["status"].get("phase") == "Running")
    assert condition(never, "Ready")["status"] == "False"
    await pod_where(c, ns, "job-ok", lambda p: p["status"].get("phase") == "Succeeded")
    await pod_where(c, ns, "job-bad", lambda p: p["status"].get("phase") == "Failed")
    crash = await pod_where(c, ns, "crash", lambda p: bool(p["status"].get("containerStatuses")))
    cs = crash["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" and cs["restartCount"] >= 1


async def test_node_set_unknown_is_reported_ready_again(hollow: tuple[Cluster, Component]) -> None:
    c, _ = hollow
    node = await until(lambda: ready_node(c, f"{PREFIX}1"), timeout=30)
    node["status"]["conditions"] = [
        {**cnd, "status": "Unknown", "reason": "NodeStatusUnknown"}
        for cnd in node["status"]["conditions"]]
    await c.client.update_status("nodes", node)
    await until(lambda: ready_node(c, f"{PREFIX}1"), timeout=30, what="Ready again")


async def test_restart_reuses_nodes_and_pod_addresses(hollow: tuple[Cluster, Component]) -> None:
    c, comp = hollow
    ns = await c.new_namespace()
    await make_pod(c, ns, "keep", f"{PREFIX}0")
    before = await pod_where(c, ns, "keep", running_ready)
    uid = (await c.client.get("nodes", f"{PREFIX}0"))["metadata"]["uid"]
    comp.kill()
    comp.start()
    await make_pod(c, ns, "fresh", f"{PREFIX}0")
    fresh = await pod_where(c, ns, "fresh", running_ready)
    after = await c.client.get("pods", "keep", ns)
    assert after["status"]["podIP"] == before["status"]["podIP"]
    assert fresh["status"]["podIP"] != before["status"]["podIP"]
    assert (await c.client.get("nodes", f"{PREFIX}0"))["metadata"]["uid"] == uid
    assert comp.running


def test_bad_flags_are_one_line_exit_2() -> None:
    for args, needle in ((["--count", "0"], "--count"), (["--count", "1", "--cpu", "lots"],
                                                         "--cpu"),
                         (["--count", "1", "--register-with-taints", "a=b"],
                          "--register-with-taints")):
        r = subprocess.run([sys.executable, "-m", "harness.hollow_nodes", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
