"""The netagent's pure overlay logic (netagent/vxlan.py): which Nodes are peers, which
neighbour/FDB/route entries they call for, and what must change to get there from the kernel's
entries. No netlink here: tests/e2e/test_overlay.py checks the kernel."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from api.core import Node
from netagent import vxlan

MAC_B, MAC_C = "aa:bb:cc:00:00:0b", "aa:bb:cc:00:00:0c"


def node(name: str, cidr: str | None = None, mac: str | None = None, ip: str | None = None,
         **ann: str) -> Node:
    a: dict[str, Any] = dict(ann)
    if mac is not None:
        a.update(vxlan.node_annotations(mac, ip or "192.0.2.1"))
    elif ip is not None:
        a[vxlan.PUBLIC_IP] = ip
    obj: dict[str, Any] = {"metadata": {"name": name, "annotations": a}, "spec": {}}
    if cidr:
        obj["spec"]["podCIDR"] = cidr
    return Node.model_validate(obj)


def test_annotations_use_flannels_names_and_json() -> None:
    ann = vxlan.node_annotations("4a:b8:17:71:a9:c4", "172.30.1.10")
    assert ann == {"flannel.alpha.coreos.com/backend-type": "vxlan",
                   "flannel.alpha.coreos.com/backend-data":
                       '{"VNI":1,"VtepMAC":"4a:b8:17:71:a9:c4"}',
                   "flannel.alpha.coreos.com/public-ip": "172.30.1.10",
                   "flannel.alpha.coreos.com/kube-subnet-manager": "true"}


def test_annotations_differ_ignores_json_spacing_but_not_values() -> None:
    want = vxlan.node_annotations(MAC_B, "192.0.2.2")
    same = node("b", mac=MAC_B, ip="192.0.2.2")
    same.metadata.annotations[vxlan.BACKEND_DATA] = json.dumps(  # type: ignore[index]
        {"VtepMAC": MAC_B, "VNI": 1})
    assert not vxlan.annotations_differ(same, want)
    assert vxlan.annotations_differ(node("b", mac=MAC_C, ip="192.0.2.2"), want)
    assert vxlan.annotations_differ(node("b", mac=MAC_B, ip="192.0.2.3"), want)
    assert vxlan.annotations_differ(node("b"), want)


def test_peer_from_complete_node() -> None:
    peer, why = vxlan.peer_from_node(node("b", "10.244.2.0/24", "AA:BB:CC:00:00:0B", "192.0.2.2"))
    assert why == ""
    assert peer == vxlan.Peer("b", ipaddress.IPv4Network("10.244.2.0/24"), MAC_B, "192.0.2.2")
    assert peer.vtep_ip == "10.244.2.0"


@pytest.mark.parametrize(("n", "why"), [
    (node("b", None, MAC_B), "no podCIDR yet"),
    (node("b", "10.244.2.0/24"), "no vxlan backend annotation yet"),
    (node("b", "10.244.2.0/24", ip="192.0.2.2", **{vxlan.BACKEND_TYPE: "vxlan",
                                                   vxlan.BACKEND_DATA: "{"}), "is not JSON"),
    (node("b", "10.244.2.0/24", ip="192.0.2.2", **{
        vxlan.BACKEND_TYPE: "vxlan", vxlan.BACKEND_DATA: '{"VNI":1,"VtepMAC":"zz"}'}),
     "no valid VtepMAC"),
    (node("b", "10.244.2.0/24", ip="192.0.2.2", **{
        vxlan.BACKEND_TYPE: "vxlan",
        vxlan.BACKEND_DATA: '{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}'}),
     "no valid VtepMAC"),
    (node("b", "10.244.2.0/24", ip="192.0.2.2", **{
        vxlan.BACKEND_TYPE: "vxlan", vxlan.BACKEND_DATA: f'{{"VNI":4,"VtepMAC":"{MAC_B}"}}'}),
     "VNI 4"),
    (node("b", "10.244.2.0/24", MAC_B, "not-an-ip"), "is not an IPv4 address"),
    (node("b", "fd00::/64", MAC_B, "192.0.2.2"), "not an IPv4 network"),
])
def test_incomplete_nodes_are_not_peers(n: Node, why: str) -> None:
    peer, reason = vxlan.peer_from_node(n)
    assert peer is None and why in reason


def peers(*nodes: Node) -> list[vxlan.Peer]:
    out = []
    for n in nodes:
        p, _ = vxlan.peer_from_node(n)
        assert p is not None
        out.append(p)
    return out


def test_desired_entries_per_peer() -> None:
    s = vxlan.desired(peers(node("b", "10.244.2.0/24", MAC_B, "192.0.2.2"),
                            node("c", "10.244.3.0/24", MAC_C, "192.0.2.3")),
                      ipaddress.IPv4Network("10.244.1.0/24"), "aa:bb:cc:00:00:0a")
    assert s.neighbours == {"10.244.2.0": MAC_B, "10.244.3.0": MAC_C}
    assert s.fdb == {(MAC_B, "192.0.2.2"), (MAC_C, "192.0.2.3")}
    assert s.routes == {"10.244.2.0/24": "10.244.2.0", "10.244.3.0/24": "10.244.3.0"}
    assert s.owners["10.244.3.0/24"] == "c" and s.owners[MAC_B] == "b"


def test_desired_drops_clashes_deterministically() -> None:
    own = ipaddress.IPv4Network("10.244.1.0/24")
    s = vxlan.desired(peers(node("z", "10.244.2.0/24", MAC_C, "192.0.2.9"),   # same subnet as b
                            node("b", "10.244.2.0/24", MAC_B, "192.0.2.2"),
                            node("c", "10.244.1.0/25", "aa:bb:cc:00:00:0d"),  # inside ours
                            node("d", "10.244.4.0/24", "aa:bb:cc:00:00:0a"),  # our MAC
                            node("e", "10.244.5.0/24", MAC_B, "192.0.2.5")),  # b's MAC
                      own, "aa:bb:cc:00:00:0a")
    assert s.routes == {"10.244.2.0/24": "10.244.2.0"}
    assert s.fdb == {(MAC_B, "192.0.2.2")}


def test_plan_from_empty_adds_everything_and_from_equal_does_nothing() -> None:
    want = vxlan.desired(peers(node("b", "10.244.2.0/24", MAC_B, "192.0.2.2")))
    p = vxlan.plan(vxlan.State(), want)
    assert p.add_neighbours == [("10.244.2.0", MAC_B)]
    assert p.add_fdb == [(MAC_B, "192.0.2.2")]
    assert p.add_routes == [("10.244.2.0/24", "10.244.2.0")]
    assert not (p.del_routes or p.del_neighbours or p.del_fdb)
    same = vxlan.State(dict(want.neighbours), set(want.fdb), dict(want.routes))
    assert vxlan.plan(same, want).empty()


def test_plan_removes_stale_and_replaces_changed() -> None:
    # The kernel still has node c (deleted while the agent was down) and b's old public IP.
    have = vxlan.State(neighbours={"10.244.2.0": MAC_B, "10.244.3.0": MAC_C},
                       fdb={(MAC_B, "192.0.2.99"), (MAC_C, "192.0.2.3")},
                       routes={"10.244.2.0/24": "10.244.2.0", "10.244.3.0/24": "10.244.3.0"})
    want = vxlan.desired(peers(node("b", "10.244.2.0/24", MAC_B, "192.0.2.2")))
    p = vxlan.plan(have, want)
    assert p.del_routes == [("10.244.3.0/24", "10.244.3.0")]
    assert p.del_neighbours == [("10.244.3.0", MAC_C)]
    assert p.del_fdb == [(MAC_B, "192.0.2.99"), (MAC_C, "192.0.2.3")]
    assert p.add_fdb == [(MAC_B, "192.0.2.2")]
    assert not p.add_neighbours and not p.add_routes


def test_plan_rewrites_a_neighbour_whose_mac_changed() -> None:
    # b recreated its device (new MAC): the old neighbour goes, the new one comes.
    have = vxlan.State(neighbours={"10.244.2.0": MAC_C}, fdb={(MAC_C, "192.0.2.2")},
                       routes={"10.244.2.0/24": "10.244.2.0"})
    want = vxlan.desired(peers(node("b", "10.244.2.0/24", MAC_B, "192.0.2.2")))
    p = vxlan.plan(have, want)
    assert p.del_neighbours == [("10.244.2.0", MAC_C)]
    assert p.add_neighbours == [("10.244.2.0", MAC_B)]
    assert (p.del_fdb, p.add_fdb) == ([(MAC_C, "192.0.2.2")], [(MAC_B, "192.0.2.2")])
    assert not p.del_routes and not p.add_routes
