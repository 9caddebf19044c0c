"""The scheduler's cache: every node and every pod on it, including pods it has only *assumed*.

Binding is an API call that takes milliseconds, and the informer sees its result later still. If
the next decision looked only at bound pods, a burst of pods would all see the same free node and
overcommit it. So, like upstream's internal/cache, a decision is *assumed* at once (its pod counted
on the node before the bind is sent); then:

- the bind succeeds: `finish_binding` starts a TTL, and the pod's informer event (nodeName set)
  *confirms* it; an assumed pod whose confirmation never comes within the TTL is expired;
- the bind fails: `forget` takes the pod off the node again.

Invariants: a pod key is on at most one node; a node's sums are exactly the sums over its pods;
an observed (confirmed) pod is never expired. No I/O; time comes from the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from api.core import Node
from scheduler.framework import NodeInfo, PodInfo

log = logging.getLogger(__name__)

# How long an assumed pod may wait for its informer confirmation after a successful bind. Upstream
# now never expires them (0); a bounded TTL keeps a lost watch event from leaking capacity.
ASSUMED_POD_TTL = 30.0


@dataclass(eq=False)
class _PodState:
    info: PodInfo
    node: str
    assumed: bool
    deadline: float | None = None  # set when the bind finished; None = no expiry yet


class Cache:
    """Nodes by name (with a stable order for round-robin filtering) and pods by key."""

    def __init__(self, ttl: float = ASSUMED_POD_TTL) -> None:
        self.ttl = ttl
        self.nodes: dict[str, NodeInfo] = {}
        # Nodes whose object exists, in insertion order: the order filters walk. Kept as a list
        # so a decision reads it as it is, without building one per pod.
        self.node_infos: list[NodeInfo] = []
        self._pods: dict[str, _PodState] = {}

    # --- nodes ------------------------------------------------------------------------------

    def add_node(self, node: Node) -> bool:
        """Add or update a node; True if a pending pod might now fit somewhere."""
        name = node.metadata.name or ""
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        if info.node is None:
            self.node_infos.append(info)
        return info.set_node(node)

    update_node = add_node

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None or info.node is None:
            return
        info.set_node(None)
        self.node_infos.remove(info)
        if not info.pods:
            del self.nodes[name]

    @property
    def node_list(self) -> list[str]:
        """The names of `node_infos`, in order."""
        return [n.name for n in self.node_infos]

    def node_count(self) -> int:
        return len(self.node_infos)

    def _node_for(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:  # a pod bound to a node we have not seen (yet)
            info = self.nodes[name] = NodeInfo(name)
        return info

    def _detach(self, key: str) -> _PodState | None:
        st = self._pods.pop(key, None)
        if st is not None:
            info = self.nodes.get(st.node)
            if info is not None:
                info.remove_pod(key)
                if info.node is None and not info.pods:
                    del self.nodes[st.node]
        return st

    # --- assumed pods -----------------------------------------------------------------------

    def assume(self, p: PodInfo, node: str) -> None:
        """Count `p` on `node` before the bind is sent."""
        if p.key in self._pods:
            raise ValueError(f"pod {p.key} is already in the scheduler cache")
        self._node_for(node).add_pod(p)
        self._pods[p.key] = _PodState(p, node, assumed=True)

    def finish_binding(self, key: str, now: float) -> None:
        st = self._pods.get(key)
        if st is not None and st.assumed:
            st.deadline = now + self.ttl

    def forget(self, key: str) -> None:
        """The bind failed: the assumed pod leaves its node."""
        st = self._pods.get(key)
        if st is not None and st.assumed:
            self._detach(key)

    def is_assumed(self, key: str) -> bool:
        st = self._pods.get(key)
        return st is not None and st.assumed

    def knows(self, key: str) -> bool:
        """The pod is on a node here, bound or assumed (so it must not be scheduled again)."""
        return key in self._pods

    def uid_of(self, key: str) -> str | None:
        """The uid of the pod the cache holds under `key` (bound or assumed), if any."""
        st = self._pods.get(key)
        return st.info.uid if st is not None else None

    def node_of(self, key: str) -> str | None:
        st = self._pods.get(key)
        return st.node if st is not None else None

    def cleanup_expired(self, now: float) -> list[str]:
        """Drop assumed pods whose bind finished more than the TTL ago without confirmation."""
        expired = [k for k, st in self._pods.items()
                   if st.assumed and st.deadline is not None and st.deadline <= now]
        for key in expired:
            log.warning("assumed pod %s expired without its binding being observed", key)
            self._detach(key)
        return expired

    # --- observed (bound) pods --------------------------------------------------------------

    def add_pod(self, p: PodInfo, node: str) -> None:
        """An informer saw `p` bound to `node`: confirm an assumption, or add/replace it."""
        st = self._pods.get(p.key)
        if st is not None and st.node == node and st.info.uid == p.uid \
                and not _accounting_changed(st.info, p):
            st.info, st.assumed, st.deadline = p, False, None
            self.nodes[node].pods[p.key] = p
            return
        if st is not None:
            self._detach(p.key)
        self._node_for(node).add_pod(p)
        self._pods[p.key] = _PodState(p, node, assumed=False)

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        self._detach(key)

    def pod_count(self) -> int:
        return len(self._pods)


def _accounting_changed(a: PodInfo, b: PodInfo) -> bool:
    """Whether replacing `a` by `b` in place would leave a node's sums wrong."""
    return (a.cpu, a.mem, a.nz_cpu, a.nz_mem, a.host_ports, a.owner_uid) != \
        (b.cpu, b.mem, b.nz_cpu, b.nz_mem, b.host_ports, b.owner_uid)
