"""A networked multi-host cluster on one machine: the fixture of the cluster-networking tests.

`NetCluster` is a `Cluster` (etcd, apiserver, scheduler, controller-manager with node IPAM) plus
N hosts (harness.netns: network namespaces on a veth underlay), each running a real kubelet,
`tk-netagent` and `tk-proxy` inside it: pods on different hosts reach each other over the VXLAN
overlay, Services through each host's own iptables.

    async with NetCluster(nodes=2) as nc:
        a, b = nc.nodes                      # node names, e.g. "net-xxxx-0"
        nc.hosts[a].run("ip", "route")       # inside node a's network namespace
        nc.netagents[a].kill(); nc.netagents[a].start()

Nothing here touches the machine's own routes or iptables beyond the underlay bridge and its
FORWARD rule; everything else lives in the hosts' namespaces and goes with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType

from harness.cluster import Cluster, Component
from harness.netns import Host, Underlay

# Short intervals, so tests and walkthroughs converge quickly (all of them flags).
KUBELET_FLAGS = (
    "--crash-loop-backoff-initial", "1s", "--crash-loop-backoff-max", "8s",
    "--lease-interval", "2s", "--node-status-update-frequency", "2s", "--sync-frequency", "5s",
)
PROXY_FLAGS = ("--min-sync-period", "0.1s")


class NetCluster:
    """A Cluster with `nodes` hosts, each with kubelet + netagent + proxy (see module doc)."""

    def __init__(self, nodes: int = 2, *, cluster_cidr: str = "10.244.0.0/16",
                 name_prefix: str = "net", proxy_args: Sequence[str] = (),
                 netagent_args: Sequence[str] = (), kubelets: bool = True,
                 node_names: Sequence[str] = ()) -> None:
        self.count = len(node_names) if node_names else nodes
        # Fixed node names (a walkthrough's node-1, node-2); else `{name_prefix}-{tag}-{i}`.
        self.node_names = list(node_names)
        self.cluster_cidr = cluster_cidr
        self.proxy_args = list(proxy_args)
        self.netagent_args = list(netagent_args)
        self.with_kubelets = kubelets
        self.underlay: Underlay | None = None
        self.cluster: Cluster | None = None
        self.name_prefix = name_prefix
        self.nodes: list[str] = []
        self.hosts: dict[str, Host] = {}
        self.kubelets: dict[str, Component] = {}
        self.netagents: dict[str, Component] = {}
        self.proxies: dict[str, Component] = {}

    @property
    def c(self) -> Cluster:
        assert self.cluster is not None, "NetCluster not started"
        return self.cluster

    async def start(self) -> None:
        self.underlay = await asyncio.to_thread(Underlay.create)
        self.cluster = Cluster("--watch-bookmark-interval", "1", listen_on=self.underlay.gateway)
        await self.cluster.start()
        self.cluster.start_scheduler()
        self.cluster.start_controller_manager("--cluster-cidr", self.cluster_cidr,
                                              "--node-cidr-mask-size", "24")
        for i in range(self.count):
            await self.add_node(self.node_names[i] if self.node_names
                                else f"{self.name_prefix}-{self.underlay.tag}-{i}")
        if self.with_kubelets:
            await self.cluster.wait_nodes_ready(self.count, timeout=90)

    async def add_node(self, name: str) -> Host:
        """A new host running the node's kubelet (unless kubelets=False), netagent and proxy."""
        assert self.underlay is not None and self.cluster is not None
        host = await asyncio.to_thread(self.underlay.add_host)
        self.nodes.append(name)
        self.hosts[name] = host
        if self.with_kubelets:
            self.kubelets[name] = self.cluster.start_kubelet(name, *KUBELET_FLAGS, host=host)
        self.netagents[name] = self.cluster.start_netagent(
            name, host, "--cluster-cidr", self.cluster_cidr, *self.netagent_args)
        self.proxies[name] = self.cluster.start_proxy(
            name, host, "--cluster-cidr", self.cluster_cidr, *PROXY_FLAGS, *self.proxy_args)
        return host

    def logs(self) -> str:
        """Every node component's recent log, for a failing test's message."""
        out = []
        for kind, comps in (("netagent", self.netagents), ("proxy", self.proxies),
                            ("kubelet", self.kubelets)):
            for node, comp in comps.items():
                out.append(f"--- {kind} {node} ---\n{comp.logs(40)}")
        return "\n".join(out)

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()  # stops every component, removes the pods' containers
        if self.underlay is not None:
            await asyncio.to_thread(self.underlay.delete)

    async def __aenter__(self) -> NetCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
