"""What a hollow node reports for a pod: pure status computation and pod address allocation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from harness.hollow_nodes import HollowNode, NodeSpecFlags, fallback_cidr, internal_ip, node_status
from harness.hollow_pods import (
    ANNOTATION_EXIT,
    ANNOTATION_NEVER_READY,
    ANNOTATION_READY_AFTER,
    PodCIDRAllocator,
    desired_status,
    same_status,
)

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def pod(annotations: dict[str, str] | None = None, policy: str | None = None,
        status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "a", "image": "img:1"},
                                           {"name": "b", "image": "img:2"}],
                            "nodeName": "n0"}
    if policy:
        spec["restartPolicy"] = policy
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "annotations": annotations or {}},
            "spec": spec,
            "status": status or {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True",
                 "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_bound_pod_runs_ready_with_ip_and_container_statuses() -> None:
    st, requeue = desired_status(pod(), "10.254.0.1", "10.244.0.2", T0)
    assert requeue is None
    assert st["phase"] == "Running"
    assert (st["podIP"], st["hostIP"], st["startTime"]) == ("10.244.0.2", "10.254.0.1",
                                                            "2025-01-01T00:00:00Z")
    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled"):
        assert cond(st, t)["status"] == "True"
    cs = st["containerStatuses"]
    assert [c["name"] for c in cs] == ["a", "b"]
    assert all(c["ready"] and c["started"] and c["restartCount"] == 0 and
               "running" in c["state"] for c in cs)


def test_status_is_stable_so_nothing_is_rewritten() -> None:
    p = pod()
    st, _ = desired_status(p, "10.254.0.1", "10.244.0.2", T0)
    p["status"] = st
    again, _ = desired_status(p, "10.254.0.1", "10.244.0.2", T0 + dt.timedelta(minutes=5))
    assert same_status(st, again)


def test_ready_after_is_running_not_ready_until_then() -> None:
    p = pod({ANNOTATION_READY_AFTER: "30"})
    st, requeue = desired_status(p, "h", "10.0.0.2", T0)
    assert st["phase"] == "Running" and cond(st, "Ready")["status"] == "False"
    assert cond(st, "Ready")["reason"] == "ContainersNotReady"
    assert cond(st, "Ready")["message"] == "containers with unready status: [a b]"
    assert requeue == 30
    p["status"] = st
    later, requeue = desired_status(p, "h", "10.0.0.2", T0 + dt.timedelta(seconds=31))
    assert cond(later, "Ready")["status"] == "True" and requeue is None
    assert cond(later, "Ready")["lastTransitionTime"] == "2025-01-01T00:00:31Z"


def test_never_ready() -> None:
    st, requeue = desired_status(pod({ANNOTATION_NEVER_READY: "true"}), "h", "10.0.0.2", T0)
    assert st["phase"] == "Running" and cond(st, "Ready")["status"] == "False"
    assert requeue is None


def test_exit_with_restart_policy_never_finishes_the_pod() -> None:
    ok, _ = desired_status(pod({ANNOTATION_EXIT: "0"}, "Never"), "h", "10.0.0.2", T0)
    assert ok["phase"] == "Succeeded"
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    bad, _ = desired_status(pod({ANNOTATION_EXIT: "3"}, "Never"), "h", "10.0.0.2", T0)
    assert bad["phase"] == "Failed"
    term = bad["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert cond(bad, "Ready")["reason"] == "PodCompleted"
    onfailure, _ = desired_status(pod({ANNOTATION_EXIT: "0"}, "OnFailure"), "h", "x", T0)
    assert onfailure["phase"] == "Succeeded"


def test_exit_with_restart_policy_always_crash_loops_with_backoff() -> None:
    p = pod({ANNOTATION_EXIT: "1"})
    st, requeue = desired_status(p, "h", "10.0.0.2", T0)
    c = st["containerStatuses"][0]
    assert st["phase"] == "Running" and cond(st, "Ready")["status"] == "False"
    assert c["restartCount"] == 1 and c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert c["lastState"]["terminated"]["exitCode"] == 1
    assert requeue == 10
    p["status"] = st
    same, _ = desired_status(p, "h", "10.0.0.2", T0 + dt.timedelta(seconds=5))
    assert same["containerStatuses"][0]["restartCount"] == 1
    later, requeue = desired_status(p, "h", "10.0.0.2", T0 + dt.timedelta(seconds=10))
    assert later["containerStatuses"][0]["restartCount"] == 2
    assert requeue == 20  # the back-off doubles


def test_malformed_annotations_are_ignored() -> None:
    st, _ = desired_status(pod({ANNOTATION_READY_AFTER: "soon", ANNOTATION_EXIT: "x"}), "h",
                           "10.0.0.2", T0)
    assert st["phase"] == "Running" and cond(st, "Ready")["status"] == "True"


def test_allocator_never_hands_out_an_address_twice() -> None:
    a = PodCIDRAllocator("10.244.1.0/29")  # hosts .1-.6; .1 is the gateway
    ips = [a.allocate(f"u{i}") for i in range(5)]
    assert ips == [f"10.244.1.{i}" for i in range(2, 7)]
    assert a.allocate("u-full") is None
    assert a.allocate("u0") == "10.244.1.2"  # the same pod asks again: the same address
    a.release("u2")
    assert a.allocate("u-new") == "10.244.1.4"


def test_allocator_reuses_released_addresses_last() -> None:
    a = PodCIDRAllocator("10.244.1.0/24")
    first = a.allocate("u1")
    a.release("u1")
    assert a.allocate("u2") != first


def test_claim_records_existing_addresses() -> None:
    a = PodCIDRAllocator("10.244.1.0/24")
    assert a.claim("old", "10.244.1.2")
    assert not a.claim("other", "10.244.1.2")
    assert not a.claim("x", "10.9.9.9")
    assert a.allocate("new") == "10.244.1.3"


def test_node_addresses_are_unique() -> None:
    assert len({internal_ip(i) for i in range(5000)}) == 5000
    assert len({fallback_cidr(i) for i in range(4096)}) == 4096


def test_node_status_keeps_transition_times() -> None:
    node = HollowNode("n0", 0, internal_ip(0))
    first = node_status(node, NodeSpecFlags(), {}, "2025-01-01T00:00:00Z")
    ready = cond(first, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert first["capacity"] == {"cpu": "4", "memory": "16Gi", "pods": "110",
                                 "ephemeral-storage": "100Gi"}
    unknown = {**first, "conditions": [{**c, "status": "Unknown"} for c in first["conditions"]]}
    second = node_status(node, NodeSpecFlags(), first, "2025-01-01T00:01:00Z")
    assert cond(second, "Ready")["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    third = node_status(node, NodeSpecFlags(), unknown, "2025-01-01T00:02:00Z")
    assert cond(third, "Ready")["lastTransitionTime"] == "2025-01-01T00:02:00Z"
