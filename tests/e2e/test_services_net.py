"""Services and pod networking across real hosts, as upstream's conformance networking tests.

Every test runs on the shared `net_cluster`: two hosts (network namespaces on a veth underlay),
each with a real kubelet, tk-netagent (VXLAN overlay) and tk-proxy (iptables). Pods are real
Docker containers of tinykube/serve-hostname (answers its pod name on 9376, HTTP and UDP),
placed on a chosen host with `spec.nodeName`; clients are a host's own network stack
(`Host.run`), a busybox pod (docker exec), or the machine's root namespace for NodePorts (the
underlay addresses are the test's own). Each test's docstring names the upstream e2e test it
mirrors (test/e2e/network/service.go, networking.go); the VXLAN details themselves are
tests/e2e/test_overlay.py's, the rule format tests/e2e/test_proxy_rules.py's. Here the rules
are only read where the issue asks for it: the KUBE-SEP chains behind a service follow its
ready pods, ClientIP affinity carries its timeout, and a restarted proxy leaves exactly the
rules it found, minus what was deleted while it was down.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from harness.docker import docker_client
from harness.netcluster import NetCluster
from harness.netns import Host
from harness.objects import condition, deployment
from harness.wait import gone, until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("net")]

Obj = dict[str, Any]
SERVE_HOSTNAME = "tinykube/serve-hostname:1"
BUSYBOX = "tinykube/busybox:1"
PORT = 9376
SVC_PORT = 80
# Pods start on a loaded machine (several test processes on 2 cores): generous, never asserted.
POD_TIMEOUT = 120.0
NET_TIMEOUT = 60.0


# --- pods and services ------------------------------------------------------------------------

def serve_pod(name: str, node: str, labels: Obj | None = None) -> Obj:
    """A serve-hostname pod pinned to `node` (nodeName: no scheduler, no anti-affinity)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": SERVE_HOSTNAME,
                                     "imagePullPolicy": "Never",
                                     "ports": [{"containerPort": PORT}]}]}}


def client_pod(name: str, node: str) -> Obj:
    """A busybox pod on `node` to exec clients in (upstream's execPod)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"]}]}}


def serve_deployment(name: str, replicas: int) -> Obj:
    d = deployment(name, replicas, SERVE_HOSTNAME)
    spec = d["spec"]["template"]["spec"]
    spec["terminationGracePeriodSeconds"] = 1
    spec["containers"][0]["imagePullPolicy"] = "Never"
    return d


def service(name: str, selector: Obj | None, type_: str = "ClusterIP", **spec: Any) -> Obj:
    body: Obj = {"type": type_, "ports": [{"port": SVC_PORT, "targetPort": PORT,
                                           "protocol": "TCP"}], **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def ready(p: Obj) -> bool:
    return (p.get("status") or {}).get("phase") == "Running" and \
        condition(p, "Ready").get("status") == "True" and bool(p["status"].get("podIP"))


async def running(nc: NetCluster, ns: str, *names: str) -> dict[str, Obj]:
    """The pods once all are Running, Ready and have an IP."""
    async def check() -> dict[str, Obj] | None:
        pods = {n: await nc.c.client.get("pods", n, ns) for n in names}
        return pods if all(ready(p) for p in pods.values()) else None
    try:
        return await until(check, timeout=POD_TIMEOUT, interval=0.5,
                           what=f"pods {', '.join(names)} ready")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{nc.logs()}") from None


async def create_pods(nc: NetCluster, ns: str, *pods: Obj) -> dict[str, Obj]:
    for p in pods:
        await nc.c.client.create("pods", p, ns)
    return await running(nc, ns, *(p["metadata"]["name"] for p in pods))


async def ready_pods(nc: NetCluster, ns: str, app: str) -> dict[str, Obj]:
    items, _ = await nc.c.client.list_all("pods", ns, label_selector=f"app={app}")
    return {p["metadata"]["name"]: p for p in items
            if ready(p) and not p["metadata"].get("deletionTimestamp")}


async def endpoint_ips(nc: NetCluster, ns: str, name: str) -> set[str]:
    try:
        ep = await nc.c.client.get("endpoints", name, ns)
    except Exception:
        return set()
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


async def wait_endpoints(nc: NetCluster, ns: str, name: str, ips: set[str]) -> None:
    async def check() -> bool:
        return await endpoint_ips(nc, ns, name) == ips
    await until(check, timeout=NET_TIMEOUT, what=f"endpoints {name} = {sorted(ips)}")


# --- clients ------------------------------------------------------------------------------------

@dataclass
class Reply:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"rc={self.rc} out={self.out!r} err={self.err!r}"


def host_http(host: Host, url: str, count: int = 1) -> Reply:
    """`count` HTTP GETs of `url` from the host's own network stack, one answer per line.

    busybox-static's `wget -T` crashes, so `timeout` bounds each request instead."""
    script = (f"for i in $(seq {count}); do timeout 3 busybox wget -qO- {shlex.quote(url)} "
              "|| exit $?; echo; done")
    r = host.run("sh", "-c", script, check=False, timeout=10 + 4 * count)
    return Reply(r.returncode, r.stdout, r.stderr)


def root_http(url: str) -> Reply:
    """One HTTP GET from the machine's root namespace (to a host's underlay address)."""
    r = subprocess.run(["timeout", "3", "busybox", "wget", "-qO-", url], capture_output=True,
                       text=True, timeout=15)
    return Reply(r.returncode, r.stdout, r.stderr)


def host_udp(host: Host, ip: str, port: int) -> Reply:
    """One UDP datagram to ip:port from the host; the answer datagram (busybox nc has no -u)."""
    code = ("import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2)\n"
            f"s.sendto(b'hostname',({ip!r},{port}))\n"
            "sys.stdout.write(s.recvfrom(1024)[0].decode())\n")
    r = host.run("python3", "-c", code, check=False, timeout=15)
    return Reply(r.returncode, r.stdout, r.stderr)


class Pods:
    """docker exec into pods' containers (found by the kubelet's upstream labels)."""

    def __init__(self, dk: docker.DockerClient) -> None:
        self.dk = dk

    def exec(self, ns: str, pod: str, *cmd: str) -> Reply:
        found = self.dk.containers.list(filters={"label": [
            f"io.kubernetes.pod.namespace={ns}", f"io.kubernetes.pod.name={pod}",
            "io.kubernetes.container.name=c"]})
        assert found, f"no running container c of pod {ns}/{pod}"
        rc, (out, err) = found[0].exec_run(list(cmd), demux=True)
        return Reply(int(rc), (out or b"").decode(errors="replace"),
                     (err or b"").decode(errors="replace"))

    def http(self, ns: str, pod: str, url: str, count: int = 1) -> Reply:
        """`count` HTTP GETs from inside the pod, one answer per line."""
        script = (f"for i in $(seq {count}); do timeout 3 wget -qO- {shlex.quote(url)} "
                  "|| exit $?; echo; done")
        return self.exec(ns, pod, "sh", "-c", script)


@pytest.fixture(scope="module")
def pods() -> Iterator[Pods]:
    dk = docker_client()
    yield Pods(dk)
    dk.close()


def answers(r: Reply) -> list[str]:
    return [line for line in r.out.splitlines() if line]


async def serves(fetch: Any, want: str, what: str) -> None:
    """Wait until `fetch()` (blocking, returns a Reply) answers exactly `want`."""
    last: list[Reply] = []

    async def check() -> bool:
        r = await asyncio.to_thread(fetch)
        last[:] = [r]
        return r.rc == 0 and answers(r) == [want]
    try:
        await until(check, timeout=NET_TIMEOUT, interval=0.3, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}; last reply {last[0] if last else None}") from None


async def collect(fetch: Any, want: set[str], what: str) -> set[str]:
    """Hostnames answered over repeated `fetch()`es (each a batch of requests) until they
    cover `want`; returns everything seen (a test may then check that nothing else answered)."""
    seen: set[str] = set()

    async def check() -> bool:
        r = await asyncio.to_thread(fetch)
        seen.update(answers(r) if r.rc == 0 else ())
        return want <= seen
    try:
        await until(check, timeout=NET_TIMEOUT, interval=0.3, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}; seen {sorted(seen)}, want {sorted(want)}") from None
    return seen


# --- rules --------------------------------------------------------------------------------------

def iptables_save(host: Host, table: str | None = None) -> list[str]:
    args = ["iptables-save"] + (["-t", table] if table else [])
    return host.run(*args).stdout.splitlines()


def _rules(lines: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for line in lines:
        if line.startswith("-A "):
            tokens = shlex.split(line)
            out.append((tokens[1], tokens))
    return out


def _opt(tokens: list[str], flag: str) -> str | None:
    return tokens[tokens.index(flag) + 1] if flag in tokens else None


def service_chains(nat: list[str], cluster_ip: str, port: int) -> tuple[str, set[str], set[str]]:
    """(KUBE-SVC chain, its KUBE-SEP chains, their DNAT destinations) of one service port, as
    iptables-save -t nat shows them: KUBE-SERVICES matches -d clusterIP/32 --dport port and
    jumps to KUBE-SVC-*, which jumps to one KUBE-SEP-* per endpoint, which DNATs."""
    rules = _rules(nat)
    svc = ""
    for chain, t in rules:
        if chain == "KUBE-SERVICES" and _opt(t, "-d") == f"{cluster_ip}/32" and \
                _opt(t, "--dport") == str(port) and (_opt(t, "-j") or "").startswith("KUBE-SVC-"):
            svc = str(_opt(t, "-j"))
    seps = {str(_opt(t, "-j")) for chain, t in rules
            if svc and chain == svc and (_opt(t, "-j") or "").startswith("KUBE-SEP-")}
    dests = {str(_opt(t, "--to-destination")) for chain, t in rules
             if chain in seps and _opt(t, "-j") == "DNAT"}
    return svc, seps, dests


async def wait_backends(nc: NetCluster, cluster_ip: str, want: set[str]) -> None:
    """Wait until every host's nat table has one KUBE-SEP chain per address in `want`,
    DNATing to it (`want` empty: no KUBE-SEP chain left for the service)."""
    dests = {f"{ip}:{PORT}" for ip in want}
    for node in nc.nodes:
        host = nc.hosts[node]
        last: list[Any] = []

        def check(host: Host = host, last: list[Any] = last) -> bool:
            got = service_chains(iptables_save(host, "nat"), cluster_ip, SVC_PORT)
            last[:] = [got]
            return len(got[1]) == len(dests) and got[2] == dests
        try:
            await until(check, timeout=NET_TIMEOUT, what=f"KUBE-SEP chains of {cluster_ip} on "
                        f"{node} = {sorted(dests)}")
        except TimeoutError as e:
            raise AssertionError(f"{e}; last (svc, seps, dests) {last}\n"
                                 f"{nc.proxies[node].logs(40)}") from None


def kube_rules(host: Host) -> Counter[str]:
    """Every KUBE-* chain and rule of the host, in every table, counters stripped: a multiset,
    so a duplicated rule shows."""
    out: Counter[str] = Counter()
    table = ""
    for line in iptables_save(host):
        if line.startswith("*"):
            table = line
        elif "KUBE-" in line and not line.startswith("#"):
            if line.startswith(":"):
                line = line.split(" ")[0]  # ":CHAIN POLICY [packets:bytes]"
            out[f"{table} {line}"] += 1
    return out


# --- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("client", ["pod", "node"])
async def test_pods_reach_pods_on_every_host(net_cluster: NetCluster, net_namespace: str,
                                             pods: Pods, client: str) -> None:
    """[sig-network] Networking Granular Checks: Pods should function for intra-pod
    communication: http [NodeConformance] [Conformance], and (client=node) ... for node-pod
    communication: http [LinuxOnly] [NodeConformance] [Conformance]: a server pod per host,
    every client (a pod on each host, or each host itself) reaches every server by pod IP."""
    nc, ns = net_cluster, net_namespace
    servers = [serve_pod(f"netserver-{i}", node) for i, node in enumerate(nc.nodes)]
    clients = [client_pod(f"client-{i}", node) for i, node in enumerate(nc.nodes)] \
        if client == "pod" else []
    created = await create_pods(nc, ns, *servers, *clients)
    for i, node in enumerate(nc.nodes):
        for s in servers:
            name = s["metadata"]["name"]
            url = f"http://{created[name]['status']['podIP']}:{PORT}/"
            if client == "pod":
                await serves(lambda u=url, i=i: pods.http(ns, f"client-{i}", u), name,
                             f"client pod on {node} reaches {name}")
            else:
                await serves(lambda u=url, h=nc.hosts[node]: host_http(h, u), name,
                             f"host {node} reaches {name}")


async def test_node_reaches_pods_over_udp(net_cluster: NetCluster, net_namespace: str) -> None:
    """[sig-network] Networking Granular Checks: Pods should function for node-pod
    communication: udp [LinuxOnly] [NodeConformance] [Conformance]: each host's own stack
    sends a datagram to a pod on either host and gets the pod's name back."""
    nc, ns = net_cluster, net_namespace
    servers = [serve_pod(f"udp-{i}", node) for i, node in enumerate(nc.nodes)]
    created = await create_pods(nc, ns, *servers)
    for node in nc.nodes:
        for name, p in created.items():
            ip = p["status"]["podIP"]
            await serves(lambda h=nc.hosts[node], ip=ip: host_udp(h, ip, PORT), name,
                         f"host {node} reaches {name} over UDP")


async def test_service_serves_endpoint_on_the_other_host(net_cluster: NetCluster,
                                                         net_namespace: str,
                                                         pods: Pods) -> None:
    """[sig-network] Services should serve a basic endpoint from pods [Conformance]: a
    ClusterIP service whose only endpoint is on host B answers a client pod and the host
    stack of host A; a second pod (on A) joins the endpoints, and once the first is deleted
    the service is served by the second alone."""
    nc, ns = net_cluster, net_namespace
    a, b = nc.nodes[:2]
    labels = {"app": "endpoint-test"}
    svc = await nc.c.client.create("services", service("endpoint-test", labels), ns)
    ip = svc["spec"]["clusterIP"]
    created = await create_pods(nc, ns, serve_pod("pod1", b, labels), client_pod("exec", a))
    pod1_ip = created["pod1"]["status"]["podIP"]
    await wait_endpoints(nc, ns, "endpoint-test", {pod1_ip})
    url = f"http://{ip}:{SVC_PORT}/"
    await serves(lambda: pods.http(ns, "exec", url), "pod1", "pod on A → ClusterIP → pod1 on B")
    await serves(lambda: host_http(nc.hosts[a], url), "pod1", "host A → ClusterIP → pod1 on B")

    pod2 = (await create_pods(nc, ns, serve_pod("pod2", a, labels)))["pod2"]
    await wait_endpoints(nc, ns, "endpoint-test", {pod1_ip, pod2["status"]["podIP"]})
    await nc.c.client.delete("pods", "pod1", ns)
    await wait_endpoints(nc, ns, "endpoint-test", {pod2["status"]["podIP"]})
    await wait_backends(nc, ip, {pod2["status"]["podIP"]})
    r = await asyncio.to_thread(pods.http, ns, "exec", url, 10)
    assert r.rc == 0 and set(answers(r)) == {"pod2"}, r


async def test_nodeport_reaches_pod_on_the_other_host(net_cluster: NetCluster,
                                                      net_namespace: str, pods: Pods) -> None:
    """[sig-network] Services should be able to create a functioning NodePort service
    [Conformance]: the NodePort of host A, whose service's only endpoint is on host B,
    answers from outside the hosts (the machine's root namespace, over the underlay), from
    host A's own stack and from a pod on host A."""
    nc, ns = net_cluster, net_namespace
    a, b = nc.nodes[:2]
    labels = {"app": "nodeport-test"}
    svc = await nc.c.client.create("services", service("nodeport-test", labels, "NodePort"), ns)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767, svc["spec"]
    await create_pods(nc, ns, serve_pod("backend", b, labels), client_pod("exec", a))
    url = f"http://{nc.hosts[a].ip}:{node_port}/"
    await serves(lambda: root_http(url), "backend", "root netns → host A NodePort → pod on B")
    await serves(lambda: host_http(nc.hosts[a], url), "backend",
                 "host A → its own NodePort → pod on B")
    await serves(lambda: pods.http(ns, "exec", url), "backend",
                 "pod on A → host A NodePort → pod on B")


async def test_scaling_a_deployment_moves_the_rules(net_cluster: NetCluster,
                                                    net_namespace: str, pods: Pods) -> None:
    """[sig-network] Services should be able to up and down services: scaling the
    Deployment behind a service to 3 and back to 1 changes its Endpoints, every host's
    KUBE-SEP chains follow (one per ready pod), and requests reach every ready replica
    (upstream's verifyServeHostnameServiceUp) and no other."""
    nc, ns = net_cluster, net_namespace
    a = nc.nodes[0]
    svc = await nc.c.client.create("services", service("up-down", {"app": "up-down"}), ns)
    ip, url = svc["spec"]["clusterIP"], f"http://{svc['spec']['clusterIP']}:{SVC_PORT}/"
    await nc.c.client.create("deployments", serve_deployment("up-down", 1), ns)
    await create_pods(nc, ns, client_pod("exec", a))

    for replicas in (1, 3, 1):
        await nc.c.client.patch("deployments", "up-down", {"spec": {"replicas": replicas}}, ns)

        async def settled(n: int = replicas) -> dict[str, Obj] | None:
            ready_now = await ready_pods(nc, ns, "up-down")
            items, _ = await nc.c.client.list_all("pods", ns, label_selector="app=up-down")
            return ready_now if len(ready_now) == n == len(items) else None
        current = await until(settled, timeout=POD_TIMEOUT, interval=0.5,
                              what=f"{replicas} ready up-down pods and no others")
        ips = {p["status"]["podIP"] for p in current.values()}
        await wait_endpoints(nc, ns, "up-down", ips)
        await wait_backends(nc, ip, ips)
        seen = await collect(lambda: pods.http(ns, "exec", url, 15), set(current),
                             f"answers from all {replicas} replicas")
        assert seen == set(current), f"answers from {sorted(seen)}, pods {sorted(current)}"


async def test_service_without_endpoints_refuses(net_cluster: NetCluster, net_namespace: str,
                                                 pods: Pods) -> None:
    """[sig-network] Services should be rejected when no endpoints exist: once the Deployment
    behind a service is scaled to zero, a connection to it is refused at once (REJECT, an
    ICMP port unreachable; not a drop that only times out), from a pod and from a host."""
    nc, ns = net_cluster, net_namespace
    a = nc.nodes[0]
    svc = await nc.c.client.create("services", service("to-zero", {"app": "to-zero"}), ns)
    ip, url = svc["spec"]["clusterIP"], f"http://{svc['spec']['clusterIP']}:{SVC_PORT}/"
    await nc.c.client.create("deployments", serve_deployment("to-zero", 1), ns)
    await create_pods(nc, ns, client_pod("exec", a))
    one = await until(lambda: ready_pods(nc, ns, "to-zero"), timeout=POD_TIMEOUT,
                      what="the to-zero pod ready")
    await serves(lambda: pods.http(ns, "exec", url), next(iter(one)), "served before scaling")

    await nc.c.client.patch("deployments", "to-zero", {"spec": {"replicas": 0}}, ns)
    await wait_endpoints(nc, ns, "to-zero", set())
    await wait_backends(nc, ip, set())
    # `timeout` kills a request that hangs (exit 143 or 124, no message); a refused one fails
    # at once with busybox's "Connection refused".
    await serves(lambda: _refused(pods.http(ns, "exec", url)), "refused",
                 "pod on A → service without endpoints refused")
    for node in nc.nodes:
        await serves(lambda h=nc.hosts[node]: _refused(host_http(h, url)), "refused",
                     f"host {node} → service without endpoints refused")


def _refused(r: Reply) -> Reply:
    """Reply "refused" when the request failed with Connection refused, else `r` as it was."""
    return Reply(0, "refused", "") if r.rc != 0 and "Connection refused" in r.err else r


async def test_session_affinity_client_ip(net_cluster: NetCluster, net_namespace: str,
                                          pods: Pods) -> None:
    """[sig-network] Services should have session affinity work for service with type
    clusterIP [LinuxOnly] [Conformance], and should be able to switch session affinity for
    service with type clusterIP [LinuxOnly] [Conformance]: with ClientIP affinity every
    answer to one client comes from one pod, and the `recent` rules carry the spec's
    timeoutSeconds; switched to None, requests spread over the replicas again."""
    nc, ns = net_cluster, net_namespace
    a = nc.nodes[0]
    svc = await nc.c.client.create("services", service(
        "affinity", {"app": "affinity"}, sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 1234}}), ns)
    ip, url = svc["spec"]["clusterIP"], f"http://{svc['spec']['clusterIP']}:{SVC_PORT}/"
    await nc.c.client.create("deployments", serve_deployment("affinity", 3), ns)
    await create_pods(nc, ns, client_pod("exec", a))
    current = await until(lambda: _n_ready(nc, ns, "affinity", 3), timeout=POD_TIMEOUT,
                          interval=0.5, what="3 affinity pods ready")
    ips = {p["status"]["podIP"] for p in current.values()}
    await wait_endpoints(nc, ns, "affinity", ips)
    await wait_backends(nc, ip, ips)

    for node in nc.nodes:
        nat = iptables_save(nc.hosts[node], "nat")
        chain, seps, _ = service_chains(nat, ip, SVC_PORT)
        recent = [line for line in nat if line.startswith(f"-A {chain} ") and "recent" in line]
        assert len(recent) == len(seps), f"{node}: one `recent` check per endpoint:\n" + \
            "\n".join(line for line in nat if chain in line)
        assert all("--rcheck" in line and "--seconds 1234" in line for line in recent), recent

    r = await asyncio.to_thread(pods.http, ns, "exec", url, 20)
    assert r.rc == 0 and len(answers(r)) == 20, r
    assert len(set(answers(r))) == 1, f"ClientIP affinity, yet answers from {set(answers(r))}"
    r = await asyncio.to_thread(host_http, nc.hosts[a], url, 20)
    assert r.rc == 0 and len(set(answers(r))) == 1, r

    await nc.c.client.patch("services", "affinity", {"spec": {"sessionAffinity": "None",
                                                              "sessionAffinityConfig": None}}, ns)
    await collect(lambda: pods.http(ns, "exec", url, 15), set(current),
                  "affinity None: answers from all 3 replicas")


async def _n_ready(nc: NetCluster, ns: str, app: str, n: int) -> dict[str, Obj] | None:
    got = await ready_pods(nc, ns, app)
    return got if len(got) == n else None


async def test_pod_hairpins_to_itself_through_its_service(net_cluster: NetCluster,
                                                          net_namespace: str,
                                                          pods: Pods) -> None:
    """[sig-network] Services should allow pods to hairpin back to themselves through
    services: a pod, the only endpoint of its service, reaches itself through the
    ClusterIP (the DNAT sends the packet back out of the bridge port it came in by: the CNI
    bridge's hairpin mode, and the proxy's masquerade of a pod's traffic to itself)."""
    nc, ns = net_cluster, net_namespace
    b = nc.nodes[1]
    labels = {"app": "hairpin"}
    svc = await nc.c.client.create("services", service("hairpin", labels), ns)
    created = await create_pods(nc, ns, serve_pod("hairpin", b, labels))
    await wait_endpoints(nc, ns, "hairpin", {created["hairpin"]["status"]["podIP"]})
    url = f"http://{svc['spec']['clusterIP']}:{SVC_PORT}/"
    await serves(lambda: pods.http(ns, "hairpin", url), "hairpin",
                 "the pod reaches itself through its ClusterIP")


async def test_multiport_endpoints_across_hosts(net_cluster: NetCluster, net_namespace: str,
                                                pods: Pods) -> None:
    """[sig-network] Services should serve multiport endpoints from pods [Conformance]: a
    service with two named ports whose named targetPorts exist on one pod each (one per
    host): each port's Endpoints subset holds its pod only, and each port of the ClusterIP
    is answered by its pod."""
    nc, ns = net_cluster, net_namespace
    a, b = nc.nodes[:2]
    labels = {"app": "multi"}
    svc = await nc.c.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "multi-endpoint-test"},
        "spec": {"selector": labels, "ports": [
            {"name": "portname1", "port": 80, "targetPort": "svc1", "protocol": "TCP"},
            {"name": "portname2", "port": 81, "targetPort": "svc2", "protocol": "TCP"}]}}, ns)
    pod1, pod2 = serve_pod("pod1", a, labels), serve_pod("pod2", b, labels)
    pod1["spec"]["containers"][0]["ports"] = [{"name": "svc1", "containerPort": PORT}]
    pod2["spec"]["containers"][0]["args"] = ["--port", str(PORT + 1)]
    pod2["spec"]["containers"][0]["ports"] = [{"name": "svc2", "containerPort": PORT + 1}]
    created = await create_pods(nc, ns, pod1, pod2, client_pod("exec", a))

    want = {("portname1", PORT): {created["pod1"]["status"]["podIP"]},
            ("portname2", PORT + 1): {created["pod2"]["status"]["podIP"]}}

    async def subsets() -> dict[tuple[str, int], set[str]]:
        ep = await nc.c.client.get("endpoints", "multi-endpoint-test", ns)
        got: dict[tuple[str, int], set[str]] = {}
        for s in ep.get("subsets") or []:
            for p in s.get("ports") or []:
                got.setdefault((p.get("name", ""), p["port"]), set()).update(
                    addr["ip"] for addr in s.get("addresses") or [])
        return got
    last: list[Any] = []

    async def matches() -> bool:
        last[:] = [await subsets()]
        return last[0] == want
    try:
        await until(matches, timeout=NET_TIMEOUT, what="one pod per port in the endpoints")
    except TimeoutError as e:
        raise AssertionError(f"{e}; endpoints {last}, want {want}") from None
    cip = svc["spec"]["clusterIP"]
    await serves(lambda: pods.http(ns, "exec", f"http://{cip}:80/"), "pod1",
                 "portname1 → pod1 on A")
    await serves(lambda: pods.http(ns, "exec", f"http://{cip}:81/"), "pod2",
                 "portname2 → pod2 on B")


async def test_externalname_to_nodeport(net_cluster: NetCluster, net_namespace: str) -> None:
    """[sig-network] Services should be able to change the type from ExternalName to NodePort
    [Conformance]: an ExternalName service (no rules) turned into a NodePort service gets a
    ClusterIP and a NodePort, and host B's NodePort reaches its endpoint on host A."""
    nc, ns = net_cluster, net_namespace
    a, b = nc.nodes[:2]
    labels = {"app": "external-name"}
    await nc.c.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "external-name"},
        "spec": {"type": "ExternalName", "externalName": "foo.example.com"}}, ns)
    await create_pods(nc, ns, serve_pod("backend", a, labels))
    svc = await nc.c.client.patch("services", "external-name", {"spec": {
        "type": "NodePort", "externalName": None, "selector": labels,
        "ports": [{"port": SVC_PORT, "targetPort": PORT, "protocol": "TCP"}]}}, ns)
    assert svc["spec"].get("clusterIP") not in (None, "", "None"), svc["spec"]
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await serves(lambda: root_http(f"http://{nc.hosts[b].ip}:{node_port}/"), "backend",
                 "root netns → host B NodePort → pod on A")


async def test_proxy_restart_leaves_the_same_rules(net_cluster: NetCluster,
                                                   net_namespace: str) -> None:
    """tk-proxy killed (SIGKILL) and restarted on host A resyncs to exactly the desired rules:
    the same KUBE-* chains and rules as before, none duplicated, and none left of a service
    deleted while it was down (upstream's proxier: a restart syncs everything, and chains it
    no longer wants are deleted)."""
    nc, ns = net_cluster, net_namespace
    a, b = nc.nodes[:2]
    host = nc.hosts[a]
    labels = {"app": "restart"}
    keep = await nc.c.client.create("services", service("keep", labels), ns)
    dead = await nc.c.client.create("services", service("gone", labels), ns)
    backend = (await create_pods(nc, ns, serve_pod("backend", b, labels)))["backend"]
    backend_ip = backend["status"]["podIP"]
    await wait_endpoints(nc, ns, "keep", {backend_ip})
    await wait_endpoints(nc, ns, "gone", {backend_ip})

    # Earlier tests' namespaces are still being deleted: wait until this namespace's
    # services (and the apiserver's own default/kubernetes) are the only ones, in the API and
    # in host A's rules, so the rules hold still.
    ours = {keep["spec"]["clusterIP"], dead["spec"]["clusterIP"]}
    apiserver_ip = (await nc.c.client.get("services", "kubernetes", "default"))["spec"][
        "clusterIP"]

    async def alone() -> bool:
        items, _ = await nc.c.client.list_all("services")
        ips = {s["spec"].get("clusterIP") for s in items}
        if ips - {None, "", "None", apiserver_ip} != ours:
            return False
        nat = iptables_save(host, "nat")
        targets = {_opt(t, "-d") for c, t in _rules(nat) if c == "KUBE-SERVICES"} - {None}
        return targets == {f"{i}/32" for i in ours | {apiserver_ip}}
    await until(alone, timeout=NET_TIMEOUT, what="only this test's services programmed")
    for cip in ours:
        await wait_backends(nc, cip, {backend_ip})
    before = kube_rules(host)
    assert not _dups(before), f"duplicated before the restart: {_dups(before)}"

    # What the restarted proxy must leave: everything but the deleted service's chains and
    # the rules that name them, its cluster IP or its comment.
    nat = iptables_save(host, "nat")
    svc_chain, sep_chains, _ = service_chains(nat, dead["spec"]["clusterIP"], SVC_PORT)
    assert svc_chain and sep_chains, f"no chains for service gone:\n{chr(10).join(nat)}"
    dead_marks = {svc_chain, *sep_chains, f"{dead['spec']['clusterIP']}/32", f"{ns}/gone"}
    want = Counter({line: n for line, n in before.items()
                    if not any(_names(line, m) for m in dead_marks)})
    assert want != before

    nc.proxies[a].kill()
    try:
        await nc.c.client.delete("services", "gone", ns)
        await until(lambda: gone(nc.c.client, "endpoints", "gone", ns), timeout=NET_TIMEOUT,
                    what="endpoints gone deleted")
        assert kube_rules(host) == before, "the rules changed while tk-proxy was down"
    finally:
        nc.proxies[a].start()  # later tests share this host's proxy

    last: list[Counter[str]] = []

    def resynced() -> bool:
        last[:] = [kube_rules(host)]
        return last[0] == want
    try:
        await until(resynced, timeout=NET_TIMEOUT, what="restarted tk-proxy resynced")
    except TimeoutError:
        got = last[0] if last else Counter()
        raise AssertionError(
            f"after restart\n extra/duplicated: {sorted((got - want).elements())}\n"
            f" missing: {sorted((want - got).elements())}\n{nc.proxies[a].logs(40)}") from None
    # The restarted proxy still serves: the kept service answers through host A.
    await serves(lambda: host_http(host, f"http://{keep['spec']['clusterIP']}:{SVC_PORT}/"),
                 "backend", "kept service served after the restart")


# What a process in a pod runs: client-go's InClusterConfig (client/config.in_cluster) from
# $KUBERNETES_SERVICE_HOST/_PORT and the mounted token, then "who am I".
_IN_CLUSTER_WHOAMI = """
import asyncio, sys
from client.apiclient import ApiClient
from client.config import in_cluster

async def main() -> None:
    async with ApiClient(config=in_cluster(root=sys.argv[1])) as c:
        review = await c.create("selfsubjectreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}})
        print(review["status"]["userInfo"]["username"])

asyncio.run(main())
"""

# The same with the official `kubernetes` client: its InClusterConfigLoader (what
# load_incluster_config() does, with the token and CA files where this test wrote them) and
# the HTTPS API behind 10.96.0.1:443.
_OFFICIAL_IN_CLUSTER_WHOAMI = """
import os, sys
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

InClusterConfigLoader(token_filename=os.path.join(sys.argv[1], "token"),
                      cert_filename=os.path.join(sys.argv[1], "ca.crt")).load_and_set()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
pods = client.CoreV1Api().list_namespaced_pod(open(os.path.join(sys.argv[1], "namespace")).read())
print(review.status.user_info.username, len(pods.items) >= 0)
"""


async def test_in_cluster_clients_reach_the_apiserver_through_the_kubernetes_service(
        net_cluster: NetCluster, net_namespace: str, tmp_path: Path) -> None:
    """default/kubernetes, which the apiserver writes itself, is an ordinary Service to
    tk-proxy: every host DNATs 10.96.0.1:443 (`https`) to the advertise address and the
    apiserver's HTTPS port, and 10.96.0.1:6444 (`grpc`) to its gRPC port that takes
    ServiceAccount tokens; a client built the way a pod builds one (the env variables the
    kubelet sets, KUBERNETES_SERVICE_PORT_GRPC included, the token it mounts) is served there,
    as its ServiceAccount (the apiserver's certificate names 10.96.0.1)."""
    nc, ns = net_cluster, net_namespace
    api = nc.c.apiserver
    assert api is not None and api.token_port
    https, grpc = f"{nc.c.listen_on}:{api.secure_port}", f"{nc.c.listen_on}:{api.token_port}"
    ep = await nc.c.client.get("endpoints", "kubernetes", "default")
    assert ep["subsets"] == [{"addresses": [{"ip": nc.c.listen_on}], "ports": [
        {"name": "https", "port": api.secure_port, "protocol": "TCP"},
        {"name": "grpc", "port": api.token_port, "protocol": "TCP"}]}]
    for node in nc.nodes:
        def programmed(host: Host = nc.hosts[node]) -> bool:
            nat = iptables_save(host, "nat")
            return (service_chains(nat, "10.96.0.1", 443)[2] == {https}
                    and service_chains(nat, "10.96.0.1", 6444)[2] == {grpc})
        await until(programmed, timeout=NET_TIMEOUT,
                    what=f"10.96.0.1:443 → {https} and :6444 → {grpc} on {node}")

    await nc.c.client.create("serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "in-pod"}}, ns)
    token = await nc.c.client.create("serviceaccounts", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}, ns,
        name="in-pod", subresource="token")
    (tmp_path / "token").write_text(token["status"]["token"])
    (tmp_path / "ca.crt").write_bytes(nc.c.ca_pem)
    (tmp_path / "namespace").write_text(ns)
    host = nc.hosts[nc.nodes[0]]
    r = await asyncio.to_thread(
        host.run, "env", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_SERVICE_PORT_GRPC=6444", sys.executable, "-c", _IN_CLUSTER_WHOAMI,
        str(tmp_path), check=False, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, f"system:serviceaccount:{ns}:in-pod"), \
        r.stderr
    # The official client, as `load_incluster_config()` in a pod: HTTPS through 10.96.0.1:443;
    # RBAC refuses the ServiceAccount the pod list (403), which proves who it was served as.
    r = await asyncio.to_thread(
        host.run, "env", "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
        sys.executable, "-c", _OFFICIAL_IN_CLUSTER_WHOAMI, str(tmp_path), check=False,
        timeout=60)
    assert r.returncode == 1 and "(403)" in r.stderr, r.stderr
    await nc.c.client.create("rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "in-pod-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "in-pod", "namespace": ns}]}, ns)
    for _ in range(10):  # the authorizer sees the binding through its informer, soon
        r = await asyncio.to_thread(
            host.run, "env", "KUBERNETES_SERVICE_HOST=10.96.0.1",
            "KUBERNETES_SERVICE_PORT=443", sys.executable, "-c", _OFFICIAL_IN_CLUSTER_WHOAMI,
            str(tmp_path), check=False, timeout=60)
        if r.returncode == 0:
            break
        await asyncio.sleep(1)
    assert (r.returncode, r.stdout.strip()) == (
        0, f"system:serviceaccount:{ns}:in-pod True"), r.stderr


def _names(line: str, mark: str) -> bool:
    """Whether an iptables-save line names `mark` as a whole word (a chain, an address, a
    comment's service name): KUBE-SEP-AB must not match KUBE-SEP-ABC."""
    return re.search(rf"(?<![\w-]){re.escape(mark)}(?![\w-])", line) is not None


def _dups(rules: Counter[str]) -> list[str]:
    return [line for line, n in rules.items() if n > 1]

