"""endpoints.kubernetes.io/last-change-trigger-time, written by the real endpoints controller.

Against a real etcd + apiserver + tk-controller-manager running only the endpoints controller;
pods get their IPs and Ready transitions by hand (the kubelet's part), with chosen times, so the
annotation's value is exact.
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
ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tt_cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        c.start_controller_manager("--controllers", "endpoint", "--no-leader-elect")
        yield c


async def set_ready(c: ApiClient, ns: str, name: str, ip: str, ready: bool, when: str) -> None:
    pod = await c.get("pods", name, ns)
    pod["status"].update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                          "conditions": [{"type": "Ready", "status": str(ready),
                                          "lastTransitionTime": when}]})
    await c.update_status("pods", pod, ns)


async def endpoints(c: ApiClient, ns: str, name: str) -> dict[str, Any] | None:
    try:
        return await c.get("endpoints", name, ns)
    except errors.NotFound:
        return None


async def test_trigger_time_is_service_creation_then_the_pods_ready_transition(
        tt_cluster: Cluster) -> None:
    c = tt_cluster.client
    ns = await tt_cluster.new_namespace("eptt-")
    created = await c.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}, ns)
    svc_time = created["metadata"]["creationTimestamp"]

    async def annotation_is(want: str, ready_ips: list[str]) -> bool:
        ep = await endpoints(c, ns, "web")
        if ep is None:
            return False
        ips = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
        return ips == ready_ips and (ep["metadata"].get("annotations") or {}).get(
            ANNOTATION) == want

    # First sync of a new Service: its creation time, on an Endpoints with no addresses.
    await until(lambda: annotation_is(svc_time, []), timeout=20, what="first annotation")

    await c.create("pods", {"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": "w1", "labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "c", "image": "pause"}]}}, ns)
    await c.bind(ns, "w1", "node-1")
    await set_ready(c, ns, "w1", "10.10.9.1", True, "2030-01-01T00:00:05Z")
    await until(lambda: annotation_is("2030-01-01T00:00:05Z", ["10.10.9.1"]), timeout=20,
                what="annotation = the pod's Ready transition")

    await set_ready(c, ns, "w1", "10.10.9.1", False, "2030-01-01T00:00:09Z")
    await until(lambda: annotation_is("2030-01-01T00:00:09Z", []), timeout=20,
                what="annotation = the pod's unready transition")
