"""tk-proxy's IPVS backend (kube-proxy's `--proxy-mode ipvs`), from scratch.

Why a second backend: iptables mode walks a linear chain of rules per packet and rewrites the
whole table on every change; IPVS keeps a hash table of virtual servers in the kernel and is
changed one entry at a time over generic netlink. Upstream's pkg/proxy/ipvs/proxier.go is the
model; this module keeps its shape, split in two so the interesting part is testable anywhere:

* Planning (pure): a `ServiceMap` and the node's IPs → `IpvsState`, the virtual servers
  (ClusterIP:port, externalIPs, NodePort on each node IP; scheduler "rr"; the persistent flag
  with the affinity timeout for sessionAffinity ClientIP), their real servers (endpoint ip:port,
  weight 1, masquerading forward) and the addresses bound on the `kube-ipvs0` dummy interface
  (a VIP must be a local address, or the packet is never delivered to IPVS's LOCAL_IN hook).
  `diff(current, desired)` turns two states into add/update/delete lists, so a sync with one
  changed endpoint costs one netlink message, not a rewrite.
* Application (`IpvsBackend`): reads the kernel's state (pyroute2 `IPVS` and `IPRoute`), diffs,
  applies the minimum, and writes the small iptables part IPVS still needs — masquerade for
  traffic marked by KUBE-MARK-MASQ, which IPVS in NAT mode cannot do by itself.

Left out compared with upstream (see docs/deviations.md, "IPVS"): ipsets (the masquerade rules
here are one iptables rule per VIP port instead of one `--match-set`), graceful termination of
deleted real servers (weight 0, then deleted when their connections drain), LoadBalancer
ingress IPs and source ranges, the KUBE-IPVS-FILTER chain, IPv6.

`ipvs_unavailable()` says why IPVS cannot be used here (these machines' kernel lacks it), so
tk-proxy can refuse `--proxy-mode ipvs` with one clear line.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.model import ServiceMap, ServicePort

log = logging.getLogger("proxy.ipvs")

DUMMY_DEVICE = "kube-ipvs0"
SCHEDULER = "rr"
PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
# linux/ip_vs.h: IP_VS_SVC_F_PERSISTENT; IP_VS_CONN_F_MASQ is forwarding method 0 (pyroute2's
# IPVSDest defaults to 3, direct routing, which would not DNAT at all).
FLAG_PERSISTENT = 0x0001
FWD_MASQ = 0
# The sysctls upstream sets in ipvs mode: conntrack so that iptables can masquerade IPVS'd
# traffic; expire entries whose real server went; ip_forward so NodePort traffic is routed.
SYSCTLS = {
    "net/ipv4/vs/conntrack": "1",
    "net/ipv4/vs/expire_nodest_conn": "1",
    "net/ipv4/vs/expire_quiescent_template": "1",
    "net/ipv4/ip_forward": "1",
}

VSKey = tuple[str, int, str]   # (address, port, protocol)
RSKey = tuple[str, int]        # (address, port)


# --- the model ----------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class VirtualServer:
    """One IPVS service: what a client connects to."""

    address: str
    port: int
    protocol: str = "TCP"
    scheduler: str = SCHEDULER
    # Persistence timeout in seconds (sessionAffinity ClientIP); 0: not persistent.
    timeout: int = 0

    @property
    def key(self) -> VSKey:
        return (self.address, self.port, self.protocol)

    def __str__(self) -> str:
        return f"{self.protocol} {self.address}:{self.port}"


@dataclass(frozen=True, order=True)
class RealServer:
    """One IPVS destination: an endpoint behind a virtual server."""

    address: str
    port: int
    weight: int = 1

    @property
    def key(self) -> RSKey:
        return (self.address, self.port)


@dataclass
class IpvsState:
    """Virtual servers with their real servers, and the addresses on kube-ipvs0."""

    services: dict[VSKey, VirtualServer] = field(default_factory=dict)
    dests: dict[VSKey, dict[RSKey, RealServer]] = field(default_factory=dict)
    bound: set[str] = field(default_factory=set)

    def add(self, vs: VirtualServer, reals: Iterable[RealServer]) -> None:
        self.services[vs.key] = vs
        self.dests[vs.key] = {r.key: r for r in reals}


@dataclass
class IpvsDiff:
    """What to change to go from one state to another; each list is sorted (deterministic)."""

    add_services: list[VirtualServer] = field(default_factory=list)
    update_services: list[VirtualServer] = field(default_factory=list)
    delete_services: list[VirtualServer] = field(default_factory=list)
    add_dests: list[tuple[VirtualServer, RealServer]] = field(default_factory=list)
    update_dests: list[tuple[VirtualServer, RealServer]] = field(default_factory=list)
    delete_dests: list[tuple[VirtualServer, RealServer]] = field(default_factory=list)
    bind: list[str] = field(default_factory=list)
    unbind: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.add_services, self.update_services, self.delete_services,
                        self.add_dests, self.update_dests, self.delete_dests, self.bind,
                        self.unbind))

    def __len__(self) -> int:
        return sum(len(x) for x in (
            self.add_services, self.update_services, self.delete_services, self.add_dests,
            self.update_dests, self.delete_dests, self.bind, self.unbind))


# --- planning (pure) ----------------------------------------------------------------------------

def _reals(sp: ServicePort, local_only: bool, node_name: str) -> list[RealServer]:
    eps = sp.endpoints
    if local_only and node_name:
        local = [e for e in eps if e.node_name == node_name]
        # Upstream (kubernetes#97081): with no local endpoint, keep the cluster-wide ones so
        # that pods on this node can still reach the service through the NodePort.
        if local:
            eps = tuple(local)
    return [RealServer(e.ip, e.port) for e in sorted(eps)]


def plan(services: ServiceMap, node_ips: Sequence[str], node_name: str = "") -> IpvsState:
    """The desired IPVS state for `services` on a node with `node_ips`.

    Per service port: a virtual server on the ClusterIP (bound on kube-ipvs0), one per
    externalIP (bound too, as upstream does), and for NodePort services one per node IP
    (already local: not bound). The real servers are the ready endpoints; with
    externalTrafficPolicy Local, the NodePort and externalIP ones get only this node's
    endpoints when it has any.
    """
    state = IpvsState()
    for sp in sorted(services.values(), key=lambda s: s.name):
        if sp.protocol not in PROTOCOLS:
            log.warning("service %s: protocol %s is not supported by IPVS; skipped",
                        sp.name, sp.protocol)
            continue
        timeout = sp.affinity_timeout or 0

        def vs(addr: str, port: int, sp: ServicePort = sp, timeout: int = timeout
               ) -> VirtualServer:
            return VirtualServer(addr, port, sp.protocol, SCHEDULER, timeout)

        cluster = _reals(sp, False, node_name)
        external = _reals(sp, sp.external_local, node_name)
        state.add(vs(sp.cluster_ip, sp.port), cluster)
        state.bound.add(sp.cluster_ip)
        for ip in sp.external_ips:
            state.add(vs(ip, sp.port), external)
            state.bound.add(ip)
        if sp.node_port:
            for ip in node_ips:
                state.add(vs(ip, sp.node_port), external)
    return state


def diff(current: IpvsState, desired: IpvsState) -> IpvsDiff:
    """The minimal changes from `current` to `desired`.

    A virtual server whose scheduler or persistence changed is updated in place (the VIP never
    goes away, as upstream's UpdateVirtualServer); a real server whose weight changed likewise.
    Real servers of a deleted virtual server go with it: no separate deletes are listed.
    """
    d = IpvsDiff()
    for key, want in desired.services.items():
        have = current.services.get(key)
        if have is None:
            d.add_services.append(want)
        elif have != want:
            d.update_services.append(want)
        have_dests = current.dests.get(key, {}) if have is not None else {}
        for rkey, real in desired.dests.get(key, {}).items():
            old = have_dests.get(rkey)
            if old is None:
                d.add_dests.append((want, real))
            elif old != real:
                d.update_dests.append((want, real))
        for rkey, real in have_dests.items():
            if rkey not in desired.dests.get(key, {}):
                d.delete_dests.append((want, real))
    for key, have in current.services.items():
        if key not in desired.services:
            d.delete_services.append(have)
    d.bind = sorted(desired.bound - current.bound)
    d.unbind = sorted(current.bound - desired.bound)
    for lst in (d.add_services, d.update_services, d.delete_services):
        lst.sort()
    for pairs in (d.add_dests, d.update_dests, d.delete_dests):
        pairs.sort()
    return d


def owned(state: IpvsState, node_ips: Iterable[str]) -> IpvsState:
    """The part of a kernel's IPVS state that is tk-proxy's: virtual servers on an address bound
    on kube-ipvs0 (every VIP we program is) or on a node IP (NodePorts). Anything else — an
    operator's own IPVS service on some other address — is left alone."""
    mine = set(state.bound) | set(node_ips)
    out = IpvsState(bound=set(state.bound))
    for key, vs in state.services.items():
        if vs.address in mine:
            out.services[key] = vs
            out.dests[key] = dict(state.dests.get(key, {}))
    return out


def iptables_rules(services: ServiceMap, cluster_cidr: str, masquerade_bit: int) -> str:
    """The iptables-restore input for what IPVS cannot do itself: masquerade.

    IPVS in NAT mode only DNATs. Traffic from outside the cluster CIDR to a VIP, and all
    NodePort traffic, must also be SNATed or the replies bypass this node. As upstream:
    mark such packets (KUBE-MARK-MASQ), masquerade marked ones in KUBE-POSTROUTING, and let
    marked traffic through FORWARD. Upstream matches ipsets; this writes one rule per VIP port.
    """
    mark = f"{1 << masquerade_bit:#x}"
    nat = ["*nat", ":KUBE-SERVICES - [0:0]", ":KUBE-NODE-PORT - [0:0]",
           ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    node_ports = set()
    for sp in sorted(services.values(), key=lambda s: s.name):
        if sp.protocol not in PROTOCOLS:
            continue
        proto = sp.protocol.lower()
        for ip in (sp.cluster_ip, *sp.external_ips):
            src = f"! -s {cluster_cidr} " if cluster_cidr and ip == sp.cluster_ip else ""
            nat.append(f'-A KUBE-SERVICES {src}-d {ip}/32 -p {proto} -m {proto} '
                       f'--dport {sp.port} -m comment --comment "{sp.name} VIP" '
                       f'-j KUBE-MARK-MASQ')
        if sp.node_port:
            node_ports.add((proto, sp.node_port, str(sp.name)))
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    for proto, port, name in sorted(node_ports):
        nat.append(f'-A KUBE-NODE-PORT -p {proto} -m {proto} --dport {port} '
                   f'-m comment --comment "{name} nodePort" -j KUBE-MARK-MASQ')
    nat += [f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN",
            f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}",
            '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring '
            'SNAT" -j MASQUERADE',
            f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}",
            "COMMIT"]
    filt = ["*filter", ":KUBE-FORWARD - [0:0]",
            f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
            f'-m mark --mark {mark}/{mark} -j ACCEPT',
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
            '-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
            "COMMIT"]
    return "\n".join(nat + filt) + "\n"


# (table, hook chain, our chain): the jumps upstream's ipvs proxier ensures.
JUMPS = [("nat", "PREROUTING", "KUBE-SERVICES"), ("nat", "OUTPUT", "KUBE-SERVICES"),
         ("nat", "POSTROUTING", "KUBE-POSTROUTING"), ("filter", "FORWARD", "KUBE-FORWARD")]
CHAINS = {"nat": ["KUBE-SERVICES", "KUBE-NODE-PORT", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"],
          "filter": ["KUBE-FORWARD"]}


# --- detection ----------------------------------------------------------------------------------

def _genl_family_missing() -> str | None:
    """None if the generic netlink family "IPVS" resolves, else why not."""
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.generic import GenericNetlinkSocket, ipvs

    sock = GenericNetlinkSocket()
    try:
        sock.bind(ipvs.GENL_NAME, ipvs.ipvsmsg)
    except NetlinkError as e:
        if e.code == errno.ENOENT:
            return 'generic netlink family "IPVS" not found'
        return f'generic netlink family "IPVS": {os.strerror(e.code)}'
    except OSError as e:
        return f'generic netlink family "IPVS": {e}'
    finally:
        sock.close()
    return None


def ipvs_unavailable() -> str | None:
    """None when this kernel (in this network namespace) has IPVS, else a short reason.

    Like upstream's CanUseIPVSProxier, try to load the module first (modprobe ip_vs, when there
    is a modprobe), then ask the kernel: the generic netlink family "IPVS" must resolve.
    """
    notes: list[str] = []
    if not os.path.exists("/proc/net/ip_vs"):
        modprobe = shutil.which("modprobe") or next(
            (p for p in ("/sbin/modprobe", "/usr/sbin/modprobe") if os.path.exists(p)), None)
        if modprobe is None:
            notes.append("no modprobe to load ip_vs")
        else:
            try:
                r = subprocess.run([modprobe, "ip_vs"], capture_output=True, text=True,
                                   timeout=10, stdin=subprocess.DEVNULL)
                if r.returncode != 0:
                    last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
                    notes.append(f"modprobe ip_vs: {last.strip()}")
            except (OSError, subprocess.TimeoutExpired) as e:
                notes.append(f"modprobe ip_vs: {e}")
    missing = _genl_family_missing()
    if missing is None:
        return None
    if not os.path.exists("/proc/net/ip_vs"):
        notes.insert(0, "/proc/net/ip_vs absent")
    return "; ".join([missing, *notes])


# --- application --------------------------------------------------------------------------------

def _vs_request(vs: VirtualServer) -> Any:
    """pyroute2's IPVSService for `vs` (all fields: used for add and set)."""
    from pyroute2 import IPVSService

    flags = FLAG_PERSISTENT if vs.timeout else 0
    return IPVSService(addr=vs.address, port=vs.port, protocol=PROTOCOLS[vs.protocol],
                       sched_name=vs.scheduler, timeout=vs.timeout,
                       flags={"flags": flags, "mask": 0xFFFFFFFF})


def _rs_request(rs: RealServer) -> Any:
    from pyroute2 import IPVSDest

    return IPVSDest(addr=rs.address, port=rs.port, weight=rs.weight, fwd_method=FWD_MASQ)


def parse_service(msg: Any) -> VirtualServer | None:
    """A VirtualServer from one IPVS_CMD_GET_SERVICE reply (None for fwmark/IPv6/unknown ones,
    which tk-proxy never creates)."""
    nla = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    if nla is None:
        return None
    addr = nla.get_attr("IPVS_SVC_ATTR_ADDR")
    proto = PROTOCOL_NAMES.get(nla.get_attr("IPVS_SVC_ATTR_PROTOCOL") or 0)
    if not addr or proto is None or nla.get_attr("IPVS_SVC_ATTR_AF") not in (None, 2):
        return None
    flags = (nla.get_attr("IPVS_SVC_ATTR_FLAGS") or {}).get("flags", 0)
    timeout = int(nla.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0) if flags & FLAG_PERSISTENT else 0
    return VirtualServer(str(addr), int(nla.get_attr("IPVS_SVC_ATTR_PORT") or 0), proto,
                         nla.get_attr("IPVS_SVC_ATTR_SCHED_NAME") or "", timeout)


def parse_dest(msg: Any) -> RealServer | None:
    nla = msg.get_attr("IPVS_CMD_ATTR_DEST")
    if nla is None or not nla.get_attr("IPVS_DEST_ATTR_ADDR"):
        return None
    return RealServer(str(nla.get_attr("IPVS_DEST_ATTR_ADDR")),
                      int(nla.get_attr("IPVS_DEST_ATTR_PORT") or 0),
                      int(nla.get_attr("IPVS_DEST_ATTR_WEIGHT") or 0))


class IpvsBackend:
    """Programs a ServiceMap into the kernel's IPVS tables (blocking; run it in a thread).

    Implements proxy.proxier's Backend protocol: `sync(services, node_ips)` converges to the
    full desired state each time (level-triggered: a restart or a lost change heals at the next
    sync), `cleanup()` removes everything this mode creates.
    """

    def __init__(self, cluster_cidr: str, masquerade_bit: int = 14, node_name: str = "",
                 iptables_restore: str = "iptables-restore", iptables: str = "iptables"):
        self.cluster_cidr = cluster_cidr
        self.masquerade_bit = masquerade_bit
        self.node_name = node_name
        self.iptables_restore = iptables_restore
        self.iptables = iptables
        self.last_diff = IpvsDiff()

    # kernel state ---------------------------------------------------------------------------

    def _dummy_index(self, ipr: Any, create: bool) -> int | None:
        found = ipr.link_lookup(ifname=DUMMY_DEVICE)
        if found:
            return int(found[0])
        if not create:
            return None
        # Left down, as upstream does: its addresses are still local (the local routing table
        # gets them), and a down device never answers ARP for them on any link.
        ipr.link("add", ifname=DUMMY_DEVICE, kind="dummy")
        return int(ipr.link_lookup(ifname=DUMMY_DEVICE)[0])

    @staticmethod
    def _bound(ipr: Any, index: int | None) -> set[str]:
        if index is None:
            return set()
        return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2, index=index)}

    @staticmethod
    def read_ipvs(sock: Any) -> IpvsState:
        """Every IPv4 virtual server in the kernel, with its real servers."""
        from pyroute2 import IPVSService

        state = IpvsState()
        for msg in sock.service("dump"):
            vs = parse_service(msg)
            if vs is None:
                continue
            key_req = IPVSService(addr=vs.address, port=vs.port,
                                  protocol=PROTOCOLS[vs.protocol])
            reals = [r for r in (parse_dest(m) for m in sock.dest("dump", service=key_req))
                     if r is not None]
            state.add(vs, reals)
        return state

    def read_state(self, node_ips: Sequence[str]) -> IpvsState:
        from pyroute2 import IPVS, IPRoute

        with IPRoute() as ipr:
            bound = self._bound(ipr, self._dummy_index(ipr, create=False))
        sock = IPVS()
        try:
            state = self.read_ipvs(sock)
        finally:
            sock.close()
        state.bound = bound
        return owned(state, node_ips)

    # the Backend protocol ----------------------------------------------------------------------

    def sync(self, services: ServiceMap, node_ips: Sequence[str]) -> None:
        from pyroute2 import IPVS, IPRoute

        _set_sysctls()
        desired = plan(services, node_ips, self.node_name)
        with IPRoute() as ipr:
            index = self._dummy_index(ipr, create=True)
            bound = self._bound(ipr, index)
            sock = IPVS()
            try:
                current = self.read_ipvs(sock)
                current.bound = bound
                current = owned(current, node_ips)
                d = diff(current, desired)
                # Bind before adding virtual servers (the VIP is local by the time the service
                # exists); unbind only after their services are gone.
                for addr in d.bind:
                    ipr.addr("add", index=index, address=addr, prefixlen=32)
                self._apply(sock, d)
                for addr in d.unbind:
                    ipr.addr("del", index=index, address=addr, prefixlen=32)
            finally:
                sock.close()
        self.last_diff = d
        if d:
            log.info("ipvs: %d changes (+%d/~%d/-%d services, +%d/~%d/-%d dests, "
                     "+%d/-%d addresses)", len(d), len(d.add_services),
                     len(d.update_services), len(d.delete_services), len(d.add_dests),
                     len(d.update_dests), len(d.delete_dests), len(d.bind), len(d.unbind))
        self._sync_iptables(services)

    @staticmethod
    def _apply(sock: Any, d: IpvsDiff) -> None:
        for vs in d.delete_services:
            sock.service("del", service=_vs_request(vs))
        for vs in d.add_services:
            sock.service("add", service=_vs_request(vs))
        for vs in d.update_services:
            # "set" (IPVS_CMD_SET_SERVICE): pyroute2's "update" maps to a delete.
            sock.service("set", service=_vs_request(vs))
        for vs, rs in d.delete_dests:
            sock.dest("del", service=_vs_request(vs), dest=_rs_request(rs))
        for vs, rs in d.add_dests:
            sock.dest("add", service=_vs_request(vs), dest=_rs_request(rs))
        for vs, rs in d.update_dests:
            sock.dest("set", service=_vs_request(vs), dest=_rs_request(rs))

    def _sync_iptables(self, services: ServiceMap) -> None:
        # Rewritten every sync, as upstream does: a firewall reload that flushed the chains
        # must not leave masquerading broken until the next Service change.
        rules = iptables_rules(services, self.cluster_cidr, self.masquerade_bit)
        subprocess.run([self.iptables_restore, "-w", "--noflush"], input=rules, text=True,
                       check=True, capture_output=True)
        for table, hook, chain in JUMPS:
            rule = ["-m", "comment", "--comment", f"kubernetes {chain}", "-j", chain]
            if subprocess.run([self.iptables, "-w", "-t", table, "-C", hook, *rule],
                              capture_output=True).returncode != 0:
                subprocess.run([self.iptables, "-w", "-t", table, "-I", hook, "1", *rule],
                               check=True, capture_output=True)

    def cleanup(self) -> None:
        """Remove what ipvs mode creates: every IPVS virtual server (as upstream's cleanup,
        which flushes IPVS), kube-ipvs0 with its addresses, and our chains and jumps."""
        if ipvs_unavailable() is None:
            from pyroute2 import IPVS

            sock = IPVS()
            try:
                for vs in self.read_ipvs(sock).services.values():
                    sock.service("del", service=_vs_request(vs))
            finally:
                sock.close()
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            index = self._dummy_index(ipr, create=False)
            if index is not None:
                ipr.link("del", index=index)
        for table, hook, chain in JUMPS:
            rule = ["-m", "comment", "--comment", f"kubernetes {chain}", "-j", chain]
            while subprocess.run([self.iptables, "-w", "-t", table, "-D", hook, *rule],
                                 capture_output=True).returncode == 0:
                pass
        for table, chains in CHAINS.items():
            for chain in chains:
                subprocess.run([self.iptables, "-w", "-t", table, "-F", chain],
                               capture_output=True)
            for chain in chains:
                subprocess.run([self.iptables, "-w", "-t", table, "-X", chain],
                               capture_output=True)


def _set_sysctls() -> None:
    for key, value in SYSCTLS.items():
        path = f"/proc/sys/{key}"
        try:
            with open(path) as f:
                if f.read().strip() == value:
                    continue
            with open(path, "w") as f:
                f.write(value)
        except OSError as e:  # e.g. read-only /proc/sys: IPVS still works, say why it may not
            log.warning("cannot set %s=%s: %s", key.replace("/", "."), value, e)
