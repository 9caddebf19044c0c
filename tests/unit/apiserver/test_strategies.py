"""The per-resource strategies (apiserver/strategies.py), hook by hook, on plain dicts: what the
generic registry asks each kind, with no etcd and no server. The registry's use of them (the
verbs end to end) is tested against a real apiserver in tests/integration/test_apiserver.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api import errors
from api.core import Pod
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES, ResourceInfo
from apiserver.admission import Admission
from apiserver.storage import SideEffects
from apiserver.strategies import (
    PLUGIN_DEFAULT_TOLERATION_SECONDS,
    PLUGIN_SERVICE_ACCOUNT,
    CreateOnUpdateStrategy,
    EventStrategy,
    NamespaceFinalizeStrategy,
    NamespaceStrategy,
    PodStrategy,
    ReplicationControllerStrategy,
    ScalableStrategy,
    ServiceStrategy,
    StatusStrategy,
    Strategy,
    conflict,
    mark_deleting,
    namespace_strategy,
    pod_strategy,
    qos_class,
    strategy_for,
)
from tests.unit.apiserver.security_fakes import cache_with

Obj = dict[str, Any]


def s(resource: str) -> Strategy:
    return strategy_for(RESOURCES[resource])


def pod(**spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u1",
                         "resourceVersion": "5"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec},
            "status": {"phase": "Pending"}}


def deployment(replicas: int = 2, **spec: Any) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default", "generation": 3,
                         "resourceVersion": "9", "uid": "u"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}},
                     **spec},
            "status": {"replicas": 1}}


def delete_opts(grace: int = -1) -> pb.DeleteOptions:
    return pb.DeleteOptions(grace_period_seconds=grace)


# --- the table -----------------------------------------------------------------------------


def test_every_resource_has_its_strategy() -> None:
    kinds = {name: type(strategy_for(info)) for name, info in RESOURCES.items()}
    assert kinds["pods"] is PodStrategy
    assert kinds["namespaces"] is NamespaceStrategy
    assert kinds["services"] is ServiceStrategy
    assert kinds["events"] is EventStrategy
    assert kinds["endpoints"] is kinds["leases"] is CreateOnUpdateStrategy
    assert kinds["deployments"] is kinds["replicasets"] is ScalableStrategy
    assert kinds["replicationcontrollers"] is ReplicationControllerStrategy
    assert kinds["configmaps"] is kinds["nodes"] is kinds["secrets"] is Strategy
    for info in RESOURCES.values():
        assert strategy_for(info).info is info
        assert strategy_for(info) is strategy_for(info)  # one shared object per resource
    assert pod_strategy() is s("pods")
    assert namespace_strategy() is s("namespaces")


def test_strategies_agree_with_discovery() -> None:
    """What ResourceInfo still says for discovery and clients, the strategies say the same."""
    for info in RESOURCES.values():
        st = strategy_for(info)
        assert st.default_propagation == info.default_propagation, info.name
        assert st.tracks_generation == info.has_generation, info.name
        assert st.namespace_scoped == info.namespaced
        assert st.field_selectors == info.field_selectors
        assert st.has_status == ("status" in info.subresources)
        if "scale" in info.subresources:
            assert isinstance(st, ScalableStrategy), info.name
        # An update is served through every subresource that has an update strategy, and
        # only through subresources the resource has.
        assert set(st.subresource_updates) <= set(info.subresources), info.name


def test_flags_by_kind() -> None:
    assert {r for r in RESOURCES if s(r).allow_create_on_update} == {
        "endpoints", "events", "leases", "services"}
    assert {r for r in RESOURCES if s(r).allocates} == {"services"}
    assert {r for r in RESOURCES if s(r).admission_plugins} == {"pods"}
    assert s("pods").admission_plugins == (PLUGIN_SERVICE_ACCOUNT,
                                           PLUGIN_DEFAULT_TOLERATION_SECONDS)
    assert {r for r in RESOURCES if s(r).default_propagation} == {"replicationcontrollers"}


def test_a_resource_outside_the_table_gets_the_defaults() -> None:
    info = ResourceInfo("widgets", "widget", "Widget", "example.com", "v1", True, Pod)
    st = strategy_for(info)
    assert type(st) is Strategy and st.info is info
    assert strategy_for(info) is st


# --- defaults ------------------------------------------------------------------------------


def test_default_create_hooks_leave_the_object_alone() -> None:
    cm = {"metadata": {"name": "c"}, "data": {"a": "b"}, "status": {"x": 1}}
    before = copy.deepcopy(cm)
    s("configmaps").prepare_for_create(cm)
    s("configmaps").canonicalize(cm)
    assert cm == before
    s("nodes").prepare_for_create(cm)  # nodes register with their status: kept
    assert cm == before


def test_validate_raises_invalid_with_the_kind_and_group() -> None:
    from api.apps import Deployment
    model = Deployment.model_validate(deployment(replicas=-1))
    with pytest.raises(errors.Invalid) as e:
        s("deployments").validate(model)
    assert e.value.message.startswith('Deployment.apps "d" is invalid: spec.replicas')
    s("deployments").validate(Deployment.model_validate(deployment()))


def test_validate_update_compares_with_the_stored_object() -> None:
    old = pod()
    new = pod(restartPolicy="Never")
    old["spec"]["restartPolicy"] = "Always"
    with pytest.raises(errors.Invalid, match="pod updates may not change fields"):
        s("pods").validate_update(new, old)
    s("pods").validate_update(copy.deepcopy(old), old)


def test_default_update_keeps_status_and_bumps_generation_on_spec_changes() -> None:
    st = s("deployments")
    old = deployment()
    new = deployment(replicas=5)
    new["status"] = {"replicas": 99}  # a plain update may not write status
    out = st.prepare_for_update(new, old)
    assert out is new
    assert new["status"] == {"replicas": 1}
    assert new["metadata"]["generation"] == 4
    # Metadata only: same generation.
    same = deployment()
    same["metadata"]["labels"] = {"x": "y"}
    st.prepare_for_update(same, old)
    assert same["metadata"]["generation"] == 3
    # No status stored: none written.
    old.pop("status")
    st.prepare_for_update(new, old)
    assert "status" not in new


def test_kinds_without_status_or_generation_update_as_sent() -> None:
    old = {"metadata": {"name": "c", "generation": 1}, "data": {"a": "1"}}
    new = {"metadata": {"name": "c", "generation": 1}, "data": {"a": "2"}, "status": {"s": 1}}
    s("configmaps").prepare_for_update(new, old)
    assert new == {"metadata": {"name": "c", "generation": 1}, "data": {"a": "2"},
                   "status": {"s": 1}}


def test_for_update_by_subresource() -> None:
    assert s("pods").for_update("") is s("pods")
    assert isinstance(s("pods").for_update("status"), StatusStrategy)
    assert s("pods").for_update("binding") is None
    assert s("configmaps").for_update("status") is None
    assert isinstance(s("namespaces").for_update("finalize"), NamespaceFinalizeStrategy)
    assert s("pods").for_update("finalize") is None
    assert s("pods").modifies_new and s("pods").records_managed_fields
    for sub in ("status",):
        upd = s("pods").for_update(sub)
        assert upd is not None
        assert not upd.modifies_new and not upd.records_managed_fields


def test_default_delete_hooks() -> None:
    st = s("configmaps")
    cm = {"metadata": {"name": "c"}}
    assert not st.protected("default")
    assert st.grace_period(cm, delete_opts(30)) == 0
    assert st.deletion_state(copy.deepcopy(cm), [], 0) is None
    held = st.deletion_state(copy.deepcopy(cm), ["example.com/hold"], 0)
    assert held is not None
    assert held["metadata"]["finalizers"] == ["example.com/hold"]
    assert held["metadata"]["deletionGracePeriodSeconds"] == 0
    assert held["metadata"]["deletionTimestamp"]
    assert not st.finalized(cm)
    assert not st.finalized(held)
    held["metadata"].pop("finalizers")
    assert st.finalized(held)


async def test_leases() -> None:
    class Leases:
        asked = 0

        async def lease(self) -> int:
            self.asked += 1
            return 42

    leases = Leases()
    assert await s("configmaps").lease(leases) == 0
    assert await s("pods").lease(leases) == 0
    assert leases.asked == 0
    assert await s("events").lease(leases) == 42
    assert leases.asked == 1


def test_scale_is_not_found_for_kinds_without_it() -> None:
    with pytest.raises(errors.NotFound, match=r"configmaps/scale"):
        s("configmaps").scale_of({"metadata": {"name": "c"}})
    with pytest.raises(errors.NotFound, match=r"configmaps/scale"):
        s("configmaps").set_replicas({"metadata": {"name": "c"}}, 1)


# --- status and finalize subresources -------------------------------------------------------


def test_status_update_takes_only_status_and_leaves_the_stored_object_alone() -> None:
    upd = s("pods").for_update("status")
    assert upd is not None
    old = pod(nodeName="n1")
    frozen = copy.deepcopy(old)
    new = pod(nodeName="elsewhere")
    new["metadata"]["labels"] = {"sneaky": "yes"}
    new["status"] = {"phase": "Running"}
    out = upd.prepare_for_update(new, old)
    assert old == frozen
    assert out["status"] == {"phase": "Running"}
    assert out["spec"] is old["spec"]  # shared, not copied: only read from here on
    assert out["metadata"] == old["metadata"] and out["metadata"] is not old["metadata"]
    new.pop("status")
    assert "status" not in upd.prepare_for_update(new, old)


def test_status_validation_checks_the_new_object_against_itself() -> None:
    upd = s("pods").for_update("status")
    assert upd is not None
    old = pod()
    old["spec"]["restartPolicy"] = "Always"
    new = pod(restartPolicy="Never")  # would be an immutable change against `old`
    upd.validate_update(new, old)
    bad = pod()
    bad["metadata"]["name"] = "Not_A_Name"
    with pytest.raises(errors.Invalid, match="metadata.name"):
        upd.validate_update(bad, old)


def test_namespace_finalize_changes_only_spec_finalizers() -> None:
    upd = s("namespaces").for_update("finalize")
    assert upd is not None
    old = {"metadata": {"name": "ns", "labels": {"a": "b"}},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}}
    frozen = copy.deepcopy(old)
    new = {"metadata": {"name": "ns"}, "spec": {"finalizers": []}, "status": {"phase": "Active"}}
    out = upd.prepare_for_update(new, old)
    assert old == frozen
    assert out == {**frozen, "spec": {"finalizers": []}}
    assert upd.prepare_for_update({"metadata": {"name": "ns"}}, old)["spec"] == {
        "finalizers": []}


# --- pods ----------------------------------------------------------------------------------


def test_pod_create_starts_pending_with_its_qos_class() -> None:
    p = pod()
    p["status"] = {"phase": "Running", "podIP": "1.2.3.4"}
    s("pods").prepare_for_create(p)
    assert p["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize(("resources", "want"), [
    ({}, "BestEffort"),
    ({"requests": {"cpu": "100m"}}, "Burstable"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}}, "Guaranteed"),
    ({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}, "Burstable"),
    ({"limits": {"cpu": "1"}}, "Burstable"),
])
def test_qos_class(resources: Obj, want: str) -> None:
    assert qos_class({"containers": [{"name": "c", "resources": resources}]}) == want


def test_pod_grace_period() -> None:
    st = s("pods")
    assert st.grace_period(pod(), delete_opts()) == 0  # unscheduled: nothing to stop
    running = pod(nodeName="n1", terminationGracePeriodSeconds=45)
    assert st.grace_period(running, delete_opts()) == 45
    assert st.grace_period(pod(nodeName="n1"), delete_opts()) == 30
    assert st.grace_period(running, delete_opts(5)) == 5
    assert st.grace_period(running, delete_opts(0)) == 0
    running["metadata"]["deletionGracePeriodSeconds"] = 10  # being deleted already
    assert st.grace_period(running, delete_opts(20)) == 10  # never lengthened
    assert st.grace_period(running, delete_opts(3)) == 3
    done = pod(nodeName="n1")
    done["status"]["phase"] = "Succeeded"
    assert st.grace_period(done, delete_opts(30)) == 0


def test_pod_deletion_waits_for_its_kubelet() -> None:
    st = s("pods")
    p = st.deletion_state(pod(nodeName="n1"), [], 30)
    assert p is not None
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30
    assert not st.finalized(p)  # the kubelet deletes it with grace 0
    p["metadata"]["deletionGracePeriodSeconds"] = 0
    assert st.finalized(p)
    assert st.deletion_state(pod(), [], 0) is None


def test_binding_assigns_the_node_and_the_scheduled_condition() -> None:
    cur = pod()
    cur["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        {"type": "Ready", "status": "False"}]
    frozen = copy.deepcopy(cur)
    assign = pod_strategy().binding_update("p", {"target": {"kind": "Node", "name": "n1"}})
    new = assign(cur)
    assert cur == frozen  # the stored object (maybe the cache's) is never modified
    assert new["spec"]["nodeName"] == "n1"
    conds = new["status"]["conditions"]
    assert [c["type"] for c in conds] == ["Ready", "PodScheduled"]
    assert conds[1]["status"] == "True" and conds[1]["lastTransitionTime"]
    assert new["metadata"] == cur["metadata"] and new["metadata"] is not cur["metadata"]
    assert new["spec"]["containers"] is cur["spec"]["containers"]  # shared, read only


@pytest.mark.parametrize(("binding", "error", "match"), [
    ({}, errors.BadRequest, "must have an object `target`"),
    ({"target": "n1"}, errors.BadRequest, "must have an object `target`"),
    ({"target": {"name": "n1"}, "metadata": []}, errors.BadRequest, "and `metadata`"),
    ({"target": {}}, errors.Invalid, "target.name: Required value"),
    ({"target": {"name": "n1", "kind": "Pod"}}, errors.Invalid, 'Unsupported value: "Pod"'),
])
def test_binding_refuses_a_malformed_binding(binding: Obj, error: type[errors.ApiError],
                                             match: str) -> None:
    with pytest.raises(error, match=match):
        pod_strategy().binding_update("p", binding)


def test_binding_conflicts() -> None:
    st = pod_strategy()
    with pytest.raises(errors.Conflict, match="already assigned to node \"n0\""):
        st.binding_update("p", {"target": {"name": "n1"}})(pod(nodeName="n0"))
    deleting = pod()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    with pytest.raises(errors.Conflict, match="is being deleted"):
        st.binding_update("p", {"target": {"name": "n1"}})(deleting)
    other = st.binding_update("p", {"target": {"name": "n1"}, "metadata": {"uid": "u2"}})
    with pytest.raises(errors.Conflict, match="UID in precondition: u2"):
        other(pod())
    assert st.binding_update("p", {"target": {"name": "n1"}, "metadata": {"uid": "u1"}})(
        pod())["spec"]["nodeName"] == "n1"


def test_disruption_target_condition() -> None:
    cur = pod()
    frozen = copy.deepcopy(cur)
    new = PodStrategy.with_disruption_target(cur)
    assert cur == frozen
    (cond,) = new["status"]["conditions"]
    assert cond["type"] == "DisruptionTarget" and cond["status"] == "True"
    assert cond["reason"] == "EvictionByEvictionAPI"
    # Again: unchanged, time included.
    again = PodStrategy.with_disruption_target(new)
    assert again == new
    # A False condition turns True with a new time; a True one with another reason keeps its.
    new["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                    "reason": "Other", "lastTransitionTime": "T0"}]
    kept = PodStrategy.with_disruption_target(new)["status"]["conditions"]
    assert kept[0]["reason"] == "EvictionByEvictionAPI" and kept[0]["lastTransitionTime"] == "T0"
    new["status"]["conditions"][0]["status"] = "False"
    fresh = PodStrategy.with_disruption_target(new)["status"]["conditions"]
    assert fresh[0]["lastTransitionTime"] != "T0"


# --- namespaces ----------------------------------------------------------------------------


def test_namespace_create_and_update() -> None:
    st = s("namespaces")
    ns: Obj = {"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}
    st.prepare_for_create(ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]} and ns["status"] == {"phase": "Active"}
    own: Obj = {"metadata": {"name": "b"}, "spec": {"finalizers": ["example.com/x"]}}
    st.prepare_for_create(own)
    assert own["spec"]["finalizers"] == ["example.com/x"]
    # A plain update changes neither spec.finalizers nor status.
    new: Obj = {"metadata": {"name": "a"}, "spec": {"finalizers": []}, "status": {"phase": "X"}}
    st.prepare_for_update(new, ns)
    assert new["spec"]["finalizers"] == ["kubernetes"] and new["status"] == {"phase": "Active"}


def test_namespace_deletion() -> None:
    st = s("namespaces")
    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert st.protected(name)
    assert not st.protected("team-a")
    ns = {"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]},
          "status": {"phase": "Active"}}
    out = st.deletion_state(copy.deepcopy(ns), [], 0)
    assert out is not None
    assert out["status"]["phase"] == "Terminating"
    assert out["metadata"]["deletionTimestamp"]
    assert out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert not st.finalized(out)  # spec.finalizers still hold it
    out["spec"]["finalizers"] = []
    assert st.finalized(out)
    # Held by metadata.finalizers alone: Terminating too.
    bare = {"metadata": {"name": "a"}, "spec": {}}
    held = st.deletion_state(copy.deepcopy(bare), ["example.com/x"], 0)
    assert held is not None and held["status"]["phase"] == "Terminating"
    assert st.deletion_state(copy.deepcopy(bare), [], 0) is None


def test_namespace_terminating() -> None:
    assert not NamespaceStrategy.terminating({"metadata": {}, "status": {"phase": "Active"}})
    assert NamespaceStrategy.terminating({"metadata": {}, "status": {"phase": "Terminating"}})
    assert NamespaceStrategy.terminating({"metadata": {"deletionTimestamp": "t"}})


# --- services ------------------------------------------------------------------------------


def svc(type_: str = "ClusterIP", ip: str = "", **port: Any) -> Obj:
    spec: Obj = {"type": type_, "ports": [{"port": 80, "protocol": "TCP", **port}]}
    if ip:
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
    return {"metadata": {"name": "s", "namespace": "default"}, "spec": spec,
            "status": {"loadBalancer": {}}}


def test_service_create_drops_status() -> None:
    new = svc()
    s("services").prepare_for_create(new)
    assert "status" not in new


def test_service_update_keeps_its_allocations() -> None:
    st = s("services")
    old = svc("NodePort", "10.96.0.9", nodePort=30080)
    new = svc("NodePort")
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}
    st.prepare_for_update(new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.9" and new["spec"]["clusterIPs"] == ["10.96.0.9"]
    assert new["spec"]["ports"][0]["nodePort"] == 30080
    assert new["status"] == {"loadBalancer": {}}  # status only through its subresource
    # Leaving NodePort: the old nodePort goes with the type, a new one stays (for admission).
    to_cluster_ip = svc("ClusterIP", nodePort=30080)
    st.prepare_for_update(to_cluster_ip, old)
    assert "nodePort" not in to_cluster_ip["spec"]["ports"][0]
    # ExternalName has no ClusterIP to keep.
    ext = svc("ExternalName")
    st.prepare_for_update(ext, old)
    assert "clusterIP" not in ext["spec"]


# --- scale ---------------------------------------------------------------------------------


def test_scale_of_deployments_and_replication_controllers() -> None:
    scale = s("deployments").scale_of(deployment())
    assert scale == {
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "d", "namespace": "default", "uid": "u", "resourceVersion": "9"},
        "spec": {"replicas": 2}, "status": {"replicas": 1, "selector": "app=d"}}
    rc = {"metadata": {"name": "r"}, "spec": {"replicas": 3, "selector": {"app": "r"}}}
    assert s("replicationcontrollers").scale_of(rc)["status"] == {"replicas": 0,
                                                                   "selector": "app=r"}


def test_set_replicas_copies() -> None:
    cur = deployment()
    frozen = copy.deepcopy(cur)
    new = s("replicasets").set_replicas(cur, 7)
    assert cur == frozen and new["spec"]["replicas"] == 7


def test_controllers_own_the_status_of_their_workloads() -> None:
    for resource in ("deployments", "replicasets", "replicationcontrollers"):
        obj = deployment()
        s(resource).prepare_for_create(obj)
        assert "status" not in obj, resource
    assert s("replicationcontrollers").default_propagation == "Orphan"
    assert s("deployments").default_propagation == ""


# --- helpers -------------------------------------------------------------------------------


def test_mark_deleting_only_brings_the_deadline_forward() -> None:
    obj = mark_deleting({"metadata": {"finalizers": ["x"]}}, ["x", "y"], 30)
    first = obj["metadata"]["deletionTimestamp"]
    assert obj["metadata"]["finalizers"] == ["x", "y"]
    mark_deleting(obj, [], 60)  # longer: the deadline stays
    assert obj["metadata"]["deletionTimestamp"] == first
    assert "finalizers" not in obj["metadata"]
    mark_deleting(obj, [], 0)
    assert obj["metadata"]["deletionTimestamp"] <= first
    assert obj["metadata"]["deletionGracePeriodSeconds"] == 0


def test_conflict_message() -> None:
    e = conflict(RESOURCES["deployments"], "d", "why not")
    assert e.message == 'Operation cannot be fulfilled on deployments.apps "d": why not'
    assert "has been modified" in conflict(RESOURCES["pods"], "p").message


# --- admission asks the strategies, not the names --------------------------------------------


def admission(*objects: tuple[str, Obj]) -> Admission:
    return Admission(None, cache_with(*objects), None,  # type: ignore[arg-type]
                     not_ready_toleration_seconds=11, unreachable_toleration_seconds=22)


def test_mutating_admission_runs_the_plugins_the_strategy_names() -> None:
    adm = admission()
    p = pod()
    adm.mutate(s("pods"), p)
    assert p["spec"]["serviceAccountName"] == "default"
    assert {(t["key"], t["tolerationSeconds"]) for t in p["spec"]["tolerations"]} == {
        ("node.kubernetes.io/not-ready", 11), ("node.kubernetes.io/unreachable", 22)}
    assert any(v["name"].startswith("kube-api-access-") for v in p["spec"]["volumes"])
    # A kind that names no plugin is left alone, even if it looks like a pod.
    lookalike = pod()
    adm.mutate(s("configmaps"), lookalike)
    assert lookalike == pod()


async def test_allocation_only_for_allocating_strategies() -> None:
    adm = admission()  # no allocator: any use of it would fail
    p = pod()
    fx = await adm.allocate(s("pods"), p, None)
    assert fx == SideEffects() and p == pod()
    assert adm.release(s("pods"), p) == SideEffects()


async def test_namespace_lifecycle() -> None:
    active = {"metadata": {"name": "a"}, "status": {"phase": "Active"}}
    going = {"metadata": {"name": "b", "deletionTimestamp": "t"},
             "status": {"phase": "Terminating"}}
    adm = admission(("namespaces", active), ("namespaces", going))
    await adm.check_namespace("a")
    with pytest.raises(errors.Forbidden, match="because it is being terminated"):
        await adm.check_namespace("b")
    with pytest.raises(errors.NotFound, match='namespaces "c" not found'):
        await adm.check_namespace("c")
