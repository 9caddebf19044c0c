"""Hosts with their own network stacks on one machine: network namespaces on a veth underlay.

Cluster networking (the VXLAN agent, kube-proxy) is only tested for real across hosts that
each have their own interfaces, routes and iptables. A `Host` is a network namespace with an
`eth0` veth whose other end sits on an `Underlay`: a Linux bridge in the machine's own
namespace, playing the switch between the hosts (and, with its gateway address, the router to
"outside"). A node's processes run inside its host with `ip netns exec` (`Host.prefix`); they
still share the machine's filesystem and its Docker engine (the kubelet's pause containers get
their interfaces from the CNI plugin, which the kubelet runs inside the host).

    underlay = Underlay.create()             # tkul<tag>, 172.30.X.1/24, FORWARD accepted
    a = underlay.add_host()                  # netns tkn<tag>0, eth0 172.30.X.10/24
    a.run("ip", "route")                     # a command inside the host
    underlay.delete()                        # every host, veth and rule it made

The apiserver of a test cluster listens on every address of the machine, so nodes reach it at
the underlay's gateway address (`Underlay.gateway`). Names carry a random tag, so parallel test
processes (and a scripts/up lab beside them) never share a device or a subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

# The underlay subnets: one /24 of 172.30.0.0/16 per Underlay, picked among the unused ones.
# The comment on the machine's FORWARD rule that lets frames cross the underlay bridge (Docker
# sets FORWARD's policy to DROP, and br_netfilter sends bridged frames through it).
FORWARD_COMMENT = "tinykube: underlay {bridge}"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check,
                          timeout=30)


def _used_underlays() -> set[int]:
    """Third octets of 172.30.X.0/24 subnets already on this machine's interfaces."""
    out = _ip("-4", "-o", "addr", "show").stdout
    used = set()
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("172.30."):
                used.add(int(word.split(".")[2]))
    return used


@dataclass
class Host:
    """One host: a network namespace `netns` with `eth0` at `ip` on the underlay."""

    netns: str
    ip: str
    gateway: str
    prefixlen: int
    veth: str  # the underlay end, in the machine's namespace

    @property
    def prefix(self) -> list[str]:
        """Put this before a command to run it inside the host."""
        return ["ip", "netns", "exec", self.netns]

    def run(self, *cmd: str, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the host; output captured as text."""
        return subprocess.run([*self.prefix, *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout, input=input)

    def setup(self) -> None:
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns",
            self.netns)
        self.run("ip", "link", "set", "lo", "up")
        self.run("ip", "addr", "add", f"{self.ip}/{self.prefixlen}", "dev", "eth0")
        self.run("ip", "link", "set", "eth0", "up")
        self.run("ip", "route", "add", "default", "via", self.gateway)
        # A new namespace starts with forwarding off; a node forwards its pods' packets.
        self.run("sysctl", "-qw", "net.ipv4.ip_forward=1")

    def delete(self) -> None:
        # Deleting the namespace deletes eth0, and with it its veth peer on the underlay.
        _ip("netns", "del", self.netns, check=False)
        _ip("link", "del", self.veth, check=False)


@dataclass
class Underlay:
    """The hosts' shared network: bridge `bridge` with `gateway`/24 in the machine's namespace."""

    bridge: str
    network: ipaddress.IPv4Network
    tag: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @classmethod
    def create(cls, tag: str | None = None) -> Underlay:
        reap_stale()
        tag = tag or uuid.uuid4().hex[:6]
        used = _used_underlays()
        free = [i for i in range(1, 255) if i not in used]
        if not free:
            raise RuntimeError("no free 172.30.X.0/24 underlay subnet on this machine")
        third = random.choice(free)
        u = cls(bridge=f"tkul{tag}"[:15], network=ipaddress.IPv4Network(f"172.30.{third}.0/24"),
                tag=tag)
        try:
            u._setup()
        except BaseException:
            u.delete()
            raise
        return u

    def _setup(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self._forward_rules()

    def _forward_rules(self) -> None:
        """Frames between the hosts cross the bridge (ACCEPT); anything a host routes through
        the gateway to elsewhere is dropped, so a test never sends a packet off this machine
        (a ClusterIP with no rule behind it would otherwise follow the default route out)."""
        iptables = shutil.which("iptables")
        if iptables is None:
            return
        comment = ["-m", "comment", "--comment", FORWARD_COMMENT.format(bridge=self.bridge)]
        # -I puts each rule first: the ACCEPT, inserted last, ends up before the DROP.
        for rule in (["-i", self.bridge, *comment, "-j", "DROP"],
                     ["-i", self.bridge, "-o", self.bridge, *comment, "-j", "ACCEPT"]):
            subprocess.run([iptables, "-w", "-I", "FORWARD", *rule], capture_output=True,
                           check=True, timeout=30)

    def add_host(self) -> Host:
        """A new host on this underlay (addresses .10, .11, … in creation order)."""
        index = len(self.hosts)
        host = Host(netns=f"tkn{self.tag}{index}", ip=str(self.network.network_address + 10
                                                         + index),
                    gateway=self.gateway, prefixlen=self.network.prefixlen,
                    veth=f"tkv{self.tag}{index}"[:15])
        self.hosts.append(host)
        host.setup()
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        return host

    def delete(self) -> None:
        for host in self.hosts:
            host.delete()
        _ip("link", "del", self.bridge, check=False)
        with contextlib.suppress(subprocess.SubprocessError):
            delete_forward_rules(_UNDERLAY_RULE, lambda bridge: bridge == self.bridge)


_UNDERLAY_RULE = re.compile(r'--comment "?tinykube: underlay (tkul[0-9a-f]+)"?')
_HOST_NETNS = re.compile(r"^tkn([0-9a-f]{6})\d+$")


def bridge_gone(bridge: str) -> bool:
    return not os.path.exists(f"/sys/class/net/{bridge}")


def delete_forward_rules(comment: re.Pattern[str], doomed: Callable[[str], bool]) -> None:
    """Delete this machine's FORWARD rules whose comment matches `comment` (group 1: the
    bridge it names) when `doomed(bridge)`: the harness's rules are found by their comments."""
    iptables = shutil.which("iptables")
    if iptables is None:
        return
    listed = subprocess.run([iptables, "-w", "-S", "FORWARD"], capture_output=True, text=True,
                            check=False, timeout=30).stdout
    for line in listed.splitlines():
        m = comment.search(line)
        if line.startswith("-A FORWARD ") and m and doomed(m.group(1)):
            subprocess.run([iptables, "-w", "-D", *shlex.split(line)[1:]], capture_output=True,
                           check=False, timeout=30)


def reap_stale() -> None:
    """Remove what killed test sessions left: hosts and FORWARD rules of underlays whose bridge
    is gone (a session deletes its bridge last, so a live session's hosts always have one)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _HOST_NETNS.match(name)
        if m and bridge_gone(f"tkul{m.group(1)}"):
            _ip("netns", "del", name, check=False)
    delete_forward_rules(_UNDERLAY_RULE, bridge_gone)
