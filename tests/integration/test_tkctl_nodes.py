"""tkctl cordon / uncordon / drain / scale / get events against a real cluster with hollow
nodes: `python -m tkctl` as a subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from harness.cluster import Cluster
from harness.objects import pod
from harness.wait import until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def nodes_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "nodelifecycle", "--node-monitor-period",
                                   "0.5")
        c.start_hollow_nodes(3, "--name-prefix", "tn-", "--lease-interval", "1")
        # Ready, not merely created: until its first status is posted the hollow node is still
        # registering (and writing the Node) while a test cordons it.
        await c.wait_nodes_ready(3)
        yield c


async def tk(c: Cluster, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "", "TINYKUBE_CONFIG": ""}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tkctl", "--kubeconfig", c.kubeconfig, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def bound_pod(c: Cluster, ns: str, name: str, node: str, *, owner: str | None = "ReplicaSet",
                    annotations: dict[str, str] | None = None,
                    volumes: list[dict[str, Any]] | None = None) -> None:
    spec: dict[str, Any] = {"volumes": volumes} if volumes else {}
    p = pod(name, image="x", annotations=annotations, **spec)
    if owner:
        p["metadata"]["ownerReferences"] = [{
            "apiVersion": "apps/v1", "kind": owner, "name": "owner",
            "uid": "00000000-0000-0000-0000-000000000001", "controller": True}]
    await c.client.create("pods", p, ns)
    await c.client.bind(ns, name, node)


async def test_cordon_and_uncordon(nodes_cluster: Cluster) -> None:
    c = nodes_cluster
    code, out, err = await tk(c, "cordon", "tn-0")
    assert (code, out) == (0, "node/tn-0 cordoned\n"), err
    node = await c.client.get("nodes", "tn-0")
    assert node["spec"]["unschedulable"] is True
    code, out, err = await tk(c, "cordon", "tn-0")
    assert (code, out) == (0, "node/tn-0 already cordoned\n"), err

    async def tainted() -> bool:
        n = await c.client.get("nodes", "tn-0")
        return any(t["key"] == "node.kubernetes.io/unschedulable"
                   for t in n["spec"].get("taints") or [])
    await until(tainted, timeout=60, what="unschedulable taint")

    code, out, err = await tk(c, "uncordon", "tn-0")
    assert (code, out) == (0, "node/tn-0 uncordoned\n"), err
    assert not (await c.client.get("nodes", "tn-0"))["spec"].get("unschedulable")
    code, out, err = await tk(c, "uncordon", "tn-0")
    assert (code, out) == (0, "node/tn-0 already uncordoned\n"), err

    async def untainted() -> bool:
        n = await c.client.get("nodes", "tn-0")
        return not any(t["key"] == "node.kubernetes.io/unschedulable"
                       for t in n["spec"].get("taints") or [])
    await until(untainted, timeout=60, what="unschedulable taint removed")
    assert not (await c.client.get("nodes", "tn-0"))["spec"].get("unschedulable")
    code, _, err = await tk(c, "cordon", "no-such-node")
    assert code == 1 and 'nodes "no-such-node" not found' in err


async def test_drain_refuses_then_evicts_with_force(nodes_cluster: Cluster) -> None:
    c = nodes_cluster
    ns = await c.new_namespace()
    await bound_pod(c, ns, "managed", "tn-1")
    await bound_pod(c, ns, "bare", "tn-1", owner=None)
    await bound_pod(c, ns, "scratch", "tn-1", volumes=[{"name": "v", "emptyDir": {}}])
    await bound_pod(c, ns, "daemon", "tn-1", owner="DaemonSet")
    await bound_pod(c, ns, "static", "tn-1", owner=None,
                    annotations={"kubernetes.io/config.mirror": "x"})

    code, out, err = await tk(c, "drain", "tn-1")
    assert code == 1
    assert out == "node/tn-1 cordoned\n"
    assert 'error: unable to drain node "tn-1" due to error: [' in err
    assert f"cannot delete Pods declare no controller (use --force to override): {ns}/bare" in err
    assert ("cannot delete Pods with local storage (use --delete-emptydir-data to override): "
            f"{ns}/scratch") in err
    assert ("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): "
            f"{ns}/daemon") in err
    assert "There are pending nodes to be drained:\n tn-1\n" in err
    assert (await c.client.get("pods", "managed", ns))["metadata"].get("deletionTimestamp") \
        is None  # nothing evicted when anything is refused

    code, out, err = await tk(c, "drain", "tn-1", "--force", "--ignore-daemonsets",
                              "--delete-emptydir-data", "--timeout", "60s")
    assert code == 0, err
    assert out.splitlines()[0] == "node/tn-1 already cordoned"
    assert out.splitlines()[-1] == "node/tn-1 drained"
    assert {f"pod/{n} evicted" for n in ("managed", "bare", "scratch")} <= set(out.splitlines())
    warning = next(line for line in err.splitlines() if line.startswith("Warning: "))
    assert f"ignoring DaemonSet-managed Pods: {ns}/daemon" in warning
    assert f"deleting Pods that declare no controller: {ns}/bare" in warning
    assert f"evicting pod {ns}/managed" in err
    left = {p["metadata"]["name"] for p in (await c.client.list("pods", ns))["items"]}
    assert left == {"daemon", "static"}
    await tk(c, "uncordon", "tn-1")


async def test_drain_times_out_on_a_pod_that_does_not_go(nodes_cluster: Cluster) -> None:
    c = nodes_cluster
    ns = await c.new_namespace()
    # A finalizer keeps the pod around after its node confirmed the deletion.
    await c.client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "stuck", "finalizers": ["example.com/hold"]},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}, ns)
    await c.client.bind(ns, "stuck", "tn-2")
    code, _, err = await tk(c, "drain", "tn-2", "--force", "--timeout", "2s")
    assert code == 1
    assert (f'error when waiting for pod "stuck" in namespace "{ns}" to terminate: '
            "global timeout reached: 2s") in err
    await c.client.patch("pods", "stuck", {"metadata": {"finalizers": None}}, ns)
    await tk(c, "uncordon", "tn-2")


async def test_scale(nodes_cluster: Cluster) -> None:
    c = nodes_cluster
    ns = await c.new_namespace()
    await c.client.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}}, ns)
    code, out, _ = await tk(c, "-n", ns, "scale", "deployment/web", "--replicas", "3")
    assert (code, out) == (0, "deployment.apps/web scaled\n")
    assert (await c.client.get("deployments", "web", ns))["spec"]["replicas"] == 3
    code, _, err = await tk(c, "-n", ns, "scale", "deploy", "web", "--replicas", "5",
                            "--current-replicas", "2")
    assert code == 1 and err == "error: Expected replicas to be 2, was 3\n"
    code, out, _ = await tk(c, "-n", ns, "scale", "deploy", "web", "--replicas=0",
                            "--current-replicas=3")
    assert (code, out) == (0, "deployment.apps/web scaled\n")
    assert (await c.client.get("deployments", "web", ns))["spec"]["replicas"] == 0
    rv = (await c.client.get("deployments", "web", ns))["metadata"]["resourceVersion"]
    code, _, err = await tk(c, "-n", ns, "scale", "deploy/web", "--replicas=2",
                            "--resource-version=1")
    assert code == 1 and err == f"error: Expected resource version to be 1, was {rv}\n"
    code, out, err = await tk(c, "-n", ns, "scale", "deploy/web", "--replicas=2",
                              f"--resource-version={rv}")
    assert (code, out) == (0, "deployment.apps/web scaled\n"), err
    code, _, err = await tk(c, "-n", ns, "scale", "deployment/web")
    assert code == 1 and "--replicas=COUNT flag is required" in err
    code, _, err = await tk(c, "-n", ns, "scale", "deployment/ghost", "--replicas", "1")
    assert code == 1 and 'deployments.apps "ghost" not found' in err
    code, _, err = await tk(c, "-n", ns, "scale", "pod/x", "--replicas", "1")
    assert code == 1 and 'cannot scale pods "x"' in err


async def test_get_events_sorted_by_last_timestamp(nodes_cluster: Cluster) -> None:
    c = nodes_cluster
    ns = await c.new_namespace()
    for name, ts in (("a-late", "2025-01-01T00:00:30Z"), ("b-early", "2025-01-01T00:00:10Z"),
                     ("c-middle", "2025-01-01T00:00:20Z")):
        await c.client.create("events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
            "reason": "Test", "message": name, "type": "Normal", "count": 1,
            "firstTimestamp": ts, "lastTimestamp": ts,
            "source": {"component": "test"}}, ns)
    code, out, err = await tk(c, "-n", ns, "get", "events", "-o", "name")
    assert code == 0, err
    assert out.split() == ["event/b-early", "event/c-middle", "event/a-late"]
    code, out, _ = await tk(c, "-n", ns, "get", "events", "-o", "name", "--sort-by",
                            "{.metadata.name}")
    assert out.split() == ["event/a-late", "event/b-early", "event/c-middle"]
    code, _, err = await tk(c, "-n", ns, "get", "events", "--sort-by", "metadata")
    assert code == 1 and "--sort-by" in err
