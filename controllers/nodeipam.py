"""Node IPAM: a podCIDR per node, carved out of the cluster CIDR.

Pod addresses must be unique across the cluster without the nodes talking to each other: the
controller-manager hands each node its own slice of `--cluster-cidr` (a /`--node-cidr-mask-size`,
by default a /24 of 10.244.0.0/16), writes it to `spec.podCIDR`/`spec.podCIDRs`, and the node
(its CNI IPAM, or a hollow node) allocates pod IPs from it. This is upstream's range allocator:
the slices in use are rebuilt from the Nodes at start, so a restart never hands out a CIDR twice;
a deleted node's slice goes back to the pool; when the pool is empty the node gets a
`CIDRNotAvailable` event and is retried with back-off.
"""

from __future__ import annotations

import asyncio
import ipaddress

from api import errors
from api.core import Node
from controllers.base import Controller, ControllerContext

ERR_FULL = ("failed to allocate cidr from cluster cidr at idx:0: CIDR allocation failed; "
            "there are no remaining CIDRs left to allocate in the accepted range")


class CIDRSet:
    """The /mask subnets of one cluster CIDR, handed out round robin (upstream's cidrset).

    `occupy` marks a subnet already in use (found on a Node at start); `allocate` the next free
    one after the last handed out; `release` returns one. Pure, no I/O.
    """

    def __init__(self, cluster_cidr: str, mask_size: int) -> None:
        try:
            self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        except ValueError:
            raise ValueError(f"--cluster-cidr: {cluster_cidr!r} is not a CIDR") from None
        if not self.network.prefixlen <= mask_size <= self.network.max_prefixlen:
            raise ValueError(f"--node-cidr-mask-size: {mask_size} must be between the cluster "
                             f"CIDR's prefix length ({self.network.prefixlen}) and "
                             f"{self.network.max_prefixlen}")
        if mask_size - self.network.prefixlen > 16:
            # Upstream's limit too: the set is a bitmap of at most 65536 subnets.
            raise ValueError(f"--node-cidr-mask-size: {mask_size} makes more than 65536 "
                             f"subnets of {self.network}")
        self.mask_size = mask_size
        self.size = 1 << (mask_size - self.network.prefixlen)
        self._step = 1 << (self.network.max_prefixlen - mask_size)
        self._base = int(self.network.network_address)
        self._used: set[int] = set()
        self._next = 0

    def _index(self, cidr: str) -> int | None:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        if net.version != self.network.version or net.prefixlen != self.mask_size \
                or not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        return (int(net.network_address) - self._base) // self._step

    def _cidr(self, index: int) -> str:
        addr = ipaddress.ip_address(self._base + index * self._step)
        return f"{addr}/{self.mask_size}"

    def occupy(self, cidr: str) -> bool:
        """Mark `cidr` used; False if it is not one of this set's subnets."""
        i = self._index(cidr)
        if i is None:
            return False
        self._used.add(i)
        return True

    def allocate(self) -> str | None:
        for k in range(self.size):
            i = (self._next + k) % self.size
            if i not in self._used:
                self._used.add(i)
                self._next = (i + 1) % self.size
                return self._cidr(i)
        return None

    def release(self, cidr: str) -> None:
        i = self._index(cidr)
        if i is not None:
            self._used.discard(i)

    @property
    def used(self) -> int:
        return len(self._used)


def pod_cidrs(node: Node) -> list[str]:
    spec = node.spec
    if spec is None:
        return []
    return list(spec.pod_cidrs or ([spec.pod_cidr] if spec.pod_cidr else []))


class NodeIpamController(Controller):
    name = "nodeipam"
    component = "cidrAllocator"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cidrs = CIDRSet(self.options.cluster_cidr, self.options.node_cidr_mask_size)
        self._owner: dict[str, str] = {}  # cidr → node holding it (observed or allocated by us)
        self._seeded = False
        self._lock = asyncio.Lock()

    def setup(self) -> None:
        self.nodes = self.factory.informer_for(Node)
        self.nodes.add_event_handler(on_add=self._changed,
                                     on_update=lambda _old, new: self._changed(new),
                                     on_delete=self._deleted)

    def _changed(self, node: Node) -> None:
        if not self.options.allocate_node_cidrs:
            return
        for cidr in pod_cidrs(node):
            self._occupy(cidr, node.name)
        if not pod_cidrs(node):
            self.enqueue(node)

    def _occupy(self, cidr: str, node: str) -> None:
        if self.cidrs.occupy(cidr):
            self._owner[cidr] = node

    def _deleted(self, node: Node) -> None:
        for cidr in pod_cidrs(node):
            if self._owner.get(cidr) == node.name:
                del self._owner[cidr]
                self.cidrs.release(cidr)
                self.log.info("released %s of deleted node %s", cidr, node.name)

    def _seed(self) -> None:
        """Before the first allocation: every CIDR some Node already holds is taken."""
        if not self._seeded:
            for node in self.nodes.store.list():
                for cidr in pod_cidrs(node):
                    self._occupy(cidr, node.name)
            self._seeded = True

    async def sync(self, key: str) -> None:
        node = self.nodes.store.get(key)
        if node is None or pod_cidrs(node) or not self.options.allocate_node_cidrs:
            return
        async with self._lock:  # one allocation at a time: the set is shared by the workers
            self._seed()
            cidr = self.cidrs.allocate()
        if cidr is None:
            self.recorder.event(node, "Normal", "CIDRNotAvailable",
                                f"Node {node.name} status is now: CIDRNotAvailable")
            raise RuntimeError(ERR_FULL)  # retried with back-off: a node may be deleted
        self._owner[cidr] = node.name
        try:
            # Only if still unset (test-and-set on the uid): never overwrite a CIDR someone
            # else gave the node meanwhile.
            fresh = await self.client.get("nodes", node.name)
            if (fresh["metadata"].get("uid") != node.metadata.uid
                    or (fresh.get("spec") or {}).get("podCIDR")):
                raise errors.Conflict(message=f"node {node.name} changed; retrying")
            fresh.setdefault("spec", {}).update(podCIDR=cidr, podCIDRs=[cidr])
            await self.client.update("nodes", fresh)
        except errors.NotFound:
            self._release(cidr)
            return
        except Exception:
            self._release(cidr)
            raise
        self.log.info("allocated %s to node %s", cidr, node.name)

    def _release(self, cidr: str) -> None:
        self._owner.pop(cidr, None)
        self.cidrs.release(cidr)
