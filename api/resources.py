"""The resource registry: which kinds exist, how they are named, and what each one supports.

One table that the apiserver (storage keys, subresources, field selectors, discovery), the client
(typed access, informers) and tkctl (short names, `api-resources`) all read, so that a resource is
added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api import apps, authentication, authorization, autoscaling, coordination, core, rbac
from api.errors import NotFound
from api.meta import TypedObject

# Field selectors every resource supports, as in Kubernetes.
_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True)
class ResourceInfo:
    """What Kubernetes' discovery says about a resource, plus the model that parses it."""

    name: str  # plural, the storage and URL name: "deployments"
    singular: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    model: type[TypedObject]
    short_names: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()  # "status", "scale", "binding"
    field_selectors: frozenset[str] = field(default=_META_FIELDS)
    # Whether a spec change bumps metadata.generation (kinds with a spec/status split).
    has_generation: bool = False
    # Create-only and never stored (the review kinds: SubjectAccessReview, TokenReview, ...):
    # the apiserver answers a create with the object and its status filled, and every other
    # verb is NotFound/MethodNotAllowed, as upstream's reviews are.
    virtual: bool = False
    # The propagation policy of a delete that names none (upstream's per-strategy
    # DefaultGarbageCollectionPolicy): "" keeps the object's own finalizers, "Orphan" orphans.
    default_propagation: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified_name(self) -> str:
        """`deployments.apps`, or `pods` for the core group."""
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def verbs(self) -> tuple[str, ...]:
        if self.virtual:
            return ("create",)
        return ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def _fields(*extra: str) -> frozenset[str]:
    return _META_FIELDS | frozenset(extra)


RESOURCES: dict[str, ResourceInfo] = {
    r.name: r
    for r in (
        ResourceInfo("namespaces", "namespace", "Namespace", "", "v1", False, core.Namespace,
                     ("ns",), frozenset({"status", "finalize"}), _fields("status.phase")),
        ResourceInfo("nodes", "node", "Node", "", "v1", False, core.Node, ("no",),
                     frozenset({"status"}), _fields("spec.unschedulable")),
        ResourceInfo("pods", "pod", "Pod", "", "v1", True, core.Pod, ("po",),
                     frozenset({"status", "binding", "eviction"}),
                     _fields("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                             "spec.serviceAccountName", "status.phase", "status.podIP",
                             "status.nominatedNodeName")),
        ResourceInfo("services", "service", "Service", "", "v1", True, core.Service, ("svc",),
                     frozenset({"status"})),
        ResourceInfo("endpoints", "endpoints", "Endpoints", "", "v1", True, core.Endpoints,
                     ("ep",)),
        ResourceInfo("replicationcontrollers", "replicationcontroller", "ReplicationController",
                     "", "v1", True, core.ReplicationController, ("rc",),
                     frozenset({"status", "scale"}), _fields("status.replicas"),
                     has_generation=True,
                     # core/v1 keeps its pods on delete, for backward compatibility.
                     default_propagation="Orphan"),
        ResourceInfo("serviceaccounts", "serviceaccount", "ServiceAccount", "", "v1", True,
                     core.ServiceAccount, ("sa",), frozenset({"token"})),
        ResourceInfo("events", "event", "Event", "", "v1", True, core.Event, ("ev",),
                     field_selectors=_fields(
                         "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion",
                         "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                         "reportingComponent", "source", "type")),
        ResourceInfo("configmaps", "configmap", "ConfigMap", "", "v1", True, core.ConfigMap,
                     ("cm",)),
        ResourceInfo("secrets", "secret", "Secret", "", "v1", True, core.Secret, (),
                     field_selectors=_fields("type")),
        ResourceInfo("replicasets", "replicaset", "ReplicaSet", "apps", "v1", True,
                     apps.ReplicaSet, ("rs",), frozenset({"status", "scale"}),
                     _fields("status.replicas"), has_generation=True),
        ResourceInfo("deployments", "deployment", "Deployment", "apps", "v1", True,
                     apps.Deployment, ("deploy",), frozenset({"status", "scale"}),
                     has_generation=True),
        ResourceInfo("leases", "lease", "Lease", "coordination.k8s.io", "v1", True,
                     coordination.Lease),
        ResourceInfo("roles", "role", "Role", rbac.GROUP, "v1", True, rbac.Role),
        ResourceInfo("clusterroles", "clusterrole", "ClusterRole", rbac.GROUP, "v1", False,
                     rbac.ClusterRole),
        ResourceInfo("rolebindings", "rolebinding", "RoleBinding", rbac.GROUP, "v1", True,
                     rbac.RoleBinding),
        ResourceInfo("clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding",
                     rbac.GROUP, "v1", False, rbac.ClusterRoleBinding),
        ResourceInfo("selfsubjectaccessreviews", "selfsubjectaccessreview",
                     "SelfSubjectAccessReview", authorization.GROUP, "v1", False,
                     authorization.SelfSubjectAccessReview, virtual=True),
        ResourceInfo("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview",
                     authorization.GROUP, "v1", False, authorization.SubjectAccessReview,
                     virtual=True),
        ResourceInfo("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview",
                     authentication.GROUP, "v1", False, authentication.SelfSubjectReview,
                     virtual=True),
        ResourceInfo("tokenreviews", "tokenreview", "TokenReview", authentication.GROUP, "v1",
                     False, authentication.TokenReview, virtual=True),
    )
}

# Kinds that are not stored resources but travel through subresources.
SCALE_MODEL = autoscaling.Scale
BINDING_MODEL = core.Binding
TOKEN_REQUEST_MODEL = authentication.TokenRequest  # the body of serviceaccounts/token


def _aliases() -> dict[str, ResourceInfo]:
    table: dict[str, ResourceInfo] = {}
    for r in RESOURCES.values():
        names = {r.name, r.singular, r.kind.lower(), *r.short_names}
        if r.group:
            names |= {f"{n}.{r.group}" for n in (r.name, r.singular, r.kind.lower())}
        for n in names:
            table[n] = r
    return table


_ALIASES = _aliases()


def lookup(name: str) -> ResourceInfo:
    """Resolve what a user typed (`po`, `pod`, `pods`, `Deployment`, `deployments.apps`).

    Raises NotFound with kubectl's wording for an unknown type.
    """
    info = _ALIASES.get(name.lower())
    if info is None:
        raise NotFound(
            message=f'the server doesn\'t have a resource type "{name}"', kind="resource"
        )
    return info


def for_kind(api_version: str, kind: str) -> ResourceInfo:
    """The resource a manifest's apiVersion + kind denote (as kubectl's RESTMapper does)."""
    for r in RESOURCES.values():
        if r.kind == kind and r.api_version == api_version:
            return r
    known = sorted({r.kind for r in RESOURCES.values()})
    if any(r.kind == kind for r in RESOURCES.values()):
        want = next(r.api_version for r in RESOURCES.values() if r.kind == kind)
        raise NotFound(
            message=f'no matches for kind "{kind}" in version "{api_version}" '
            f'(did you mean "{want}"?)',
            kind=kind,
        )
    raise NotFound(
        message=f'no matches for kind "{kind}" in version "{api_version}" '
        f"(known kinds: {', '.join(known)})",
        kind=kind,
    )


def for_model(model: type[TypedObject]) -> ResourceInfo:
    for r in RESOURCES.values():
        if r.model is model:
            return r
    raise KeyError(model.__name__)
