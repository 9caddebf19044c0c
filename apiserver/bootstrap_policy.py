"""The bootstrap RBAC policy: the ClusterRoles and ClusterRoleBindings a cluster starts with.

With RBAC on, nothing is allowed until some binding says so; so the apiserver itself writes, at
every start, the roles its own components need (scheduler, controller-manager, proxy, netagent,
nodes), the user-facing roles (cluster-admin, admin, edit, view) and the bindings that make the
admin certificate's group `system:masters` all-powerful and let every authenticated user discover
the API and ask what they may do. Modelled on upstream's
plugin/pkg/auth/authorizer/rbac/bootstrappolicy (policy.go, controller_policy.go), restricted to
the resources tinykube serves (plus the subresources its design names: logs, exec, eviction).

Like upstream, the policy is reconciled rather than just created: a bootstrap object that was
deleted comes back, and one that lost rules (or subjects) gets them back, on the next apiserver
start; extra rules someone added are kept. An object annotated
`rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone, which is how an operator
takes over a default role.

Deviations: upstream's admin/edit/view are aggregated from `system:aggregate-to-*` roles by a
controller; tinykube has no aggregation controller, so they carry their rules directly. The
controller-manager runs every controller under one identity (upstream's
--use-service-account-credentials=false), so `system:kube-controller-manager` holds what all of
its controllers need.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import TYPE_CHECKING, Any

from api import errors, rbac
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES
from apiserver.auth import AUTHENTICATED, SYSTEM_MASTERS, UNAUTHENTICATED
from apiserver.rbac import compact_rules, covers

if TYPE_CHECKING:  # the Node authorizer imports NODE_RULES without pulling in the registry
    from apiserver.registry import Registry

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Rule = dict[str, Any]

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = READ + WRITE

CORE = ""
APPS = "apps"
COORDINATION = "coordination.k8s.io"
EVENTS = "events.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"


def rule(verbs: tuple[str, ...] | str, groups: tuple[str, ...] | str = (),
         resources: tuple[str, ...] | str = (), names: tuple[str, ...] | str = (),
         urls: tuple[str, ...] | str = ()) -> Rule:
    """A PolicyRule in its JSON form (upstream's rbacv1helpers.NewRule builder)."""
    def seq(v: tuple[str, ...] | str) -> list[str]:
        return [v] if isinstance(v, str) else list(v)
    out: Rule = {"verbs": seq(verbs)}
    if urls:
        out["nonResourceURLs"] = seq(urls)
        return out
    out["apiGroups"] = seq(groups)
    out["resources"] = seq(resources)
    if names:
        out["resourceNames"] = seq(names)
    return out


def _events_rule() -> Rule:
    return rule(("create", "update", "patch"), (CORE, EVENTS), "events")


# The rules of `system:node`, which no binding grants: the Node authorizer (apiserver/authz.py)
# applies them to users system:node:<name> in group system:nodes, narrowing secrets, configmaps
# and service account tokens to what pods bound to that node reference, and NodeRestriction
# narrows writes to the node's own objects (upstream bootstrappolicy.NodeRules).
NODE_RULES: tuple[Rule, ...] = (
    # Non-mutating checks of API access.
    rule("create", AUTHENTICATION, "tokenreviews"),
    rule("create", AUTHORIZATION, ("subjectaccessreviews", "localsubjectaccessreviews")),
    # Services build the pods' environment variables.
    rule(READ, CORE, "services"),
    # Register the Node and report its status.
    rule(("create", "get", "list", "watch"), CORE, "nodes"),
    rule(("update", "patch"), CORE, "nodes/status"),
    rule(("update", "patch"), CORE, "nodes"),
    rule(("create", "update", "patch"), CORE, "events"),
    # Pods bound to the node: watch them, report their status, delete them when they finished
    # terminating, evict them.
    rule(READ, CORE, "pods"),
    rule(("create", "delete"), CORE, "pods"),
    rule(("update", "patch"), CORE, "pods/status"),
    rule("create", CORE, "pods/eviction"),
    # Volumes and environment from secrets and configmaps (narrowed by the Node authorizer).
    rule(READ, CORE, ("secrets", "configmaps")),
    rule("get", CORE, ("persistentvolumeclaims", "persistentvolumes")),
    rule("get", CORE, "endpoints"),
    # The node's heartbeat Lease in kube-node-lease.
    rule(("get", "create", "update", "patch", "delete"), COORDINATION, "leases"),
    # Projected service account tokens for its pods.
    rule("create", CORE, "serviceaccounts/token"),
)

# The rules of `system:netagent`, which no binding grants either: the Node authorizer applies
# them to users system:netagent:<name> in group system:netagents (each node's tk-netagent),
# narrowing the patch to that node's own Node, and NetAgentRestriction (noderestriction.py)
# narrows what the patch may change to flannel's annotations. Upstream's flannel reads nodes
# and patches `nodes/status` (its node strategy keeps metadata changes made through status);
# here the status subresource changes only status, so the agent patches the Node itself.
NETAGENT_RULES: tuple[Rule, ...] = (
    # The Node informer: every node's podCIDR and VTEP annotations.
    rule(READ, CORE, "nodes"),
    # Publishing its own VTEP MAC and public IP (flannel.alpha.coreos.com/* annotations).
    rule("patch", CORE, "nodes"),
)

_VIEW_RULES: tuple[Rule, ...] = (
    rule(READ, CORE, ("pods", "replicationcontrollers", "replicationcontrollers/scale",
                      "serviceaccounts", "services", "services/status", "endpoints",
                      "configmaps")),
    rule(READ, CORE, ("events", "pods/status", "namespaces/status",
                      "replicationcontrollers/status", "pods/log")),
    # Read access to namespaces at namespace scope: reading *this* namespace.
    rule(READ, CORE, "namespaces"),
    rule(READ, APPS, ("deployments", "deployments/scale", "deployments/status", "replicasets",
                      "replicasets/scale", "replicasets/status")),
)

_EDIT_RULES: tuple[Rule, ...] = (
    rule(READ, CORE, ("pods/attach", "pods/exec", "secrets")),
    rule("impersonate", CORE, "serviceaccounts"),
    rule(WRITE, CORE, ("pods", "pods/attach", "pods/exec")),
    rule("create", CORE, "pods/eviction"),
    rule(WRITE, CORE, ("replicationcontrollers", "replicationcontrollers/scale",
                       "serviceaccounts", "services", "configmaps", "secrets", "events")),
    rule("create", CORE, "serviceaccounts/token"),
    rule(WRITE, APPS, ("deployments", "deployments/scale", "replicasets", "replicasets/scale")),
)

_ADMIN_RULES: tuple[Rule, ...] = (
    rule("create", AUTHORIZATION, "localsubjectaccessreviews"),
    rule(READ_WRITE, rbac.GROUP, ("roles", "rolebindings")),
)

_SCHEDULER_RULES: tuple[Rule, ...] = (
    _events_rule(),
    # Leader election.
    rule("create", COORDINATION, "leases"),
    rule(("get", "update"), COORDINATION, "leases", "kube-scheduler"),
    rule(READ, CORE, "nodes"),
    # Delete: preemption.
    rule(("get", "list", "watch", "delete"), CORE, "pods"),
    rule("create", CORE, ("pods/binding", "bindings")),
    rule(("patch", "update"), CORE, "pods/status"),
    # What selects pods (spreading of a controller's replicas).
    rule(READ, CORE, ("services", "replicationcontrollers")),
    rule(READ, APPS, "replicasets"),
    rule(READ, CORE, "namespaces"),
    rule("create", AUTHENTICATION, "tokenreviews"),
    rule("create", AUTHORIZATION, "subjectaccessreviews"),
)

_CONTROLLER_MANAGER_RULES: tuple[Rule, ...] = (
    _events_rule(),
    rule("create", COORDINATION, "leases"),
    rule(("get", "update"), COORDINATION, "leases", "kube-controller-manager"),
    # Replication controller, replicaset and deployment controllers.
    rule(READ_WRITE, CORE, ("pods", "replicationcontrollers")),
    rule(("get", "update", "patch"), CORE, ("pods/status", "replicationcontrollers/status",
                                            "replicationcontrollers/scale")),
    rule(READ_WRITE, APPS, ("replicasets", "deployments")),
    rule(("get", "update", "patch"), APPS, ("replicasets/status", "replicasets/scale",
                                            "deployments/status", "deployments/scale")),
    # Endpoints controller.
    rule(READ_WRITE, CORE, "endpoints"),
    rule(READ, CORE, "services"),
    # Namespace controller.
    rule(("get", "list", "watch", "update", "patch", "delete"), CORE, "namespaces"),
    rule(("update",), CORE, ("namespaces/finalize", "namespaces/status")),
    # ServiceAccount controller and the root CA publisher.
    rule(("create", "get", "list", "watch", "update"), CORE, "serviceaccounts"),
    rule("create", CORE, "serviceaccounts/token"),
    rule(("create", "update"), CORE, "configmaps"),
    # Node lifecycle and IPAM controllers.
    rule(("get", "list", "watch", "update", "patch", "delete"), CORE, "nodes"),
    rule(("update", "patch"), CORE, "nodes/status"),
    rule("create", CORE, "pods/eviction"),
    rule(("update", "patch"), CORE, "pods/status"),
    # Garbage collector and namespace controller: everything, of every kind.
    rule(("get", "list", "watch", "patch", "update", "delete", "deletecollection"), "*", "*"),
    rule("create", AUTHENTICATION, "tokenreviews"),
    rule("create", AUTHORIZATION, "subjectaccessreviews"),
)


def _role(name: str, rules: tuple[Rule, ...]) -> Obj:
    return {
        "apiVersion": rbac.API_VERSION, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": dict([rbac.BOOTSTRAP_LABEL]),
                     "annotations": {rbac.AUTOUPDATE_ANNOTATION: "true"}},
        "rules": copy.deepcopy(list(rules)),
    }


def _binding(role: str, *, users: tuple[str, ...] = (), groups: tuple[str, ...] = ()) -> Obj:
    subjects = [{"kind": "User", "apiGroup": rbac.GROUP, "name": u} for u in users]
    subjects += [{"kind": "Group", "apiGroup": rbac.GROUP, "name": g} for g in groups]
    return {
        "apiVersion": rbac.API_VERSION, "kind": "ClusterRoleBinding",
        "metadata": {"name": role, "labels": dict([rbac.BOOTSTRAP_LABEL]),
                     "annotations": {rbac.AUTOUPDATE_ANNOTATION: "true"}},
        "roleRef": {"apiGroup": rbac.GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def cluster_roles() -> list[Obj]:
    """Every bootstrap ClusterRole, as JSON objects."""
    return [
        # The root role: anything, anywhere.
        _role("cluster-admin", (rule("*", "*", "*"), rule("*", urls="*"))),
        _role("admin", _VIEW_RULES + _EDIT_RULES + _ADMIN_RULES),
        _role("edit", _VIEW_RULES + _EDIT_RULES),
        _role("view", _VIEW_RULES),
        # Just enough to discover the API for version negotiation.
        _role("system:discovery", (rule("get", urls=(
            "/livez", "/readyz", "/healthz", "/version", "/version/", "/api", "/api/*",
            "/apis", "/apis/*", "/openapi", "/openapi/*")),)),
        _role("system:public-info-viewer", (rule("get", urls=(
            "/livez", "/readyz", "/healthz", "/version", "/version/")),)),
        _role("system:monitoring", (rule("get", urls=(
            "/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz", "/livez/*",
            "/readyz/*", "/healthz/*")),)),
        # What a normal user needs to learn about themselves.
        _role("system:basic-user", (
            rule("create", AUTHORIZATION, ("selfsubjectaccessreviews",
                                           "selfsubjectrulesreviews")),
            rule("create", AUTHENTICATION, "selfsubjectreviews"),
        )),
        _role("system:auth-delegator", (
            rule("create", AUTHENTICATION, "tokenreviews"),
            rule("create", AUTHORIZATION, "subjectaccessreviews"),
        )),
        _role("system:node", NODE_RULES),
        # kube-proxy (upstream's rules exactly): informers on services, endpoints and nodes;
        # it writes nothing but events.
        _role("system:node-proxier", (
            rule(("list", "watch"), CORE, ("services", "endpoints")),
            rule(READ, CORE, "nodes"),
            _events_rule(),
        )),
        # tinykube's flannel-like agent, like system:node: the Node authorizer applies these
        # rules to each node's agent, for its own Node only; unbound.
        _role("system:netagent", NETAGENT_RULES),
        # Everything a kubelet serves (upstream's system:kubelet-api-admin): what the
        # apiserver's kubelet client identity needs for pods/log and pods/exec, which the
        # kubelet checks with a SubjectAccessReview on nodes/proxy.
        _role("system:kubelet-api-admin", (
            rule(READ, CORE, "nodes"),
            rule("proxy", CORE, "nodes"),
            rule("*", CORE, ("nodes/proxy", "nodes/metrics", "nodes/spec", "nodes/stats",
                             "nodes/log")),
        )),
        _role("system:kube-scheduler", _SCHEDULER_RULES),
        _role("system:kube-controller-manager", _CONTROLLER_MANAGER_RULES),
    ]


def cluster_role_bindings() -> list[Obj]:
    """Every bootstrap ClusterRoleBinding (system:node and system:netagent are deliberately
    not bound: the Node authorizer applies them, per node)."""
    return [
        _binding("cluster-admin", groups=(SYSTEM_MASTERS,)),
        _binding("system:discovery", groups=(AUTHENTICATED,)),
        _binding("system:basic-user", groups=(AUTHENTICATED,)),
        _binding("system:public-info-viewer", groups=(AUTHENTICATED, UNAUTHENTICATED)),
        _binding("system:monitoring", groups=("system:monitoring",)),
        _binding("system:node-proxier", users=("system:kube-proxy",)),
        _binding("system:kube-scheduler", users=("system:kube-scheduler",)),
        # The apiserver's --kubelet-client-certificate identity (as kubeadm binds it).
        _binding("system:kubelet-api-admin", users=("kube-apiserver-kubelet-client",)),
        _binding("system:kube-controller-manager", users=("system:kube-controller-manager",)),
    ]


# Bootstrap bindings earlier versions made and this one does not: removed at start, unless an
# operator took them over (autoupdate "false"). `system:netagent` bound one cluster-wide
# identity, shared by every node's agent, that could patch any Node (issue 20); a cluster
# upgraded in place must not keep it working.
RETIRED_BINDINGS = ("system:netagent",)


# --- reconciliation -----------------------------------------------------------------------


def _protected(existing: Obj) -> bool:
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    return annotations.get(rbac.AUTOUPDATE_ANNOTATION) == "false"


def _merge_meta(existing: Obj, expected: Obj) -> Obj:
    """Expected labels and annotations, with the values of existing ones winning."""
    out = copy.deepcopy(existing)
    md, want = out.setdefault("metadata", {}), expected["metadata"]
    for key in ("labels", "annotations"):
        md[key] = {**want.get(key, {}), **(md.get(key) or {})}
    return out


def reconcile_role(existing: Obj, expected: Obj) -> Obj:
    """`existing` plus whatever `expected` grants that it lacks (extra rules are kept)."""
    out = _merge_meta(existing, expected)
    rules = list(out.get("rules") or [])
    ok, missing = covers(rules, expected.get("rules") or [])
    if not ok:
        out["rules"] = rules + compact_rules(missing)
    return out


def reconcile_binding(existing: Obj, expected: Obj) -> Obj:
    """`existing` plus the expected subjects it lacks (extra subjects are kept)."""
    out = _merge_meta(existing, expected)
    subjects = list(out.get("subjects") or [])
    have = {(s.get("kind"), s.get("name"), s.get("namespace") or "") for s in subjects}
    for s in expected.get("subjects") or []:
        if (s.get("kind"), s.get("name"), s.get("namespace") or "") not in have:
            subjects.append(s)
    out["subjects"] = subjects
    return out


async def _ensure_one(registry: Registry, resource: str, expected: Obj) -> None:
    info = RESOURCES[resource]
    name = expected["metadata"]["name"]
    for _ in range(8):
        try:
            existing = await registry.get(info, "", name)
        except errors.NotFound:
            try:
                await registry.create(info, "", json.dumps(expected).encode())
                log.info("created %s/%s", resource, name)
                return
            except errors.AlreadyExists:
                continue  # another apiserver was first: reconcile what it wrote
        if _protected(existing):
            return
        if resource == "clusterrolebindings" and existing.get("roleRef") != expected["roleRef"]:
            # roleRef is immutable: recreate (upstream's RequiresRecreate).
            try:
                await registry.delete(info, "", name, pb.DeleteOptions())
            except errors.NotFound:
                pass
            continue
        reconcile = reconcile_role if resource == "clusterroles" else reconcile_binding
        wanted = reconcile(existing, expected)
        if wanted == existing:
            return
        try:
            await registry.update(info, "", name, "", json.dumps(wanted).encode())
            log.info("reconciled %s/%s", resource, name)
            return
        except (errors.Conflict, errors.NotFound):
            continue
    log.warning("could not reconcile %s/%s: too many concurrent writers", resource, name)


async def ensure(registry: Registry) -> None:
    """Create or repair the bootstrap ClusterRoles and ClusterRoleBindings (idempotent).

    Runs as the apiserver itself (no user), so admission lets the writes through.
    """
    for role in cluster_roles():
        await _ensure_one(registry, "clusterroles", role)
    for binding in cluster_role_bindings():
        await _ensure_one(registry, "clusterrolebindings", binding)
    for name in RETIRED_BINDINGS:
        await _retire(registry, name)


async def _retire(registry: Registry, name: str) -> None:
    """Delete the bootstrap ClusterRoleBinding `name` if it is still ours to manage."""
    info = RESOURCES["clusterrolebindings"]
    try:
        existing = await registry.get(info, "", name)
    except errors.NotFound:
        return
    labels = (existing.get("metadata") or {}).get("labels") or {}
    key, value = rbac.BOOTSTRAP_LABEL
    if labels.get(key) != value or _protected(existing):
        return  # somebody's own binding of that name, or one an operator took over
    try:
        await registry.delete(info, "", name, pb.DeleteOptions())
        log.info("removed retired %s/%s", info.name, name)
    except errors.NotFound:
        pass
