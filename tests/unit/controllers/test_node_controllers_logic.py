"""Pure decisions of the node IPAM and node lifecycle controllers: CIDR allocation, managed
taints, taint-eviction timing, conditions set Unknown."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from api.core import Node, Taint, Toleration
from controllers.nodeipam import CIDRSet
from controllers.nodelifecycle import (
    desired_taints,
    eviction_for,
    pod_marked_not_ready,
    same_taints,
    unknown_conditions,
)

NOW = "2025-01-01T00:00:00Z"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()


def node(ready: str | None = "True", taints: list[dict[str, Any]] | None = None,
         unschedulable: bool = False, **conds: str) -> Node:
    conditions = [{"type": t, "status": s} for t, s in conds.items()]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready,
                           "lastHeartbeatTime": "2024-12-31T23:59:00Z"})
    return Node.model_validate({"metadata": {"name": "n", "creationTimestamp": NOW},
                                "spec": {"taints": taints or [],
                                         "unschedulable": unschedulable},
                                "status": {"conditions": conditions}})


def keys(taints: list[Taint]) -> set[tuple[str, str]]:
    return {(t.key, t.effect) for t in taints}


# --- CIDRSet --------------------------------------------------------------------------------

def test_cidrs_are_handed_out_once_round_robin() -> None:
    s = CIDRSet("10.244.0.0/22", 24)
    got = [s.allocate() for _ in range(4)]
    assert got == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    assert s.allocate() is None
    s.release("10.244.1.0/24")
    assert s.allocate() == "10.244.1.0/24"


def test_occupied_cidrs_are_skipped() -> None:
    s = CIDRSet("10.244.0.0/16", 24)
    assert s.occupy("10.244.0.0/24") and s.occupy("10.244.1.0/24")
    assert not s.occupy("10.9.0.0/24") and not s.occupy("10.244.2.0/25")
    assert s.allocate() == "10.244.2.0/24"


@pytest.mark.parametrize("cidr,mask,flag", [("nope", 24, "--cluster-cidr"),
                                            ("10.0.0.0/16", 8, "--node-cidr-mask-size"),
                                            ("10.0.0.0/8", 30, "--node-cidr-mask-size")])
def test_bad_flags_name_the_flag(cidr: str, mask: int, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        CIDRSet(cidr, mask)


# --- taints ---------------------------------------------------------------------------------

def test_ready_node_has_no_managed_taints_and_keeps_foreign_ones() -> None:
    n = node("True", taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"},
                             {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    assert keys(desired_taints(n, NOW)) == {("dedicated", "NoSchedule")}


def test_unknown_node_gets_unreachable_taints_with_time_added() -> None:
    want = desired_taints(node("Unknown"), NOW)
    assert keys(want) == {("node.kubernetes.io/unreachable", "NoSchedule"),
                          ("node.kubernetes.io/unreachable", "NoExecute")}
    ne = next(t for t in want if t.effect == "NoExecute")
    assert ne.time_added == NOW
    assert next(t for t in want if t.effect == "NoSchedule").time_added is None


def test_not_ready_swaps_for_unreachable_and_keeps_time_added() -> None:
    n = node("False", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                               "timeAdded": "2020-01-01T00:00:00Z"}])
    assert keys(desired_taints(n, NOW)) == {("node.kubernetes.io/not-ready", "NoSchedule"),
                                           ("node.kubernetes.io/not-ready", "NoExecute")}
    same = node("False", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute",
                                  "timeAdded": "2020-01-01T00:00:00Z"},
                                 {"key": "node.kubernetes.io/not-ready",
                                  "effect": "NoSchedule"}])
    assert same_taints(desired_taints(same, NOW), same.spec.taints or [])  # type: ignore[union-attr]


def test_pressure_and_unschedulable_are_no_schedule_taints() -> None:
    n = node("True", unschedulable=True, MemoryPressure="True", DiskPressure="False")
    assert keys(desired_taints(n, NOW)) == {("node.kubernetes.io/memory-pressure", "NoSchedule"),
                                           ("node.kubernetes.io/unschedulable", "NoSchedule")}


# --- eviction timing ------------------------------------------------------------------------

UNREACHABLE = Taint(key="node.kubernetes.io/unreachable", effect="NoExecute",
                    time_added="2025-01-01T00:00:00Z")


def tol(seconds: int | None, key: str = "node.kubernetes.io/unreachable") -> Toleration:
    return Toleration(key=key, operator="Exists", effect="NoExecute",
                      toleration_seconds=seconds)


def test_untolerated_no_execute_evicts_now() -> None:
    assert eviction_for([UNREACHABLE], [tol(None, "other")], T0).now
    assert not eviction_for([Taint(key="x", effect="NoSchedule")], [], T0).now


def test_toleration_seconds_count_from_time_added() -> None:
    e = eviction_for([UNREACHABLE], [tol(300)], T0 + 100)
    assert not e.now and e.at == T0 + 300
    assert eviction_for([UNREACHABLE], [tol(300)], T0 + 300).now
    assert eviction_for([UNREACHABLE], [tol(-5)], T0).now  # negative means at once


def test_tolerated_forever_is_never_evicted() -> None:
    e = eviction_for([UNREACHABLE], [tol(None)], T0 + 10**6)
    assert not e.now and e.at is None
    wildcard = Toleration(operator="Exists")
    assert eviction_for([UNREACHABLE], [wildcard], T0).at is None


def test_the_shortest_used_toleration_wins() -> None:
    e = eviction_for([UNREACHABLE], [tol(600), tol(60)], T0)
    assert e.at == T0 + 60


# --- Unknown conditions ---------------------------------------------------------------------

def test_conditions_go_unknown_with_upstream_reasons() -> None:
    n = node("True", MemoryPressure="False")
    conds = {c["type"]: c for c in unknown_conditions(n, NOW) or []}
    assert conds["Ready"]["status"] == "Unknown"
    assert conds["Ready"]["reason"] == "NodeStatusUnknown"
    assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
    assert conds["Ready"]["lastTransitionTime"] == NOW
    assert conds["Ready"]["lastHeartbeatTime"] == "2024-12-31T23:59:00Z"
    assert conds["DiskPressure"]["reason"] == "NodeStatusNeverUpdated"
    assert conds["MemoryPressure"]["status"] == "Unknown"
    already = Node.model_validate({"metadata": {"name": "n"}, "status": {"conditions": list(
        conds.values())}})
    assert unknown_conditions(already, NOW) is None


def test_a_node_that_never_posted_gets_never_updated() -> None:
    conds = {c["type"]: c for c in unknown_conditions(node(None), NOW) or []}
    assert conds["Ready"]["reason"] == "NodeStatusNeverUpdated"
    assert conds["Ready"]["message"] == "Kubelet never posted node status."


def _pod(node: str = "n", ready: str | None = "True", deleting: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "p", "namespace": "ns", "uid": "u"}
    if deleting:
        md["deletionTimestamp"] = NOW
    conds = [{"type": "PodScheduled", "status": "True"}]
    if ready is not None:
        conds.append({"type": "Ready", "status": ready,
                      "lastTransitionTime": "2024-01-01T00:00:00Z"})
    return {"metadata": md, "spec": {"nodeName": node}, "status": {"conditions": conds}}


def test_pods_of_a_not_ready_node_are_marked_not_ready_once() -> None:
    """What MarkPodsNotReady writes, also after re-reading a pod on a Conflict: Ready False
    with a new transition time, nothing for pods already not Ready, elsewhere or going."""
    marked = pod_marked_not_ready(_pod(), "n", NOW)
    assert marked is not None
    ready = [c for c in marked["status"]["conditions"] if c["type"] == "Ready"]
    assert ready == [{"type": "Ready", "status": "False", "lastTransitionTime": NOW}]
    assert pod_marked_not_ready(_pod(ready="Unknown"), "n", NOW) is not None
    assert pod_marked_not_ready(_pod(ready="False"), "n", NOW) is None
    assert pod_marked_not_ready(_pod(ready=None), "n", NOW) is None
    assert pod_marked_not_ready(_pod(node="other"), "n", NOW) is None  # rescheduled meanwhile
    assert pod_marked_not_ready(_pod(deleting=True), "n", NOW) is None
