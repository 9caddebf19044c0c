"""The endpoints controller against a real etcd + apiserver + tk-controller-manager.

Its own cluster runs only the endpoints controller; pods get their IPs and readiness by hand
(the kubelet's part), so every case is exact. Names follow test/e2e/network/service.go.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from api import errors
from client.apiclient import ApiClient
from harness.cluster import Cluster
from harness.wait import until

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ep_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "endpoint", "--no-leader-elect")
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def ns(ep_cluster: Cluster) -> str:
    return await ep_cluster.new_namespace("ep-")


def service(name: str, ports: list[dict[str, Any]], selector: dict[str, str] | None,
            **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": ports, **({"selector": selector} if selector else {}), **spec}}


async def run_pod(c: ApiClient, ns: str, name: str, ip: str, labels: dict[str, str],
                  ports: list[dict[str, Any]], ready: bool = True) -> dict[str, Any]:
    """Create a pod and report it Running with `ip` (the scheduler's and kubelet's part)."""
    await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": name, "labels": labels},
                            "spec": {"containers": [{"name": "c", "image": "pause",
                                                     "ports": ports}]}}, ns)
    await c.bind(ns, name, "node-1")
    return await set_ready(c, ns, name, ip, ready)


async def set_ready(c: ApiClient, ns: str, name: str, ip: str, ready: bool) -> dict[str, Any]:
    pod = await c.get("pods", name, ns)
    pod["status"].update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                          "conditions": [{"type": "Ready",
                                          "status": "True" if ready else "False"}]})
    return await c.update_status("pods", pod, ns)


async def subsets(c: ApiClient, ns: str, name: str) -> list[dict[str, Any]] | None:
    try:
        ep = await c.get("endpoints", name, ns)
    except errors.NotFound:
        return None
    result: list[dict[str, Any]] = ep.get("subsets") or []
    return result


def summary(subs: list[dict[str, Any]] | None) -> set[tuple[str, str, int]]:
    """{(ip, "ready"|"notReady", port)} of an Endpoints' subsets."""
    out = set()
    for s in subs or []:
        for field, kind in (("addresses", "ready"), ("notReadyAddresses", "notReady")):
            for a in s.get(field) or []:
                for p in s.get("ports") or [{"port": 0}]:
                    out.add((a["ip"], kind, p["port"]))
    return out


async def wait_summary(c: ApiClient, ns: str, name: str,
                       want: set[tuple[str, str, int]]) -> None:
    async def check() -> bool:
        return summary(await subsets(c, ns, name)) == want
    await until(check, timeout=20, what=f"endpoints {name} = {sorted(want)}")


async def test_should_serve_a_basic_endpoint_from_pods(ep_cluster: Cluster, ns: str) -> None:
    c = ep_cluster.client
    await c.create("services", service("endpoint-test2", [{"port": 80, "targetPort": 8080}],
                                       {"name": "endpoint-test2"}), ns)
    await until(lambda: _exists(c, ns, "endpoint-test2"), what="empty Endpoints created")
    assert await subsets(c, ns, "endpoint-test2") == []
    labels = {"name": "endpoint-test2"}
    pod1 = await run_pod(c, ns, "pod1", "10.10.0.1", labels, [{"containerPort": 8080}])
    await wait_summary(c, ns, "endpoint-test2", {("10.10.0.1", "ready", 8080)})
    (sub,) = await subsets(c, ns, "endpoint-test2") or []
    assert sub["addresses"][0]["targetRef"] == {
        "kind": "Pod", "namespace": ns, "name": "pod1", "uid": pod1["metadata"]["uid"]}
    assert sub["addresses"][0]["nodeName"] == "node-1"
    await run_pod(c, ns, "pod2", "10.10.0.2", labels, [{"containerPort": 8080}])
    await wait_summary(c, ns, "endpoint-test2", {("10.10.0.1", "ready", 8080),
                                                 ("10.10.0.2", "ready", 8080)})
    # Not ready: moves to notReadyAddresses. Deleted: gone.
    await set_ready(c, ns, "pod1", "10.10.0.1", ready=False)
    await wait_summary(c, ns, "endpoint-test2", {("10.10.0.1", "notReady", 8080),
                                                 ("10.10.0.2", "ready", 8080)})
    await c.delete("pods", "pod2", ns, grace_period_seconds=0)
    await wait_summary(c, ns, "endpoint-test2", {("10.10.0.1", "notReady", 8080)})
    # A pod that stops matching leaves.
    await c.patch("pods", "pod1", {"metadata": {"labels": {"name": "other"}}}, ns)
    await wait_summary(c, ns, "endpoint-test2", set())


async def _exists(c: ApiClient, ns: str, name: str) -> bool:
    return await subsets(c, ns, name) is not None


async def test_should_serve_multiport_endpoints_from_pods(ep_cluster: Cluster, ns: str) -> None:
    c = ep_cluster.client
    ports = [{"name": "portname1", "port": 80, "targetPort": "svc1"},
             {"name": "portname2", "port": 81, "targetPort": "svc2"}]
    await c.create("services", service("multi-endpoint-test", ports,
                                       {"name": "multi-endpoint-test"}), ns)
    labels = {"name": "multi-endpoint-test"}
    await run_pod(c, ns, "pod1", "10.10.1.1", labels,
                  [{"name": "svc1", "containerPort": 100}])
    await wait_summary(c, ns, "multi-endpoint-test", {("10.10.1.1", "ready", 100)})
    await run_pod(c, ns, "pod2", "10.10.1.2", labels,
                  [{"name": "svc2", "containerPort": 101}])
    await wait_summary(c, ns, "multi-endpoint-test", {("10.10.1.1", "ready", 100),
                                                      ("10.10.1.2", "ready", 101)})
    subs = await subsets(c, ns, "multi-endpoint-test") or []
    assert sorted((s["ports"][0]["name"], s["ports"][0]["port"]) for s in subs) == [
        ("portname1", 100), ("portname2", 101)]
    # A third pod serving both named ports, on other numbers: a subset of its own.
    await run_pod(c, ns, "pod3", "10.10.1.3", labels,
                  [{"name": "svc1", "containerPort": 200}, {"name": "svc2", "containerPort": 201}])
    await wait_summary(c, ns, "multi-endpoint-test", {
        ("10.10.1.1", "ready", 100), ("10.10.1.2", "ready", 101),
        ("10.10.1.3", "ready", 200), ("10.10.1.3", "ready", 201)})


async def test_publish_not_ready_addresses_and_hostname(ep_cluster: Cluster, ns: str) -> None:
    c = ep_cluster.client
    await c.create("services", service("headless", [{"port": 80}], {"app": "h"},
                                       clusterIP="None", publishNotReadyAddresses=True), ns)
    await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "h-0", "labels": {"app": "h"}},
                            "spec": {"hostname": "h-0", "subdomain": "headless",
                                     "containers": [{"name": "c", "image": "pause"}]}}, ns)
    await c.bind(ns, "h-0", "node-1")
    await set_ready(c, ns, "h-0", "10.10.2.1", ready=False)
    await wait_summary(c, ns, "headless", {("10.10.2.1", "ready", 80)})
    ep = await c.get("endpoints", "headless", ns)
    assert ep["subsets"][0]["addresses"][0]["hostname"] == "h-0"
    assert ep["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}


async def test_services_without_selector_keep_user_endpoints_and_deletion_cleans_up(
        ep_cluster: Cluster, ns: str) -> None:
    c = ep_cluster.client
    await c.create("services", service("external", [{"port": 80}], None), ns)
    mine = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "external"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 80}]}]}
    await c.create("endpoints", mine, ns)
    # Give the controller every chance to act on it, then check it did not.
    await c.create("services", service("marker", [{"port": 80}], {"app": "m"}), ns)
    await until(lambda: _exists(c, ns, "marker"), what="marker endpoints")
    assert summary(await subsets(c, ns, "external")) == {("192.0.2.10", "ready", 80)}

    await c.delete("services", "marker", ns)

    async def marker_gone() -> bool:
        return await subsets(c, ns, "marker") is None
    await until(marker_gone, what="endpoints deleted with their service")
    await c.create("services", service("resync", [{"port": 80}], {"app": "r"}), ns)
    await until(lambda: _exists(c, ns, "resync"), what="endpoints created")
    await c.delete("endpoints", "resync", ns)
    await until(lambda: _exists(c, ns, "resync"), what="endpoints recreated after deletion")


async def test_unchanged_endpoints_are_not_rewritten(ep_cluster: Cluster, ns: str) -> None:
    c = ep_cluster.client
    await c.create("services", service("steady", [{"port": 80}], {"app": "s"}), ns)
    await run_pod(c, ns, "s1", "10.10.3.1", {"app": "s"}, [])
    await wait_summary(c, ns, "steady", {("10.10.3.1", "ready", 80)})
    ep = await c.get("endpoints", "steady", ns)
    # Changes the Endpoints do not show: an annotation on the pod and on the service, an
    # extra label that keeps the pod selected. Then a fence: once the controller has synced
    # a service created after them, it has seen them too.
    await c.patch("pods", "s1", {"metadata": {"annotations": {"x": "y"}}}, ns)
    await c.patch("services", "steady", {"metadata": {"annotations": {"a": "b"}}}, ns)
    await c.patch("pods", "s1", {"metadata": {"labels": {"app": "s", "extra": "1"}}}, ns)
    await c.create("services", service("fence", [{"port": 80}], {"app": "f"}), ns)
    await until(lambda: _exists(c, ns, "fence"), what="fence endpoints")
    after = await c.get("endpoints", "steady", ns)
    assert after["metadata"]["resourceVersion"] == ep["metadata"]["resourceVersion"]
