"""Authorization: which authorizers answer "may this user do this?", in which order, and how
a refusal reads.

kube-apiserver asks a chain of authorizers (`--authorization-mode`, default `Node,RBAC`), after
one it always puts first: members of `system:masters` may do anything, so the admin credential
works even with an empty or broken RBAC policy. The first authorizer that allows wins; RBAC has
no deny rules, so "not allowed" only means "ask the next one".

The Node authorizer is what keeps a stolen kubelet credential from being a cluster credential:
a node (user `system:node:NAME` in group `system:nodes`) gets the static `system:node` rules,
except that secrets, configmaps, persistentvolumeclaims and serviceaccounts are readable only
when a pod bound to that node references them (upstream computes this from a graph of
pod → secret/configmap/pvc/serviceaccount edges; here it is read from the pods in the watch
cache). What a node may *write* is narrowed further by the NodeRestriction admission plugin.

The same mode authorizes each node's network agent (`system:netagent:NAME` in group
`system:netagents`, tinykube's own identity for flannel's role): it may read Nodes and patch
only its own, so a credential stolen from one worker cannot cordon or re-address another
(issue 20); NetAgentRestriction then narrows the patch to flannel's annotations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from api import errors
from api.resources import RESOURCES
from apiserver.auth import (
    NETAGENT_USER_PREFIX,
    NETAGENTS_GROUP,
    NODE_USER_PREFIX,
    NODES_GROUP,
    SYSTEM_MASTERS,
    Attributes,
    Authorizer,
    Decision,
    UserInfo,
)
from apiserver.bootstrap_policy import NETAGENT_RULES, NODE_RULES
from apiserver.rbac import RBACAuthorizer, rule_allows
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]
MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")
NODE_LEASE_NAMESPACE = "kube-node-lease"


def forbidden(attrs: Attributes, reason: str = "") -> errors.Forbidden:
    """The refusal in upstream's words (responsewriters.forbiddenMessage + NewForbidden):
    `pods "x" is forbidden: User "u" cannot get resource "pods" in API group "" in the
    namespace "default"`."""
    user = attrs.user.name
    if not attrs.is_resource_request:
        why = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = (f'in the namespace "{attrs.namespace}"' if attrs.namespace
                 else "at the cluster scope")
        why = (f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group '
               f'"{attrs.api_group}" {where}')
    if reason:
        why = f"{why}: {reason}"
    if not attrs.is_resource_request:
        return errors.Forbidden(message=f"forbidden: {why}")
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    what = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return errors.Forbidden(message=f"{what} is forbidden: {why}", kind=attrs.resource,
                            name=attrs.name, group=attrs.api_group)


def require(authorizer: Authorizer, attrs: Attributes) -> None:
    """Ask the authorizer; Forbidden in upstream's words unless it allows."""
    decision = authorizer.authorize(attrs)
    if not decision.allowed:
        raise forbidden(attrs, decision.reason)


class AlwaysAllow:
    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(True)


class AlwaysDeny:
    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(False, "Everything is forbidden.")


class PrivilegedGroups:
    """Members of these groups (system:masters) may do anything."""

    def __init__(self, groups: Sequence[str] = (SYSTEM_MASTERS,)) -> None:
        self.groups = tuple(groups)

    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(any(attrs.user.in_group(g) for g in self.groups))


class UnionAuthorizer:
    """Ask each authorizer in turn; the first allow wins, the refusal collects the reasons."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = list(authorizers)

    def authorize(self, attrs: Attributes) -> Decision:
        reasons = []
        for a in self.authorizers:
            d = a.authorize(attrs)
            if d.allowed:
                return d
            if d.reason:
                reasons.append(d.reason)
        return Decision(False, "\n".join(reasons))


def build(modes: Sequence[str], cache: WatchCache,
          rbac: RBACAuthorizer | None = None) -> Authorizer:
    """The authorizer chain for --authorization-mode, system:masters first.

    `rbac`: the RBAC authorizer to use for mode RBAC, when the caller shares it (its binding
    index) with the escalation check; by default a new one."""
    chain: list[Authorizer] = [PrivilegedGroups()]
    seen: set[str] = set()
    for mode in modes:
        if mode in seen:
            raise ValueError(f'--authorization-mode: "{mode}" is listed twice')
        seen.add(mode)
        if mode == "AlwaysAllow":
            chain.append(AlwaysAllow())
        elif mode == "AlwaysDeny":
            chain.append(AlwaysDeny())
        elif mode == "Node":
            chain += [NodeAuthorizer(cache), NetAgentAuthorizer()]
        elif mode == "RBAC":
            chain.append(rbac or RBACAuthorizer(cache))
        else:
            raise ValueError(f'--authorization-mode: unknown mode "{mode}" (supported: '
                             f"{', '.join(MODES)})")
    if not modes:
        raise ValueError("--authorization-mode: at least one mode is required")
    return UnionAuthorizer(chain)


# --- the Node authorizer ------------------------------------------------------------------

def node_name(user: UserInfo | None) -> str | None:
    """The node a user is (upstream's NodeIdentity): `system:node:NAME` in `system:nodes`.
    None: not a node; "": claims to be a node but names none."""
    if user is None or not user.in_group(NODES_GROUP):
        return None
    if not user.name.startswith(NODE_USER_PREFIX):
        return None
    return user.name[len(NODE_USER_PREFIX):]


def netagent_node(user: UserInfo | None) -> str | None:
    """The node whose network agent a user is: `system:netagent:NAME` in `system:netagents`.
    None: not a network agent; "": claims to be one but names no node."""
    if user is None or not user.in_group(NETAGENTS_GROUP):
        return None
    if not user.name.startswith(NETAGENT_USER_PREFIX):
        return None
    return user.name[len(NETAGENT_USER_PREFIX):]


class NetAgentAuthorizer:
    """A node's network agent: the `system:netagent` rules, every write on its own Node only.

    The name check is here rather than only in admission (as for kubelets' Node writes)
    because every write the agent makes names its object: so `auth can-i patch nodes/other`
    answers no, as the write would."""

    def __init__(self, rules: Sequence[Obj] | None = None) -> None:
        self.rules = list(rules) if rules is not None else list(NETAGENT_RULES)

    def authorize(self, attrs: Attributes) -> Decision:
        node = netagent_node(attrs.user)
        if node is None:
            return Decision(False)
        if not node:
            return Decision(False, "unknown node")
        if not any(rule_allows(attrs, r) for r in self.rules):
            return Decision(False)
        if attrs.verb not in ("get", "list", "watch") and attrs.name != node:
            return Decision(False, f'node network agent "{node}" may only modify its own '
                            "Node")
        return Decision(True)


class NodeAuthorizer:
    """Upstream's Node authorization mode, for the resources tinykube has."""

    def __init__(self, cache: WatchCache, rules: Sequence[Obj] | None = None) -> None:
        self.cache = cache
        self.rules = list(rules) if rules is not None else list(NODE_RULES)

    def authorize(self, attrs: Attributes) -> Decision:
        node = node_name(attrs.user)
        if node is None:
            return Decision(False)
        if not node:
            return Decision(False, "unknown node")
        if attrs.is_resource_request and attrs.api_group == "":
            if attrs.resource in ("secrets", "configmaps"):
                return self._read_referenced(node, attrs)
            if attrs.resource == "persistentvolumeclaims":
                return self._get_referenced(node, attrs)
            if attrs.resource == "serviceaccounts":
                return self._service_account(node, attrs)
        if attrs.is_resource_request and (attrs.api_group, attrs.resource) == (
                "coordination.k8s.io", "leases"):
            return self._lease(node, attrs)
        if any(rule_allows(attrs, r) for r in self.rules):
            return Decision(True)
        return Decision(False)

    def _read_referenced(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "list", "watch"):
            return Decision(False, "can only read resources of this type")
        if attrs.subresource:
            return Decision(False, "cannot read subresource")
        if not attrs.namespace:
            return Decision(False, "can only read namespaced object of this type")
        return self._related(node, attrs)

    def _get_referenced(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb != "get":
            return Decision(False, "can only get individual resources of this type")
        if attrs.subresource:
            return Decision(False, "cannot get subresource")
        return self._related(node, attrs)

    def _service_account(self, node: str, attrs: Attributes) -> Decision:
        # Upstream lets a node only create tokens (for the pods it runs); reading the
        # ServiceAccount itself is allowed here too, on the same condition.
        if attrs.verb == "get" and not attrs.subresource:
            return self._related(node, attrs)
        if attrs.verb != "create" or not attrs.name:
            return Decision(False, "can only create tokens for individual service accounts")
        if attrs.subresource != "token":
            return Decision(False, "can only create token subresource of serviceaccount")
        return self._related(node, attrs)

    def _lease(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision(False, "can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return Decision(False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" '
                            "system namespace")
        # A create names no object here; NodeRestriction checks the new lease's name.
        if attrs.verb != "create" and attrs.name != node:
            return Decision(False, "can only access node lease with the same name as the "
                            "requesting node")
        return Decision(True)

    def _related(self, node: str, attrs: Attributes) -> Decision:
        no = Decision(False, f"no relationship found between node '{node}' and this object")
        if not attrs.name:
            return Decision(False, "No Object name found")
        for pod in self._pods_on(node, attrs.namespace):
            if attrs.name in pod_references(pod, attrs.resource):
                return Decision(True)
        return no

    def _pods_on(self, node: str, namespace: str) -> list[Obj]:
        items, _ = self.cache.list(
            "pods", namespace, lambda p: (p.get("spec") or {}).get("nodeName") == node)
        return items


def pod_references(pod: Obj, resource: str) -> set[str]:
    """Names of the `resource` objects (secrets, configmaps, persistentvolumeclaims,
    serviceaccounts) a pod uses (upstream podutil.VisitPod*Names)."""
    spec = pod.get("spec") or {}
    if resource == "serviceaccounts":
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
        return {sa} if sa else set()
    visit = _VISITORS.get(resource)
    return set(visit(pod)) if visit else set()


def _containers(spec: Obj) -> Iterator[Obj]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or ()


def _projected(volume: Obj, kind: str) -> Iterator[str]:
    for src in (volume.get("projected") or {}).get("sources") or ():
        name = (src.get(kind) or {}).get("name")
        if name:
            yield name


def _secret_names(pod: Obj) -> Iterator[str]:
    spec = pod.get("spec") or {}
    for ref in spec.get("imagePullSecrets") or ():
        if ref.get("name"):
            yield ref["name"]
    for c in _containers(spec):
        for env in c.get("envFrom") or ():
            if (env.get("secretRef") or {}).get("name"):
                yield env["secretRef"]["name"]
        for env in c.get("env") or ():
            ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
            if ref.get("name"):
                yield ref["name"]
    for v in spec.get("volumes") or ():
        if (v.get("secret") or {}).get("secretName"):
            yield v["secret"]["secretName"]
        yield from _projected(v, "secret")
        for source in v.values():  # cephfs, csi, flexVolume, rbd, iscsi: a secretRef each
            if isinstance(source, dict):
                for key in ("secretRef", "nodePublishSecretRef"):
                    if (source.get(key) or {}).get("name"):
                        yield source[key]["name"]


def _configmap_names(pod: Obj) -> Iterator[str]:
    spec = pod.get("spec") or {}
    for c in _containers(spec):
        for env in c.get("envFrom") or ():
            if (env.get("configMapRef") or {}).get("name"):
                yield env["configMapRef"]["name"]
        for env in c.get("env") or ():
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name"):
                yield ref["name"]
    for v in spec.get("volumes") or ():
        if (v.get("configMap") or {}).get("name"):
            yield v["configMap"]["name"]
        yield from _projected(v, "configMap")


def _pvc_names(pod: Obj) -> Iterator[str]:
    pod_name = (pod.get("metadata") or {}).get("name", "")
    for v in (pod.get("spec") or {}).get("volumes") or ():
        if (v.get("persistentVolumeClaim") or {}).get("claimName"):
            yield v["persistentVolumeClaim"]["claimName"]
        if v.get("ephemeral"):
            yield f"{pod_name}-{v.get('name', '')}"  # generic ephemeral volumes' claim name


_VISITORS: dict[str, Callable[[Obj], Iterator[str]]] = {
    "secrets": _secret_names, "configmaps": _configmap_names, "persistentvolumeclaims": _pvc_names,
}


def resource_group(resource: str) -> str:
    """The API group of a resource by its plural name ("" if unknown: the core group)."""
    info = RESOURCES.get(resource)
    return info.group if info else ""
