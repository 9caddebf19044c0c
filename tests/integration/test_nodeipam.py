"""Node IPAM against a real etcd + apiserver + controller-manager: a unique podCIDR per node,
pod IPs from it (hollow nodes), CIDRNotAvailable when the range is exhausted, release on node
deletion, existing assignments kept across a controller-manager restart."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from typing import Any

import pytest

from api import errors
from harness.cluster import Cluster
from harness.wait import until

pytestmark = pytest.mark.integration

# A SIGKILLed manager's lease expires in 3s, not 15s.
FAST_LEADER_ELECTION = ("--leader-elect-lease-duration", "3", "--leader-elect-renew-deadline",
                        "2", "--leader-elect-retry-period", "0.5")
# Four /24s: two for the hollow nodes, two for plain Nodes, then the range is full.
CLUSTER_CIDR = "10.100.0.0/22"


async def cidr_of(c: Cluster, name: str) -> str | None:
    try:
        node = await c.client.get("nodes", name)
    except errors.NotFound:
        return None
    spec = node.get("spec") or {}
    if spec.get("podCIDR"):
        assert spec["podCIDRs"] == [spec["podCIDR"]]
    return spec.get("podCIDR")


async def plain_node(c: Cluster, name: str) -> None:
    await c.client.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                    "metadata": {"name": name}})


async def events_for(c: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    items, _ = await c.client.list_all(
        "events", "default", field_selector=f"involvedObject.name={name},reason={reason}")
    return items


async def test_pod_cidrs_are_unique_exhausted_released_and_survive_restart() -> None:
    async with Cluster() as c:
        cm = c.start_controller_manager("--controllers", "nodeipam", "--cluster-cidr",
                                        CLUSTER_CIDR, "--node-cidr-mask-size", "24",
                                        *FAST_LEADER_ELECTION)
        c.start_hollow_nodes(2, "--name-prefix", "ipam-", "--lease-interval", "1")
        first = [await until(lambda n=n: cidr_of(c, n), timeout=60, what=f"{n} podCIDR")
                 for n in ("ipam-0", "ipam-1")]
        await plain_node(c, "plain-a")
        await plain_node(c, "plain-b")
        second = [await until(lambda n=n: cidr_of(c, n), timeout=30, what=f"{n} podCIDR")
                  for n in ("plain-a", "plain-b")]
        cidrs = first + second
        assert len(set(cidrs)) == 4
        net = ipaddress.ip_network(CLUSTER_CIDR)
        assert all(ipaddress.ip_network(x).subnet_of(net) for x in cidrs)

        # Pods on a hollow node get addresses from its podCIDR.
        ns = await c.new_namespace()
        await c.client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "p"},
                                       "spec": {"containers": [{"name": "c", "image": "x"}]}},
                              ns)
        await c.client.bind(ns, "p", "ipam-0")

        async def pod_ip() -> str | None:
            return ((await c.client.get("pods", "p", ns)).get("status") or {}).get("podIP")
        ip = await until(pod_ip, timeout=30, what="pod IP")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(first[0])

        # The range is full: the next node waits with CIDRNotAvailable.
        await plain_node(c, "plain-c")
        ev = await until(lambda: events_for(c, "plain-c", "CIDRNotAvailable"), timeout=30)
        assert ev[0]["message"] == "Node plain-c status is now: CIDRNotAvailable"
        assert await cidr_of(c, "plain-c") is None

        # A deleted node's CIDR goes back to the pool.
        await c.client.delete("nodes", "plain-a")
        got = await until(lambda: cidr_of(c, "plain-c"), timeout=60, what="plain-c podCIDR")
        assert got == second[0]

        # A restarted controller-manager respects what the Nodes hold.
        cm.kill()
        cm.start()
        await plain_node(c, "plain-d")
        await c.client.delete("nodes", "plain-b")
        got_d = await until(lambda: cidr_of(c, "plain-d"), timeout=60, what="plain-d podCIDR")
        assert got_d == second[1]
        assert [await cidr_of(c, n) for n in ("ipam-0", "ipam-1", "plain-c")] == \
            [*first, second[0]]


def test_bad_cidr_flags_are_one_line_exit_2() -> None:
    r = subprocess.run([sys.executable, "-m", "controllers", "--cluster-cidr", "10.0.0.0/16",
                        "--node-cidr-mask-size", "8"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--node-cidr-mask-size" in r.stderr
