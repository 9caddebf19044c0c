"""The scheduler cache: assume, confirm, forget, expire; sums always equal the pods on a node."""

from __future__ import annotations

from sched_fixtures import make_node  # tests/unit/scheduler, on sys.path under pytest
from sched_fixtures import make_podinfo as p

from scheduler.cache import Cache
from scheduler.framework import NodeInfo


def sums(n: NodeInfo) -> tuple[int, int, int]:
    return n.req_cpu, n.req_mem, len(n.pods)


def test_assumed_pod_counts_at_once_and_is_confirmed_by_the_informer() -> None:
    c = Cache(ttl=30)
    c.add_node(make_node("n1"))
    c.assume(p("a", cpu="1"), "n1")
    assert sums(c.nodes["n1"]) == (1000, 0, 1)
    assert c.is_assumed("ns/a")
    c.finish_binding("ns/a", now=100)
    c.add_pod(p("a", cpu="1", node="n1"), "n1")
    assert not c.is_assumed("ns/a")
    assert c.cleanup_expired(now=1000) == []  # confirmed pods never expire
    assert sums(c.nodes["n1"]) == (1000, 0, 1)


def test_forget_undoes_an_assumption() -> None:
    c = Cache()
    c.add_node(make_node("n1"))
    c.assume(p("a", cpu="1", ports=[{"containerPort": 1, "hostPort": 80}]), "n1")
    c.forget("ns/a")
    n = c.nodes["n1"]
    assert sums(n) == (0, 0, 0) and not n.used_ports and not c.knows("ns/a")


def test_unconfirmed_assumption_expires_after_ttl_from_bind_end() -> None:
    c = Cache(ttl=30)
    c.add_node(make_node("n1"))
    c.assume(p("a", cpu="1"), "n1")
    assert c.cleanup_expired(now=10_000) == []  # binding not finished: no deadline yet
    c.finish_binding("ns/a", now=100)
    assert c.cleanup_expired(now=129) == []
    assert c.cleanup_expired(now=130) == ["ns/a"]
    assert sums(c.nodes["n1"]) == (0, 0, 0)


def test_informer_places_pod_elsewhere_than_assumed() -> None:
    c = Cache()
    for n in ("n1", "n2"):
        c.add_node(make_node(n))
    c.assume(p("a", cpu="1"), "n1")
    c.add_pod(p("a", cpu="1", node="n2"), "n2")
    assert sums(c.nodes["n1"]) == (0, 0, 0)
    assert sums(c.nodes["n2"]) == (1000, 0, 1)


def test_pod_recreated_with_same_name_replaces_the_old_one() -> None:
    c = Cache()
    c.add_node(make_node("n1"))
    c.add_pod(p("a", cpu="1", uid="u1", node="n1"), "n1")
    c.add_pod(p("a", cpu="2", uid="u2", node="n1"), "n1")
    assert sums(c.nodes["n1"]) == (2000, 0, 1)


def test_node_removed_with_pods_keeps_accounting_until_they_go() -> None:
    c = Cache()
    c.add_node(make_node("n1"))
    c.add_pod(p("a", cpu="1", node="n1"), "n1")
    c.remove_node("n1")
    assert c.node_list == [] and "n1" in c.nodes
    c.add_node(make_node("n1"))
    assert sums(c.nodes["n1"]) == (1000, 0, 1) and c.node_list == ["n1"]
    c.remove_node("n1")
    c.remove_pod("ns/a")
    assert "n1" not in c.nodes


def test_pod_seen_before_its_node() -> None:
    c = Cache()
    c.add_pod(p("a", cpu="1", node="late"), "late")
    assert c.node_count() == 0
    c.add_node(make_node("late"))
    assert c.node_list == ["late"] and sums(c.nodes["late"]) == (1000, 0, 1)


def test_node_update_reports_only_scheduling_relevant_changes() -> None:
    c = Cache()
    assert c.add_node(make_node("n1"))
    assert not c.update_node(make_node("n1"))
    assert c.update_node(make_node("n1", labels={"a": "b"}))
    assert c.update_node(make_node("n1", labels={"a": "b"}, unschedulable=True))
    assert c.update_node(make_node("n1", labels={"a": "b"}, unschedulable=True, cpu="8"))
