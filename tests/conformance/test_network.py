"""Cluster networking: pod to pod across nodes (the overlay), Services by ClusterIP from a pod
and by NodePort from the test machine (the proxy), ClientIP session affinity. Tier network:
at least two Ready, schedulable nodes; pods are placed on chosen nodes with spec.nodeName, as
upstream's netserver pods are.

DNS is not part of tinykube, so upstream's DNS tests and the "by service name" halves of the
Service tests have no counterpart here (not skipped: absent).

The NodePort test reaches every node's InternalIP from the machine running pytest: a cluster
whose node addresses that machine cannot route to fails it, as upstream's fails when the e2e
runner cannot reach the nodes.

Upstream: test/e2e/common/network/networking.go, test/e2e/network/service.go,
test/e2e/apps/rc.go.
"""

from __future__ import annotations

import asyncio
import urllib.request

import pytest

from tests.conformance.framework import (
    SERVE_HOSTNAME,
    SERVE_PORT,
    Conformance,
    Node,
    client_pod,
    container,
    controller_of,
    http_many,
    pod_template,
    replicaset,
    serve_hostname_pod,
    service,
    until,
)

# xdist_group: every test using the lab runs in one pytest-xdist worker (tests/conftest.py).
pytestmark = [pytest.mark.conformance_network, pytest.mark.xdist_group("lab")]

TIMEOUT = 60.0


async def start(c: Conformance, ns: str, *pods: dict) -> dict[str, dict]:
    for p in pods:
        await c.create("pods", p, ns)
    running = await asyncio.gather(*(c.wait_running(ns, p["metadata"]["name"]) for p in pods))
    return {p["metadata"]["name"]: p for p in running}


async def collect(c: Conformance, ns: str, client: str, url: str, want: set[str],
                  what: str) -> None:
    """Ask `url` from `client` until every name in `want` answered (and nothing else)."""
    seen: set[str] = set()

    async def check() -> bool:
        for out in await http_many(c, ns, client, url, 6):
            assert out in want, f"{url} answered {out!r}, not one of {sorted(want)}"
            seen.add(out)
        return seen == want
    await until(check, TIMEOUT, interval=0.2, what=f"{what}: answers from {sorted(want)} "
                f"(so far {sorted(seen)})")


def host_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return str(r.read().decode())
    except OSError:
        return None


async def two_nodes(c: Conformance) -> list[Node]:
    return (await c.schedulable_nodes())[:2]


@pytest.mark.upstream("[sig-network] Networking Granular Checks: Pods should function for "
                      "intra-pod communication: http [NodeConformance] [Conformance]")
async def test_pod_to_pod_across_nodes(conformance: Conformance, ns: str) -> None:
    """A netserver on each node and a client on each: every client reaches every server by
    its pod IP, the one on its own node (the bridge) and the one on the other (the overlay)."""
    c = conformance
    nodes = await two_nodes(c)
    servers = [serve_hostname_pod(f"netserver-{i}", nodeName=n.name)
               for i, n in enumerate(nodes)]
    clients = [client_pod(f"test-container-pod-{i}", nodeName=n.name)
               for i, n in enumerate(nodes)]
    pods = await start(c, ns, *servers, *clients)
    for client in (p["metadata"]["name"] for p in clients):
        for server in (p["metadata"]["name"] for p in servers):
            ip = pods[server]["status"]["podIP"]

            async def answers(client: str = client, server: str = server, ip: str = ip) -> bool:
                return await c.http_from_pod(ns, client, f"http://{ip}:{SERVE_PORT}/") == server
            await until(answers, TIMEOUT, interval=0.5,
                        what=f"{client} ({pods[client]['spec']['nodeName']}) → {server} "
                             f"({pods[server]['spec']['nodeName']}, {ip})")


@pytest.mark.upstream("[sig-apps] ReplicationController should serve a basic image on each replica "
                      "with a public image [Conformance]")
async def test_replicas_behind_a_cluster_ip(conformance: Conformance, ns: str) -> None:
    """An RC's replicas (placed by the scheduler, usually one per node) each answer through a
    Service's ClusterIP to a client pod: the proxy's rules, and the overlay for a replica on
    the other node."""
    c = conformance
    nodes = await two_nodes(c)
    labels = {"name": "my-hostname-basic"}
    template = pod_template(labels, container("c", SERVE_HOSTNAME,
                                              ports=[{"containerPort": SERVE_PORT}]))
    rc = await c.create("replicationcontrollers",
                        replicaset("my-hostname-basic", 2, template,
                                   kind="ReplicationController"), ns)
    svc = await c.create("services", service("my-hostname-basic", labels), ns)
    await start(c, ns, client_pod("client", nodeName=nodes[0].name))

    async def replicas_ready() -> list[str] | None:
        pods = [p for p in await c.pods(ns, "name=my-hostname-basic")
                if controller_of(p) == rc["metadata"]["uid"]]
        ready = [p["metadata"]["name"] for p in pods
                 if (p.get("status") or {}).get("phase") == "Running"
                 and any(x.get("type") == "Ready" and x.get("status") == "True"
                         for x in p["status"].get("conditions") or [])]
        return ready if len(ready) == 2 else None
    names = await until(replicas_ready, TIMEOUT * 2, what="2 replicas Running and Ready")
    ip = svc["spec"]["clusterIP"]
    await collect(c, ns, "client", f"http://{ip}:80/", set(names), f"ClusterIP {ip}:80")


@pytest.mark.upstream("[sig-network] Services should be able to create a functioning NodePort "
                      "service [Conformance]")
async def test_nodeport_service(conformance: Conformance, ns: str) -> None:
    """A NodePort Service (the port allocated by the apiserver) answers on its ClusterIP from
    a pod and on every node's InternalIP:nodePort, from a pod and from the test machine."""
    c = conformance
    nodes = await two_nodes(c)
    labels = {"app": "nodeport-test"}
    svc = await c.create("services", service("nodeport-test", labels, type_="NodePort"), ns)
    node_port = svc["spec"]["ports"][0].get("nodePort")
    assert node_port and 30000 <= node_port <= 32767, f"nodePort {node_port} not allocated"
    await start(c, ns, serve_hostname_pod("nodeport-backend", labels=labels,
                                          nodeName=nodes[1].name),
                client_pod("execpod", nodeName=nodes[0].name))
    want = {"nodeport-backend"}
    ip = svc["spec"]["clusterIP"]
    await collect(c, ns, "execpod", f"http://{ip}:80/", want, f"ClusterIP {ip}:80")
    for n in nodes:
        assert n.internal_ip, f"node {n.name} reports no InternalIP"
        url = f"http://{n.internal_ip}:{node_port}/"
        await collect(c, ns, "execpod", url, want, f"from a pod, NodePort {url}")

        async def from_test_machine(url: str = url) -> bool:
            return await asyncio.to_thread(host_http, url) == "nodeport-backend"
        await until(from_test_machine, TIMEOUT, interval=0.5,
                    what=f"from the test machine, NodePort {url}")


@pytest.mark.upstream("[sig-network] Services should have session affinity work for service with "
                      "type clusterIP [LinuxOnly] [Conformance]")
async def test_cluster_ip_session_affinity(conformance: Conformance, ns: str) -> None:
    """With sessionAffinity ClientIP, one client's requests all reach the same one of three
    backends; without it (switched to None), the client reaches them all."""
    c = conformance
    nodes = await two_nodes(c)
    labels = {"app": "affinity-clusterip"}
    backends = [serve_hostname_pod(f"affinity-{i}", labels=labels,
                                   nodeName=nodes[i % 2].name) for i in range(3)]
    svc = await c.create("services", service("affinity-clusterip", labels,
                                             sessionAffinity="ClientIP"), ns)
    await start(c, ns, *backends, client_pod("execpod-affinity", nodeName=nodes[0].name))
    ip = svc["spec"]["clusterIP"]
    url = f"http://{ip}:80/"
    names = {b["metadata"]["name"] for b in backends}

    async def all_endpoints() -> bool:
        ep = await c.api.get("endpoints", "affinity-clusterip", ns)
        return len({a["ip"] for s in ep.get("subsets") or []
                    for a in s.get("addresses") or []}) == 3
    await until(all_endpoints, TIMEOUT, what="3 ready endpoints")
    first = await until(lambda: c.http_from_pod(ns, "execpod-affinity", url), TIMEOUT,
                        interval=0.5, what=f"a first answer from {url}")
    assert first in names
    answers = await http_many(c, ns, "execpod-affinity", url, 10)
    assert answers == [first] * 10, f"ClientIP affinity broken: {answers}"
    await c.api.patch("services", "affinity-clusterip",
                      {"spec": {"sessionAffinity": "None", "sessionAffinityConfig": None}}, ns)
    await collect(c, ns, "execpod-affinity", url, names, "affinity None")
