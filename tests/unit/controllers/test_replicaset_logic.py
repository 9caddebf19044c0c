"""The replica controllers' pure decisions: slow start, deletion order, claiming, status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api import errors
from api.apps import ReplicaSet
from api.core import Pod, ReplicationController
from api.meta import OwnerReference
from api.selectors import from_map
from controllers.replicaset import (
    RC_KIND,
    RS_KIND,
    calculate_status,
    claim_plan,
    next_available_in,
    pod_from_template,
    pods_to_delete,
    rank_for_deletion,
    slow_start_batch,
    slow_start_sizes,
    status_differs,
)

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, node: str = "", phase: str = "Pending", ready_for: float | None = None,
        created_ago: float = 100, labels: dict[str, str] | None = None,
        owner_uid: str | None = None, restarts: int = 0,
        annotations: dict[str, str] | None = None, deleting: bool = False) -> Pod:
    status: dict[str, Any] = {"phase": phase}
    if ready_for is not None:
        status["conditions"] = [{"type": "Ready", "status": "True",
                                 "lastTransitionTime": ts(ready_for)}]
    if restarts:
        status["containerStatuses"] = [{"name": "c", "restartCount": restarts}]
    md: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                          "creationTimestamp": ts(created_ago),
                          "labels": labels if labels is not None else {"app": "web"}}
    if owner_uid:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                  "uid": owner_uid, "controller": True}]
    if annotations:
        md["annotations"] = annotations
    if deleting:
        md["deletionTimestamp"] = ts(0)
    spec = {"containers": [{"name": "c", "image": "x"}], **({"nodeName": node} if node else {})}
    return Pod.model_validate({"metadata": md, "spec": spec, "status": status})


def rs(replicas: int = 3, min_ready: int = 0, generation: int = 1,
       status: dict[str, Any] | None = None) -> ReplicaSet:
    return ReplicaSet.model_validate({
        "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": generation},
        "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "fe"},
                                           "annotations": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        **({"status": status} if status is not None else {}),
    })


# --- slow start ---------------------------------------------------------------------------

def test_slow_start_batches_double_from_one() -> None:
    assert slow_start_sizes(0) == []
    assert slow_start_sizes(1) == [1]
    assert slow_start_sizes(10) == [1, 2, 4, 3]
    assert slow_start_sizes(500) == [1, 2, 4, 8, 16, 32, 64, 128, 245]


async def test_slow_start_stops_after_the_batch_with_a_failure() -> None:
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:  # the second batch (calls 2-3) has one failure
            raise errors.Forbidden(message="quota exceeded")

    done, err = await slow_start_batch(10, fn)
    assert (calls, done) == (3, 2)
    assert isinstance(err, errors.Forbidden)


async def test_slow_start_all_succeed() -> None:
    async def fn() -> None:
        return None

    assert await slow_start_batch(7, fn) == (7, None)


# --- deletion order -----------------------------------------------------------------------

def test_delete_order_unscheduled_pending_not_ready_ready() -> None:
    ready = pod("ready", node="n1", phase="Running", ready_for=50)
    not_ready = pod("not-ready", node="n1", phase="Running")
    pending = pod("pending", node="n1", phase="Pending")
    unscheduled = pod("unscheduled")
    order = rank_for_deletion([ready, not_ready, pending, unscheduled], [])
    assert [p.name for p in order] == ["unscheduled", "pending", "not-ready", "ready"]


def test_delete_order_newest_first_among_equals() -> None:
    old = pod("old", node="n1", phase="Running", ready_for=10, created_ago=300)
    new = pod("new", node="n1", phase="Running", ready_for=10, created_ago=20)
    assert [p.name for p in rank_for_deletion([old, new], [])] == ["new", "old"]


def test_delete_order_ready_for_less_time_first() -> None:
    long = pod("long", node="n1", phase="Running", ready_for=300, created_ago=20)
    short = pod("short", node="n1", phase="Running", ready_for=5, created_ago=300)
    assert [p.name for p in rank_for_deletion([long, short], [])] == ["short", "long"]


def test_delete_order_crowded_node_then_restarts_then_cost() -> None:
    a = pod("a", node="crowded", phase="Running", ready_for=10)
    b = pod("b", node="alone", phase="Running", ready_for=10)
    c = pod("c", node="crowded", phase="Running", ready_for=10)
    assert rank_for_deletion([b, a], [a, b, c])[0].name == "a"
    flaky = pod("flaky", node="n", phase="Running", ready_for=10, restarts=4)
    steady = pod("steady", node="n", phase="Running", ready_for=10)
    assert rank_for_deletion([steady, flaky], [])[0].name == "flaky"
    cheap = pod("cheap", node="n", phase="Running", ready_for=10,
                annotations={"controller.kubernetes.io/pod-deletion-cost": "-5"}, restarts=0)
    assert rank_for_deletion([flaky, cheap], [])[0].name == "cheap"


def test_pods_to_delete_takes_diff() -> None:
    pods = [pod(f"p{i}", node="n", phase="Running", ready_for=10, created_ago=100 - i)
            for i in range(5)]
    assert [p.name for p in pods_to_delete(pods, pods, 2)] == ["p4", "p3"]
    assert len(pods_to_delete(pods, pods, 9)) == 5


# --- claiming -----------------------------------------------------------------------------

def test_claim_plan_adopts_releases_and_ignores_others() -> None:
    sel = from_map({"app": "web"})
    mine = pod("mine", owner_uid="rs-uid")
    strayed = pod("strayed", owner_uid="rs-uid", labels={"app": "other"})
    orphan = pod("orphan")
    orphan_other = pod("orphan-other", labels={"app": "db"})
    theirs = pod("theirs", owner_uid="other-uid")
    dying_orphan = pod("dying", deleting=True)
    plan = claim_plan("rs-uid", False, sel,
                      [mine, strayed, orphan, orphan_other, theirs, dying_orphan])
    assert [p.name for p in plan.owned] == ["mine"]
    assert [p.name for p in plan.adopt] == ["orphan"]
    assert [p.name for p in plan.release] == ["strayed"]


def test_claim_plan_owner_being_deleted_neither_adopts_nor_releases() -> None:
    sel = from_map({"app": "web"})
    plan = claim_plan("rs-uid", True, sel, [pod("mine", owner_uid="rs-uid"), pod("orphan"),
                                            pod("strayed", owner_uid="rs-uid", labels={})])
    assert [p.name for p in plan.owned] == ["mine"]
    assert plan.adopt == [] and plan.release == []


def test_rc_without_selector_selects_nothing_and_rs_uses_label_selector() -> None:
    rc = ReplicationController.model_validate({"metadata": {"name": "x"}, "spec": {}})
    assert RC_KIND.selector(rc).matches_nothing
    assert RS_KIND.selector(rs()).matches({"app": "web", "x": "y"})


# --- pods from the template ---------------------------------------------------------------

def test_pod_from_template() -> None:
    owner = rs()
    assert owner.spec is not None and owner.spec.template is not None
    ref = OwnerReference(api_version="apps/v1", kind="ReplicaSet", name="web", uid="rs-uid",
                         controller=True, block_owner_deletion=True)
    body = pod_from_template(owner, owner.spec.template, ref)
    md = body["metadata"]
    assert md["generateName"] == "web-" and md["namespace"] == "ns"
    assert md["labels"] == {"app": "web", "tier": "fe"} and md["annotations"] == {"a": "b"}
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web", "uid": "rs-uid", "controller": True,
                                      "blockOwnerDeletion": True}]
    assert body["spec"]["containers"][0]["image"] == "nginx"


# --- status -------------------------------------------------------------------------------

def test_status_counts_ready_available_and_fully_labeled() -> None:
    owner = rs(replicas=3, min_ready=30)
    pods = [pod("a", ready_for=60, labels={"app": "web", "tier": "fe"}),
            pod("b", ready_for=5, labels={"app": "web", "tier": "fe"}),
            pod("c", labels={"app": "web"})]
    status = calculate_status(owner, pods, None, NOW)
    assert status == {"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                      "availableReplicas": 1}
    assert next_available_in(pods, 30, NOW) == 25.0
    assert next_available_in(pods, 0, NOW) is None


def test_status_zero_counts_are_omitted() -> None:
    assert calculate_status(rs(replicas=0), [], None, NOW) == {"replicas": 0}


def test_replica_failure_condition_set_once_and_cleared() -> None:
    owner = rs(replicas=3)
    st = calculate_status(owner, [], errors.Forbidden(message="no quota"), NOW)
    (cond,) = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"], cond["message"]) == (
        "ReplicaFailure", "True", "FailedCreate", "no quota")
    failed = rs(replicas=3, status={"replicas": 0, "conditions": [cond]})
    later = NOW + dt.timedelta(seconds=30)
    again = calculate_status(failed, [], errors.Forbidden(message="other"), later)
    assert again["conditions"] == [cond]  # kept as it was: same status and reason
    assert "conditions" not in calculate_status(failed, [], None, later)
    too_many = calculate_status(rs(replicas=0), [pod("a")], errors.Forbidden(message="x"), NOW)
    assert too_many["conditions"][0]["reason"] == "FailedDelete"


def test_status_differs_only_on_real_change() -> None:
    owner = rs(generation=2, status={"replicas": 2, "readyReplicas": 1, "observedGeneration": 2})
    assert not status_differs(owner, {"replicas": 2, "readyReplicas": 1})
    assert status_differs(owner, {"replicas": 2, "readyReplicas": 2})
    stale = rs(generation=3, status={"replicas": 2, "readyReplicas": 1, "observedGeneration": 2})
    assert status_differs(stale, {"replicas": 2, "readyReplicas": 1})
