"""Filters, scores, the reason histogram and node selection, with no I/O."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from sched_fixtures import make_node  # tests/unit/scheduler, on sys.path under pytest
from sched_fixtures import make_podinfo as podinfo

from scheduler.framework import NodeInfo, PodInfo
from scheduler.plugins import (
    MOST_ALLOCATED,
    Algorithm,
    FitError,
    filter_node,
    fit_error_message,
    num_feasible_nodes_to_find,
    score_nodes,
    select_host,
)


def info(name: str, **kw: object) -> NodeInfo:
    n = NodeInfo(name)
    n.set_node(make_node(name, **kw))  # type: ignore[arg-type]
    return n


def test_fit_error_message_is_upstreams_sorted_histogram() -> None:
    reasons = Counter({"Insufficient cpu": 2,
                       "node(s) had untolerated taint {node.kubernetes.io/unreachable: }": 1})
    assert fit_error_message(3, reasons) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint "
        "{node.kubernetes.io/unreachable: }, 2 Insufficient cpu.")
    assert fit_error_message(0, Counter()) == "no nodes available to schedule pods"


def test_resources_fit_reports_every_insufficient_resource() -> None:
    n = info("n", cpu="1", memory="1Gi", pods=1)
    n.add_pod(podinfo("existing", cpu="500m", memory="512Mi"))
    assert filter_node(podinfo(cpu="600m", memory="600Mi"), n) == [
        "Too many pods", "Insufficient cpu", "Insufficient memory"]
    n2 = info("n2", cpu="1", memory="1Gi")
    n2.add_pod(podinfo("existing", cpu="500m", memory="512Mi"))
    assert filter_node(podinfo(cpu="500m", memory="512Mi"), n2) is None
    assert filter_node(podinfo(cpu="501m"), n2) == ["Insufficient cpu"]


def test_pod_requesting_nothing_only_needs_a_pod_slot() -> None:
    n = info("n", cpu="0", memory="0")
    assert filter_node(podinfo(), n) is None


def test_first_failing_filter_decides_in_upstream_order() -> None:
    n = info("n", cpu="1", unschedulable=True,
             taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    p = podinfo(cpu="2", nodeSelector={"x": "y"})
    assert filter_node(p, n) == ["node(s) were unschedulable"]
    n.unschedulable = False
    assert filter_node(p, n) == ["node(s) had untolerated taint {k: v}"]
    n.hard_taints = []
    assert filter_node(p, n) == ["node(s) didn't match Pod's node affinity/selector"]
    n.labels["x"] = "y"
    assert filter_node(p, n) == ["Insufficient cpu"]


@pytest.mark.parametrize(("toleration", "fits"), [
    ({"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists"}, True),
    ({"operator": "Exists"}, True),
    ({"key": "k", "value": "other", "effect": "NoSchedule"}, False),
    ({"key": "k", "value": "v", "effect": "NoExecute"}, False),
])
def test_taint_toleration(toleration: dict[str, str], fits: bool) -> None:
    n = info("n", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"},
                          {"key": "soft", "effect": "PreferNoSchedule"}])
    assert (filter_node(podinfo(tolerations=[toleration]), n) is None) is fits


def test_node_affinity_terms_ored_expressions_anded_and_match_fields() -> None:
    n = info("n1", labels={"zone": "a", "gpu": "2"})
    def affinity(*terms: Any) -> PodInfo:
        return podinfo(affinity={"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}})
    zone_b = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}
    gpu = {"matchExpressions": [{"key": "gpu", "operator": "Gt", "values": ["1"]},
                                {"key": "spot", "operator": "DoesNotExist"}]}
    name = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    not_name = {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}
    assert filter_node(affinity(zone_b), n) is not None
    assert filter_node(affinity(zone_b, gpu), n) is None
    assert filter_node(affinity(name), n) is None
    assert filter_node(affinity(not_name), n) is not None
    assert filter_node(affinity({}), n) is not None  # an empty term matches nothing


def test_host_ports_conflict_like_upstream() -> None:
    n = info("n")
    n.add_pod(podinfo("a", ports=[{"containerPort": 80, "hostPort": 8080,
                                   "hostIP": "127.0.0.1"}]))
    def port(ip: str, proto: str = "TCP") -> PodInfo:
        return podinfo(ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": ip,
                               "protocol": proto}])
    assert filter_node(port("127.0.0.2"), n) is None
    assert filter_node(port("127.0.0.1", "UDP"), n) is None
    assert filter_node(port("127.0.0.1"), n) == [
        "node(s) didn't have free ports for the requested pod ports"]
    assert filter_node(port("0.0.0.0"), n) is not None
    n.remove_pod("ns/a")
    assert not n.used_ports


def test_adaptive_number_of_nodes_to_find() -> None:
    assert num_feasible_nodes_to_find(50, 0) == 50
    assert num_feasible_nodes_to_find(1000, 0) == 420  # 50% - 1000/125 = 42%
    assert num_feasible_nodes_to_find(5000, 0) == 500  # 10%
    assert num_feasible_nodes_to_find(100_000, 0) == 5000  # floor of 5%
    assert num_feasible_nodes_to_find(1000, 100) == 1000
    assert num_feasible_nodes_to_find(200, 10) == 100  # never fewer than 100


def test_least_allocated_prefers_emptier_node_most_allocated_fuller() -> None:
    empty, busy = info("empty"), info("busy")
    busy.add_pod(podinfo("x", cpu="2", memory="8Gi"))
    p = podinfo(cpu="1", memory="1Gi")
    least = score_nodes(p, [empty, busy], "LeastAllocated")
    most = score_nodes(p, [empty, busy], MOST_ALLOCATED)
    assert least[0] > least[1]
    assert most[1] > most[0]


def test_spreading_counts_pods_of_the_same_controller() -> None:
    a, b = info("a"), info("b")
    a.add_pod(podinfo("rs-1", owner_uid="rs"))
    a.add_pod(podinfo("other", owner_uid="other"))
    b.add_pod(podinfo("other2", owner_uid="other"))
    b.add_pod(podinfo("other3", owner_uid="other"))
    s = score_nodes(podinfo("rs-2", owner_uid="rs"), [a, b], "LeastAllocated")
    assert s[1] > s[0]


def test_prefer_no_schedule_and_preferred_affinity_weigh_in() -> None:
    soft = info("soft", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    plain = info("plain", labels={"disk": "ssd"})
    s = score_nodes(podinfo(), [soft, plain], "LeastAllocated")
    assert s[1] > s[0]
    pref = podinfo(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}},
        tolerations=[{"key": "k", "operator": "Exists"}])
    s2 = score_nodes(pref, [soft, plain], "LeastAllocated")
    assert s2[1] - s2[0] == 200  # affinity 100 x weight 2; the taint is tolerated


def test_select_host_breaks_ties_at_random_among_the_best() -> None:
    nodes = [info(f"n{i}") for i in range(4)]
    rng = random.Random(1)
    picks = Counter(select_host(nodes, [5, 9, 9, 1], rng).name for _ in range(400))
    assert set(picks) == {"n1", "n2"}
    assert min(picks.values()) > 100


def test_algorithm_walks_nodes_round_robin_and_raises_fit_error() -> None:
    nodes = [info(f"n{i}", cpu="1") for i in range(3)]
    alg = Algorithm()
    with pytest.raises(FitError) as e:
        alg.schedule(podinfo(cpu="2"), nodes)
    assert str(e.value) == "0/3 nodes are available: 3 Insufficient cpu."
    with pytest.raises(FitError, match="no nodes available"):
        alg.schedule(podinfo(), [])
    assert alg.schedule(podinfo(cpu="1"), nodes).name in {"n0", "n1", "n2"}


def test_algorithm_stops_after_enough_feasible_nodes() -> None:
    nodes = [info(f"n{i}") for i in range(1000)]
    alg = Algorithm(percentage_of_nodes_to_score=10)
    alg.schedule(podinfo(), nodes)
    assert alg.next_start == 100
    alg.schedule(podinfo(), nodes)
    assert alg.next_start == 200
