"""What an HTTP request asks for: Kubernetes' REST paths and methods → verb, resource, names.

This is upstream's `RequestInfoFactory` (k8s.io/apiserver/pkg/endpoints/request): the URL
`/apis/apps/v1/namespaces/default/deployments/web/scale` and the method decide the verb (`get`,
`list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`), the resource, its
namespace, name and subresource. Authorization and audit see exactly these, as they see a gRPC
call's. Pure: no I/O, unit-tested in tests/unit/apiserver/test_rest_paths.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from api import errors
from api.resources import RESOURCES, ResourceInfo

# A namespace's own subresources: `/api/v1/namespaces/NAME/status` is the Namespace's status,
# not a resource called "status" inside namespace NAME.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_TRUE = ("1", "true", "True")
# Subresources served as streams by the HTTP front itself (through the kubelets).
STREAM_SUBRESOURCES = frozenset({"log", "exec", "attach", "portforward"})


@dataclass(frozen=True)
class RequestInfo:
    """A resource request: what authorization, audit and the registry need."""

    verb: str
    info: ResourceInfo
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def _group_version(parts: list[str]) -> tuple[str, str, list[str]]:
    """(group, version, the rest) of `api/v1/...` or `apis/GROUP/VERSION/...`."""
    if parts[0] == "api":
        if len(parts) < 2:
            raise _not_found()
        return "", parts[1], parts[2:]
    if len(parts) < 3:
        raise _not_found()
    return parts[1], parts[2], parts[3:]


def _not_found() -> errors.NotFound:
    return errors.NotFound(message="the server could not find the requested resource")


def _resource(group: str, version: str, name: str) -> ResourceInfo:
    info = RESOURCES.get(name)
    if info is None or info.group != group or info.version != version:
        raise _not_found()
    return info


def parse(method: str, path: str, watch_param: str = "") -> RequestInfo:
    """The resource request a method and path make; NotFound for a path that names no resource
    of this server, MethodNotAllowed for a method the path does not take."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        raise _not_found()
    group, version, rest = _group_version(parts)
    legacy_watch = bool(rest) and rest[0] == "watch"  # /api/v1/watch/... (deprecated)
    if legacy_watch:
        rest = rest[1:]
    if not rest:
        raise _not_found()
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if len(rest) > 3:
        raise _not_found()
    info = _resource(group, version, rest[0])
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if info.name == "namespaces":
        name, namespace = namespace or name, ""
    if not info.namespaced and namespace:
        raise _not_found()
    if sub and sub not in info.subresources and not (
            info.name == "pods" and sub in STREAM_SUBRESOURCES):
        raise _not_found()
    verb = _verb(method, bool(name), bool(sub), legacy_watch or watch_param in _TRUE)
    if sub in STREAM_SUBRESOURCES and sub != "log":
        verb = "create"  # exec/attach/portforward are authorized as create, as upstream's
    return RequestInfo(verb, info, namespace, name, sub)


def _verb(method: str, named: bool, sub: bool, watch: bool) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if named else "list"
    table = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = table.get(method)
    if verb is None:
        raise errors.MethodNotAllowed(message=f"the server does not allow the method {method}")
    if verb == "delete" and not named:
        return "deletecollection"
    if verb in ("update", "patch") and not named:
        raise errors.MethodNotAllowed(
            message=f"the server does not allow {method} on a collection; name an object")
    if verb == "create" and named and not sub:
        raise errors.MethodNotAllowed(
            message="the server does not allow POST on a named object; POST to its collection")
    return verb
