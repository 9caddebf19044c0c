"""UDP conntrack clean-up after a sync: flows still pinned to an endpoint that has left.

UDP has no connection end, so a conntrack entry DNAT'd to an endpoint outlives that endpoint:
while the client keeps sending from the same source port (a DNS resolver, a syslog shipper),
every datagram refreshes the entry and keeps going to the gone address, whatever the rules say
now (NAT is only looked up for a flow's first packet). Upstream's kube-proxy therefore deletes,
after each successful sync, the UDP entries that no longer match a serving endpoint
(pkg/proxy/conntrack/cleanup.go). This does the same from the difference between the previous
synced ServiceMap and the new one:

- an endpoint IP that a UDP service port had and no longer has: entries whose original
  destination is one of the port's frontends (ClusterIP:port, each externalIP:port) and whose
  reply source is that IP ("DNAT'd to that endpoint"); for a NodePort, entries with original
  destination port = nodePort (any address) and that reply source;
- a UDP service port going from no endpoints to some: every entry to its frontends (and to
  its nodePort), whatever the reply source. Those were made while nothing could answer (and
  were not DNAT'd), and would otherwise keep the client's flow off the new endpoints.

`stale_flows` is that plan (pure); `clean` applies it through netlink (pyroute2's
ctnetlink, no `conntrack` binary): one dump of the UDP entries, then one delete per entry a
filter matches. Only the proxy's own network namespace is touched.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy.model import ServiceMap, ServicePort

log = logging.getLogger(__name__)

UDP = "UDP"


@dataclass(frozen=True, order=True)
class StaleFlow:
    """A filter on UDP conntrack entries (every set field must match; None: any)."""

    dport: int  # original destination port: the service port, or the nodePort
    dst: str | None = None  # original destination address: a frontend IP; None for NodePorts
    reply_src: str | None = None  # reply source: the endpoint the entry was DNAT'd to

    def matches(self, orig_dst: str, orig_dport: int, reply_src: str) -> bool:
        return (orig_dport == self.dport
                and (self.dst is None or orig_dst == self.dst)
                and (self.reply_src is None or reply_src == self.reply_src))

    def __str__(self) -> str:
        dst = f"{self.dst or '*'}:{self.dport}"
        return f"udp orig-dst={dst} reply-src={self.reply_src or '*'}"


def _frontends(sp: ServicePort) -> list[StaleFlow]:
    """Filters for every entry to `sp`'s frontends (any reply source)."""
    out = [StaleFlow(sp.port, ip) for ip in (sp.cluster_ip, *sp.external_ips) if ip]
    if sp.node_port:
        out.append(StaleFlow(sp.node_port))
    return out


def stale_flows(old: ServiceMap | None, new: ServiceMap) -> list[StaleFlow]:
    """What to delete after `new` replaced `old` in the kernel (sorted, without duplicates).

    `old` None (nothing synced yet) plans nothing: what changed before is unknown.
    """
    if old is None:
        return []
    out: set[StaleFlow] = set()
    for name, was in old.items():
        if was.protocol != UDP:
            continue
        now = new.get(name)
        gone = {e.ip for e in was.endpoints} - {e.ip for e in (now.endpoints if now else ())}
        # The flows were made against the old frontends.
        for f in _frontends(was):
            out.update(StaleFlow(f.dport, f.dst, ip) for ip in gone)
    for name, sp in new.items():
        if sp.protocol != UDP or not sp.endpoints:
            continue
        before = old.get(name)
        if before is None or not before.endpoints:
            out.update(_frontends(sp))
    return sorted(out, key=lambda f: (f.dport, f.dst or "", f.reply_src or ""))


def matching(flows: Sequence[StaleFlow], orig_dst: str, orig_dport: int,
             reply_src: str) -> bool:
    return any(f.matches(orig_dst, orig_dport, reply_src) for f in flows)


def _entries(ct: object, family: int) -> Iterable[object]:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    udp = NFCTAttrTuple(family=family, proto=socket.IPPROTO_UDP)
    return ct.dump_entries(tuple_orig=udp)  # type: ignore[attr-defined]


def clean(flows: Sequence[StaleFlow]) -> int:
    """Delete the UDP conntrack entries matching `flows`; the number deleted.

    Raises (NetlinkError, OSError) on a failed dump; an entry that vanished meanwhile is no error.
    """
    if not flows:
        return 0
    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError

    deleted = 0
    ct = Conntrack()
    try:
        families = {socket.AF_INET6 if ":" in (f.dst or f.reply_src or "") else socket.AF_INET
                    for f in flows}
        if any(f.dst is None and f.reply_src is None for f in flows):
            families.update((socket.AF_INET, socket.AF_INET6))
        for family in sorted(families):
            doomed = []
            for e in _entries(ct, family):
                orig, reply = e.tuple_orig, e.tuple_reply  # type: ignore[attr-defined]
                if orig.proto != socket.IPPROTO_UDP:
                    continue
                if matching(flows, str(orig.daddr), int(orig.dport or 0), str(reply.saddr)):
                    doomed.append(e)
            for e in doomed:
                try:
                    ct.delete(e)
                    deleted += 1
                except NetlinkError as err:  # gone meanwhile (ENOENT): fine
                    log.debug("conntrack delete %s: %s", e, err)
    finally:
        ct.close()
    return deleted


def clean_stale(old: ServiceMap | None, new: ServiceMap) -> None:
    """`clean(stale_flows(old, new))`, logging (never raising) on failure."""
    flows = stale_flows(old, new)
    if not flows:
        return
    try:
        n = clean(flows)
    except Exception as err:  # a clean-up failure must not fail the sync
        log.warning("UDP conntrack clean-up failed (%d filters): %s", len(flows), err)
        return
    log.info("UDP conntrack clean-up: %d entries deleted (%s)", n,
             "; ".join(str(f) for f in flows[:8]) + (" …" if len(flows) > 8 else ""))
