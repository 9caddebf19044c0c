"""tk-netagent across real hosts: flannel.1, its entries, pod traffic over VXLAN, masquerade,
node deletion, kill -9 and restart, --cleanup.

The shared `net_cluster` has two hosts (network namespaces on a veth underlay), each running a
kubelet, tk-netagent and tk-proxy. Everything is read from the hosts' kernels with `ip -j` /
`bridge -j` / `iptables-save` run inside them. Where a test needs to see a packet's source
address, it listens with a small Python program in a network namespace the test created (a
pod's, via `nsenter`) or on the underlay gateway address (the test's own bridge). "Fake" nodes
are Node objects with a podCIDR and flannel annotations pointing at an unused underlay address:
nothing answers there, but every agent must program (and later remove) their entries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from harness.docker import docker_client
from harness.netcluster import NetCluster
from harness.netns import Host
from harness.wait import gone, until

pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("net")]

Obj = dict[str, Any]
PREFIX = "flannel.alpha.coreos.com/"
POD_TIMEOUT = 120.0
NET_TIMEOUT = 60.0


# --- reading a host's kernel ------------------------------------------------------------------

def jrun(host: Host, *cmd: str) -> Any:
    out = host.run(*cmd).stdout.strip()
    return json.loads(out) if out else []


def link(host: Host, name: str = "flannel.1", stats: bool = False) -> Obj:
    args = ["ip", "-d", "-j", *(["-s"] if stats else []), "link", "show", name]
    return jrun(host, *args)[0]  # type: ignore[no-any-return,unused-ignore]


def entries(host: Host) -> dict[str, list[tuple[str, ...]]]:
    """flannel.1's neighbours, FDB entries and routes, as lists (duplicates would show)."""
    neigh = [(n["dst"], n["lladdr"]) for n in jrun(host, "ip", "-j", "neigh", "show", "dev",
                                                    "flannel.1")
             if "PERMANENT" in n.get("state", [])]
    fdb = [(f["mac"], f["dst"]) for f in jrun(host, "bridge", "-j", "fdb", "show", "dev",
                                              "flannel.1") if f.get("dst")]
    routes = [(r["dst"], r.get("gateway", ""), ",".join(r.get("flags", [])))
              for r in jrun(host, "ip", "-j", "route", "show", "dev", "flannel.1")
              if r.get("gateway")]
    return {"neigh": sorted(neigh), "fdb": sorted(fdb), "routes": sorted(routes)}


def expected_for(nodes: list[Obj]) -> dict[str, list[tuple[str, ...]]]:
    """The entries a host should have for these (other) nodes."""
    neigh, fdb, routes = [], [], []
    for n in nodes:
        ann = n["metadata"]["annotations"]
        mac = json.loads(ann[PREFIX + "backend-data"])["VtepMAC"]
        cidr = ipaddress.IPv4Network(n["spec"]["podCIDR"])
        vtep = str(cidr.network_address)
        neigh.append((vtep, mac))
        fdb.append((mac, ann[PREFIX + "public-ip"]))
        routes.append((str(cidr), vtep, "onlink"))
    return {"neigh": sorted(neigh), "fdb": sorted(fdb), "routes": sorted(routes)}


async def node(nc: NetCluster, name: str) -> Obj:
    return await nc.c.client.get("nodes", name)


async def converged(nc: NetCluster, host: Host, others: list[str],
                    what: str) -> dict[str, list[tuple[str, ...]]]:
    """Wait until the host has exactly the entries of `others` (node names), no more."""
    async def check() -> dict[str, list[tuple[str, ...]]] | None:
        want = expected_for([await node(nc, n) for n in others])
        have = await asyncio.to_thread(entries, host)
        assert have == want, f"have {have}, want {want}"
        return have
    try:
        return await until(check, timeout=NET_TIMEOUT, interval=0.3, what=what)
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{nc.logs()}") from None


def fake_node(name: str, cidr: str, mac: str, public_ip: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {
                PREFIX + "backend-type": "vxlan",
                PREFIX + "backend-data": json.dumps({"VNI": 1, "VtepMAC": mac}),
                PREFIX + "public-ip": public_ip,
                PREFIX + "kube-subnet-manager": "true"}},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}


def unused_ip(nc: NetCluster, offset: int) -> str:
    assert nc.underlay is not None
    return str(nc.underlay.network.network_address + offset)


def fresh_mac() -> str:
    b = uuid.uuid4().bytes[:5]
    return "0a:" + ":".join(f"{x:02x}" for x in b)  # locally administered, unicast


def ab(nc: NetCluster) -> tuple[str, str, Host, Host]:
    a, b = nc.nodes[:2]
    return a, b, nc.hosts[a], nc.hosts[b]


# --- pods ---------------------------------------------------------------------------------------

def busybox_pod(name: str, node_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "tinykube/busybox:1",
                                     "imagePullPolicy": "Never",
                                     "command": ["sleep", "3600"]}]}}


def serve_pod(name: str, node_name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node_name, "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "tinykube/serve-hostname:1",
                                     "imagePullPolicy": "Never",
                                     "ports": [{"containerPort": 9376}]}]}}


async def create_running(nc: NetCluster, ns: str, *pods: Obj) -> dict[str, Obj]:
    for p in pods:
        await nc.c.client.create("pods", p, ns)

    async def check() -> dict[str, Obj] | None:
        got = {p["metadata"]["name"]: await nc.c.client.get("pods", p["metadata"]["name"], ns)
               for p in pods}
        ok = all((g.get("status") or {}).get("phase") == "Running"
                 and (g.get("status") or {}).get("podIP") for g in got.values())
        return got if ok else None
    try:
        return await until(check, timeout=POD_TIMEOUT, interval=0.5, what="pods running")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{nc.logs()}") from None


@pytest.fixture(scope="module")
def dk() -> Iterator[docker.DockerClient]:
    client = docker_client()
    yield client
    client.close()


def container(dk: docker.DockerClient, ns: str, pod: str) -> Any:
    found = dk.containers.list(filters={"label": [
        f"io.kubernetes.pod.namespace={ns}", f"io.kubernetes.pod.name={pod}",
        "io.kubernetes.container.name=c"]})
    assert found, f"no running container of pod {ns}/{pod}"
    return found[0]


def pod_exec(dk: docker.DockerClient, ns: str, pod: str, *cmd: str) -> tuple[int, str]:
    rc, out = container(dk, ns, pod).exec_run(list(cmd))
    return int(rc), (out or b"").decode(errors="replace")


LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen(1)
s.settimeout(30)
print(s.getsockname()[1], flush=True)
c, peer = s.accept()
print(peer[0], flush=True)
"""


class Listener:
    """A one-shot TCP listener that reports the peer address of its first connection."""

    def __init__(self, bind: str, netns_of_pid: int | None = None) -> None:
        pre = [] if netns_of_pid is None else ["nsenter", f"--net=/proc/{netns_of_pid}/ns/net"]
        self.proc = subprocess.Popen([*pre, sys.executable, "-c", LISTENER, bind],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"listener did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.port = int(line)

    def peer(self) -> str:
        out, err = self.proc.communicate(timeout=40)
        assert self.proc.returncode == 0, f"listener: {err}"
        return out.strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- tests --------------------------------------------------------------------------------------

async def test_nodes_publish_flannel_annotations(net_cluster: NetCluster) -> None:
    nc = net_cluster
    for name in nc.nodes[:2]:
        host = nc.hosts[name]
        mac = (await asyncio.to_thread(link, host))["address"]

        async def published(name: str = name, host: Host = host, mac: str = mac) -> bool:
            ann = (await node(nc, name))["metadata"].get("annotations") or {}
            assert ann.get(PREFIX + "backend-type") == "vxlan", ann
            assert json.loads(ann[PREFIX + "backend-data"]) == {"VNI": 1, "VtepMAC": mac}
            assert ann[PREFIX + "public-ip"] == host.ip
            assert ann[PREFIX + "kube-subnet-manager"] == "true"
            return True
        await until(published, timeout=NET_TIMEOUT, what=f"annotations of {name}")


async def test_flannel1_is_flannels_vxlan_device(net_cluster: NetCluster) -> None:
    nc = net_cluster
    for name in nc.nodes[:2]:
        host = nc.hosts[name]
        dev, eth0 = await asyncio.to_thread(link, host), await asyncio.to_thread(link, host,
                                                                                  "eth0")
        data = dev["linkinfo"]["info_data"]
        assert dev["linkinfo"]["info_kind"] == "vxlan"
        assert (data["id"], data["port"], data["learning"]) == (1, 8472, False)
        assert data["local"] == host.ip and data["link"] == "eth0"
        assert dev["mtu"] == eth0["mtu"] - 50
        assert "UP" in dev["flags"]
        cidr = ipaddress.IPv4Network((await node(nc, name))["spec"]["podCIDR"])
        addrs = [(a["local"], a["prefixlen"]) for a in jrun(host, "ip", "-j", "-4", "addr",
                                                              "show", "flannel.1")[0]["addr_info"]]
        assert addrs == [(str(cidr.network_address), 32)]
        # subnet.env for the CNI plugin, in flannel's format
        env = nc.c.subnet_file(name).read_text()
        assert env == (f"FLANNEL_NETWORK={nc.cluster_cidr}\n"
                       f"FLANNEL_SUBNET={cidr.network_address + 1}/{cidr.prefixlen}\n"
                       f"FLANNEL_MTU={eth0['mtu'] - 50}\nFLANNEL_IPMASQ=true\n")
        assert host.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"


async def test_each_host_has_entries_for_the_other(net_cluster: NetCluster) -> None:
    nc = net_cluster
    a, b, ha, hb = ab(nc)
    got = await converged(nc, ha, [b], f"{a}'s entries for {b}")
    assert len(got["routes"]) == 1
    await converged(nc, hb, [a], f"{b}'s entries for {a}")


async def test_pod_reaches_pod_on_other_host_over_vxlan(
        net_cluster: NetCluster, net_namespace: str, dk: docker.DockerClient) -> None:
    """A pod on host A fetches from a pod on host B by pod IP; the packets cross flannel.1
    (its counters move on both hosts), and B sees A's pod address, not a masqueraded one."""
    nc, ns = net_cluster, net_namespace
    a, b, ha, hb = ab(nc)
    pods = await create_running(nc, ns, busybox_pod("client", a), serve_pod("server", b),
                                busybox_pod("sink", b))
    client_ip, server_ip = pods["client"]["status"]["podIP"], pods["server"]["status"]["podIP"]
    assert ipaddress.IPv4Address(server_ip) in ipaddress.IPv4Network(
        (await node(nc, b))["spec"]["podCIDR"])
    before_a = (await asyncio.to_thread(link, ha, "flannel.1", True))["stats64"]
    before_b = (await asyncio.to_thread(link, hb, "flannel.1", True))["stats64"]

    async def fetch() -> str | None:
        rc, out = await asyncio.to_thread(pod_exec, dk, ns, "client", "timeout", "3", "wget",
                                          "-qO-", f"http://{server_ip}:9376")
        return out.strip() if rc == 0 else None
    try:
        answer = await until(fetch, timeout=NET_TIMEOUT, interval=0.5, what="pod-to-pod HTTP")
    except TimeoutError as e:
        raise AssertionError(f"{e}\n{nc.logs()}") from None
    assert answer == "server"
    after_a = (await asyncio.to_thread(link, ha, "flannel.1", True))["stats64"]
    after_b = (await asyncio.to_thread(link, hb, "flannel.1", True))["stats64"]
    assert after_a["tx"]["packets"] > before_a["tx"]["packets"]
    assert after_a["rx"]["packets"] > before_a["rx"]["packets"]  # the replies
    assert after_b["rx"]["packets"] > before_b["rx"]["packets"]
    assert after_b["tx"]["packets"] > before_b["tx"]["packets"]

    # Pod to pod keeps the pod's source address (FLANNEL-POSTRTG returns before masquerading).
    sink_ip = pods["sink"]["status"]["podIP"]
    pid = container(dk, ns, "sink").attrs["State"]["Pid"]
    listener = await asyncio.to_thread(Listener, sink_ip, pid)
    try:
        rc, out = await asyncio.to_thread(pod_exec, dk, ns, "client", "sh", "-c",
                                          f"echo hi | timeout 5 nc {sink_ip} {listener.port}")
        assert rc == 0, out
        assert await asyncio.to_thread(listener.peer) == client_ip
    finally:
        listener.close()


async def test_pod_traffic_leaving_the_cluster_network_is_masqueraded(
        net_cluster: NetCluster, net_namespace: str, dk: docker.DockerClient) -> None:
    """A pod connects to the underlay gateway (outside the cluster network; an address of the
    test's own bridge): the connection arrives from host A's underlay address."""
    nc, ns = net_cluster, net_namespace
    a, _b, ha, _hb = ab(nc)
    pods = await create_running(nc, ns, busybox_pod("out", a))
    assert nc.underlay is not None
    listener = await asyncio.to_thread(Listener, nc.underlay.gateway)
    try:
        rc, out = await asyncio.to_thread(
            pod_exec, dk, ns, "out", "sh", "-c",
            f"echo hi | timeout 5 nc {nc.underlay.gateway} {listener.port}")
        assert rc == 0, out
        peer = await asyncio.to_thread(listener.peer)
    finally:
        listener.close()
    assert peer == ha.ip, f"source {peer}, pod {pods['out']['status']['podIP']}"


async def test_deleted_node_loses_its_entries_everywhere(net_cluster: NetCluster) -> None:
    nc = net_cluster
    a, b, ha, hb = ab(nc)
    name = f"fake-{uuid.uuid4().hex[:6]}"
    await nc.c.client.create("nodes", fake_node(name, "10.244.250.0/24", fresh_mac(),
                                                unused_ip(nc, 200)))
    try:
        await converged(nc, ha, [b, name], f"{a} programs {name}")
        await converged(nc, hb, [a, name], f"{b} programs {name}")
    finally:
        await nc.c.client.delete("nodes", name)
    await until(lambda: gone(nc.c.client, "nodes", name), timeout=30)
    await converged(nc, ha, [b], f"{a} forgets {name}")
    await converged(nc, hb, [a], f"{b} forgets {name}")


async def test_node_annotations_are_put_back(net_cluster: NetCluster) -> None:
    nc = net_cluster
    a, _b, ha, _hb = ab(nc)
    await nc.c.client.patch("nodes", a, {"metadata": {"annotations": {
        PREFIX + "public-ip": "192.0.2.1", PREFIX + "backend-data": "{}"}}})

    async def restored() -> bool:
        ann = (await node(nc, a))["metadata"]["annotations"]
        return ann[PREFIX + "public-ip"] == ha.ip and \
            json.loads(ann[PREFIX + "backend-data"]).get("VtepMAC") == link(ha)["address"]
    await until(restored, timeout=NET_TIMEOUT, what="annotations restored")


async def test_kill9_and_restart_resyncs_without_stale_or_duplicate_entries(
        net_cluster: NetCluster) -> None:
    """While A's agent is dead: one fake node goes, another changes its public IP, a third
    appears. After the restart A has exactly the entries of the nodes that exist now."""
    nc = net_cluster
    a, b, ha, hb = ab(nc)
    tag = uuid.uuid4().hex[:6]
    gone_, moved, new = f"fake-gone-{tag}", f"fake-moved-{tag}", f"fake-new-{tag}"
    await nc.c.client.create("nodes", fake_node(gone_, "10.244.251.0/24", fresh_mac(),
                                                unused_ip(nc, 201)))
    await nc.c.client.create("nodes", fake_node(moved, "10.244.252.0/24", fresh_mac(),
                                                unused_ip(nc, 202)))
    try:
        await converged(nc, ha, [b, gone_, moved], "fake nodes programmed")
        nc.netagents[a].kill()  # SIGKILL: no chance to tidy up
        await nc.c.client.delete("nodes", gone_)
        await nc.c.client.patch("nodes", moved, {"metadata": {"annotations": {
            PREFIX + "public-ip": unused_ip(nc, 203)}}})
        await nc.c.client.create("nodes", fake_node(new, "10.244.253.0/24", fresh_mac(),
                                                    unused_ip(nc, 204)))
        # Meanwhile B follows; A's kernel still holds the old state.
        await converged(nc, hb, [a, moved, new], "B follows while A is down")
        stale = await asyncio.to_thread(entries, ha)
        assert ("10.244.251.0/24", "10.244.251.0", "onlink") in stale["routes"]
        nc.netagents[a].start()
        await converged(nc, ha, [b, moved, new], "A resynced after restart")
        # and it stays so (no second round of adds from a late event)
        await asyncio.sleep(1)
        await converged(nc, ha, [b, moved, new], "A still resynced")
    finally:
        for n in (gone_, moved, new):
            try:
                await nc.c.client.delete("nodes", n)
            except Exception:
                pass
        if not nc.netagents[a].running:
            nc.netagents[a].start()
    await converged(nc, ha, [b], "A back to B only")
    await converged(nc, hb, [a], "B back to A only")


async def test_cleanup_removes_everything_it_created(net_cluster: NetCluster) -> None:
    """A third host with its own agent (and a Node object standing in for its kubelet); then
    `tk-netagent --cleanup` inside it removes flannel.1, the chains and jumps, subnet.env."""
    nc = net_cluster
    assert nc.underlay is not None
    host = await asyncio.to_thread(nc.underlay.add_host)
    name = f"{nc.name_prefix}-{nc.underlay.tag}-cleanup-{uuid.uuid4().hex[:4]}"
    await nc.c.client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                       "metadata": {"name": name}})
    # A leftover flannel.1 that does not match (VNI 42, IANA port, learning on, a stray
    # address): the agent must replace it, not adopt it.
    host.run("ip", "link", "add", "flannel.1", "type", "vxlan", "id", "42", "dstport", "4789",
             "dev", "eth0")
    host.run("ip", "addr", "add", "10.99.0.1/24", "dev", "flannel.1")
    agent = nc.c.start_netagent(name, host, "--cluster-cidr", nc.cluster_cidr)
    assert nc.c.pki is not None
    subnet_file = nc.c.subnet_file(name)
    try:
        async def ready() -> bool:
            assert subnet_file.exists(), agent.logs(20)
            save = host.run("iptables-save").stdout
            assert "-j FLANNEL-POSTRTG" in save and "-j FLANNEL-FWD" in save
            data = link(host)["linkinfo"]["info_data"]
            assert (data["id"], data["port"], data["learning"]) == (1, 8472, False), data
            addrs = jrun(host, "ip", "-j", "-4", "addr", "show", "flannel.1")[0]["addr_info"]
            assert [a["local"] for a in addrs] != ["10.99.0.1"], addrs
            return True
        await until(ready, timeout=NET_TIMEOUT, what="third agent set up")
        assert "deleted mismatched flannel.1" in agent.logs(), agent.logs()
        agent.kill()
        r = await asyncio.to_thread(
            host.run, sys.executable, "-m", "netagent", "--cleanup", "--subnet-file",
            str(subnet_file), check=False, timeout=60)
        assert r.returncode == 0, r.stderr
        assert host.run("ip", "link", "show", "flannel.1", check=False).returncode != 0
        save = host.run("iptables-save").stdout
        assert "FLANNEL" not in save, save
        assert not subnet_file.exists()
        # idempotent: nothing left to remove is not an error
        r = await asyncio.to_thread(
            host.run, sys.executable, "-m", "netagent", "--cleanup", "--subnet-file",
            str(subnet_file), check=False, timeout=60)
        assert r.returncode == 0, r.stderr
        # an --iface that does not exist is one line naming the flag, exit 2
        r = await asyncio.to_thread(
            host.run, sys.executable, "-m", "netagent", "--kubeconfig",
            str(nc.c.pki / "nodes" / name / "netagent.conf"), "--server", nc.c.host_server,
            "--node-name", name, "--iface", "nosuch0", check=False, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            "tk-netagent: error: --iface: no interface named 'nosuch0'"]
    finally:
        agent.kill()
        await nc.c.client.delete("nodes", name)
    a, b, ha, _hb = ab(nc)
    await converged(nc, ha, [b], f"{a} forgets {name}")
