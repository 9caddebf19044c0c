"""Authorization: the chain, upstream's refusal wording, the Node authorizer's graph, and
impersonation checks."""

from __future__ import annotations

from typing import Any

import pytest

from api import errors
from apiserver.auth import Attributes, Credentials, Decision, UserInfo
from apiserver.authn import Authenticator, user_from_certificate
from apiserver.authz import (
    AlwaysAllow,
    NetAgentAuthorizer,
    NodeAuthorizer,
    PrivilegedGroups,
    UnionAuthorizer,
    build,
    forbidden,
    pod_references,
)
from tests.unit.apiserver.security_fakes import cache_with, node_user, pod

ALICE = UserInfo("alice", ("dev", "system:authenticated"))


def test_forbidden_messages_read_like_upstream() -> None:
    e = forbidden(Attributes(ALICE, "get", resource="pods", namespace="default", name="x"))
    assert e.message == ('pods "x" is forbidden: User "alice" cannot get resource "pods" in API '
                         'group "" in the namespace "default"')
    e = forbidden(Attributes(ALICE, "list", resource="nodes"))
    assert e.message == ('nodes is forbidden: User "alice" cannot list resource "nodes" in API '
                         'group "" at the cluster scope')
    e = forbidden(Attributes(ALICE, "update", resource="deployments", subresource="scale",
                             api_group="apps", namespace="ns", name="web"), "because")
    assert e.message == ('deployments.apps "web" is forbidden: User "alice" cannot update '
                         'resource "deployments/scale" in API group "apps" in the namespace '
                         '"ns": because')
    e = forbidden(Attributes(ALICE, "get", path="/api"))
    assert e.message == 'forbidden: User "alice" cannot get path "/api"'
    assert e.code == 403


class Fixed:
    def __init__(self, allowed: bool, reason: str = "") -> None:
        self.d = Decision(allowed, reason)
        self.calls = 0

    def authorize(self, attrs: Attributes) -> Decision:
        self.calls += 1
        return self.d


def test_union_first_allow_wins_and_refusals_collect_reasons() -> None:
    a, b, c = Fixed(False, "no a"), Fixed(True), Fixed(True)
    assert UnionAuthorizer([a, b, c]).authorize(Attributes(ALICE, "get")).allowed
    assert c.calls == 0
    d = UnionAuthorizer([Fixed(False, "no a"), Fixed(False), Fixed(False, "no c")]).authorize(
        Attributes(ALICE, "get"))
    assert not d.allowed and d.reason == "no a\nno c"


def test_masters_may_do_anything_others_go_down_the_chain() -> None:
    admin = UserInfo("kubernetes-admin", ("system:masters",))
    assert PrivilegedGroups().authorize(Attributes(admin, "delete", resource="nodes")).allowed
    assert not PrivilegedGroups().authorize(Attributes(ALICE, "get", resource="pods")).allowed
    assert AlwaysAllow().authorize(Attributes(ALICE, "delete", resource="nodes")).allowed


def test_build_rejects_unknown_and_duplicate_modes() -> None:
    cache = cache_with()
    with pytest.raises(ValueError, match="--authorization-mode: unknown mode \"ABAC\""):
        build(["ABAC"], cache)
    with pytest.raises(ValueError, match="twice"):
        build(["RBAC", "RBAC"], cache)
    authz = build(["Node", "RBAC"], cache)
    admin = UserInfo("kubernetes-admin", ("system:masters",))
    assert authz.authorize(Attributes(admin, "delete", resource="nodes", name="n1")).allowed
    assert not authz.authorize(Attributes(ALICE, "delete", resource="nodes", name="n1")).allowed


# --- the Node authorizer ------------------------------------------------------------------

def node_cache() -> Any:
    return cache_with(
        ("pods", pod("web", "n1", volumes=[
            {"name": "v", "secret": {"secretName": "tls"}},
            {"name": "c", "configMap": {"name": "conf"}},
            {"name": "p", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "proj", "projected": {"sources": [{"secret": {"name": "proj-secret"}}]}}],
            serviceAccountName="builder", imagePullSecrets=[{"name": "regcred"}],
            containers=[{"name": "c", "image": "i",
                         "env": [{"name": "A", "valueFrom": {
                             "secretKeyRef": {"name": "env-secret", "key": "k"}}}],
                         "envFrom": [{"configMapRef": {"name": "env-conf"}}]}])),
        ("pods", pod("other", "n2", volumes=[{"name": "v", "secret": {"secretName": "n2-only"}}])),
        ("pods", pod("pending", volumes=[{"name": "v", "secret": {"secretName": "unbound"}}])),
    )


def can(authz: NodeAuthorizer, verb: str, resource: str, name: str = "", ns: str = "default",
        sub: str = "", group: str = "", user: UserInfo | None = None) -> bool:
    return authz.authorize(Attributes(user or node_user("n1"), verb, resource=resource,
                                      subresource=sub, api_group=group, namespace=ns,
                                      name=name)).allowed


@pytest.mark.parametrize("resource,name", [
    ("secrets", "tls"), ("secrets", "regcred"), ("secrets", "env-secret"),
    ("secrets", "proj-secret"), ("configmaps", "conf"), ("configmaps", "env-conf"),
    ("persistentvolumeclaims", "data"), ("serviceaccounts", "builder"),
])
def test_node_reads_what_its_pods_reference(resource: str, name: str) -> None:
    assert can(NodeAuthorizer(node_cache()), "get", resource, name)


@pytest.mark.parametrize("verb,resource,name,ns", [
    ("get", "secrets", "n2-only", "default"),     # another node's pod's secret
    ("get", "secrets", "unbound", "default"),     # a pod bound to no node
    ("get", "secrets", "tls", "other-ns"),        # same name, another namespace
    ("list", "secrets", "", "default"),           # no listing, even in its namespaces
    ("watch", "configmaps", "", "default"),
    ("update", "secrets", "tls", "default"),      # read only
    ("list", "secrets", "", ""),
])
def test_node_is_refused_what_its_pods_do_not_reference(verb: str, resource: str, name: str,
                                                        ns: str) -> None:
    assert not can(NodeAuthorizer(node_cache()), verb, resource, name, ns)


def test_node_static_rules_leases_and_tokens() -> None:
    a = NodeAuthorizer(node_cache())
    assert can(a, "update", "nodes", "n1", ns="")
    assert can(a, "patch", "nodes", "n1", ns="", sub="status")
    assert can(a, "update", "pods", "web", sub="status")
    assert can(a, "watch", "pods", ns="")
    assert not can(a, "update", "deployments", "web", group="apps")
    assert not can(a, "delete", "nodes", "n2", ns="")
    assert can(a, "update", "leases", "n1", ns="kube-node-lease", group="coordination.k8s.io")
    assert can(a, "create", "leases", "", ns="kube-node-lease", group="coordination.k8s.io")
    assert not can(a, "update", "leases", "n2", ns="kube-node-lease",
                   group="coordination.k8s.io")
    assert not can(a, "get", "leases", "n1", ns="default", group="coordination.k8s.io")
    assert can(a, "create", "serviceaccounts", "builder", sub="token")
    assert not can(a, "create", "serviceaccounts", "default", sub="token")


def test_node_authorizer_has_no_opinion_on_other_users() -> None:
    a = NodeAuthorizer(node_cache())
    assert not can(a, "get", "pods", "web", user=ALICE)
    assert a.authorize(Attributes(ALICE, "get", resource="pods")).reason == ""
    # In system:nodes but not named like a node, or named like one outside the group.
    assert not can(a, "get", "pods", user=UserInfo("system:node:n1", ("system:authenticated",)))
    assert not can(a, "get", "pods", user=UserInfo("kubelet", ("system:nodes",)))


# --- a node's network agent ---------------------------------------------------------------

NETAGENT = UserInfo("system:netagent:n1", ("system:netagents", "system:authenticated"))


def agent_can(verb: str, resource: str, name: str = "", sub: str = "", ns: str = "",
              user: UserInfo = NETAGENT) -> bool:
    return NetAgentAuthorizer().authorize(Attributes(
        user, verb, resource=resource, subresource=sub, namespace=ns, name=name)).allowed


def test_netagent_reads_nodes_and_patches_only_its_own() -> None:
    for verb in ("get", "list", "watch"):
        assert agent_can(verb, "nodes", "n2" if verb == "get" else "")
    assert agent_can("patch", "nodes", "n1")
    assert not agent_can("patch", "nodes", "n2")  # issue 20: another worker's Node
    assert not agent_can("patch", "nodes", "")    # a patch always names its object
    for verb in ("update", "create", "delete", "deletecollection"):
        assert not agent_can(verb, "nodes", "n1")
    assert not agent_can("patch", "nodes", "n1", sub="status")
    assert not agent_can("get", "pods", "web", ns="default")
    assert not agent_can("get", "secrets", "tls", ns="default")
    assert not agent_can("create", "events", ns="default")
    d = NetAgentAuthorizer().authorize(Attributes(NETAGENT, "patch", resource="nodes",
                                                  name="n2"))
    assert d.reason == 'node network agent "n1" may only modify its own Node'


def test_netagent_authorizer_has_no_opinion_on_others() -> None:
    assert not agent_can("get", "nodes", "n1", user=ALICE)
    assert not agent_can("get", "nodes", "n1", user=node_user("n1"))
    # Named like an agent outside the group, or in the group without a node's name.
    assert not agent_can("get", "nodes", user=UserInfo("system:netagent:n1", ()))
    assert not agent_can("get", "nodes", user=UserInfo("system:netagent", ("system:netagents",)))
    assert not agent_can("get", "nodes", user=UserInfo("system:netagent:", ("system:netagents",)))
    # and the Node authorizer has none on agents: they are not kubelets.
    assert not can(NodeAuthorizer(node_cache()), "get", "nodes", "n1", ns="", user=NETAGENT)


def test_node_mode_includes_the_netagent_authorizer() -> None:
    authz = build(["Node", "RBAC"], cache_with())
    assert authz.authorize(Attributes(NETAGENT, "patch", resource="nodes", name="n1")).allowed
    assert not authz.authorize(Attributes(NETAGENT, "patch", resource="nodes",
                                          name="n2")).allowed


def test_refusal_says_why() -> None:
    d = NodeAuthorizer(node_cache()).authorize(
        Attributes(node_user("n1"), "get", resource="secrets", namespace="default",
                   name="n2-only"))
    assert d.reason == "no relationship found between node 'n1' and this object"


def test_pod_references_cover_env_volumes_and_pull_secrets() -> None:
    p = node_cache().get("pods", "default/web")
    assert pod_references(p, "secrets") == {"tls", "regcred", "env-secret", "proj-secret"}
    assert pod_references(p, "configmaps") == {"conf", "env-conf"}
    assert pod_references(p, "persistentvolumeclaims") == {"data"}


# --- authentication and impersonation -----------------------------------------------------

def test_certificate_user_is_cn_and_groups_are_o() -> None:
    from client import pki

    ca = pki.new_ca("test-ca")
    leaf = pki.issue(ca, "system:node:n1", organizations=("system:nodes",), client=True)
    user = user_from_certificate(leaf.cert_pem)
    assert user.name == "system:node:n1"
    assert user.groups == ("system:nodes", "system:authenticated")


async def test_no_credentials_is_unauthorized_and_insecure_is_admin() -> None:
    with pytest.raises(errors.Unauthorized, match="^Unauthorized$"):
        await Authenticator(tokens=None).authenticate(Credentials())
    with pytest.raises(errors.Unauthorized):  # a token, but no verifier to check it with
        await Authenticator(tokens=None).authenticate(Credentials(token="abc"))
    user = await Authenticator(tokens=None, insecure=True).authenticate(Credentials())
    assert user.name == "system:insecure" and user.in_group("system:masters")


class Rules:
    """Allows exactly the (verb, resource, namespace, name) tuples given."""

    def __init__(self, *allowed: tuple[str, str, str, str]) -> None:
        self.allowed = set(allowed)
        self.asked: list[Attributes] = []

    def authorize(self, attrs: Attributes) -> Decision:
        self.asked.append(attrs)
        return Decision((attrs.verb, attrs.resource, attrs.namespace, attrs.name) in self.allowed)


def md(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return pairs


def test_impersonation_checks_each_part_like_upstream() -> None:
    authn = Authenticator(tokens=None)
    rules = Rules(("impersonate", "users", "", "bob"), ("impersonate", "groups", "", "ops"))
    assert authn.impersonate(ALICE, md(), rules) is None
    bob = authn.impersonate(ALICE, md(("impersonate-user", "bob"), ("impersonate-group", "ops")),
                            rules)
    assert bob == UserInfo("bob", ("ops", "system:authenticated"))
    with pytest.raises(errors.Forbidden) as e:
        authn.impersonate(ALICE, md(("impersonate-user", "bob"),
                                    ("impersonate-group", "system:masters")), rules)
    assert e.value.message == ('groups "system:masters" is forbidden: User "alice" cannot '
                               'impersonate resource "groups" in API group "" at the cluster '
                               "scope")
    with pytest.raises(errors.BadRequest):
        authn.impersonate(ALICE, md(("impersonate-group", "ops"),), rules)


def test_impersonating_a_service_account_checks_it_in_its_namespace() -> None:
    authn = Authenticator(tokens=None)
    rules = Rules(("impersonate", "serviceaccounts", "ci", "builder"))
    user = authn.impersonate(ALICE, md(("impersonate-user", "system:serviceaccount:ci:builder"),),
                             rules)
    assert user is not None
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ci",
                           "system:authenticated")
    with pytest.raises(errors.Forbidden, match='in the namespace "ci"'):
        authn.impersonate(ALICE, md(("impersonate-user", "system:serviceaccount:ci:deployer"),),
                          rules)
