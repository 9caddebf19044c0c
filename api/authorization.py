"""authorization.k8s.io/v1: SubjectAccessReview and SelfSubjectAccessReview.

"May this user do this?" as an API call, so that clients (`tkctl auth can-i`, a UI hiding
buttons, a webhook) ask the apiserver's own authorizers instead of re-implementing RBAC. Reviews
are create-only and never stored: the apiserver fills `status` and returns the object.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from api.meta import K8sModel, TypedObject

GROUP = "authorization.k8s.io"
API_VERSION = f"{GROUP}/v1"


class ResourceAttributes(K8sModel):
    """A resource request: verb on group/resource[/subresource] [name] [in namespace]."""

    namespace: str | None = None
    verb: str | None = None
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    subresource: str | None = None
    name: str | None = None


class NonResourceAttributes(K8sModel):
    """A non-resource request: verb on a URL path (`get /healthz`)."""

    path: str | None = None
    verb: str | None = None


class SubjectAccessReviewSpec(K8sModel):
    """Exactly one of resourceAttributes / nonResourceAttributes, and the user asked about."""

    resource_attributes: ResourceAttributes | None = None
    non_resource_attributes: NonResourceAttributes | None = None
    user: str | None = None
    groups: list[str] | None = None
    extra: dict[str, list[str]] | None = None
    uid: str | None = None


class SelfSubjectAccessReviewSpec(K8sModel):
    """The question only: the user is whoever sends the review."""

    resource_attributes: ResourceAttributes | None = None
    non_resource_attributes: NonResourceAttributes | None = None


class SubjectAccessReviewStatus(K8sModel):
    allowed: bool = False
    denied: bool | None = None
    reason: str | None = None
    evaluation_error: str | None = None


class SubjectAccessReview(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "SubjectAccessReview"

    spec: SubjectAccessReviewSpec = Field(default_factory=SubjectAccessReviewSpec)
    status: SubjectAccessReviewStatus | None = None


class SelfSubjectAccessReview(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "SelfSubjectAccessReview"

    spec: SelfSubjectAccessReviewSpec = Field(default_factory=SelfSubjectAccessReviewSpec)
    status: SubjectAccessReviewStatus | None = None
