"""rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Who may do what is itself API data, so that granting access is an ordinary `apply` that the
apiserver validates, stores and watches like any other object; the RBAC authorizer
(apiserver/rbac.py) reads these kinds from the watch cache on every request. Shapes follow
upstream's rbac/v1 types field for field: a binding's `roleRef` and a subject's `kind`/`name` are
plain strings that are empty when unset, as Go's zero values are, so a missing roleRef is reported
by validation (`roleRef.name: Required value`) rather than as a decoding error.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from api.meta import K8sModel, LabelSelector, TypedObject

GROUP = "rbac.authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"

# Annotation and label of the apiserver's bootstrap policy (upstream's names).
AUTOUPDATE_ANNOTATION = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = ("kubernetes.io/bootstrapping", "rbac-defaults")

# Wildcards of PolicyRule (rbacv1.VerbAll, APIGroupAll, ResourceAll, NonResourceAll).
ALL = "*"

USER_KIND = "User"
GROUP_KIND = "Group"
SERVICE_ACCOUNT_KIND = "ServiceAccount"


class PolicyRule(K8sModel):
    """Verbs on resources of API groups (optionally only the named objects), or verbs on
    non-resource URLs (`/healthz`, `/api/*`); `*` in any list matches everything."""

    verbs: list[str] = Field(default_factory=list)
    api_groups: list[str] | None = None
    resources: list[str] | None = None
    resource_names: list[str] | None = None
    non_resource_urls: list[str] | None = Field(default=None, alias="nonResourceURLs")


class Subject(K8sModel):
    """Who a binding grants to: a User, a Group, or a ServiceAccount (name + namespace)."""

    kind: str = ""
    api_group: str | None = None
    name: str = ""
    namespace: str | None = None


class RoleRef(K8sModel):
    """The role a binding grants: kind Role or ClusterRole in apiGroup rbac.authorization.k8s.io."""

    api_group: str = ""
    kind: str = ""
    name: str = ""


class AggregationRule(K8sModel):
    """ClusterRoles whose rules are folded into this one (by upstream's aggregation controller)."""

    cluster_role_selectors: list[LabelSelector] | None = None


class Role(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "Role"

    rules: list[PolicyRule] | None = None


class ClusterRole(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "ClusterRole"

    rules: list[PolicyRule] | None = None
    aggregation_rule: AggregationRule | None = None


class RoleBinding(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "RoleBinding"

    subjects: list[Subject] | None = None
    role_ref: RoleRef = Field(default_factory=RoleRef)


class ClusterRoleBinding(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "ClusterRoleBinding"

    subjects: list[Subject] | None = None
    role_ref: RoleRef = Field(default_factory=RoleRef)
