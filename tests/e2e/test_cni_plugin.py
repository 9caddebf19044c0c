"""The CNI plugin (netagent/cni.py) against real network namespaces, executed as the kubelet
does: the `tk-cni` executable, config on stdin, CNI_* environment.

Every test has its own bridge, its own /24 of 10.199.0.0/16 and its own namespaces (`ip netns
add`), all removed afterwards, so tests can run in parallel with each other and with kubelets;
traffic only goes to addresses inside namespaces the test created.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from netagent import cni

TK_CNI = str(Path(sys.executable).parent / "tk-cni")
_counter = itertools.count()

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check).stdout


def ip_json(*args: str) -> Any:
    return json.loads(ip("-j", *args) or "[]")


@dataclass
class Net:
    """One test's private network: bridge, subnet, data dir, and the namespaces it made."""

    tmp: Path
    tag: str
    bridge: str
    subnet: ipaddress.IPv4Network
    namespaces: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def netns(self) -> str:
        name = f"tkc-{self.tag}-{len(self.namespaces)}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        return name

    def conf(self, **extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "cniVersion": "1.0.0", "name": f"net-{self.tag}", "type": "tinykube",
            "bridge": self.bridge, "subnetFile": str(self.tmp / "subnet.env"),
            "ipam": {"type": "host-local", "dataDir": str(self.tmp / "ipam")},
            "runtimeConfig": {"ipRanges": [[{"subnet": str(self.subnet)}]]},
        }
        return {**base, **extra}

    def state_dir(self) -> Path:
        return self.tmp / "ipam" / f"net-{self.tag}"


# Container ids are unique per Docker engine, and the plugin names the host's veth after them;
# test processes running in parallel must not reuse each other's ids ("c1" in two processes
# would be one veth).
CID_PREFIX = uuid.uuid4().hex[:8] + "-"


def cid(container: str) -> str:
    return CID_PREFIX + container


def plugin(command: str, conf: dict[str, Any] | bytes, container: str, netns: str | None,
           ifname: str = "eth0") -> tuple[int, Any]:
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid(container),
           "CNI_NETNS": f"/run/netns/{netns}" if netns else "", "CNI_IFNAME": ifname,
           "CNI_PATH": str(Path(TK_CNI).parent)}
    res = subprocess.run([TK_CNI], input=data, capture_output=True, env=env, check=False)
    return res.returncode, json.loads(res.stdout) if res.stdout.strip() else None


def add(net: Net, container: str, netns: str, **extra: Any) -> dict[str, Any]:
    rc, out = plugin("ADD", net.conf(**extra), container, netns)
    assert rc == 0, out
    return out


def addr_of(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or "0"
    # A /24 no other test uses at the same time: tests of one worker run one after another,
    # each xdist worker has its own hundred.
    third = 20 + int(worker) % 2 * 100 + next(_counter) % 100
    tag = uuid.uuid4().hex[:6]
    n = Net(tmp_path, tag, f"tkc{tag}", ipaddress.IPv4Network(f"10.199.{third}.0/24"))
    try:
        yield n
    finally:
        for name in n.namespaces:
            ip("netns", "del", name, check=False)
        ip("link", "del", n.bridge, check=False)
        for rule in cni.forward_rules(n.bridge):
            subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True, check=False)


# A TCP echo server inside a namespace: prints "ready" once listening, answers one line.
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 7777)); s.listen(8); print("ready", flush=True)
    while True:
        c, peer = s.accept(); c.sendall(("hello " + peer[0] + "\\n").encode()); c.close()
""")
CLIENT = textwrap.dedent("""
    import socket, sys
    c = socket.create_connection((sys.argv[1], 7777), timeout=5)
    print(c.recv(100).decode().strip())
""")


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def serve(procs: list[subprocess.Popen[str]], netns: str) -> None:
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER],
                         stdout=subprocess.PIPE, text=True)
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"


def connect(address: str, netns: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    res = subprocess.run([*prefix, sys.executable, "-c", CLIENT, address],
                         capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_add_configures_the_namespace(net: Net, servers: list[Any]) -> None:
    ns = net.netns()
    result = add(net, "c-add", ns)
    address = addr_of(result)
    assert ipaddress.ip_address(address) in net.subnet
    assert result["cniVersion"] == "1.0.0"
    assert result["ips"][0]["gateway"] == net.gateway and result["ips"][0]["interface"] == 2
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": net.gateway}]
    names = [i["name"] for i in result["interfaces"]]
    assert names == [net.bridge, cni.host_veth_name(cid("c-add"), "eth0"), "eth0"]
    assert result["interfaces"][2]["sandbox"] == f"/run/netns/{ns}"

    (link,) = ip_json("-n", ns, "addr", "show", "dev", "eth0")
    assert link["operstate"] == "UP" and link["mtu"] == 1500
    assert link["address"] == result["interfaces"][2]["mac"]
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == [address]
    routes = ip_json("-n", ns, "route", "show", "default")
    assert [(r["dst"], r["gateway"]) for r in routes] == [("default", net.gateway)]
    (bridge,) = ip_json("addr", "show", "dev", net.bridge)
    assert f"{net.gateway}" in [a["local"] for a in bridge["addr_info"]]
    veth = cni.host_veth_name(cid("c-add"), "eth0")
    assert Path(f"/sys/class/net/{veth}/master").resolve().name == net.bridge
    assert Path(f"/sys/class/net/{veth}/brport/hairpin_mode").read_text().strip() == "1"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    # the state file: container id and ifname, as host-local
    assert (net.state_dir() / address).read_bytes() == cid("c-add").encode() + b"\r\neth0"

    serve(servers, ns)
    assert connect(address) == f"hello {net.gateway}"  # the host reaches the pod via cni bridge

    rc, out = plugin("CHECK", net.conf(prevResult=result), "c-add", ns)
    assert (rc, out) == (0, None)


def test_two_namespaces_on_one_bridge_reach_each_other(net: Net, servers: list[Any]) -> None:
    a, b = net.netns(), net.netns()
    ip_a, ip_b = addr_of(add(net, "c-a", a)), addr_of(add(net, "c-b", b))
    assert ip_a != ip_b
    serve(servers, a)
    assert connect(ip_a, b) == f"hello {ip_b}"


def test_concurrent_adds_get_distinct_addresses(net: Net) -> None:
    namespaces = [net.netns() for _ in range(20)]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda i: plugin("ADD", net.conf(), f"c{i}", namespaces[i]),
                                range(20)))
    assert all(rc == 0 for rc, _ in results), [out for rc, out in results if rc]
    addresses = [addr_of(out) for _, out in results]
    assert len(set(addresses)) == 20
    assert sorted(p.name for p in net.state_dir().iterdir() if p.name[0].isdigit()) == \
        sorted(addresses)
    for ns, address in zip(namespaces, addresses, strict=True):
        (link,) = ip_json("-n", ns, "addr", "show", "dev", "eth0")
        assert address in [a["local"] for a in link["addr_info"]]
    with ThreadPoolExecutor(20) as pool:
        dels = list(pool.map(lambda i: plugin("DEL", net.conf(), f"c{i}", namespaces[i]),
                             range(20)))
    assert all(rc == 0 for rc, _ in dels), dels
    assert not [p for p in net.state_dir().iterdir() if p.name[0].isdigit()]


def test_del_releases_everything_and_is_idempotent(net: Net) -> None:
    small = {"runtimeConfig": {"ipRanges": [[{"subnet": str(net.subnet),
                                              "rangeStart": str(net.subnet[2]),
                                              "rangeEnd": str(net.subnet[4])}]]}}
    namespaces = [net.netns() for _ in range(4)]
    addresses = [addr_of(add(net, f"c{i}", namespaces[i], **small)) for i in range(3)]
    assert addresses == [str(net.subnet[i]) for i in (2, 3, 4)]
    rc, out = plugin("ADD", net.conf(**small), "c3", namespaces[3])
    assert rc == 1 and "no IP addresses available" in out["msg"], out
    veth = cni.host_veth_name(cid("c1"), "eth0")
    assert Path(f"/sys/class/net/{veth}").exists()

    assert plugin("DEL", net.conf(**small), "c1", namespaces[1]) == (0, None)
    assert not Path(f"/sys/class/net/{veth}").exists()
    assert not (net.state_dir() / addresses[1]).exists()
    links = ip_json("-n", namespaces[1], "link", "show")
    assert [link["ifname"] for link in links] == ["lo"]  # the pair is gone
    assert plugin("DEL", net.conf(**small), "c1", namespaces[1]) == (0, None)  # again: fine
    assert plugin("DEL", net.conf(**small), "c1", None) == (0, None)  # without a netns too
    assert plugin("DEL", net.conf(**small), "never-added", None) == (0, None)
    # the released address is handed out again
    assert addr_of(add(net, "c3", namespaces[3], **small)) == addresses[1]


def test_check_notices_a_lost_address(net: Net) -> None:
    ns = net.netns()
    result = add(net, "c-check", ns)
    ip("-n", ns, "addr", "flush", "dev", "eth0")
    rc, out = plugin("CHECK", net.conf(prevResult=result), "c-check", ns)
    assert rc == 1 and f"eth0 in /run/netns/{ns} lacks {addr_of(result)}" in out["msg"], out


def test_errors_are_cni_error_json(net: Net) -> None:
    ns = net.netns()
    bad = net.conf(runtimeConfig={}, ipam={"dataDir": str(net.tmp), "subnet": "10.199.0.0/40"})
    rc, out = plugin("ADD", bad, "c-bad", ns)
    assert rc == 1 and out["code"] == 7 and out["msg"].startswith("ipam.subnet: "), out
    rc, out = plugin("ADD", net.conf(), "c-bad", "no-such-netns-here")
    assert rc == 1 and out["code"] == 3 and "does not exist" in out["msg"]
    # the interface name is taken in the netns: the failing step is named, nothing leaks
    ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "other0")
    rc, out = plugin("ADD", net.conf(), "c-taken", ns)
    assert rc == 1 and out["msg"].startswith("creating veth pair"), out
    assert "File exists" in out["msg"]
    assert not [p for p in net.state_dir().iterdir() if p.name[0].isdigit()]
    assert not Path(f"/sys/class/net/{cni.host_veth_name(cid('c-taken'), 'eth0')}").exists()


def test_subnet_env_wins_over_runtime_config(net: Net) -> None:
    other = ipaddress.ip_network(f"10.198.{net.subnet.network_address.packed[2]}.0/24")
    (net.tmp / "subnet.env").write_text(
        f"FLANNEL_NETWORK=10.198.0.0/16\nFLANNEL_SUBNET={other[1]}/24\n"
        "FLANNEL_MTU=1400\nFLANNEL_IPMASQ=true\n")
    ns = net.netns()
    result = add(net, "c-env", ns)
    assert ipaddress.ip_address(addr_of(result)) in other
    assert result["ips"][0]["gateway"] == str(other[1])
    (link,) = ip_json("-n", ns, "link", "show", "eth0")
    assert link["mtu"] == 1400


def bridge_mac(net: Net) -> str:
    return Path(f"/sys/class/net/{net.bridge}/address").read_text().strip()


def test_bridge_keeps_its_mac_as_pods_come_and_go(net: Net) -> None:
    # Pods cache the gateway's MAC: a bridge that took a port's MAC would change it when that
    # pod goes, and the other pods' egress would stall until their ARP entries go stale.
    a, b = net.netns(), net.netns()
    add(net, "c-mac-a", a)
    mac = bridge_mac(net)
    assert mac != "00:00:00:00:00:00"
    assert plugin("DEL", net.conf(), "c-mac-a", a) == (0, None)
    assert bridge_mac(net) == mac  # no port left
    add(net, "c-mac-b", b)
    assert bridge_mac(net) == mac
    veth = cni.host_veth_name(cid("c-mac-b"), "eth0")
    assert Path(f"/sys/class/net/{veth}/address").read_text().strip() != mac


def rule_present(rule: list[str]) -> bool:
    return subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True,
                          check=False).returncode == 0


def test_forward_rules_come_back_after_a_reboot(net: Net) -> None:
    rules = cni.forward_rules(net.bridge)
    a, b, c = net.netns(), net.netns(), net.netns()
    add(net, "c-fw-a", a)
    assert all(rule_present(r) for r in rules)
    marker = net.state_dir() / f".forward-{net.bridge}"
    ifindex = Path(f"/sys/class/net/{net.bridge}/ifindex").read_text().strip()
    # A reboot empties the chains while the marker stays in /var/lib, and the bridge made
    # again at the same point of the boot gets the same ifindex; the marker of that earlier
    # boot must not keep the rules away (here: one that recorded the ifindex alone, and one
    # of another boot id).
    for stale in (ifindex, f"00000000-0000-0000-0000-000000000000 {ifindex}"):
        for r in rules:
            subprocess.run(["iptables", "-w", "-D", *r], capture_output=True, check=True)
        marker.write_text(stale)
        ns = b if stale == ifindex else c
        add(net, f"c-fw-{ns}", ns)
        assert all(rule_present(r) for r in rules), stale


def test_a_full_range_takes_back_leaked_addresses(net: Net) -> None:
    small = {"runtimeConfig": {"ipRanges": [[{"subnet": str(net.subnet),
                                              "rangeStart": str(net.subnet[2]),
                                              "rangeEnd": str(net.subnet[4])}]]}}
    namespaces = [net.netns() for _ in range(4)]
    addresses = [addr_of(add(net, f"c{i}", namespaces[i], **small)) for i in range(3)]
    # c1's sandbox died and its DEL never came (a kubelet killed at that moment, a
    # container removed behind its back): the namespace goes, and the veth pair with it.
    ip("netns", "del", namespaces[1])
    veth1 = Path(f"/sys/class/net/{cni.host_veth_name(cid('c1'), 'eth0')}")
    deadline = time.monotonic() + 30
    while veth1.exists() and time.monotonic() < deadline:  # the kernel destroys it async
        time.sleep(0.05)
    assert not veth1.exists()
    # A young reservation without a veth may be an ADD in flight: left alone.
    rc, out = plugin("ADD", net.conf(**small), "c3", namespaces[3])
    assert rc == 1 and "no IP addresses available" in out["msg"], out
    old = time.time() - cni.LEAK_GRACE - 60
    for a in addresses:
        os.utime(net.state_dir() / a, (old, old))
    # Old enough: only c1's address (its veth is gone) is taken back, the others stay.
    assert addr_of(add(net, "c3", namespaces[3], **small)) == addresses[1]
    held = {p.name: p.read_bytes() for p in net.state_dir().iterdir() if p.name[0].isdigit()}
    assert held == {addresses[0]: cid("c0").encode() + b"\r\neth0",
                    addresses[1]: cid("c3").encode() + b"\r\neth0",
                    addresses[2]: cid("c2").encode() + b"\r\neth0"}
    # The late DEL of c1 does not free the address c3 now holds.
    assert plugin("DEL", net.conf(**small), "c1", None) == (0, None)
    assert (net.state_dir() / addresses[1]).read_bytes().startswith(cid("c3").encode())
