"""RBAC end to end: Roles and Bindings written through the API decide what other users may do.

Every identity here is a fresh client certificate (`Cluster.client_as`), the admin is
system:masters. Policy reaches the authorizer through the watch cache, so a grant applies a
moment after it is written (as upstream's informer-fed authorizer): positive checks retry
briefly; refusals are checked after the grants they must not leak from.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from api import errors, rbac
from client.apiclient import ApiClient
from harness.cluster import Cluster, wait_for_namespace

T = TypeVar("T")


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def eventually(call: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """`call()` once the policy that allows it has reached the apiserver's cache."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except errors.Forbidden:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def refused(call: Awaitable[Any]) -> str:
    with pytest.raises(errors.Forbidden) as e:
        await call
    return e.value.message


def rule(verbs: list[str], resources: list[str], groups: list[str] | None = None,
         names: list[str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"apiGroups": groups if groups is not None else [""],
                         "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def role(name: str, rules: list[dict[str, Any]], namespace: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": rbac.API_VERSION, "kind": "Role" if namespace else "ClusterRole",
            "metadata": md, "rules": rules}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]],
            namespace: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": rbac.API_VERSION,
            "kind": "RoleBinding" if namespace else "ClusterRoleBinding", "metadata": md,
            "subjects": subjects, "roleRef": {"apiGroup": rbac.GROUP, "kind": role_kind,
                                              "name": role_name}}


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": rbac.GROUP, "name": name}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "apiGroup": rbac.GROUP, "name": name}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": "v"}}


async def new_namespace(c: Cluster) -> str:
    name = f"rbac-{uid()}"
    await c.client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                         "metadata": {"name": name}})
    return name


async def test_a_namespaced_role_grants_only_what_it_says(cluster: Cluster,
                                                          namespace: str) -> None:
    admin, who = cluster.client, f"jane-{uid()}"
    other = await new_namespace(cluster)
    for ns in (namespace, other):
        await admin.create("pods", pod("web"), ns)
    await admin.create("configmaps", configmap("allowed"), namespace)
    await admin.create("configmaps", configmap("private"), namespace)
    await admin.create("roles", role("reader", [
        rule(["get", "list", "watch"], ["pods"]),
        rule(["get"], ["configmaps"], names=["allowed"]),
    ], namespace))
    await admin.create("rolebindings", binding("jane-reads", "Role", "reader", [user(who)],
                                               namespace))
    jane: ApiClient = cluster.client_as(who)

    listed = await eventually(lambda: jane.list("pods", namespace))
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]
    assert (await jane.get("pods", "web", namespace))["metadata"]["name"] == "web"
    assert (await jane.get("configmaps", "allowed", namespace))["data"] == {"k": "v"}

    msg = await refused(jane.create("pods", pod("mine"), namespace))
    assert msg == (f'pods is forbidden: User "{who}" cannot create resource "pods" in API '
                   f'group "" in the namespace "{namespace}"')
    await refused(jane.delete("pods", "web", namespace))
    await refused(jane.patch("pods", "web", {"metadata": {"labels": {"a": "b"}}}, namespace))
    await refused(jane.list("pods", other))
    await refused(jane.get("pods", "web", other))
    await refused(jane.list("pods"))  # all namespaces is cluster scope
    await refused(jane.get("configmaps", "private", namespace))
    await refused(jane.list("configmaps", namespace))  # resourceNames never allow a list
    await refused(jane.list("secrets", namespace))
    msg = await refused(jane.list("nodes"))
    assert msg.endswith('cannot list resource "nodes" in API group "" at the cluster scope')


async def test_cluster_role_through_a_role_binding_is_limited_to_its_namespace(
        cluster: Cluster, namespace: str) -> None:
    admin, who = cluster.client, f"ann-{uid()}"
    other = await new_namespace(cluster)
    reader = f"pod-reader-{uid()}"
    await admin.create("clusterroles", role(reader, [rule(["get", "list"], ["pods"])]))
    await admin.create("rolebindings", binding("ann", "ClusterRole", reader, [user(who)],
                                               namespace))
    ann = cluster.client_as(who)
    await eventually(lambda: ann.list("pods", namespace))
    await refused(ann.list("pods", other))
    await refused(ann.list("pods"))

    await admin.create("clusterrolebindings", binding(f"ann-{uid()}", "ClusterRole", reader,
                                                      [user(who)]))
    await eventually(lambda: ann.list("pods", other))
    await ann.list("pods")  # every namespace at once
    await refused(ann.create("pods", pod("x"), other))


async def test_group_subjects(cluster: Cluster, namespace: str) -> None:
    admin, team = cluster.client, f"team-{uid()}"
    await admin.create("roles", role("cm-writer", [rule(["create", "get"], ["configmaps"])],
                                     namespace))
    await admin.create("rolebindings", binding("team", "Role", "cm-writer", [group(team)],
                                               namespace))
    member = cluster.client_as(f"bob-{uid()}", groups=[team])
    outsider = cluster.client_as(f"eve-{uid()}", groups=["other-team"])
    await eventually(lambda: member.create("configmaps", configmap("by-bob"), namespace))
    await refused(outsider.create("configmaps", configmap("by-eve"), namespace))
    await refused(outsider.get("configmaps", "by-bob", namespace))


async def test_escalation_is_refused_unless_escalate_or_bind_is_held(
        cluster: Cluster, namespace: str) -> None:
    admin, who = cluster.client, f"lead-{uid()}"
    await admin.create("roles", role("delegator", [
        rule(["get", "list"], ["pods"]),
        rule(["create", "update", "get"], ["roles", "rolebindings"], [rbac.GROUP]),
    ], namespace))
    await admin.create("rolebindings", binding("lead", "Role", "delegator", [user(who)],
                                               namespace))
    lead = cluster.client_as(who)

    # Granting a subset of what one holds is fine.
    await eventually(lambda: lead.create("roles", role(
        "pod-viewer", [rule(["get"], ["pods"])], namespace)))
    await lead.create("rolebindings", binding("intern", "Role", "pod-viewer",
                                              [user("intern")], namespace))

    msg = await refused(lead.create("roles", role(
        "secret-viewer", [rule(["get", "list"], ["secrets"])], namespace)))
    assert msg == (
        f'roles.rbac.authorization.k8s.io "secret-viewer" is forbidden: user "{who}" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}')
    msg = await refused(lead.create("rolebindings", binding(
        "intern-edit", "ClusterRole", "edit", [user("intern")], namespace)))
    assert msg.startswith(f'rolebindings.rbac.authorization.k8s.io "intern-edit" is forbidden: '
                          f'user "{who}"')
    # Widening an existing role is an escalation too.
    viewer = await lead.get("roles", "pod-viewer", namespace)
    viewer["rules"].append(rule(["delete"], ["pods"]))
    await refused(lead.update("roles", viewer, namespace))

    await admin.create("roles", role("powers", [
        rule(["escalate"], ["roles"], [rbac.GROUP]),
        rule(["bind"], ["clusterroles"], [rbac.GROUP], names=["edit"]),
    ], namespace))
    await admin.create("rolebindings", binding("lead-powers", "Role", "powers", [user(who)],
                                               namespace))
    await eventually(lambda: lead.create("roles", role(
        "secret-viewer", [rule(["get", "list"], ["secrets"])], namespace)))
    await lead.create("rolebindings", binding("intern-edit", "ClusterRole", "edit",
                                              [user("intern")], namespace))
    # bind is per role name: another ClusterRole still needs its rules.
    await refused(lead.create("rolebindings", binding(
        "intern-admin", "ClusterRole", "admin", [user("intern")], namespace)))


async def test_role_ref_cannot_change(cluster: Cluster, namespace: str) -> None:
    b = await cluster.client.create("rolebindings", binding("fixed", "ClusterRole", "view",
                                                            [user("x")], namespace))
    b["roleRef"]["name"] = "edit"
    with pytest.raises(errors.Invalid) as e:
        await cluster.client.update("rolebindings", b, namespace)
    assert "roleRef: Invalid value" in str(e.value) and "cannot change roleRef" in str(e.value)


async def test_bootstrap_policy_exists(cluster: Cluster) -> None:
    admin = cluster.client
    for name in ("cluster-admin", "admin", "edit", "view", "system:discovery",
                 "system:basic-user", "system:node", "system:node-proxier", "system:netagent",
                 "system:kube-scheduler", "system:kube-controller-manager"):
        role_obj = await admin.get("clusterroles", name)
        md = role_obj["metadata"]
        assert md["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults", name
        assert md["annotations"][rbac.AUTOUPDATE_ANNOTATION] == "true", name
    crb = await admin.get("clusterrolebindings", "cluster-admin")
    assert crb["subjects"] == [group("system:masters")]
    names = {b["metadata"]["name"] for b in (await admin.list("clusterrolebindings"))["items"]}
    assert {"system:basic-user", "system:discovery", "system:kube-scheduler",
            "system:kube-controller-manager", "system:node-proxier"} <= names
    # The Node authorizer applies these, per node, not a binding.
    assert "system:node" not in names and "system:netagent" not in names

    # A component's certificate gets its role and nothing more.
    scheduler = cluster.client_as("system:kube-scheduler")
    await eventually(lambda: scheduler.list("nodes"))
    await refused(scheduler.list("secrets", "default"))
    # Any authenticated user may ask what they are allowed to do (system:basic-user).
    nobody = cluster.client_as(f"nobody-{uid()}")
    review = await nobody.create("selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": "list", "resource": "pods",
                                        "namespace": "default"}}})
    assert review["status"]["allowed"] is False


async def test_autoupdate_repairs_bootstrap_policy_on_restart() -> None:
    async with Cluster() as c:
        admin = c.client
        await admin.delete("clusterroles", "view")
        edit = await admin.get("clusterroles", "edit")
        edit["rules"] = edit["rules"][:1]
        edit["rules"].append(rule(["get"], ["widgets"], ["example.com"]))  # an operator's extra
        await admin.update("clusterroles", edit)
        basic = await admin.get("clusterrolebindings", "system:basic-user")
        basic["subjects"] = []
        await admin.update("clusterrolebindings", basic)
        # An operator who takes a role over: autoupdate "false" is never touched.
        discovery = await admin.get("clusterroles", "system:discovery")
        discovery["metadata"]["annotations"][rbac.AUTOUPDATE_ANNOTATION] = "false"
        discovery["rules"] = [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]
        await admin.update("clusterroles", discovery)

        assert c.apiserver is not None
        c.apiserver.kill()
        await c.apiserver.start()
        await wait_for_namespace(admin, "default")

        view = await admin.get("clusterroles", "view")
        assert view["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert any("pods" in (r.get("resources") or []) for r in view["rules"])
        repaired = (await admin.get("clusterroles", "edit"))["rules"]
        assert len(repaired) > 2
        assert rule(["get"], ["widgets"], ["example.com"]) in repaired  # extras are kept
        basic = await admin.get("clusterrolebindings", "system:basic-user")
        assert basic["subjects"] == [group("system:authenticated")]
        discovery = await admin.get("clusterroles", "system:discovery")
        assert discovery["rules"] == [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]


async def test_a_role_binding_cannot_patch_away_its_namespace(cluster: Cluster,
                                                               namespace: str) -> None:
    # A namespace admin may write RoleBindings there. Patching metadata.namespace to null
    # once stored the binding without a namespace, which RBAC read as a ClusterRoleBinding:
    # namespace admin became admin of every namespace.
    admin, who = cluster.client, f"nsadmin-{uid()}"
    other = await new_namespace(cluster)
    await admin.create("configmaps", configmap("elsewhere"), other)
    await admin.create("rolebindings", binding("ns-admin", "ClusterRole", "admin", [user(who)],
                                               namespace))
    boss = cluster.client_as(who)
    await eventually(lambda: boss.create("rolebindings", binding(
        "mine", "ClusterRole", "admin", [user(who)], namespace)))
    for patch in ({"metadata": {"namespace": None}}, {"metadata": {"namespace": ""}}):
        try:
            patched = await boss.patch("rolebindings", "mine", patch, namespace)
        except errors.ApiError:
            pass
        else:
            assert patched["metadata"]["namespace"] == namespace
    stored = await admin.get("rolebindings", "mine", namespace)
    assert stored["metadata"]["namespace"] == namespace
    await asyncio.sleep(0.5)  # what the watch cache would have indexed by now
    await refused(boss.get("configmaps", "elsewhere", other))
    await refused(boss.list("secrets"))
