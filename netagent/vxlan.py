"""flannel's VXLAN backend: the `flannel.1` device and the per-node neighbour/FDB/route entries.

How a packet from a local pod reaches a pod on node B (flannel's "directRouting off" design):

1. the route `10.244.B.0/24 via 10.244.B.0 dev flannel.1 onlink` sends it to flannel.1 with the
   next hop 10.244.B.0 (B's VTEP address; `onlink`: no need for it to be in a local subnet);
2. the permanent neighbour entry `10.244.B.0 lladdr <B's VTEP MAC>` gives the inner Ethernet
   destination without ARP (the device has no learning and no l2/l3 miss: nothing is resolved
   dynamically, every entry comes from the apiserver);
3. the permanent FDB entry `<B's VTEP MAC> dst <B's public IP>` tells the VXLAN driver which
   host to send the UDP-encapsulated frame (port 8472, VNI 1) to.

B publishes its VTEP MAC and public IP as annotations on its Node; everybody else turns them
into those three entries. The pure part here (what the entries should be, what to change to get
there) is unit-tested; `Netlink` applies it with pyroute2 (blocking: run it in a thread).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from api.core import Node

log = logging.getLogger(__name__)

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
OVERHEAD = 50  # outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)

PREFIX = "flannel.alpha.coreos.com/"
BACKEND_TYPE = PREFIX + "backend-type"
BACKEND_DATA = PREFIX + "backend-data"
PUBLIC_IP = PREFIX + "public-ip"
KUBE_SUBNET_MANAGER = PREFIX + "kube-subnet-manager"

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4


def node_annotations(vtep_mac: str, public_ip: str) -> dict[str, str]:
    """What a node publishes about itself (flannel's names and JSON)."""
    return {BACKEND_TYPE: "vxlan",
            BACKEND_DATA: json.dumps({"VNI": VNI, "VtepMAC": vtep_mac}, separators=(",", ":")),
            PUBLIC_IP: public_ip,
            KUBE_SUBNET_MANAGER: "true"}


def annotations_differ(node: Node, want: dict[str, str]) -> bool:
    have = node.metadata.annotations or {}
    for k, v in want.items():
        if k == BACKEND_DATA:
            try:
                if json.loads(have.get(k) or "") == json.loads(v):
                    continue
            except ValueError:
                pass
            return True
        if have.get(k) != v:
            return True
    return False


@dataclass(frozen=True)
class Peer:
    """Another node as the overlay sees it."""

    node: str
    subnet: ipaddress.IPv4Network
    vtep_mac: str
    public_ip: str

    @property
    def vtep_ip(self) -> str:
        return str(self.subnet.network_address)


def _mac(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        return None
    if raw == b"\0" * 6 or raw[0] & 1:  # all-zero or multicast: not a VTEP
        return None
    return text.lower()


def peer_from_node(node: Node) -> tuple[Peer | None, str]:
    """The node as a peer, or (None, why not) — incomplete nodes are skipped, not errors:
    a node without a podCIDR or annotations yet is simply not on the overlay yet."""
    spec = node.spec
    cidr = (spec.pod_cidr or next(iter(spec.pod_cidrs or []), None)) if spec is not None else None
    if not cidr:
        return None, "no podCIDR yet"
    try:
        subnet = ipaddress.IPv4Network(cidr)
    except ValueError:
        return None, f"podCIDR {cidr!r} is not an IPv4 network"
    ann = node.metadata.annotations or {}
    if ann.get(BACKEND_TYPE) != "vxlan":
        return None, "no vxlan backend annotation yet"
    try:
        data: Any = json.loads(ann.get(BACKEND_DATA) or "")
    except ValueError:
        return None, f"{BACKEND_DATA} is not JSON"
    mac = _mac(data.get("VtepMAC") if isinstance(data, dict) else None)
    if mac is None:
        return None, f"{BACKEND_DATA} has no valid VtepMAC"
    if isinstance(data, dict) and data.get("VNI", VNI) != VNI:
        return None, f"{BACKEND_DATA} has VNI {data.get('VNI')!r}, not {VNI}"
    try:
        public = ipaddress.IPv4Address(ann.get(PUBLIC_IP) or "")
    except ValueError:
        return None, f"{PUBLIC_IP} {ann.get(PUBLIC_IP)!r} is not an IPv4 address"
    return Peer(node.name, subnet, mac, str(public)), ""


@dataclass
class State:
    """Overlay entries on flannel.1: what the kernel has, or what it should have."""

    neighbours: dict[str, str] = field(default_factory=dict)  # VTEP IP → VTEP MAC
    fdb: set[tuple[str, str]] = field(default_factory=set)  # (VTEP MAC, public IP)
    routes: dict[str, str] = field(default_factory=dict)  # podCIDR → gateway (the VTEP IP)
    owners: dict[str, str] = field(default_factory=dict)  # any key above → node (for logs)


def desired(peers: Iterable[Peer], own_subnet: ipaddress.IPv4Network | None = None,
            own_mac: str | None = None) -> State:
    """The entries that `peers` call for. Peers that would clash with us or with each other
    (same subnet, overlapping subnets, same MAC) are dropped, the first by node name wins:
    a deterministic answer beats programming the kernel with two contradicting entries."""
    s = State()
    taken: list[ipaddress.IPv4Network] = [own_subnet] if own_subnet is not None else []
    macs = {own_mac} if own_mac else set()
    for p in sorted(peers, key=lambda p: p.node):
        if any(p.subnet.overlaps(t) for t in taken) or p.vtep_mac in macs:
            log.warning("node %s: subnet %s or VTEP MAC %s clashes with another node; "
                        "ignored", p.node, p.subnet, p.vtep_mac)
            continue
        taken.append(p.subnet)
        macs.add(p.vtep_mac)
        s.neighbours[p.vtep_ip] = p.vtep_mac
        s.fdb.add((p.vtep_mac, p.public_ip))
        s.routes[str(p.subnet)] = p.vtep_ip
        s.owners.update({p.vtep_ip: p.node, p.vtep_mac: p.node, str(p.subnet): p.node})
    return s


@dataclass
class Plan:
    """What to change to take the kernel from `have` to `want`: deletions first."""

    del_routes: list[tuple[str, str]] = field(default_factory=list)
    del_neighbours: list[tuple[str, str]] = field(default_factory=list)
    del_fdb: list[tuple[str, str]] = field(default_factory=list)
    add_neighbours: list[tuple[str, str]] = field(default_factory=list)
    add_fdb: list[tuple[str, str]] = field(default_factory=list)
    add_routes: list[tuple[str, str]] = field(default_factory=list)

    def empty(self) -> bool:
        return not any((self.del_routes, self.del_neighbours, self.del_fdb,
                        self.add_neighbours, self.add_fdb, self.add_routes))


def plan(have: State, want: State) -> Plan:
    p = Plan()
    p.del_routes = sorted((d, g) for d, g in have.routes.items() if want.routes.get(d) != g)
    p.del_neighbours = sorted((ip, m) for ip, m in have.neighbours.items()
                              if want.neighbours.get(ip) != m)
    p.del_fdb = sorted(have.fdb - want.fdb)
    p.add_neighbours = sorted((ip, m) for ip, m in want.neighbours.items()
                              if have.neighbours.get(ip) != m)
    p.add_fdb = sorted(want.fdb - have.fdb)
    p.add_routes = sorted((d, g) for d, g in want.routes.items() if have.routes.get(d) != g)
    return p


# --- the kernel ------------------------------------------------------------------------------


class NetlinkError(Exception):
    """The underlay or the device cannot be set up; the message says what to fix."""


@dataclass(frozen=True)
class Underlay:
    """The interface VXLAN packets leave by, and the address they leave from."""

    ifname: str
    index: int
    address: str
    mtu: int


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class Netlink:
    """flannel.1 and its entries through pyroute2 (rtnetlink), in this process's namespace.

    Blocking; one instance per thread at a time (the agent runs every call through one
    single-threaded executor)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute  # ~200 ms to import: only where netlink is used

        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    # underlay -------------------------------------------------------------------------------

    def _ipv4_addrs(self, index: int | None = None) -> list[tuple[int, str]]:
        kw: dict[str, Any] = {"family": socket.AF_INET}
        if index is not None:
            kw["index"] = index
        return [(a["index"], _attr(a, "IFA_ADDRESS") or _attr(a, "IFA_LOCAL"))
                for a in self.ipr.get_addr(**kw)]

    def _underlay(self, index: int, public_ip: str | None) -> Underlay:
        link = self.ipr.link("get", index=index)[0]
        name = _attr(link, "IFLA_IFNAME")
        addrs = [a for _, a in self._ipv4_addrs(index)]
        if public_ip is not None and public_ip in addrs:
            addr = public_ip
        elif addrs:
            addr = addrs[0]
        else:
            raise NetlinkError(f"interface {name} has no IPv4 address")
        return Underlay(name, index, addr, int(_attr(link, "IFLA_MTU")))

    def find_underlay(self, iface: str | None, public_ip: str | None) -> Underlay:
        """--iface, else the interface holding --public-ip, else the default route's."""
        if iface is not None:
            found = self.ipr.link_lookup(ifname=iface)
            if not found:
                raise NetlinkError(f"--iface: no interface named {iface!r}")
            return self._underlay(found[0], public_ip)
        if public_ip is not None:
            for index, addr in self._ipv4_addrs():
                if addr == public_ip:
                    return self._underlay(index, public_ip)
            raise NetlinkError(f"--public-ip: no interface has the address {public_ip}")
        for r in self.ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
            if r["dst_len"] == 0 and _attr(r, "RTA_OIF"):
                return self._underlay(_attr(r, "RTA_OIF"), None)
        raise NetlinkError("no default route: say which interface carries VXLAN with --iface "
                           "or --public-ip")

    # the device -----------------------------------------------------------------------------

    def device_index(self) -> int | None:
        found = self.ipr.link_lookup(ifname=DEVICE)
        return found[0] if found else None

    def _matches(self, index: int, u: Underlay) -> str:
        """'' when the existing device is what we would create, else how it differs."""
        link = self.ipr.link("get", index=index)[0]
        info = _attr(link, "IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
            return "not a vxlan device"
        data = info.get_attr("IFLA_INFO_DATA")
        got = {"VNI": data.get_attr("IFLA_VXLAN_ID"), "port": data.get_attr("IFLA_VXLAN_PORT"),
               "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")),
               "local": data.get_attr("IFLA_VXLAN_LOCAL"),
               "link": data.get_attr("IFLA_VXLAN_LINK")}
        want = {"VNI": VNI, "port": PORT, "learning": False, "local": u.address,
                "link": u.index}
        diff = [f"{k} {got[k]!r} (want {want[k]!r})" for k in want if got[k] != want[k]]
        return ", ".join(diff)

    def ensure_device(self, u: Underlay, subnet: ipaddress.IPv4Network) -> tuple[str, list[str]]:
        """flannel.1 as it should be, reusing a matching device; returns (VTEP MAC, actions)."""
        actions: list[str] = []
        mtu = u.mtu - OVERHEAD
        index = self.device_index()
        if index is not None:
            why = self._matches(index, u)
            if why:
                self.ipr.link("del", index=index)
                actions.append(f"deleted mismatched {DEVICE}: {why}")
                index = None
        if index is None:
            self.ipr.link("add", ifname=DEVICE, kind="vxlan", vxlan_id=VNI, vxlan_port=PORT,
                          vxlan_learning=0, vxlan_local=u.address, vxlan_link=u.index, mtu=mtu)
            index = self.device_index()
            assert index is not None
            actions.append(f"created {DEVICE} (VNI {VNI}, port {PORT}, local {u.address} "
                           f"dev {u.ifname}, mtu {mtu})")
        link = self.ipr.link("get", index=index)[0]
        if _attr(link, "IFLA_MTU") != mtu:
            self.ipr.link("set", index=index, mtu=mtu)
            actions.append(f"set {DEVICE} mtu {mtu}")
        # flannel gives the device its subnet's network address as a /32 and nothing else.
        vtep = str(subnet.network_address)
        have = {(_attr(a, "IFA_ADDRESS"), a["prefixlen"])
                for a in self.ipr.get_addr(family=socket.AF_INET, index=index)}
        for addr, plen in have - {(vtep, 32)}:
            self.ipr.addr("del", index=index, address=addr, prefixlen=plen)
            actions.append(f"removed stray address {addr}/{plen} from {DEVICE}")
        if (vtep, 32) not in have:
            self.ipr.addr("add", index=index, address=vtep, prefixlen=32)
            actions.append(f"added address {vtep}/32 to {DEVICE}")
        if not link["flags"] & 1:  # IFF_UP
            self.ipr.link("set", index=index, state="up")
            actions.append(f"set {DEVICE} up")
        return str(_attr(link, "IFLA_ADDRESS")), actions

    def delete_device(self) -> bool:
        index = self.device_index()
        if index is None:
            return False
        self.ipr.link("del", index=index)
        return True

    # entries --------------------------------------------------------------------------------

    def read_state(self, index: int) -> State:
        """Our entries on flannel.1: permanent IPv4 neighbours, FDB entries with a remote,
        main-table IPv4 routes through a gateway (the kernel's own connected and local routes
        have none)."""
        s = State()
        for n in self.ipr.neigh("dump", ifindex=index, family=socket.AF_INET):
            if n["ifindex"] == index and n["state"] & NUD_PERMANENT:
                s.neighbours[_attr(n, "NDA_DST")] = str(_attr(n, "NDA_LLADDR")).lower()
        for n in self.ipr.fdb("dump", ifindex=index):
            dst = _attr(n, "NDA_DST")
            if n["ifindex"] == index and dst:
                s.fdb.add((str(_attr(n, "NDA_LLADDR")).lower(), dst))
        for r in self.ipr.route("dump", family=socket.AF_INET, table=RT_TABLE_MAIN):
            gw = _attr(r, "RTA_GATEWAY")
            if _attr(r, "RTA_OIF") == index and gw:
                dst = _attr(r, "RTA_DST") or "0.0.0.0"
                s.routes[f"{dst}/{r['dst_len']}"] = gw
        return s

    def apply(self, index: int, p: Plan) -> None:
        from pyroute2.netlink.exceptions import NetlinkError as NLE

        def gone_ok(fn: Any, *a: Any, **kw: Any) -> None:
            try:
                fn(*a, **kw)
            except NLE as e:
                if e.code not in (2, 3):  # ENOENT, ESRCH: already gone
                    raise

        for dst, gw in p.del_routes:
            gone_ok(self.ipr.route, "del", dst=dst, gateway=gw, oif=index, table=RT_TABLE_MAIN)
        for ip, mac in p.del_neighbours:
            gone_ok(self.ipr.neigh, "del", dst=ip, lladdr=mac, ifindex=index)
        for mac, dst in p.del_fdb:
            gone_ok(self.ipr.fdb, "del", ifindex=index, lladdr=mac, dst=dst, flags=NTF_SELF)
        for ip, mac in p.add_neighbours:
            self.ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=index, state=NUD_PERMANENT)
        for mac, dst in p.add_fdb:
            # append, not replace: replace would rewrite the MAC's first remote, whatever it is.
            try:
                self.ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst,
                             state=NUD_PERMANENT, flags=NTF_SELF)
            except NLE as e:
                if e.code != 17:  # EEXIST: there already
                    raise
        for dst, gw in p.add_routes:
            self.ipr.route("replace", dst=dst, gateway=gw, oif=index, flags=RTNH_F_ONLINK,
                           table=RT_TABLE_MAIN, proto=RTPROT_STATIC)
