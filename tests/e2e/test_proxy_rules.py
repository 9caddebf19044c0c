"""tk-proxy (iptables mode) for real: the `python -m proxy` process inside a harness.netns host,
against a real apiserver, programming that host's own iptables, with real packets.

Services without a selector and hand-written Endpoints stand in for pods (no kubelet needed):
the "endpoint" is a TCP server inside a second host. Checked: the chains appear and follow
Endpoints changes; a ClusterIP connection reaches the endpoint; a service without endpoints
refuses at once; a UDP flow pinned by conntrack to an endpoint that leaves moves to the new
one (conntrack clean-up); a restart after SIGKILL (with a Service deleted meanwhile)
converges to exactly the rules a fresh proxy on a fresh host writes;
`--cleanup` leaves no KUBE-* behind.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from harness.cluster import Cluster, Component
from harness.netns import Host, Underlay
from harness.wait import until
from proxy import iptables as ipt
from proxy.metrics import TRIGGER_TIME_ANNOTATION
from proxy.model import Endpoint, ServicePortName

pytestmark = [pytest.mark.xdist_group("net")]

CIDR = "10.244.0.0/16"
PROXY_FLAGS = ("--cluster-cidr", CIDR, "--min-sync-period", "0.1s")

# One TCP server answering its own address:port and closing: the "pod" behind a service.
SERVER = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(f"{sys.argv[2]}:{port}\\n".encode()); c.close()
"""

CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
    print(s.recv(100).decode().strip())
except OSError as e:
    print(type(e).__name__)
"""


@dataclass
class Env:
    cluster: Cluster
    underlay: Underlay
    a: Host  # runs the proxy under test
    b: Host  # runs the endpoint servers
    proxy: Component
    servers: list[subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Underlay, Host, Host, Host]]:
    underlay = Underlay.create()
    try:
        yield underlay, underlay.add_host(), underlay.add_host(), underlay.add_host()
    finally:
        underlay.delete()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env(hosts: tuple[Underlay, Host, Host, Host]) -> AsyncIterator[Env]:
    underlay, a, b, _ = hosts
    servers = [subprocess.Popen([*b.prefix, sys.executable, "-c", SERVER, str(port), b.ip])
               for port in (8080, 8081)]
    try:
        async with Cluster("--watch-bookmark-interval", "1", listen_on=underlay.gateway) as c:
            proxy = c.start_proxy("node-a", a, *PROXY_FLAGS)
            yield Env(c, underlay, a, b, proxy, servers)
    finally:
        for s in servers:
            s.kill()
            s.wait()


def saved(host: Host) -> str:
    return host.run("iptables-save").stdout


def kube_rules(host: Host) -> list[str]:
    """Every KUBE-* chain declaration and every rule that is in or jumps to a KUBE-* chain,
    with its table, counters and comments of iptables-save removed, in order."""
    out, table = [], ""
    for line in saved(host).splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":KUBE-"):
            out.append(f"{table} {line.split(' ')[0]}")
        elif line.startswith("-A ") and "KUBE-" in line:
            out.append(f"{table} {line}")
    return out


def connect(host: Host, ip: str, port: int) -> str:
    return host.run(sys.executable, "-c", CLIENT, ip, str(port), timeout=20).stdout.strip()


async def make_service(c: Cluster, ns: str, name: str, *, node_port: bool = False,
                       affinity: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    if node_port:
        spec["type"] = "NodePort"
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    return await c.client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": spec}, ns)


async def set_endpoints(c: Cluster, ns: str, name: str, addrs: list[tuple[str, int]],
                        annotations: dict[str, str] | None = None) -> None:
    """Create or replace the Endpoints `name` (each address with its own port)."""
    subsets = [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port,
                                                      "protocol": "TCP"}]}
               for ip, port in addrs]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "subsets": subsets}
    try:
        cur = await c.client.get("endpoints", name, ns)
    except Exception:
        await c.client.create("endpoints", body, ns)
        return
    body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
    await c.client.update("endpoints", body, ns)


def spn(ns: str, name: str) -> ServicePortName:
    return ServicePortName(ns, name, "http", "TCP")


async def wait_rules(host: Host, check: Any, what: str, timeout: float = 30) -> list[str]:
    async def ok() -> list[str] | None:
        rules = await asyncio.to_thread(kube_rules, host)
        return rules if check(rules) else None
    return await until(ok, timeout=timeout, what=what)


async def test_rules_follow_endpoints_and_packets_flow(env: Env) -> None:
    c, a, b = env.cluster, env.a, env.b
    ns = await c.new_namespace()
    svc = await make_service(c, ns, "web")
    cip = svc["spec"]["clusterIP"]
    name = spn(ns, "web")
    svc_chain = ipt.svc_chain(name)

    # No endpoints yet: REJECT in filter, no service chain, and the connection is refused.
    await wait_rules(a, lambda r: any(f"-d {cip}/32" in ln and "-j REJECT" in ln for ln in r),
                     "REJECT for a service without endpoints")
    assert connect(a, cip, 80) == "ConnectionRefusedError"

    await set_endpoints(c, ns, "web", [(b.ip, 8080)])
    sep = ipt.sep_chain(name, Endpoint(b.ip, 8080))
    rules = await wait_rules(a, lambda r: f"nat :{sep}" in r, "the endpoint's chain")
    assert f'nat -A {sep} -p tcp -m comment --comment "{ns}/web:http" -m tcp -j DNAT ' \
           f"--to-destination {b.ip}:8080" in rules
    assert not any("REJECT" in ln and cip in ln for ln in rules)
    assert connect(a, cip, 80) == f"{b.ip}:8080"

    # The endpoint moves to another port: the rules follow, the old chain goes.
    await set_endpoints(c, ns, "web", [(b.ip, 8081)])
    sep2 = ipt.sep_chain(name, Endpoint(b.ip, 8081))
    rules = await wait_rules(a, lambda r: f"nat :{sep2}" in r and f"nat :{sep}" not in r,
                             "the new endpoint's chain, the old one gone")
    assert connect(a, cip, 80) == f"{b.ip}:8081"

    # Two endpoints: statistic 1/2 then the last without; both get traffic eventually.
    await set_endpoints(c, ns, "web", [(b.ip, 8080), (b.ip, 8081)])
    rules = await wait_rules(a, lambda r: f"nat :{sep}" in r and f"nat :{sep2}" in r,
                             "two endpoints")
    svc_rules = [ln for ln in rules if ln.startswith(f"nat -A {svc_chain} ")]
    assert len([ln for ln in svc_rules if "--probability 0.50000000000" in ln]) == 1
    seen = {connect(a, cip, 80) for _ in range(30)}
    assert seen == {f"{b.ip}:8080", f"{b.ip}:8081"}

    # Scaled to zero: refused at once again.
    await set_endpoints(c, ns, "web", [])
    await wait_rules(a, lambda r: f"nat :{svc_chain}" not in r and f"nat :{sep}" not in r,
                     "service chains removed")
    assert connect(a, cip, 80) == "ConnectionRefusedError"


async def test_nodeport_and_affinity(env: Env) -> None:
    c, a, b = env.cluster, env.a, env.b
    ns = await c.new_namespace()
    svc = await make_service(c, ns, "np", node_port=True, affinity=True)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    await set_endpoints(c, ns, "np", [(b.ip, 8080), (b.ip, 8081)])
    name = spn(ns, "np")
    ext = ipt.ext_chain(name)
    rules = await wait_rules(a, lambda r: f"nat :{ext}" in r, "the NodePort's chain")
    assert any(ln.startswith("nat -A KUBE-NODEPORTS") and f"--dport {node_port} -j {ext}" in ln
               for ln in rules)
    seps = [ipt.sep_chain(name, Endpoint(b.ip, p)) for p in (8080, 8081)]
    for sep in seps:
        assert any("-m recent --rcheck --seconds 10800 --reap --name " + sep in ln
                   for ln in rules), rules
    # From host B to host A's NodePort: one endpoint, every time (ClientIP affinity).
    answers = {connect(b, a.ip, node_port) for _ in range(8)}
    assert len(answers) == 1 and answers <= {f"{b.ip}:8080", f"{b.ip}:8081"}, answers


async def test_restart_converges_to_exactly_the_desired_rules(
        env: Env, hosts: tuple[Underlay, Host, Host, Host]) -> None:
    c, a, b = env.cluster, env.a, env.b
    fresh = hosts[3]
    ns = await c.new_namespace()
    for n in ("keep", "gone"):
        await make_service(c, ns, n)
        await set_endpoints(c, ns, n, [(b.ip, 8080)])
    gone = ipt.svc_chain(spn(ns, "gone"))
    await wait_rules(a, lambda r: f"nat :{gone}" in r, "both services programmed")

    env.proxy.kill()  # SIGKILL
    await c.client.delete("services", "gone", ns)
    await c.client.delete("endpoints", "gone", ns)
    await make_service(c, ns, "new")
    await set_endpoints(c, ns, "new", [(b.ip, 8081)])
    env.proxy.start()
    new = ipt.svc_chain(spn(ns, "new"))
    rules = await wait_rules(a, lambda r: f"nat :{new}" in r and f"nat :{gone}" not in r,
                             "restarted proxy caught up")
    dups = [ln for ln, n in Counter(rules).items() if n > 1]
    assert not dups, f"duplicated after the restart: {dups}"

    # A fresh proxy on a fresh host writes exactly the same rules.
    other = c.start_proxy("node-fresh", fresh, *PROXY_FLAGS)
    try:
        await wait_rules(fresh, lambda r: r == kube_rules(a),
                         "the fresh host's rules equal the restarted host's")
    finally:
        other.stop()


async def test_cleanup_removes_every_kube_rule(env: Env,
                                               hosts: tuple[Underlay, Host, Host, Host]) -> None:
    host = hosts[3]  # the fresh host of the restart test, or a new one: programmed here
    c = env.cluster
    proxy = c.start_proxy("node-cleanup", host, *PROXY_FLAGS)
    try:
        await wait_rules(host, lambda r: any(ln.startswith("nat -A KUBE-POSTROUTING") for ln in r),
                         "rules programmed")
    finally:
        proxy.stop()
    # Something of someone else's in the same tables stays.
    host.run("iptables", "-t", "nat", "-N", "OTHER-CHAIN")
    host.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "OTHER-CHAIN")
    p = host.run(sys.executable, "-m", "proxy", "--cleanup", check=False)
    assert p.returncode == 0, p.stderr
    text = saved(host)
    assert not re.search(r"KUBE-", text), text
    assert ":OTHER-CHAIN" in text and "-A POSTROUTING -j OTHER-CHAIN" in text
    # And again: nothing left to remove is fine.
    assert host.run(sys.executable, "-m", "proxy", "--cleanup", check=False).returncode == 0


METRICS = """
import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:10249/metrics", timeout=5).read().decode())
"""


def metric(host: Host, name: str) -> float:
    text = host.run(sys.executable, "-c", METRICS).stdout
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


async def test_metrics(env: Env) -> None:
    c, a, b = env.cluster, env.a, env.b
    ns = await c.new_namespace()
    await make_service(c, ns, "timed")
    before = metric(a, "kubeproxy_network_programming_duration_seconds_count")
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    await set_endpoints(c, ns, "timed", [(b.ip, 8080)], {TRIGGER_TIME_ANNOTATION: now})
    sep = ipt.sep_chain(spn(ns, "timed"), Endpoint(b.ip, 8080))
    await wait_rules(a, lambda r: f"nat :{sep}" in r, "the endpoint programmed")
    await until(lambda: metric(a, "kubeproxy_network_programming_duration_seconds_count")
                > before, timeout=10, what="network programming latency observed")
    assert metric(a, "kubeproxy_sync_proxy_rules_duration_seconds_count") >= 1
    assert metric(a, "kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0


RESTORE_BAD = """
from proxy.iptables import RestoreError, restore
try:
    restore("*nat\\n:KUBE-SERVICES - [0:0]\\n-A KUBE-SERVICES --no-such-option\\nCOMMIT\\n")
except RestoreError as e:
    print(e)
"""


def test_failed_restore_names_the_line_and_changes_nothing(
        hosts: tuple[Underlay, Host, Host, Host]) -> None:
    host = hosts[2]  # runs no proxy
    before = saved(host)
    out = host.run(sys.executable, "-c", RESTORE_BAD).stdout
    assert "iptables-restore failed" in out
    assert "(line 3: '-A KUBE-SERVICES --no-such-option')" in out, out
    # Atomic: not even the declared chain was created.
    assert [ln for ln in saved(host).splitlines() if not ln.startswith("#")] == \
        [ln for ln in before.splitlines() if not ln.startswith("#")]


# One UDP server on one address: answers every datagram with its tag.
UDP_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    _, peer = s.recvfrom(100)
    s.sendto(sys.argv[3].encode(), peer)
"""

# One datagram from a fixed source port (so always the same conntrack entry); the answer.
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.settimeout(1)
s.sendto(b"?", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(100).decode())
except OSError as e:
    print(type(e).__name__)
"""


async def test_udp_flow_follows_the_endpoint_change(env: Env) -> None:
    """A UDP flow DNAT'd to an endpoint that leaves moves to the new endpoint at once: the
    proxy deletes its conntrack entry (without that, every datagram of the same 5-tuple keeps
    refreshing the entry and keeps going to the old server)."""
    c, a, b = env.cluster, env.a, env.b
    # Two endpoint addresses on host B (off the underlay subnet, routed from host A).
    ips = ["10.250.77.1", "10.250.77.2"]
    servers = []
    try:
        for i, ip in enumerate(ips, 1):
            b.run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
            a.run("ip", "route", "add", f"{ip}/32", "via", b.ip)
            servers.append(subprocess.Popen(
                [*b.prefix, sys.executable, "-c", UDP_SERVER, ip, "5353", str(i)]))
        ns = await c.new_namespace()
        svc = await c.client.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": ns},
            "spec": {"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}, ns)
        cip = svc["spec"]["clusterIP"]
        name = ServicePortName(ns, "dns", "dns", "UDP")

        async def endpoints(ip: str) -> None:
            body: dict[str, Any] = {
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "dns", "namespace": ns},
                "subsets": [{"addresses": [{"ip": ip}],
                             "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}]}
            try:
                cur = await c.client.get("endpoints", "dns", ns)
            except Exception:
                await c.client.create("endpoints", body, ns)
                return
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            await c.client.update("endpoints", body, ns)

        def ask() -> str:
            return a.run(sys.executable, "-c", UDP_CLIENT, cip, "53", "40053",
                         timeout=20).stdout.strip()

        await endpoints(ips[0])
        sep1 = ipt.sep_chain(name, Endpoint(ips[0], 5353))
        await wait_rules(a, lambda r: f"nat :{sep1}" in r, "the first endpoint's chain")
        assert await until(lambda: ask() == "1", timeout=10, what="answer from server 1")
        assert [ask() for _ in range(3)] == ["1"] * 3  # the same flow, pinned

        await endpoints(ips[1])
        sep2 = ipt.sep_chain(name, Endpoint(ips[1], 5353))
        await wait_rules(a, lambda r: f"nat :{sep2}" in r and f"nat :{sep1}" not in r,
                         "the second endpoint's chain, the first gone")
        # Server 1 still runs: only the conntrack clean-up moves this 5-tuple to server 2
        # (the entry's UDP timeout is 30s or more, refreshed by every datagram below).
        assert await until(lambda: ask() == "2", timeout=5, interval=0.3,
                           what="the same flow answered by server 2")
    finally:
        for s in servers:
            s.kill()
            s.wait()
        for ip in ips:
            b.run("ip", "addr", "del", f"{ip}/32", "dev", "lo", check=False)
            a.run("ip", "route", "del", f"{ip}/32", check=False)
