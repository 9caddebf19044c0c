"""RBAC: upstream's rule matching, the authorizer over a watch cache, the escalation check, and
the bootstrap policy's objects and reconciliation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from api import errors, rbac
from api.codec import decode
from api.defaults import apply_defaults
from api.resources import RESOURCES
from api.validation import validate
from apiserver import bootstrap_policy as bp
from apiserver.auth import AdmissionRequest, Attributes, UserInfo
from apiserver.rbac import (
    EscalationCheck,
    RBACAuthorizer,
    compact_rules,
    compact_string,
    covers,
    rule_allows,
)
from apiserver.watchcache import CacheEvent, WatchCache

JANE = UserInfo("jane", ("devs", "system:authenticated"))


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"verbs": verbs}
    if groups is not None:
        r["apiGroups"] = groups
    if resources is not None:
        r["resources"] = resources
    if names is not None:
        r["resourceNames"] = names
    if urls is not None:
        r["nonResourceURLs"] = urls
    return r


def req(verb: str, resource: str = "", sub: str = "", group: str = "", ns: str = "",
        name: str = "", path: str = "", user: UserInfo = JANE) -> Attributes:
    return Attributes(user=user, verb=verb, resource=resource, subresource=sub,
                      api_group=group, namespace=ns, name=name, path=path)


# --- rule matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(("r", "attrs", "allowed"), [
    (rule(["get"], [""], ["pods"]), req("get", "pods"), True),
    (rule(["get"], [""], ["pods"]), req("list", "pods"), False),
    (rule(["*"], [""], ["pods"]), req("deletecollection", "pods"), True),
    (rule(["get"], ["apps"], ["pods"]), req("get", "pods"), False),
    (rule(["get"], ["*"], ["deployments"]), req("get", "deployments", group="apps"), True),
    (rule(["get"], [""], ["*"]), req("get", "pods", "status"), True),
    (rule(["get"], [""], ["pods"]), req("get", "pods", "status"), False),
    (rule(["get"], [""], ["pods/status"]), req("get", "pods", "status"), True),
    (rule(["get"], [""], ["pods/status"]), req("get", "pods"), False),
    (rule(["update"], ["*"], ["*/scale"]), req("update", "deployments", "scale", "apps"), True),
    (rule(["update"], ["*"], ["*/scale"]), req("update", "deployments", group="apps"), False),
    (rule(["get"], [""], ["pods/*"]), req("get", "pods", "status"), False),  # not a pattern
    (rule(["get"], [""], ["pods"], ["a"]), req("get", "pods", name="a"), True),
    (rule(["get"], [""], ["pods"], ["a"]), req("get", "pods", name="b"), False),
    (rule(["list"], [""], ["pods"], ["a"]), req("list", "pods"), False),
    (rule(["create"], [""], ["pods"], ["a"]), req("create", "pods"), False),
    (rule(["get"], urls=["/healthz"]), req("get", path="/healthz"), True),
    (rule(["get"], urls=["/healthz"]), req("get", path="/healthz/etcd"), False),
    (rule(["get"], urls=["/api/*"]), req("get", path="/api/v1"), True),
    (rule(["get"], urls=["/api/*"]), req("get", path="/apis"), False),
    (rule(["*"], urls=["*"]), req("post", path="/anything"), True),
    (rule(["get"], urls=["*"]), req("get", "pods"), False),  # URL rules never match resources
    (rule(["get"], [""], ["pods"]), req("get", path="/api"), False),
])
def test_rule_allows(r: dict[str, Any], attrs: Attributes, allowed: bool) -> None:
    assert rule_allows(attrs, r) is allowed


def test_covers_and_messages() -> None:
    owner = [rule(["get", "list"], [""], ["pods"]), rule(["*"], ["apps"], ["*/scale"]),
             rule(["get"], urls=["/api/*"])]
    assert covers(owner, [rule(["get"], [""], ["pods"])]) == (True, [])
    assert covers(owner, [rule(["get"], [""], ["pods"], ["x"])])[0]
    assert covers(owner, [rule(["patch"], ["apps"], ["deployments/scale"])])[0]
    assert covers(owner, [rule(["get"], urls=["/api/v1"])])[0]
    ok, missing = covers(owner, [rule(["get", "delete", "create"], [""], ["pods", "secrets"])])
    assert not ok
    lines = sorted(compact_string(r) for r in compact_rules(missing))
    assert lines == ['{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}',
                     '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "create"]}']
    # An owner limited to names does not cover the unnamed rule.
    assert not covers([rule(["get"], [""], ["pods"], ["a"])], [rule(["get"], [""], ["pods"])])[0]
    assert compact_string(rule(["get"], urls=["/x"])) == '{NonResourceURLs:["/x"], Verbs:["get"]}'


# --- the authorizer over a watch cache ------------------------------------------------------


class Policy:
    """A watch cache filled by hand, the way the etcd watch fills it."""

    def __init__(self) -> None:
        self.cache = WatchCache(None)  # type: ignore[arg-type]  # never started
        self.rv = 0

    def put(self, resource: str, obj: dict[str, Any]) -> None:
        self.rv += 1
        md = obj["metadata"]
        ns = md.get("namespace", "")
        key = f"{ns}/{md['name']}" if ns else md["name"]
        store = self.cache.caches[resource]
        prev = store.store.get(key)
        store.apply(CacheEvent("MODIFIED" if prev else "ADDED", self.rv, ns, obj, prev), key)
        self.cache.rv = self.rv

    def delete(self, resource: str, key: str) -> None:
        self.rv += 1
        store = self.cache.caches[resource]
        prev = store.store[key]
        store.apply(CacheEvent("DELETED", self.rv, "", prev, prev), key)

    def role(self, name: str, rules: list[dict[str, Any]], ns: str = "") -> None:
        md = {"name": name, **({"namespace": ns} if ns else {})}
        self.put("roles" if ns else "clusterroles",
                 {"kind": "Role" if ns else "ClusterRole", "metadata": md, "rules": rules})

    def bind(self, name: str, role_kind: str, role: str, subjects: list[dict[str, Any]],
             ns: str = "") -> None:
        md = {"name": name, **({"namespace": ns} if ns else {})}
        self.put("rolebindings" if ns else "clusterrolebindings",
                 {"metadata": md, "subjects": subjects,
                  "roleRef": {"apiGroup": rbac.GROUP, "kind": role_kind, "name": role}})


def user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": rbac.GROUP, "name": name}


def group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "apiGroup": rbac.GROUP, "name": name}


def test_role_grants_only_in_its_namespace() -> None:
    p = Policy()
    p.role("pod-reader", [rule(["get", "list"], [""], ["pods"])], ns="dev")
    p.bind("jane-reads", "Role", "pod-reader", [user("jane")], ns="dev")
    a = RBACAuthorizer(p.cache)
    d = a.authorize(req("get", "pods", ns="dev", name="x"))
    assert d.allowed
    assert d.reason == ('RBAC: allowed by RoleBinding "jane-reads/dev" of Role "pod-reader" '
                        'to User "jane"')
    assert not a.authorize(req("get", "pods", ns="prod", name="x")).allowed
    assert not a.authorize(req("list", "pods")).allowed  # all namespaces = cluster scope
    assert not a.authorize(req("delete", "pods", ns="dev", name="x")).allowed
    assert not a.authorize(req("get", "secrets", ns="dev", name="x")).allowed
    assert not a.authorize(req("get", "pods", ns="dev", user=UserInfo("bob"))).allowed


def test_role_binding_without_a_namespace_grants_nothing() -> None:
    # Defence in depth for a registry bug (a patch could null metadata.namespace): a
    # RoleBinding that names no namespace must never read as a ClusterRoleBinding.
    p = Policy()
    p.role("view", [rule(["get", "list", "watch"], [""], ["pods"])])
    p.put("rolebindings", {"metadata": {"name": "stray"}, "subjects": [user("jane")],
                           "roleRef": {"apiGroup": rbac.GROUP, "kind": "ClusterRole",
                                       "name": "view"}})
    a = RBACAuthorizer(p.cache)
    assert not a.authorize(req("list", "pods")).allowed
    assert not a.authorize(req("list", "pods", ns="dev")).allowed


def test_cluster_role_through_role_binding_is_namespaced() -> None:
    p = Policy()
    p.role("view", [rule(["get", "list", "watch"], [""], ["pods"])])
    p.bind("devs-view", "ClusterRole", "view", [group("devs")], ns="dev")
    a = RBACAuthorizer(p.cache)
    assert a.authorize(req("list", "pods", ns="dev")).allowed
    assert not a.authorize(req("list", "pods", ns="other")).allowed
    assert not a.authorize(req("list", "pods")).allowed
    p.bind("devs-view-all", "ClusterRole", "view", [group("devs")])
    d = a.authorize(req("list", "pods", ns="other"))
    assert d.allowed and d.reason == ('RBAC: allowed by ClusterRoleBinding "devs-view-all" of '
                                      'ClusterRole "view" to Group "devs"')
    assert a.authorize(req("list", "pods")).allowed


def test_service_account_subjects() -> None:
    p = Policy()
    p.role("view", [rule(["get"], [""], ["pods"])])
    p.bind("local", "ClusterRole", "view", [{"kind": "ServiceAccount", "name": "ci"}], ns="dev")
    p.bind("remote", "ClusterRole", "view",
           [{"kind": "ServiceAccount", "name": "bot", "namespace": "tools"}], ns="dev")
    a = RBACAuthorizer(p.cache)
    ci = UserInfo("system:serviceaccount:dev:ci", ("system:serviceaccounts",))
    d = a.authorize(req("get", "pods", ns="dev", name="x", user=ci))
    assert d.allowed and d.reason.endswith('to ServiceAccount "ci/dev"')
    bot = UserInfo("system:serviceaccount:tools:bot")
    assert a.authorize(req("get", "pods", ns="dev", name="x", user=bot)).allowed
    other = UserInfo("system:serviceaccount:prod:ci")
    assert not a.authorize(req("get", "pods", ns="dev", name="x", user=other)).allowed


def test_role_changes_apply_at_once_and_missing_roles_are_reported() -> None:
    p = Policy()
    p.bind("b", "ClusterRole", "later", [user("jane")])
    a = RBACAuthorizer(p.cache)
    d = a.authorize(req("get", "pods", ns="dev", name="x"))
    assert not d.allowed
    assert d.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "later" not found'
    p.role("later", [rule(["get"], [""], ["pods"])])
    assert a.authorize(req("get", "pods", ns="dev", name="x")).allowed
    p.delete("clusterrolebindings", "b")
    assert not a.authorize(req("get", "pods", ns="dev", name="x")).allowed


def test_rules_for() -> None:
    p = Policy()
    p.role("a", [rule(["get"], [""], ["pods"])])
    p.role("b", [rule(["list"], [""], ["pods"])], ns="dev")
    p.bind("a", "ClusterRole", "a", [group("devs")])
    p.bind("b", "Role", "b", [user("jane")], ns="dev")
    a = RBACAuthorizer(p.cache)
    assert a.rules_for(JANE, "") == [rule(["get"], [""], ["pods"])]
    assert a.rules_for(JANE, "dev") == [rule(["get"], [""], ["pods"]),
                                        rule(["list"], [""], ["pods"])]


def test_index_is_rebuilt_only_when_bindings_change() -> None:
    p = Policy()
    p.role("view", [rule(["get"], [""], ["pods"])])
    for i in range(500):
        p.bind(f"b{i}", "ClusterRole", "view", [user(f"user-{i}")], ns=f"ns-{i % 50}")
        p.bind(f"c{i}", "ClusterRole", "view", [group(f"group-{i}")])
    a = RBACAuthorizer(p.cache)
    assert a.authorize(req("get", "pods", ns="ns-7", name="x", user=UserInfo("user-7"))).allowed
    index = a._index
    p.put("leases", {"metadata": {"name": "l", "namespace": "kube-system"}})
    p.role("view", [rule(["get", "list"], [""], ["pods"])])
    start = time.perf_counter()
    for i in range(2000):
        who = UserInfo(f"user-{i % 500}", (f"group-{i % 700}",))
        a.authorize(req("list", "pods", ns=f"ns-{i % 50}", user=who))
    assert a._index is index  # roles and other kinds do not invalidate it
    assert time.perf_counter() - start < 2.0
    p.bind("new", "ClusterRole", "view", [user("newcomer")])
    assert a.authorize(req("get", "pods", user=UserInfo("newcomer"))).allowed
    assert a._index is not index


# --- escalation -------------------------------------------------------------------------------


def admission(resource: str, obj: dict[str, Any], who: UserInfo | None, ns: str = "",
              old: dict[str, Any] | None = None) -> AdmissionRequest:
    return AdmissionRequest("UPDATE" if old else "CREATE", RESOURCES[resource], "", ns,
                            obj["metadata"]["name"], obj, old, who)


def escalation_policy() -> tuple[Policy, EscalationCheck]:
    p = Policy()
    p.role("pod-admin", [rule(["*"], [""], ["pods"]),
                         # Not "*": that would include the escalate and bind verbs.
                         rule(["create", "update"], [rbac.GROUP], ["roles", "rolebindings"])])
    p.role("secret-reader", [rule(["get"], [""], ["secrets"])])
    p.bind("jane", "ClusterRole", "pod-admin", [user("jane")], ns="dev")
    return p, EscalationCheck(RBACAuthorizer(p.cache))


async def test_roles_cannot_grant_more_than_the_writer_holds() -> None:
    p, check = escalation_policy()
    ok = {"metadata": {"name": "r", "namespace": "dev"},
          "rules": [rule(["get", "delete"], [""], ["pods"])]}
    await check.admit(admission("roles", ok, JANE, "dev"))
    bad = {"metadata": {"name": "r", "namespace": "dev"},
           "rules": [rule(["get"], [""], ["pods", "secrets"]), rule(["list"], [""], ["secrets"])]}
    with pytest.raises(errors.Forbidden) as e:
        await check.admit(admission("roles", bad, JANE, "dev"))
    assert e.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "jane" (groups=["devs" '
        '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}')
    # Not in another namespace, where jane holds nothing.
    with pytest.raises(errors.Forbidden):
        await check.admit(admission("roles", {**ok, "metadata": {"name": "r", "namespace": "x"}},
                                    JANE, "x"))
    # The apiserver itself and system:masters are never checked.
    await check.admit(admission("roles", bad, None, "dev"))
    await check.admit(admission("roles", bad, UserInfo("root", ("system:masters",)), "dev"))
    # The escalate verb on roles lifts the check.
    p.role("escalator", [rule(["escalate"], [rbac.GROUP], ["roles"])])
    p.bind("jane-escalates", "ClusterRole", "escalator", [user("jane")], ns="dev")
    await check.admit(admission("roles", bad, JANE, "dev"))


async def test_bindings_need_the_roles_rules_or_bind() -> None:
    p, check = escalation_policy()
    mine = {"metadata": {"name": "b", "namespace": "dev"}, "subjects": [user("bob")],
            "roleRef": {"apiGroup": rbac.GROUP, "kind": "ClusterRole", "name": "pod-admin"}}
    await check.admit(admission("rolebindings", mine, JANE, "dev"))
    secrets = {**mine, "roleRef": {**mine["roleRef"], "name": "secret-reader"}}
    with pytest.raises(errors.Forbidden) as e:
        await check.admit(admission("rolebindings", secrets, JANE, "dev"))
    assert e.value.message.startswith('rolebindings.rbac.authorization.k8s.io "b" is forbidden: '
                                      'user "jane"')
    assert e.value.message.endswith('{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}')
    missing = {**mine, "roleRef": {**mine["roleRef"], "name": "nope"}}
    with pytest.raises(errors.NotFound):
        await check.admit(admission("rolebindings", missing, JANE, "dev"))
    p.role("binder", [rule(["bind"], [rbac.GROUP], ["clusterroles"], ["secret-reader"])])
    p.bind("jane-binds", "ClusterRole", "binder", [user("jane")], ns="dev")
    await check.admit(admission("rolebindings", secrets, JANE, "dev"))
    # Only-GC-field updates pass even without rights (the garbage collector's finalizers).
    _, check2 = escalation_policy()
    old = {**secrets, "metadata": {**secrets["metadata"], "resourceVersion": "5"}}
    new = {**secrets, "metadata": {**secrets["metadata"], "finalizers": ["x"]}}
    await check2.admit(admission("rolebindings", new, JANE, "dev", old=old))


async def test_aggregation_rule_needs_cluster_admin_and_other_kinds_are_ignored() -> None:
    p, check = escalation_policy()
    p.role("agg-escalate", [rule(["escalate"], [rbac.GROUP], ["clusterroles"])])
    cr = {"metadata": {"name": "agg"}, "rules": [],
          "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}}
    with pytest.raises(errors.Forbidden) as e:
        await check.admit(admission("clusterroles", cr, JANE))
    assert e.value.message.endswith("must have cluster-admin privileges to use the "
                                    "aggregationRule")
    pod = {"metadata": {"name": "p", "namespace": "dev"}}
    await check.admit(admission("pods", pod, UserInfo("nobody"), "dev"))


# --- bootstrap policy ---------------------------------------------------------------------------


def test_bootstrap_objects_are_valid_and_cluster_admin_covers_them() -> None:
    admin_rules = next(r for r in bp.cluster_roles() if r["metadata"]["name"] == "cluster-admin")
    names = set()
    for resource, objs in (("clusterroles", bp.cluster_roles()),
                           ("clusterrolebindings", bp.cluster_role_bindings())):
        info = RESOURCES[resource]
        for obj in objs:
            model, warnings = decode(info, obj)
            apply_defaults(model)
            assert warnings == [] and validate(info.kind, model) == [], obj["metadata"]["name"]
            assert model.to_dict() == obj  # stored as written: reconciliation compares them
            if resource == "clusterroles":
                names.add(obj["metadata"]["name"])
                assert covers(admin_rules["rules"], obj["rules"])[0]
            else:
                assert obj["roleRef"]["name"] in names
    assert "system:node" in names
    assert "system:node" not in {b["metadata"]["name"] for b in bp.cluster_role_bindings()}


def test_node_rules_follow_upstream() -> None:
    a = Policy()
    a.role("system:node", list(bp.NODE_RULES))
    a.bind("n", "ClusterRole", "system:node", [group("system:nodes")])
    authz = RBACAuthorizer(a.cache)
    node = UserInfo("system:node:n1", ("system:nodes",))
    for attrs in (req("create", "nodes"), req("patch", "nodes", "status", name="n1"),
                  req("update", "pods", "status", ns="d", name="p"),
                  req("create", "leases", group="coordination.k8s.io", ns="kube-node-lease"),
                  req("create", "serviceaccounts", "token", ns="d", name="sa"),
                  req("watch", "configmaps", ns="d")):
        assert authz.authorize(Attributes(**{**attrs.__dict__, "user": node})).allowed, attrs
    for attrs in (req("delete", "nodes", name="n2"), req("create", "deployments", group="apps"),
                  req("update", "pods", ns="d", name="p")):
        assert not authz.authorize(Attributes(**{**attrs.__dict__, "user": node})).allowed


def test_reconcile_keeps_extras_and_restores_what_is_missing() -> None:
    expected = next(r for r in bp.cluster_roles() if r["metadata"]["name"] == "view")
    existing = {**expected, "metadata": {"name": "view", "labels": {"mine": "yes"},
                                         "resourceVersion": "7"},
                "rules": [expected["rules"][0], rule(["get"], ["example.com"], ["widgets"])]}
    out = bp.reconcile_role(existing, expected)
    assert covers(out["rules"], expected["rules"])[0]
    assert rule(["get"], ["example.com"], ["widgets"]) in out["rules"]
    assert out["metadata"]["labels"] == {"kubernetes.io/bootstrapping": "rbac-defaults",
                                         "mine": "yes"}
    assert out["metadata"]["resourceVersion"] == "7"
    assert bp.reconcile_role(out, expected) == out  # idempotent
    binding = next(b for b in bp.cluster_role_bindings()
                   if b["metadata"]["name"] == "cluster-admin")
    extra = {**binding, "subjects": [user("alice")]}
    out = bp.reconcile_binding(extra, binding)
    assert out["subjects"] == [user("alice"), group("system:masters")]


class Bindings:
    """The two registry calls `_retire` makes, over a dict of ClusterRoleBindings."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}

    async def get(self, info: Any, ns: str, name: str) -> dict[str, Any]:
        if name not in self.objs:
            raise errors.NotFound(message=name)
        return self.objs[name]

    async def delete(self, info: Any, ns: str, name: str, opts: Any) -> None:
        del self.objs[name]


def netagent_binding(**annotations: str) -> dict[str, Any]:
    labels = dict([rbac.BOOTSTRAP_LABEL])
    return {"metadata": {"name": "system:netagent", "labels": labels,
                         "annotations": annotations}}


async def test_the_retired_shared_netagent_binding_is_removed() -> None:
    """Issue 20: a cluster upgraded in place had system:netagent bound to one user shared by
    every node's agent; the bootstrap policy deletes it, unless an operator took it over or it
    is somebody's own binding of that name."""
    assert "system:netagent" not in {b["metadata"]["name"] for b in bp.cluster_role_bindings()}
    assert "system:netagent" in bp.RETIRED_BINDINGS
    old = Bindings(netagent_binding(**{rbac.AUTOUPDATE_ANNOTATION: "true"}))
    await bp._retire(old, "system:netagent")  # type: ignore[arg-type]
    assert old.objs == {}
    await bp._retire(old, "system:netagent")  # type: ignore[arg-type]  # idempotent
    kept = Bindings(netagent_binding(**{rbac.AUTOUPDATE_ANNOTATION: "false"}))
    await bp._retire(kept, "system:netagent")  # type: ignore[arg-type]
    assert list(kept.objs) == ["system:netagent"]
    own = Bindings({"metadata": {"name": "system:netagent"}})
    await bp._retire(own, "system:netagent")  # type: ignore[arg-type]
    assert list(own.objs) == ["system:netagent"]


def test_netagent_rules_are_read_nodes_and_patch_nodes() -> None:
    role = next(r for r in bp.cluster_roles() if r["metadata"]["name"] == "system:netagent")
    assert role["rules"] == [rule(["get", "list", "watch"], [""], ["nodes"]),
                             rule(["patch"], [""], ["nodes"])]
    proxier = next(r for r in bp.cluster_roles()
                   if r["metadata"]["name"] == "system:node-proxier")
    writes = [r for r in proxier["rules"]
              if set(r["verbs"]) - {"get", "list", "watch"} and r["resources"] != ["events"]]
    assert writes == []  # kube-proxy writes nothing but events
