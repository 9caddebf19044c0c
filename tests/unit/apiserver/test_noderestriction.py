"""NodeRestriction: a kubelet writes only its own Node, Lease, and pods bound to it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from api import errors
from api.resources import RESOURCES
from apiserver.auth import AdmissionRequest, UserInfo
from apiserver.noderestriction import (
    NetAgentRestriction,
    NodeRestriction,
    changes_beyond_flannel,
    forbidden_labels,
)
from tests.unit.apiserver.security_fakes import cache_with, node_user, pod, put

Obj = dict[str, Any]


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[Obj] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"taints": taints} if taints else {}}


def req(op: str, resource: str, *, obj: Obj | None = None, old: Obj | None = None,
        sub: str = "", ns: str = "", name: str = "", user: UserInfo | None = None
        ) -> AdmissionRequest:
    target = obj or old or {}
    return AdmissionRequest(op, RESOURCES[resource], sub,
                            ns or (target.get("metadata") or {}).get("namespace", ""),
                            name or (target.get("metadata") or {}).get("name", ""), obj, old,
                            user if user is not None else node_user("n1"))


async def admit(r: AdmissionRequest, cache: Any = None) -> None:
    await NodeRestriction(cache or cache_with()).admit(r)


async def refused(r: AdmissionRequest, match: str, cache: Any = None) -> None:
    with pytest.raises(errors.Forbidden) as e:
        await admit(r, cache)
    assert match in e.value.message, e.value.message


# --- nodes ------------------------------------------------------------------------------------

async def test_node_may_create_and_update_only_itself() -> None:
    await admit(req("CREATE", "nodes", obj=node("n1")))
    await admit(req("UPDATE", "nodes", obj=node("n1", {"a": "b"}), old=node("n1")))
    await admit(req("UPDATE", "nodes", obj=node("n1"), old=node("n1"), sub="status"))
    await refused(req("UPDATE", "nodes", obj=node("n2"), old=node("n2")),
                  'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"')
    await refused(req("CREATE", "nodes", obj=node("n2")), 'is not allowed to modify node "n2"')
    await refused(req("DELETE", "nodes", old=node("n2")), 'is not allowed to modify node "n2"')


async def test_node_may_not_change_its_taints_or_restricted_labels() -> None:
    taint = {"key": "k", "effect": "NoSchedule"}
    await admit(req("CREATE", "nodes", obj=node("n1", taints=[taint])))  # register-with-taints
    await refused(req("UPDATE", "nodes", obj=node("n1"), old=node("n1", taints=[taint])),
                  'node "n1" is not allowed to modify taints')
    await refused(
        req("UPDATE", "nodes", obj=node("n1", {"node-restriction.kubernetes.io/pci": "1"}),
            old=node("n1")),
        "is not allowed to modify labels: node-restriction.kubernetes.io/pci")
    await refused(req("CREATE", "nodes", obj=node("n1", {"node-role.kubernetes.io/master": ""})),
                  'node "n1" is not allowed to set the following labels: '
                  "node-role.kubernetes.io/master")
    await admit(req("CREATE", "nodes", obj=node("n1", {
        "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
        "node.kubernetes.io/exclude-from-external-load-balancers": "",
        "topology.kubernetes.io/zone": "a", "example.com/rack": "3"})))


def test_forbidden_labels() -> None:
    assert forbidden_labels({"a.node-restriction.kubernetes.io/x", "foo.k8s.io/x",
                             "kubelet.kubernetes.io/x", "plain", "example.com/y"}) == [
        "a.node-restriction.kubernetes.io/x", "foo.k8s.io/x"]


# --- pods -------------------------------------------------------------------------------------

async def test_node_updates_status_only_of_its_own_pods() -> None:
    mine, theirs = pod("a", "n1"), pod("b", "n2")
    new = copy.deepcopy(mine)
    new["status"] = {"phase": "Running"}
    await admit(req("UPDATE", "pods", obj=new, old=mine, sub="status"))
    await refused(req("UPDATE", "pods", obj=theirs, old=theirs, sub="status"),
                  'node "n1" can only update pod status for pods with spec.nodeName set to itself')
    relabelled = copy.deepcopy(mine)
    relabelled["metadata"]["labels"] = {"x": "y"}
    await refused(req("UPDATE", "pods", obj=relabelled, old=mine, sub="status"),
                  "cannot update labels through pod status")


async def test_node_may_not_update_pods_only_delete_its_own() -> None:
    mine, theirs = pod("a", "n1"), pod("b", "n2")
    await refused(req("UPDATE", "pods", obj=mine, old=mine),
                  'unexpected operation "UPDATE", node "n1" can only create and delete mirror pods')
    await admit(req("DELETE", "pods", old=mine))
    await refused(req("DELETE", "pods", old=theirs),
                  'pods "b" is forbidden: node "n1" can only delete pods with spec.nodeName set '
                  "to itself")


async def test_node_creates_only_mirror_pods_of_its_own() -> None:
    cache = cache_with()
    n1 = put(cache, "nodes", node("n1"))

    def mirror(**changes: Any) -> Obj:
        p = pod("static-web", "n1")
        p["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "hash"}
        p["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                             "uid": n1["metadata"]["uid"], "controller": True}]
        for k, v in changes.items():
            p["spec"][k] = v
        return p

    await admit(req("CREATE", "pods", obj=mirror()), cache)
    plain = pod("web", "n1")
    await refused(req("CREATE", "pods", obj=plain),
                  'pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can '
                  "only create mirror pods", cache)
    await refused(req("CREATE", "pods", obj=mirror(nodeName="n2")),
                  "can only create pods with spec.nodeName set to itself", cache)
    await refused(req("CREATE", "pods", obj=mirror(serviceAccountName="default")),
                  "can not create pods that reference a service account", cache)
    await refused(req("CREATE", "pods", obj=mirror(volumes=[
        {"name": "s", "secret": {"secretName": "x"}}])),
        "can not create pods that reference secrets", cache)
    wrong_owner = mirror()
    wrong_owner["metadata"]["ownerReferences"][0]["uid"] = "other"
    await refused(req("CREATE", "pods", obj=wrong_owner), "node n1 UID mismatch", cache)


async def test_other_users_and_internal_writes_pass() -> None:
    theirs = pod("b", "n2")
    alice = UserInfo("alice", ("system:authenticated",))
    await admit(req("UPDATE", "pods", obj=theirs, old=theirs, user=alice))
    r = req("UPDATE", "nodes", obj=node("n2"), old=node("n2"))
    r.user = None
    await admit(r)
    await refused(req("UPDATE", "nodes", obj=node("n2"), old=node("n2"),
                      user=UserInfo("system:node:", ("system:nodes",))),
                  "could not determine node")


# --- leases and tokens ------------------------------------------------------------------------

def lease(name: str, ns: str = "kube-node-lease") -> Obj:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": ns}, "spec": {"holderIdentity": name}}


async def test_node_touches_only_its_own_lease() -> None:
    await admit(req("CREATE", "leases", obj=lease("n1")))
    await admit(req("UPDATE", "leases", obj=lease("n1"), old=lease("n1")))
    await refused(req("CREATE", "leases", obj=lease("n2")),
                  "can only access node lease with the same name as the requesting node")
    await refused(req("UPDATE", "leases", obj=lease("n2"), old=lease("n2")),
                  "can only access node lease with the same name")
    await refused(req("CREATE", "leases", obj=lease("n1", "kube-system")),
                  'can only access leases in the "kube-node-lease" system namespace')


async def test_node_requests_tokens_only_bound_to_its_pods() -> None:
    cache = cache_with()
    mine, theirs = put(cache, "pods", pod("a", "n1")), put(cache, "pods", pod("b", "n2"))
    sa = {"metadata": {"name": "default", "namespace": "default"}}

    def token_req(p: Obj | None, uid: str | None = None) -> AdmissionRequest:
        spec: Obj = {"audiences": ["x"]}
        if p is not None:
            spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod",
                                      "name": p["metadata"]["name"],
                                      "uid": uid if uid is not None else p["metadata"]["uid"]}
        return req("CREATE", "serviceaccounts", obj={"spec": spec}, old=sa, sub="token",
                   ns="default", name="default")

    await admit(token_req(mine), cache)
    await refused(token_req(None), "node requested token not bound to a pod", cache)
    await refused(token_req(mine, ""), "node requested token with a pod binding without a uid",
                  cache)
    await refused(token_req(mine, "stale"), "does not match the UID in record", cache)
    await refused(token_req(theirs), "node requested token bound to a pod scheduled on a "
                  "different node", cache)


# --- a node's network agent -------------------------------------------------------------------

NETAGENT = UserInfo("system:netagent:n1", ("system:netagents", "system:authenticated"))
FLANNEL = {"flannel.alpha.coreos.com/backend-type": "vxlan",
           "flannel.alpha.coreos.com/public-ip": "10.0.0.1"}


def annotated(name: str, annotations: dict[str, str], **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": annotations, "resourceVersion": "7",
                         "labels": {"kubernetes.io/hostname": name}},
            "spec": {"podCIDR": "10.244.1.0/24", **spec},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


async def agent_admits(r: AdmissionRequest) -> None:
    await NetAgentRestriction().admit(r)


async def agent_refused(r: AdmissionRequest, match: str) -> None:
    with pytest.raises(errors.Forbidden) as e:
        await agent_admits(r)
    assert match in e.value.message, e.value.message


async def test_netagent_may_change_only_flannel_annotations_on_its_node() -> None:
    old = annotated("n1", {"other": "x"})
    new = copy.deepcopy(old)
    new["metadata"]["annotations"].update(FLANNEL)
    new["metadata"]["resourceVersion"] = "8"
    new["metadata"]["managedFields"] = [{"manager": "tk-netagent"}]
    await agent_admits(req("UPDATE", "nodes", obj=new, old=old, user=NETAGENT))
    changed = copy.deepcopy(new)
    changed["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"] = "10.9.9.9"
    await agent_admits(req("UPDATE", "nodes", obj=changed, old=new, user=NETAGENT))
    # Cordoning, tainting, labels, other annotations, status: all refused.
    for what, field in [({"spec": {"podCIDR": "10.244.1.0/24", "unschedulable": True}},
                         "spec"),
                        ({"metadata": {"labels": {"role": "db"}}}, "metadata.labels"),
                        ({"metadata": {"annotations": {**FLANNEL, "other": "y"}}},
                         "metadata.annotations[other]"),
                        ({"status": {}}, "status")]:
        bad = copy.deepcopy(new)
        for k, v in what.items():
            if k == "metadata":
                bad["metadata"].update(v)
            else:
                bad[k] = v
        await agent_refused(req("UPDATE", "nodes", obj=bad, old=new, user=NETAGENT),
                            f"may only change flannel.alpha.coreos.com/* annotations on its "
                            f"Node, not {field}")


async def test_netagent_may_not_touch_another_node_or_create_or_delete() -> None:
    other = annotated("n2", {})
    mine = copy.deepcopy(other)
    mine["metadata"]["annotations"] = dict(FLANNEL)
    await agent_refused(req("UPDATE", "nodes", obj=mine, old=other, user=NETAGENT),
                        'node network agent "n1" is not allowed to modify node "n2"')
    await agent_refused(req("CREATE", "nodes", obj=annotated("n1", FLANNEL), user=NETAGENT),
                        'unexpected operation "CREATE"')
    await agent_refused(req("DELETE", "nodes", old=annotated("n1", {}), user=NETAGENT),
                        'unexpected operation "DELETE"')
    await agent_refused(req("UPDATE", "nodes", obj=annotated("n1", FLANNEL),
                            old=annotated("n1", {}), sub="status", user=NETAGENT),
                        "may only modify Node objects")
    await agent_refused(req("CREATE", "pods", obj=pod("p", "n1"), user=NETAGENT),
                        "may only modify Node objects")


async def test_netagent_restriction_leaves_everybody_else_alone() -> None:
    old, new = annotated("n2", {}), annotated("n2", {"x": "y"}, unschedulable=True)
    for user in (node_user("n1"), UserInfo("alice", ("system:authenticated",)), None):
        r = req("UPDATE", "nodes", obj=new, old=old)
        r.user = user
        await agent_admits(r)


def test_changes_beyond_flannel_names_the_fields() -> None:
    a = annotated("n1", {"flannel.alpha.coreos.com/x": "1"})
    b = copy.deepcopy(a)
    assert changes_beyond_flannel(a, b) == []
    b["metadata"]["annotations"] = {}
    b["metadata"]["finalizers"] = ["f"]
    b["spec"]["taints"] = [{"key": "k", "effect": "NoSchedule"}]
    assert changes_beyond_flannel(b, a) == ["spec", "metadata.finalizers"]
