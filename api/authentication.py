"""authentication.k8s.io/v1: TokenRequest, TokenReview and SelfSubjectReview.

TokenRequest is the body of the `serviceaccounts/token` subresource: it asks the apiserver to
sign a short-lived ServiceAccount token for some audiences, optionally bound to a Pod (or Secret,
or Node) so that it dies with that object. TokenReview asks the apiserver who a token belongs to;
SelfSubjectReview asks who the caller is (`tkctl auth whoami`). None of them is stored: the
apiserver fills `status` and returns the object.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from api.meta import Int64, K8sModel, TypedObject

GROUP = "authentication.k8s.io"
API_VERSION = f"{GROUP}/v1"

# Upstream's default lifetime of a requested token (SetDefaults_TokenRequestSpec).
DEFAULT_EXPIRATION_SECONDS = 3600
# Upstream's ceiling: a token may not live longer than 2^32 seconds.
MAX_EXPIRATION_SECONDS = 1 << 32

# gRPC metadata keys of impersonation (upstream's Impersonate-User / -Group / -Uid headers),
# sent by clients acting `--as` another identity and read by the apiserver's authenticator.
IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"


class BoundObjectReference(K8sModel):
    """The object a token is bound to: the token is refused once that object is gone."""

    kind: str | None = None
    api_version: str | None = None
    name: str | None = None
    uid: str | None = None


class TokenRequestSpec(K8sModel):
    audiences: list[str] | None = None
    expiration_seconds: Int64 | None = None
    bound_object_ref: BoundObjectReference | None = None


class TokenRequestStatus(K8sModel):
    token: str = ""
    expiration_timestamp: str = ""


class TokenRequest(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "TokenRequest"

    spec: TokenRequestSpec = Field(default_factory=TokenRequestSpec)
    status: TokenRequestStatus | None = None


class UserInfo(K8sModel):
    """The user a token or request authenticates as (authenticationv1.UserInfo)."""

    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None
    extra: dict[str, list[str]] | None = None


class TokenReviewSpec(K8sModel):
    token: str | None = None
    audiences: list[str] | None = None


class TokenReviewStatus(K8sModel):
    authenticated: bool | None = None
    user: UserInfo | None = None
    audiences: list[str] | None = None
    error: str | None = None


class TokenReview(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "TokenReview"

    spec: TokenReviewSpec = Field(default_factory=TokenReviewSpec)
    status: TokenReviewStatus | None = None


class SelfSubjectReviewStatus(K8sModel):
    user_info: UserInfo | None = None


class SelfSubjectReview(TypedObject):
    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "SelfSubjectReview"

    status: SelfSubjectReviewStatus | None = None
