"""The deployment controller's pure arithmetic, checked against upstream's numbers
(pkg/controller/deployment/util/deployment_util_test.go, sync_test.go, rolling_test.go)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from api.apps import Deployment, DeploymentStatus, ReplicaSet, ReplicaSetCondition
from controllers import deployment_util as du

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def dep(replicas: int = 10, surge: Any = "25%", unavailable: Any = "25%", *,
        strategy: str = "RollingUpdate", image: str = "nginx:1", **spec: Any) -> Deployment:
    strat: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return Deployment.model_validate({
        "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": strat, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                 **spec,
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
    })


def rs(name: str, replicas: int, available: int | None = None, *, created: str = "",
       revision: str | None = None, annotations: dict[str, str] | None = None,
       image: str = "nginx:1", actual: int | None = None) -> ReplicaSet:
    ann = dict(annotations or {})
    if revision is not None:
        ann[du.REVISION] = revision
    return ReplicaSet.model_validate({
        "metadata": {"name": name, "namespace": "ns", "uid": f"{name}-uid",
                     "creationTimestamp": created or "2024-01-01T00:00:00Z",
                     "annotations": ann, "generation": 1},
        "spec": {"replicas": replicas,
                 "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"replicas": replicas if actual is None else actual,
                   "availableReplicas": replicas if available is None else available,
                   "readyReplicas": replicas if available is None else available,
                   "observedGeneration": 1},
    })


# --- hashing --------------------------------------------------------------------------------

def test_fnv32a_known_vectors() -> None:
    assert du.fnv32a(b"") == 0x811C9DC5
    assert du.fnv32a(b"a") == 0xE40C292C
    assert du.fnv32a(b"foobar") == 0xBF9CF968


def test_safe_encode_string_maps_digits_into_the_safe_alphabet() -> None:
    assert du.safe_encode_string("0123456789") == "456789bcdf"


def test_compute_hash_is_deterministic_and_changes_with_template_and_collisions() -> None:
    d = dep()
    h = du.compute_hash(d.spec.template if d.spec else None)
    again = dep()
    assert h == du.compute_hash(again.spec.template if again.spec else None)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    other = dep(image="nginx:2")
    assert du.compute_hash(other.spec.template if other.spec else None) != h
    assert du.compute_hash(d.spec.template if d.spec else None, 1) != h
    assert du.compute_hash(d.spec.template if d.spec else None, 1) != du.compute_hash(
        d.spec.template if d.spec else None, 2)


def test_equal_ignore_hash() -> None:
    a = rs("a", 1)
    d = dep()
    assert du.equal_ignore_hash(a.spec.template if a.spec else None,
                                d.spec.template if d.spec else None)
    b = rs("b", 1, image="nginx:2")
    assert not du.equal_ignore_hash(b.spec.template if b.spec else None,
                                    d.spec.template if d.spec else None)
    # Unset and empty are the same thing (semantic equality).
    assert du.equal_ignore_hash({"metadata": {"labels": {}}, "spec": {"containers": []}},
                                {"spec": {}})


# --- fenceposts -----------------------------------------------------------------------------

@pytest.mark.parametrize(("surge", "unavailable", "desired", "want"), [
    ("25%", "25%", 10, (3, 2)),     # surge rounds up, unavailable down
    ("25%", "25%", 1, (1, 0)),
    (0, 0, 5, (0, 1)),             # never both zero
    ("1%", "0%", 2, (1, 0)),
    ("0%", "1%", 2, (0, 1)),
    (2, "50%", 3, (2, 1)),
    (None, None, 4, (0, 1)),
])
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int,
                            want: tuple[int, int]) -> None:
    assert du.resolve_fenceposts(surge, unavailable, desired) == want


def test_bad_percentage_is_an_error() -> None:
    with pytest.raises(ValueError):
        du.value_from_int_or_percent("abc", 10, True)


def test_max_unavailable_is_capped_and_zero_for_recreate() -> None:
    assert du.max_unavailable(dep(2, 1, 5)) == 2
    assert du.max_unavailable(dep(0)) == 0
    assert du.max_unavailable(dep(4, strategy="Recreate")) == 0
    assert du.max_surge(dep(4, strategy="Recreate")) == 0
    assert du.min_available(dep(10)) == 8


# --- new replica set sizing -----------------------------------------------------------------

@pytest.mark.parametrize(("replicas", "surge", "old", "new", "want"), [
    (1, 1, 1, 0, 1),    # room for one surge pod
    (1, 1, 1, 1, 1),    # at the ceiling
    (10, 3, 10, 0, 3),  # upstream's proportional e2e: surge 3 first
    (10, 3, 8, 3, 5),
    (5, 5, 5, 0, 5),    # never beyond the desired count
])
def test_new_rs_new_replicas(replicas: int, surge: int, old: int, new: int, want: int) -> None:
    d = dep(replicas, surge, 0)
    o, n = rs("old", old), rs("new", new)
    assert du.new_rs_new_replicas(d, [o, n], n) == want


def test_new_rs_new_replicas_waits_for_old_pods_to_go() -> None:
    """The old ReplicaSet was told 4 → 3 but still reports 4 pods: no room to grow yet."""
    d = dep(4, 1, 1)
    old, new = rs("old", 3, actual=4), rs("new", 1)
    assert du.new_rs_new_replicas(d, [old, new], new) == 1
    assert du.new_rs_new_replicas(d, [rs("old", 3), new], new) == 2


def test_new_rs_new_replicas_recreate_takes_everything() -> None:
    d = dep(4, strategy="Recreate")
    assert du.new_rs_new_replicas(d, [rs("old", 4), rs("new", 0)], rs("new", 0)) == 4


def test_rolling_update_steps_respect_surge_and_unavailability() -> None:
    """Drive the plan functions the way the controller does, making every pod available at
    once: every intermediate total stays within [replicas - maxUnavailable, replicas + surge]."""
    d = dep(4, 1, 1)
    old, new = rs("old", 4), rs("new", 0, created="2024-01-02T00:00:00Z")
    for _ in range(20):
        assert du.sum_spec([old, new]) <= 5
        assert du.sum_available([old, new]) >= 3
        if du.spec_replicas(new) < 4:
            size = du.new_rs_new_replicas(d, [old, new], new)
            if size != du.spec_replicas(new):
                new = rs("new", size, du.spec_replicas(new), created="2024-01-02T00:00:00Z")
                continue
        budget = du.max_scaled_down(d, [old, new], new)
        plan = du.scale_down_old_plan(d, [old, new], [old]) if budget > 0 else {}
        if plan:
            old = rs("old", plan["old"])
            continue
        # nothing to do: pods become available
        new = rs("new", du.spec_replicas(new), created="2024-01-02T00:00:00Z")
        if du.spec_replicas(old) == 0 and du.spec_replicas(new) == 4:
            break
    assert (du.spec_replicas(old), du.spec_replicas(new)) == (0, 4)


def test_cleanup_unhealthy_plan_takes_unavailable_pods_oldest_first() -> None:
    a = rs("a", 3, 1, created="2024-01-01T00:00:00Z")
    b = rs("b", 2, 0, created="2024-01-02T00:00:00Z")
    c = rs("c", 2, 2, created="2024-01-03T00:00:00Z")
    assert du.cleanup_unhealthy_plan([c, b, a], 3) == {"a": 1, "b": 1}
    assert du.cleanup_unhealthy_plan([c, b, a], 10) == {"a": 1, "b": 0}
    assert du.cleanup_unhealthy_plan([c], 10) == {}


def test_scale_down_old_plan_keeps_min_available() -> None:
    d = dep(10, 3, 2)  # minAvailable 8
    old, new = rs("old", 10), rs("new", 3, 0, created="2024-01-02T00:00:00Z")
    assert du.scale_down_old_plan(d, [old, new], [old]) == {"old": 8}
    assert du.scale_down_old_plan(d, [rs("old", 8), new], [rs("old", 8)]) == {}
    assert du.max_scaled_down(d, [old, new], new) == 13 - 8 - 3


# --- proportional scaling -------------------------------------------------------------------

def _ann(desired: int, max_r: int) -> dict[str, str]:
    return {du.DESIRED_REPLICAS: str(desired), du.MAX_REPLICAS: str(max_r)}


def test_proportional_scale_up_as_upstream_e2e() -> None:
    """deployment should support proportional scaling: 8 + 5 (of 13) at 10 → 20 + 13 at 30."""
    d = dep(30, 3, 2)
    old = rs("old", 8, annotations=_ann(10, 13), created="2024-01-01T00:00:00Z")
    new = rs("new", 5, 0, annotations=_ann(10, 13), created="2024-01-02T00:00:00Z")
    sizes, op = du.proportional_sizes(d, [old, new])
    assert (sizes, op) == ({"old": 20, "new": 13}, "up")


def test_proportional_scale_down() -> None:
    d = dep(5, 3, 2)
    old = rs("old", 8, annotations=_ann(10, 13), created="2024-01-01T00:00:00Z")
    new = rs("new", 5, 0, annotations=_ann(10, 13), created="2024-01-02T00:00:00Z")
    sizes, op = du.proportional_sizes(d, [old, new])
    assert (sizes, op) == ({"old": 5, "new": 3}, "down")
    assert sum(sizes.values()) == 8


def test_proportional_leftovers_go_to_the_largest() -> None:
    d = dep(11, 0, 1)
    rss = [rs(n, 3, annotations=_ann(9, 9), created=f"2024-01-0{i}T00:00:00Z")
           for i, n in enumerate("abc", start=1)]
    sizes, _ = du.proportional_sizes(d, rss)
    assert sum(sizes.values()) == 11
    assert sorted(sizes.values()) == [4, 4, 3] or sorted(sizes.values()) == [3, 4, 4]


def test_proportion_without_annotation_uses_status_replicas() -> None:
    d = dep(20, 0, 1)
    d.status = DeploymentStatus(replicas=10)
    assert du.get_proportion(rs("a", 5), d, 10, 0, 10) == 5
    assert du.get_proportion(rs("a", 0), d, 10, 0, 10) == 0
    assert du.get_proportion(rs("a", 5), d, 10, 10, 10) == 0


def test_scale_to_zero_empties_everything() -> None:
    d = dep(0, 1, 1)
    sizes, op = du.proportional_sizes(d, [rs("a", 3), rs("b", 2, created="2024-01-02T00:00:00Z")])
    assert (sizes, op) == ({"a": 0, "b": 0}, "down")


def test_find_active_or_latest() -> None:
    a = rs("a", 0, created="2024-01-01T00:00:00Z")
    b = rs("b", 0, created="2024-01-02T00:00:00Z")
    assert du.find_active_or_latest(None, [a, b]) is b
    new = rs("n", 0, created="2024-01-03T00:00:00Z")
    assert du.find_active_or_latest(new, [a, b]) is new
    active = rs("c", 2)
    assert du.find_active_or_latest(new, [a, active]) is active
    assert du.find_active_or_latest(rs("n", 1), [active]) is None
    assert du.find_active_or_latest(None, []) is None


def test_is_saturated() -> None:
    d = dep(3)
    assert du.is_saturated(d, rs("n", 3, annotations=_ann(3, 4)))
    assert not du.is_saturated(d, rs("n", 3, 2, annotations=_ann(3, 4)))
    assert not du.is_saturated(d, rs("n", 3, annotations=_ann(2, 4)))
    assert not du.is_saturated(d, None)


# --- revisions ------------------------------------------------------------------------------

def test_new_rs_annotations_copy_and_revision() -> None:
    d = dep(3)
    d.metadata.annotations = {"team": "a", du.REVISION: "7", du.LAST_APPLIED: "{}"}
    new = rs("n", 0, revision=None)
    assert du.set_new_replica_set_annotations(d, new, 4, exists=False)
    ann = new.metadata.annotations or {}
    assert ann["team"] == "a" and du.LAST_APPLIED not in ann
    assert ann[du.REVISION] == "4"
    assert ann[du.DESIRED_REPLICAS] == "3" and ann[du.MAX_REPLICAS] == "4"
    assert du.REVISION_HISTORY not in ann
    # Nothing new: no change reported.
    assert not du.set_new_replica_set_annotations(d, new, 4, exists=True)


def test_rollback_revives_a_revision_and_remembers_the_old_number() -> None:
    d = dep(3)
    old = rs("o", 0, revision="1")
    assert du.set_new_replica_set_annotations(d, old, 3, exists=True)
    ann = old.metadata.annotations or {}
    assert (ann[du.REVISION], ann[du.REVISION_HISTORY]) == ("3", "1")
    du.set_new_replica_set_annotations(d, old, 5, exists=True)
    assert (old.metadata.annotations or {})[du.REVISION_HISTORY] == "1,3"


def test_max_revision_skips_malformed() -> None:
    assert du.max_revision([rs("a", 0, revision="2"), rs("b", 0, revision="x"),
                            rs("c", 0, revision="5")]) == 5
    assert du.max_revision([]) == 0


def test_find_new_and_old_replica_sets() -> None:
    d = dep(3, image="nginx:2")
    a = rs("a", 1, image="nginx:1")
    b = rs("b", 1, image="nginx:2", created="2024-01-02T00:00:00Z")
    c = rs("c", 1, image="nginx:2", created="2024-01-03T00:00:00Z")
    assert du.find_new_replica_set(d, [c, a, b]) is b   # the oldest match
    assert [x.name for x in du.find_old_replica_sets(d, [a, b, c])] == ["a", "c"]


def test_history_to_delete_keeps_limit_and_running_ones() -> None:
    d = dep(3, revisionHistoryLimit=1)
    r1, r2, r3 = rs("r1", 0, revision="1"), rs("r2", 0, revision="2"), rs("r3", 0, revision="3")
    assert [x.name for x in du.history_to_delete(d, [r3, r1, r2])] == ["r1", "r2"]
    running = rs("r1", 1, revision="1")
    assert [x.name for x in du.history_to_delete(d, [r3, running, r2])] == ["r2"]
    unobserved = rs("r2", 0, revision="2")
    unobserved.metadata.generation = 2
    assert [x.name for x in du.history_to_delete(d, [r3, r1, unobserved])] == ["r1"]
    d0 = dep(3, revisionHistoryLimit=0)
    assert len(du.history_to_delete(d0, [r1, r2])) == 2


# --- status and conditions ------------------------------------------------------------------

def test_calculate_status_counts_and_available_condition() -> None:
    d = dep(4, 1, 1)
    new = rs("n", 2, 1)
    old = rs("o", 3, 2)
    st = du.calculate_status([old, new], new, d, NOW)
    assert (st.replicas, st.updated_replicas, st.ready_replicas, st.available_replicas,
            st.unavailable_replicas, st.observed_generation) == (5, 2, 3, 3, 2, 1)
    c = du.get_condition(st, du.AVAILABLE)
    assert c is not None and (c.status, c.reason) == ("True", du.MIN_AVAILABLE)
    st = du.calculate_status([rs("o", 4, 1)], None, d, NOW)
    c = du.get_condition(st, du.AVAILABLE)
    assert c is not None and (c.status, c.reason) == ("False", du.MIN_UNAVAILABLE)
    assert c.message == "Deployment does not have minimum availability."


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    st = DeploymentStatus()
    t0, t1 = NOW, NOW + dt.timedelta(minutes=1)
    du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.NEW_RS_CREATED, "m", t0))
    du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.REPLICASET_UPDATED, "m",
                                          t1))
    c = du.get_condition(st, du.PROGRESSING)
    assert c is not None and c.reason == du.REPLICASET_UPDATED
    assert c.last_transition_time == "2024-05-01T12:00:00Z"
    assert c.last_update_time == "2024-05-01T12:01:00Z"
    # Same status and reason: nothing changes.
    du.set_condition(st, du.new_condition(du.PROGRESSING, "True", du.REPLICASET_UPDATED, "x",
                                          t1 + dt.timedelta(minutes=1)))
    c = du.get_condition(st, du.PROGRESSING)
    assert c is not None and c.message == "m"


def _progressing(d: Deployment, reason: str, at: dt.datetime) -> None:
    st = d.status or DeploymentStatus()
    du.set_condition(st, du.new_condition(du.PROGRESSING, "True", reason, "", at))
    d.status = st


def test_rollout_progress_complete_progressing_and_timed_out() -> None:
    d = dep(2, 1, 0, progressDeadlineSeconds=60)
    _progressing(d, du.NEW_RS_CREATED, NOW)
    d.status = d.status or DeploymentStatus()
    d.status.updated_replicas, d.status.replicas = 0, 2
    new = rs("n", 1, 0)
    old = rs("o", 2)
    st = du.calculate_status([old, new], new, d, NOW)
    du.rollout_progress(d, st, new, NOW + dt.timedelta(seconds=10))
    c = du.get_condition(st, du.PROGRESSING)
    assert c is not None and c.reason == du.REPLICASET_UPDATED
    assert c.message == 'ReplicaSet "n" is progressing.'
    # No progress since then, past the deadline: timed out.
    d.status = st
    later = NOW + dt.timedelta(seconds=100)
    st2 = du.calculate_status([old, new], new, d, later)
    assert du.stuck_requeue_after(d, st2, NOW + dt.timedelta(seconds=20)) == pytest.approx(51)
    du.rollout_progress(d, st2, new, later)
    c = du.get_condition(st2, du.PROGRESSING)
    assert c is not None and (c.status, c.reason) == ("False", du.TIMED_OUT)
    assert c.message == 'ReplicaSet "n" has timed out progressing.'
    # Complete.
    done = rs("n", 2)
    d.status = st
    st3 = du.calculate_status([rs("o", 0, actual=0), done], done, d, later)
    du.rollout_progress(d, st3, done, later)
    c = du.get_condition(st3, du.PROGRESSING)
    assert c is not None and c.reason == du.NEW_RS_AVAILABLE
    assert c.message == 'ReplicaSet "n" has successfully progressed.'
    assert du.stuck_requeue_after(d, st3, later) is None


def test_no_progress_deadline_removes_progressing() -> None:
    d = dep(1, progressDeadlineSeconds=du.MAX_INT32)
    _progressing(d, du.NEW_RS_CREATED, NOW)
    st = du.calculate_status([rs("n", 1)], rs("n", 1), d, NOW)
    du.rollout_progress(d, st, rs("n", 1), NOW)
    assert du.get_condition(st, du.PROGRESSING) is None


def test_replica_failure_is_promoted() -> None:
    new = rs("n", 1)
    assert new.status is not None
    new.status.conditions = [ReplicaSetCondition(type="ReplicaFailure", status="True",
                                                 reason="FailedCreate", message="quota")]
    c = du.replica_failure([rs("o", 1), new], new)
    assert c is not None and (c.reason, c.message) == ("FailedCreate", "quota")
    assert du.replica_failure([rs("o", 1)], None) is None


def test_stale_old_status_is_not_spent_twice() -> None:
    """Regression: just after a scale-down 10 → 6 the old ReplicaSet's status still says 10
    available. Counting that, the next sync scaled it down again to 1 (4 available, below
    minAvailable 8), and cleanup_unhealthy_plan "cleaned" -4 pods, i.e. scaled it back up."""
    d = dep(10, 3, 2)  # minAvailable 8
    old = rs("old", 6, 10, actual=10)
    new = rs("new", 3, 3, created="2024-01-02T00:00:00Z")
    budget = du.max_scaled_down(d, [old, new], new)
    assert budget == 1
    assert du.cleanup_unhealthy_plan([old], budget) == {}
    plan = du.scale_down_old_plan(d, [old, new], [old])
    assert plan == {"old": 5}
    assert plan["old"] + du.available(new) >= 8


def test_new_replica_set_scaled_below_its_available_pods_is_not_negative_unavailable() -> None:
    d = dep(4, 1, 1)  # minAvailable 3
    old = rs("old", 1)
    new = rs("new", 3, 4, actual=4, created="2024-01-02T00:00:00Z")
    assert du.max_scaled_down(d, [old, new], new) == 1


@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [
    (3, 0, 1), (3, 1, 0), (5, "0%", "25%"), (5, "25%", "0%"), (10, "25%", "25%"),
    (1, "25%", "25%"), (4, "100%", 0), (4, 0, "100%")])
def test_rolling_update_edge_fenceposts_stay_in_bounds(replicas: int, surge: Any,
                                                       unavailable: Any) -> None:
    """maxSurge 0 / maxUnavailable 0 / percentages: the plan functions driven to completion
    never exceed replicas + surge (pods) nor go below replicas - unavailable (available)."""
    d = dep(replicas, surge, unavailable)
    hi, lo = replicas + du.max_surge(d), replicas - du.max_unavailable(d)
    created = "2024-01-02T00:00:00Z"
    old, new = rs("old", replicas), rs("new", 0, created=created)
    for _ in range(100):
        assert du.sum_spec([old, new]) <= hi
        assert du.sum_available([old, new]) >= lo
        if du.spec_replicas(old) == 0 and du.available(new) == replicas:
            break
        size = du.new_rs_new_replicas(d, [old, new], new)
        if size != du.spec_replicas(new):
            new = rs("new", size, du.available(new), created=created)
            continue
        if du.max_scaled_down(d, [old, new], new) > 0:
            plan = du.scale_down_old_plan(d, [old, new], [old])
            if plan:
                old = rs("old", plan["old"])
                continue
        assert du.available(new) < du.spec_replicas(new), "stalled"
        new = rs("new", du.spec_replicas(new), created=created)  # its pods become available
    assert (du.spec_replicas(old), du.spec_replicas(new)) == (0, replicas)
