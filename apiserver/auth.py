"""Who is asking and what they ask: the vocabulary authentication, authorization, admission and
audit share.

Kubernetes splits a request's security into stages with small interfaces between them
(`user.Info`, `authorizer.Attributes`, `authorizer.Decision`, `admission.Attributes`); this module
is those interfaces, so each stage is a separate module that can be read and tested alone:
authn.py turns a connection into a `UserInfo`, authz.py/rbac.py answer `Attributes` with a
`Decision`, admission plugins (noderestriction.py, the RBAC escalation check) see an
`AdmissionRequest`, audit.py records the outcome.

The user of the request being served travels in a context variable (`CURRENT_USER`): the gRPC
servicer sets it once per call, and admission code deep in the registry reads it without every
signature in between growing a parameter. Internal writes of the apiserver itself (bootstrap
namespaces and policy) run with no user, and admission plugins let them through.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from api import errors
from api.resources import ResourceInfo

# Well-known users and groups (k8s.io/apiserver/pkg/authentication/user).
SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
# Each node's network agent (tk-netagent, flannel's role) has an identity of its own, shaped like
# the kubelet's: user `system:netagent:NAME` in group `system:netagents` (docs/deviations.md).
NETAGENTS_GROUP = "system:netagents"
NETAGENT_USER_PREFIX = "system:netagent:"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"

# Verbs that change state: these are audited, and are what NodeRestriction looks at.
MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity: user name, groups, and for tokens the uid and extra claims."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def in_group(self, group: str) -> bool:
        return group in self.groups

    def to_dict(self) -> dict[str, Any]:
        """The `UserInfo` shape of the Kubernetes API (audit events, SelfSubjectReview)."""
        out: dict[str, Any] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


@dataclass(frozen=True)
class Credentials:
    """What a request carries to prove who it is, whichever front it came through.

    `cert` is the client certificate the TLS handshake already verified against
    --client-ca-file (PEM from gRPC, DER from the HTTP front), `token` a bearer token,
    `headers` the impersonation headers as (lower-case name, value) pairs; `user_agent` and
    `source_ip` are for the audit log.
    """

    cert: bytes | None = None
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str = ""
    source_ip: str = ""


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do (upstream `authorizer.AttributesRecord`).

    A resource request has `resource` (plural, e.g. "pods") and optionally `subresource`,
    `namespace` ("" for cluster scope or all namespaces) and `name` ("" for list/watch/create).
    A non-resource request (discovery, version) has `path` instead.
    """

    user: UserInfo
    verb: str
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer. `allowed=False` means "no opinion" as well as "deny": RBAC has no
    deny rules, so the union authorizer asks the next one. `reason` explains either way."""

    allowed: bool
    reason: str = ""


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> Decision: ...


@dataclass
class AdmissionRequest:
    """One write as admission plugins see it (upstream `admission.Attributes`).

    operation: CREATE, UPDATE or DELETE. `obj` is the object about to be stored (None for
    DELETE), `old` the stored one (None for CREATE). `user` is None for the apiserver's own
    internal writes.
    """

    operation: str
    info: ResourceInfo
    subresource: str
    namespace: str
    name: str
    obj: dict[str, Any] | None
    old: dict[str, Any] | None
    user: UserInfo | None

    def forbidden(self, why: str) -> errors.Forbidden:
        """A plugin's refusal in upstream's words (admission.NewForbidden):
        `<resource> "<name>" is forbidden: <why>`."""
        info = self.info
        name = self.name or ((self.obj or {}).get("metadata") or {}).get("name", "")
        what = f'{info.qualified_name} "{name}"' if name else info.qualified_name
        return errors.Forbidden(message=f"{what} is forbidden: {why}", kind=info.name,
                                name=name, group=info.group)


class AdmissionPlugin(Protocol):
    """A validating admission plugin: raise an `api.errors.ApiError` (usually Forbidden) to
    refuse the write; return to let it through."""

    async def admit(self, req: AdmissionRequest) -> None: ...


def service_account_user(namespace: str, name: str) -> str:
    """The user name a ServiceAccount authenticates as: `system:serviceaccount:NS:NAME`."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, str]:
    """The groups every ServiceAccount of `namespace` is in."""
    return SERVICE_ACCOUNTS_GROUP, f"{SERVICE_ACCOUNTS_GROUP}:{namespace}"


def split_service_account(user: str) -> tuple[str, str] | None:
    """`system:serviceaccount:NS:NAME` → (NS, NAME); None for any other user name."""
    if not user.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    ns, sep, name = user[len(SERVICE_ACCOUNT_PREFIX):].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


CURRENT_USER: ContextVar[UserInfo | None] = ContextVar("tinykube_current_user", default=None)


# fieldValidation of the request being served (Strict, Warn or Ignore: upstream's query
# parameter): the registry reads it where it decodes a body and finds unknown fields.
FIELD_VALIDATION: ContextVar[str] = ContextVar("tinykube_field_validation", default="Warn")
# fieldManager and force of the request being served: who owns what a write changes, and
# whether a server-side apply takes fields from other managers (api/apply.py).
FIELD_MANAGER: ContextVar[str] = ContextVar("tinykube_field_manager", default="")
FORCE_APPLY: ContextVar[bool] = ContextVar("tinykube_force_apply", default=False)


def current_user() -> UserInfo | None:
    """The user of the request being served in this task (None: the apiserver itself)."""
    return CURRENT_USER.get()
