"""The network agent's control loop: Nodes in the apiserver → flannel.1, its entries, iptables.

One agent per node (flannel's flanneld with the kube subnet manager). It waits until its Node
exists and node IPAM gave it a podCIDR, then, level-triggered like every controller here
(DESIGN §4): a Node informer whose handlers only enqueue one of three keys, a work queue (dedup,
retries with back-off), and a `sync(key)` that compares what should be with what is and fixes
the difference:

- `peers`: flannel.1 itself (created, or recreated when it no longer matches), then its
  neighbour/FDB/route entries: computed from every other Node, compared with a dump of what the
  kernel holds on flannel.1, stale ones deleted, missing ones added. Nothing is remembered
  between syncs, so a restart (or somebody deleting an entry by hand) converges the same way,
  and a node deleted while the agent was down loses its entries at the first sync.
- `self`: this Node's annotations (VTEP MAC, public IP) — patched back if anybody changes them.
- `rules`: subnet.env, the iptables chains, ip_forward.

Every `--resync-period` all three are queued again even without an API event. Netlink and
iptables calls block, so they run in one dedicated thread (pyroute2's socket stays in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from api import errors
from api.core import Node
from client.apiclient import ApiClient
from client.informer import SharedInformer
from client.workqueue import RateLimitingQueue, run_workers
from netagent import rules, subnet, vxlan

log = logging.getLogger("netagent")

R = TypeVar("R")

PEERS, SELF, RULES = "peers", "self", "rules"


class FatalError(Exception):
    """Something only a restart (or the operator) can fix; the agent exits 1 with the message."""


class Agent:
    def __init__(self, client: ApiClient, node_name: str, *, iface: str | None,
                 public_ip: str | None, cluster_cidr: ipaddress.IPv4Network, subnet_file: str,
                 ip_masq: bool, resync_period: float) -> None:
        self.client = client
        self.node_name = node_name
        self.iface = iface
        self.public_ip = public_ip
        self.cluster_cidr = cluster_cidr
        self.subnet_file = subnet_file
        self.ip_masq = ip_masq
        self.resync_period = resync_period
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._nl: vxlan.Netlink | None = None
        self.underlay: vxlan.Underlay | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.vtep_mac: str | None = None
        self.nodes: SharedInformer[Node] = SharedInformer(client, Node, resource="nodes")
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(name="netagent")
        self._own_changed = asyncio.Event()
        self._fatal: asyncio.Future[str] | None = None
        self._skipped: dict[str, str] = {}  # node → why it is not a peer (logged on change)
        self._owners: dict[str, str] = {}  # entry key → node, from the last sync (for logs)

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def prepare(self) -> vxlan.Underlay:
        """Find the underlay (vxlan.NetlinkError when the flags name nothing usable)."""
        self._nl = await self._call(vxlan.Netlink)
        self.underlay = await self._call(self._nl.find_underlay, self.iface, self.public_ip)
        u = self.underlay
        log.info("underlay: %s (%s, mtu %d); VXLAN mtu %d", u.ifname, u.address, u.mtu,
                 u.mtu - vxlan.OVERHEAD)
        return u

    @property
    def advertised_ip(self) -> str:
        assert self.underlay is not None
        return self.public_ip or self.underlay.address

    # --- event handlers: only enqueue ---------------------------------------------------------

    def _on_add(self, node: Node) -> None:
        self._enqueue_for(node)

    def _on_update(self, old: Node, new: Node) -> None:
        if new.name == self.node_name:
            # Our own status updates come every few seconds: check our annotations (cheap,
            # in memory); the peers only depend on our podCIDR, which does not change.
            self._own_changed.set()
            self.queue.add(SELF)
        elif vxlan.peer_from_node(old) != vxlan.peer_from_node(new) or old is new:
            # Kubelets update their status every few seconds: only overlay-relevant changes
            # (and the informer's resync replays, old is new) wake the peers sync.
            self.queue.add(PEERS)

    def _on_delete(self, node: Node) -> None:
        self._enqueue_for(node)

    def _enqueue_for(self, node: Node) -> None:
        if node.name == self.node_name:
            self._own_changed.set()
            self.queue.add(SELF)
        self.queue.add(PEERS)

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled, or FatalError."""
        if self.underlay is None:
            await self.prepare()
        loop = asyncio.get_running_loop()
        self._fatal = loop.create_future()
        self.nodes.add_event_handler(self._on_add, self._on_update, self._on_delete)
        self.nodes.start()
        tasks: list[asyncio.Task[Any]] = []
        try:
            await self.nodes.wait_for_sync()
            self.subnet = await self._wait_for_subnet()
            log.info("node %s has podCIDR %s; VTEP address %s", self.node_name, self.subnet,
                     self.subnet.network_address)
            for key in (PEERS, SELF, RULES):  # FIFO: the device exists before we publish it
                self.queue.add(key)
            tasks = [asyncio.create_task(run_workers(self.queue, self.sync, name="netagent")),
                     asyncio.create_task(self._resync_loop(), name="netagent resync")]
            done, _ = await asyncio.wait([self._fatal, *tasks],
                                         return_when=asyncio.FIRST_COMPLETED)
            if self._fatal.done():
                raise FatalError(self._fatal.result())
            for t in done:
                t.result()
            raise FatalError("work loop ended unexpectedly")
        finally:
            self.queue.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.nodes.stop()
            if self._nl is not None:
                with contextlib.suppress(Exception):
                    await self._call(self._nl.close)
            self._pool.shutdown(wait=False)

    async def _wait_for_subnet(self) -> ipaddress.IPv4Network:
        said = ""
        while True:
            self._own_changed.clear()
            node = self.nodes.store.get(self.node_name)
            if node is None:
                why = "to be registered (by its kubelet)"
            else:
                cidr = _pod_cidr(node)
                if cidr is not None:
                    return _subnet(cidr)
                why = "to get a podCIDR (from node IPAM)"
            if why != said:
                log.info("waiting for node %s %s", self.node_name, why)
                said = why
            await self._own_changed.wait()

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for key in (PEERS, SELF, RULES):
                self.queue.add(key)

    def _die(self, why: str) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(why)

    # --- sync ---------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key == PEERS:
            await self.sync_peers()
        elif key == SELF:
            await self.sync_self()
        elif key == RULES:
            await self.sync_rules()

    async def sync_self(self) -> None:
        node = self.nodes.store.get(self.node_name)
        if node is None:
            return  # deleted: the kubelet registers it again, and that is an event
        cidr = _pod_cidr(node)
        if cidr is not None and self.subnet is not None and _subnet(cidr) != self.subnet:
            self._die(f"node {self.node_name}'s podCIDR changed from {self.subnet} to {cidr}; "
                      "exiting so that a restart sets the node up for the new one")
            return
        if self.vtep_mac is None:
            return  # flannel.1 is not set up yet: the peers sync queues us once it is
        want = vxlan.node_annotations(self.vtep_mac, self.advertised_ip)
        if not vxlan.annotations_differ(node, want):
            return
        try:
            await self.client.patch("nodes", self.node_name, {"metadata": {"annotations": want}})
        except errors.NotFound:
            return
        log.info("published VTEP MAC %s and public IP %s on node %s", self.vtep_mac,
                 self.advertised_ip, self.node_name)

    async def sync_peers(self) -> None:
        assert self._nl is not None and self.underlay is not None and self.subnet is not None
        nl, peers = self._nl, []
        for node in self.nodes.store.list():
            if node.name == self.node_name:
                continue
            peer, why = vxlan.peer_from_node(node)
            if peer is None:
                if self._skipped.get(node.name) != why:
                    log.info("node %s is not on the overlay: %s", node.name, why)
                    self._skipped[node.name] = why
                continue
            self._skipped.pop(node.name, None)
            peers.append(peer)
        present = {n.name for n in self.nodes.store.list()}
        for gone in set(self._skipped) - present:
            del self._skipped[gone]
        mac, actions = await self._call(nl.ensure_device, self.underlay, self.subnet)
        for a in actions:
            log.info("%s", a)
        if mac != self.vtep_mac:
            self.vtep_mac = mac
            self.queue.add(SELF)  # a (re)created device has a new MAC: republish it
        want = vxlan.desired(peers, self.subnet, mac)

        def converge() -> vxlan.Plan:
            index = nl.device_index()
            if index is None:
                raise RuntimeError(f"{vxlan.DEVICE} vanished")
            p = vxlan.plan(nl.read_state(index), want)
            if not p.empty():
                nl.apply(index, p)
            return p

        p = await self._call(converge)
        owners = {**self._owners, **want.owners}
        self._owners = want.owners

        def who(k: str) -> str:
            return f"node {owners[k]}" if k in owners else "an unknown node"

        dev = vxlan.DEVICE
        for dst, gw in p.del_routes:
            log.info("removed route %s via %s dev %s (%s)", dst, gw, dev, who(dst))
        for ip, m in p.del_neighbours:
            log.info("removed neighbour %s lladdr %s dev %s (%s)", ip, m, dev, who(ip))
        for m, dst in p.del_fdb:
            log.info("removed fdb %s dst %s dev %s (%s)", m, dst, dev, who(m))
        for ip, m in p.add_neighbours:
            log.info("added neighbour %s lladdr %s dev %s for %s", ip, m, dev, who(ip))
        for m, dst in p.add_fdb:
            log.info("added fdb %s dst %s dev %s for %s", m, dst, dev, who(m))
        for dst, gw in p.add_routes:
            log.info("added route %s via %s dev %s onlink for %s", dst, gw, dev, who(dst))

    async def sync_rules(self) -> None:
        assert self.underlay is not None and self.subnet is not None
        env = subnet.SubnetEnv(self.cluster_cidr, self.subnet,
                               self.underlay.mtu - vxlan.OVERHEAD, self.ip_masq)
        if await asyncio.to_thread(subnet.write_atomic, self.subnet_file, env.render()):
            log.info("wrote %s (subnet %s, mtu %d)", self.subnet_file, self.subnet, env.mtu)
        if await self._call(rules.enable_forwarding):
            log.info("enabled net.ipv4.ip_forward")
        for added in await self._call(rules.apply, self.cluster_cidr, self.subnet,
                                      self.ip_masq):
            log.info("added iptables jump %s", added)


def _pod_cidr(node: Node) -> str | None:
    spec = node.spec
    if spec is None:
        return None
    return spec.pod_cidr or next(iter(spec.pod_cidrs or []), None)


def _subnet(cidr: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr)
    except ValueError:
        raise FatalError(f"podCIDR {cidr!r} is not an IPv4 network") from None


def cleanup(subnet_file: str) -> list[str]:
    """Remove everything the agent creates (blocking): flannel.1 (its routes, neighbours and FDB
    entries go with it), the iptables chains and jumps, the subnet file. The Node's annotations
    stay, as flannel leaves them: cleanup works without the apiserver."""
    done = []
    nl = vxlan.Netlink()
    try:
        if nl.delete_device():
            done.append(f"deleted {vxlan.DEVICE}")
    finally:
        nl.close()
    done += [f"removed iptables {r}" for r in rules.cleanup()]
    with contextlib.suppress(FileNotFoundError):
        os.unlink(subnet_file)
        done.append(f"removed {subnet_file}")
    return done
