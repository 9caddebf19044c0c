"""The OpenAPI documents of the HTTP API (`/openapi/v2`, `/openapi/v3`), generated from `api/`.

kubectl reads them, not just humans: `kubectl explain` prints fields and descriptions from them,
`apply` and `diff` take each field's patch strategy and merge key from them to build a strategic
merge patch, and kubectl 1.27+ decides from the `fieldValidation` parameter of each kind's PATCH
operation whether the server validates fields itself (then it skips client-side validation).
So the documents must name definitions exactly as kube-apiserver does
(`io.k8s.api.core.v1.Pod`), carry the `x-kubernetes-*` extensions kubectl looks for, and describe
every path and verb the HTTP front serves.

The schemas are derived from the pydantic models (camelCase aliases, types, required fields,
docstrings and Field descriptions), so a field added to a model appears in the documents with
no second edit. Upstream facts a Python type cannot express are kept in small tables here:
which string fields are timestamps (`meta.v1.Time`), which integers are int64, and the upstream
definition name where ours differs (policy.DeleteOptions is `meta.v1.DeleteOptions`). Patch
strategies come through `_patch_meta` (api/patchmeta's rows; an interim copy until that module is
committed). `x-kubernetes-action` uses upstream's words (post, put, watchlist, connect), not
RBAC verbs, as kube-apiserver's installer does. The wire types that only the HTTP
front produces (Status, WatchEvent, the discovery documents, version.Info) have no model in
`api/`; they are declared below as models so that they go through the same converter.

Pure and deterministic: no I/O, stable bytes (sorted keys) and so a stable hash across restarts,
which matters because kubectl caches every `/openapi/v3/<group-version>?hash=...` document on disk
by that hash. Everything is generated once per process and cached, as the documents are immutable.

Serving notes for the HTTP front (upstream's kube-openapi handlers do the same):
- `/openapi/v2`: kubectl and client-go ask with `Accept:` V2_PROTOBUF only and decode the answer
  as protobuf, with no JSON fallback (client-go discovery `OpenAPISchema`): answer
  `document_bytes("v2-protobuf")` (gnostic's `openapi.v2.Document`, see openapi_pb) with
  Content-Type V2_PROTOBUF_CONTENT_TYPE when the Accept header names one of V2_PROTOBUF_TYPES,
  else JSON.
- `/openapi/v3`: the index, JSON. `/openapi/v3/<path>?hash=H`: JSON; if H is not the current
  ETag answer 301 to the current `serverRelativeURL`, else add `Cache-Control: public,
  immutable`. ETag headers are the hash in double quotes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from api import (
    apps,
    authentication,
    authorization,
    autoscaling,
    coordination,
    core,
    meta,
    policy,
    rbac,
)
from api.meta import GoInt, go_int
from api.quantity import Quantity
from api.resources import (
    BINDING_MODEL,
    RESOURCES,
    SCALE_MODEL,
    TOKEN_REQUEST_MODEL,
    ResourceInfo,
)
from apiserver import openapi_pb

# What client-go sends for /openapi/v2 (the only type it asks for) and for the v3 documents.
V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# Both spellings kube-openapi's /openapi/v2 handler serves protobuf for. It answers either with
# the second as Content-Type: Go's mime.ParseMediaType (client-go's REST client) rejects the `@`.
V2_PROTOBUF_TYPES = (V2_PROTOBUF, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
V2_PROTOBUF_CONTENT_TYPE = V2_PROTOBUF_TYPES[1]
V3_PROTOBUF = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
JSON = "application/json"

_V2_REF = "#/definitions/"
_V3_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = f"{_META}.Time"
MICRO_TIME = f"{_META}.MicroTime"

# `info.version`: kube-apiserver's build version; ours is not tied to one (the document is
# derived from the models), which is what older kube-apiservers said too.
_INFO = {"title": "Kubernetes", "version": "unversioned"}
_BEARER = {"BearerToken": {"description": "Bearer Token authentication", "in": "header",
                           "name": "authorization", "type": "apiKey"}}

# ----------------------------------------------------------------------------------------------
# Wire types with no model in api/ (the HTTP front builds them as dicts). Declared as models so
# that one converter makes every schema.
# ----------------------------------------------------------------------------------------------


class StatusCause(meta.K8sModel):
    """StatusCause provides more information about an api.Status failure, including cases when
    multiple errors are encountered."""

    reason: str | None = None
    message: str | None = None
    field_: str | None = Field(default=None, alias="field")


class StatusDetails(meta.K8sModel):
    """StatusDetails is a set of additional properties that MAY be set by the server to provide
    additional information about a response."""

    name: str | None = None
    group: str | None = None
    kind: str | None = None
    uid: str | None = None
    causes: list[StatusCause] | None = None
    retry_after_seconds: int | None = None


class Status(meta.K8sModel):
    """Status is a return value for calls that don't return other objects."""

    api_version: str | None = None
    kind: str | None = None
    metadata: meta.ListMeta | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: StatusDetails | None = None
    code: int | None = None


class RawExtension(meta.K8sModel):
    """RawExtension holds an embedded object of any kind, as JSON."""


class WatchEvent(meta.K8sModel):
    """Event represents a single event to a watched resource."""

    type: str
    object: RawExtension = Field(description="Object is: * If Type is Added or Modified: the new "
                                 "state of the object. * If Type is Deleted: the state of the "
                                 "object immediately before deletion. * If Type is Error: "
                                 "*Status is recommended; other types may make sense depending "
                                 "on context.")


class Patch(meta.K8sModel):
    """Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."""


class GroupVersionForDiscovery(meta.K8sModel):
    """GroupVersion contains the "group/version" and "version" string of a version."""

    group_version: str
    version: str


class ServerAddressByClientCIDR(meta.K8sModel):
    """ServerAddressByClientCIDR helps the client to determine the server address that they
    should use, depending on the clientCIDR that they match."""

    client_cidr: str = Field(alias="clientCIDR")
    server_address: str


class APIGroup(meta.K8sModel):
    """APIGroup contains the name, the supported versions, and the preferred version of a
    group."""

    api_version: str | None = None
    kind: str | None = None
    name: str
    versions: list[GroupVersionForDiscovery]
    preferred_version: GroupVersionForDiscovery | None = None
    server_address_by_client_cidrs: list[ServerAddressByClientCIDR] | None = Field(
        default=None, alias="serverAddressByClientCIDRs")


class APIGroupList(meta.K8sModel):
    """APIGroupList is a list of APIGroup, to allow clients to discover the API at /apis."""

    api_version: str | None = None
    kind: str | None = None
    groups: list[APIGroup]


class APIVersions(meta.K8sModel):
    """APIVersions lists the versions that are available, to allow clients to discover the API at
    /api, which is the root path of the legacy v1 API."""

    api_version: str | None = None
    kind: str | None = None
    versions: list[str]
    server_address_by_client_cidrs: list[ServerAddressByClientCIDR] = Field(
        alias="serverAddressByClientCIDRs")


class APIResource(meta.K8sModel):
    """APIResource specifies the name of a resource and whether it is namespaced."""

    name: str
    singular_name: str
    namespaced: bool
    group: str | None = None
    version: str | None = None
    kind: str
    verbs: list[str]
    short_names: list[str] | None = None
    categories: list[str] | None = None
    storage_version_hash: str | None = None


class APIResourceList(meta.K8sModel):
    """APIResourceList is a list of APIResource, it is used to expose the name of the resources
    supported in a specific group and version, and if the resource is namespaced."""

    api_version: str | None = None
    kind: str | None = None
    group_version: str
    resources: list[APIResource]


class VersionInfo(meta.K8sModel):
    """Info contains versioning information."""

    major: str
    minor: str
    git_version: str
    git_commit: str
    git_tree_state: str
    build_date: str
    go_version: str
    compiler: str
    platform: str


# ----------------------------------------------------------------------------------------------
# Definition names
# ----------------------------------------------------------------------------------------------

# Python module of a model → upstream package of its definitions.
_PACKAGES: dict[str, str] = {
    meta.__name__: _META,
    core.__name__: "io.k8s.api.core.v1",
    apps.__name__: "io.k8s.api.apps.v1",
    rbac.__name__: "io.k8s.api.rbac.v1",
    coordination.__name__: "io.k8s.api.coordination.v1",
    authentication.__name__: "io.k8s.api.authentication.v1",
    authorization.__name__: "io.k8s.api.authorization.v1",
    autoscaling.__name__: "io.k8s.api.autoscaling.v1",
    policy.__name__: "io.k8s.api.policy.v1",
    __name__: _META,
}
# Models whose upstream home is another package than their module's.
_NAMES: dict[type[BaseModel], str] = {
    policy.DeleteOptions: f"{_META}.DeleteOptions",
    policy.Preconditions: f"{_META}.Preconditions",
    VersionInfo: "io.k8s.apimachinery.pkg.version.Info",
    WatchEvent: f"{_META}.WatchEvent",
    RawExtension: "io.k8s.apimachinery.pkg.runtime.RawExtension",
}


def definition_name(model: type[BaseModel]) -> str:
    """The upstream definition name of a model: `io.k8s.api.core.v1.PodSpec`."""
    if model in _NAMES:
        return _NAMES[model]
    package = _PACKAGES.get(model.__module__)
    if package is None:
        raise ValueError(f"no OpenAPI package for models of {model.__module__} "
                         f"({model.__name__}); add it to _PACKAGES")
    return f"{package}.{model.__name__}"


# Leaf types kube-apiserver publishes as named string definitions.
_LEAVES: dict[str, dict[str, Any]] = {
    QUANTITY: {"type": "string", "description":
               "Quantity is a fixed-point representation of a number, serialized as a string "
               "with an optional suffix: `250m`, `64Mi`, `1e3`."},
    INT_OR_STRING: {"type": "string", "format": "int-or-string", "description":
                    "IntOrString is a type that can hold an int32 or a string."},
    TIME: {"type": "string", "format": "date-time", "description":
           "Time is a wrapper around time.Time, serialized as RFC 3339 (second precision)."},
    MICRO_TIME: {"type": "string", "format": "date-time", "description":
                 "MicroTime is version of Time with microsecond level precision."},
}

# OpenAPI 3 can say what v2 could not: a Quantity is a string or a number, an IntOrString an
# integer or a string (upstream's OpenAPIV3OneOfTypes). With no `type`, kubectl explain also
# names them (`map[string]Quantity`) instead of printing `string`.
_V3_LEAVES: dict[str, dict[str, Any]] = {
    QUANTITY: {"description": _LEAVES[QUANTITY]["description"],
               "oneOf": [{"type": "string"}, {"type": "number"}]},
    INT_OR_STRING: {"description": _LEAVES[INT_OR_STRING]["description"],
                    "format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
}

# String fields that are timestamps upstream (by JSON name); MicroTime where listed below.
_TIME_SUFFIXES = ("Time", "Timestamp")
_TIME_NAMES = frozenset({"startedAt", "finishedAt", "timeAdded", "time"})
_MICRO_TIMES: frozenset[tuple[type[BaseModel], str]] = frozenset({
    (coordination.LeaseSpec, "acquireTime"), (coordination.LeaseSpec, "renewTime"),
    (core.Event, "eventTime"), (core.EventSeries, "lastObservedTime"),
})
# Descriptions of the fields every kind has, from Kubernetes' API conventions.
_CONVENTIONS = {
    "apiVersion": "APIVersion defines the versioned schema of this representation of an "
                  "object. Servers convert recognized schemas to the latest internal value, and "
                  "may reject unrecognized values.",
    "kind": "Kind is a string value representing the REST resource this object represents. "
            "Servers may infer this from the endpoint the client submits requests to. Cannot be "
            "updated. In CamelCase.",
    "metadata": "Standard object's metadata.",
}

_QUANTITY_METADATA = tuple(typing.get_args(Quantity)[1:])

# ----------------------------------------------------------------------------------------------
# Patch metadata (strategic merge patch): api/patchmeta.py owns it
# ----------------------------------------------------------------------------------------------


class PatchMetaLike(Protocol):
    """What `api.patchmeta.field_meta` returns (its FieldMeta): upstream's struct tags."""

    @property
    def strategy(self) -> str: ...  # "merge", "retainKeys", "merge,retainKeys", ""

    @property
    def merge_key(self) -> str: ...  # "" for none

    @property
    def list_type(self) -> str: ...  # "map", "set", "atomic", "" (unstated)

    @property
    def list_map_keys(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class _InterimMeta:
    strategy: str
    merge_key: str = ""
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()


def _merged(key: str, *keys: str) -> _InterimMeta:
    return _InterimMeta("merge", key, "map", keys or (key,))


# Upstream's tags on the fields we model, until api/patchmeta.py is committed; then
# `_patch_meta` returns `patchmeta.field_meta(model, json_field)` and this table goes (the same
# rows: tests/unit/apiserver/test_openapi.py compares them while both exist).
_INTERIM_PATCH_META: dict[tuple[type[BaseModel], str], _InterimMeta] = {
    (meta.ObjectMeta, "finalizers"): _InterimMeta("merge", "", "set"),
    (meta.ObjectMeta, "ownerReferences"): _merged("uid"),
    (core.PodSpec, "volumes"): _InterimMeta("merge,retainKeys", "name", "map", ("name",)),
    (core.PodSpec, "initContainers"): _merged("name"),
    (core.PodSpec, "containers"): _merged("name"),
    (core.PodSpec, "imagePullSecrets"): _merged("name"),
    (core.PodSpec, "hostAliases"): _merged("ip"),
    (core.PodSpec, "topologySpreadConstraints"): _merged("topologyKey", "topologyKey",
                                                         "whenUnsatisfiable"),
    (core.Container, "ports"): _merged("containerPort", "containerPort", "protocol"),
    (core.Container, "env"): _merged("name"),
    (core.Container, "volumeMounts"): _merged("mountPath"),
    (core.PodStatus, "conditions"): _merged("type"),
    (core.PodStatus, "podIPs"): _merged("ip"),
    (core.NodeSpec, "podCIDRs"): _InterimMeta("merge", "", "set"),
    (core.NodeStatus, "conditions"): _merged("type"),
    (core.NodeStatus, "addresses"): _merged("type"),
    (core.NamespaceStatus, "conditions"): _merged("type"),
    (core.ServiceSpec, "ports"): _merged("port", "port", "protocol"),
    (core.ServiceStatus, "conditions"): _merged("type"),
    (core.ServiceAccount, "secrets"): _merged("name"),
    (core.ReplicationControllerStatus, "conditions"): _merged("type"),
    (apps.ReplicaSetStatus, "conditions"): _merged("type"),
    (apps.DeploymentStatus, "conditions"): _merged("type"),
    (apps.DeploymentSpec, "strategy"): _InterimMeta("retainKeys"),
}


def _patch_meta(model: type[BaseModel], json_field: str) -> PatchMetaLike | None:
    """The patch metadata of one field, or None: the one seam to api/patchmeta."""
    return _INTERIM_PATCH_META.get((model, json_field))


def _patch_extensions(pm: PatchMetaLike) -> dict[str, Any]:
    """`x-kubernetes-patch-*` (what kubectl's strategic merge patch reads) and the
    `x-kubernetes-list-*` upstream publishes beside them (server-side apply's view)."""
    out: dict[str, Any] = {}
    if pm.strategy:
        out["x-kubernetes-patch-strategy"] = pm.strategy
    if pm.merge_key:
        out["x-kubernetes-patch-merge-key"] = pm.merge_key
    if pm.list_type:
        out["x-kubernetes-list-type"] = pm.list_type
    if pm.list_type == "map":
        out["x-kubernetes-list-map-keys"] = list(pm.list_map_keys or (pm.merge_key,))
    return out


# ----------------------------------------------------------------------------------------------
# Models → Swagger 2.0 definitions
# ----------------------------------------------------------------------------------------------


def _go_int(gi: GoInt) -> dict[str, Any]:
    """An integer with its upstream Go type, as upstream's schemas give it (api.meta.GoInt:
    the same marker that bounds the value at decode)."""
    return {"type": "integer", "format": gi.name}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _V2_REF + name}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _doc(model: type[BaseModel]) -> str:
    # Only the class's own docstring: K8sModel's would otherwise describe every model.
    raw = model.__dict__.get("__doc__")
    return inspect.cleandoc(raw) if isinstance(raw, str) else ""


def _group_versions() -> list[tuple[str, str]]:
    """Every (group, version) served, in the resource table's order."""
    out: list[tuple[str, str]] = []
    for r in RESOURCES.values():
        if (r.group, r.version) not in out:
            out.append((r.group, r.version))
    return out


class _Definitions:
    """Walks the models from the served kinds and collects one definition per model."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {k: dict(v) for k, v in _LEAVES.items()}
        self._models: dict[str, type[BaseModel]] = {}

    def add(self, model: type[BaseModel]) -> str:
        """Register a model (and everything it references); its definition name."""
        name = definition_name(model)
        seen = self._models.get(name)
        if seen is model:
            return name
        if seen is not None:
            raise ValueError(f"{name} names both {seen.__qualname__} and {model.__qualname__}")
        self._models[name] = model
        self.schemas[name] = {}  # placeholder first: models may refer to themselves
        self.schemas[name] = self._object(model)
        return name

    def set_gvk(self, name: str, gvks: list[dict[str, str]]) -> None:
        self.schemas[name]["x-kubernetes-group-version-kind"] = gvks

    def add_list(self, info: ResourceInfo) -> str:
        """`PodList`: no model of its own, the same shape for every kind, as upstream's."""
        item = self.add(info.model)
        name = f"{item}List"
        self.schemas[name] = {
            "description": f"{info.list_kind} is a list of {info.kind} objects.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": _CONVENTIONS["apiVersion"]},
                "items": {"type": "array", "description": f"List of {info.name}.",
                          "items": _ref(item)},
                "kind": {"type": "string", "description": _CONVENTIONS["kind"]},
                "metadata": {**_ref(self.add(meta.ListMeta)),
                             "description": "Standard list metadata."},
            },
        }
        self.set_gvk(name, [_gvk(info.group, info.version, info.list_kind)])
        return name

    def _object(self, model: type[BaseModel]) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        if doc := _doc(model):
            schema["description"] = doc
        schema["type"] = "object"
        props: dict[str, Any] = {}
        required: list[str] = []
        for attr, info in model.model_fields.items():
            alias = info.serialization_alias or info.alias or attr
            props[alias] = self._field(model, alias, info)
            if info.is_required():
                required.append(alias)
        if props:
            schema["properties"] = props
        if required:
            schema["required"] = required
        return schema

    def _field(self, owner: type[BaseModel], alias: str, info: FieldInfo) -> dict[str, Any]:
        if any(m in _QUANTITY_METADATA for m in info.metadata):
            schema = _ref(QUANTITY)  # a bare `x: Quantity`: pydantic moved the validator here
        else:
            schema = self._type(info.annotation)
        if schema == {"type": "string"}:
            if (owner, alias) in _MICRO_TIMES:
                schema = _ref(MICRO_TIME)
            elif alias.endswith(_TIME_SUFFIXES) or alias in _TIME_NAMES:
                schema = _ref(TIME)
        elif gi := go_int(info.metadata):  # a required `x: Int32`: pydantic moved it here
            schema = _go_int(gi)
        description = info.description or _CONVENTIONS.get(alias)
        if description:
            schema = {**schema, "description": description}
        if pm := _patch_meta(owner, alias):
            schema = {**schema, **_patch_extensions(pm)}
        return schema

    def _type(self, ann: Any) -> dict[str, Any]:
        """The schema of a Python type as our models use them."""
        origin = typing.get_origin(ann)
        args = typing.get_args(ann)
        if origin is typing.Annotated:
            if tuple(args[1:]) == _QUANTITY_METADATA:
                return _ref(QUANTITY)
            if gi := go_int(args[1:]):
                return _go_int(gi)
            return self._type(args[0])
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            bare = {typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a
                    for a in members}
            if bare == {int, str}:  # api.meta.IntOrString
                return _ref(INT_OR_STRING)
            if len(members) == 1:
                return self._type(members[0])
            raise TypeError(f"no OpenAPI schema for the union {ann}")
        if origin in (list, tuple, set, frozenset):
            return {"type": "array", "items": self._type(args[0])}
        if origin is dict:
            value = args[1]
            if value is Any:
                return {"type": "object"}  # free-form (kept verbatim, not modelled)
            return {"type": "object", "additionalProperties": self._type(value)}
        if ann is Any:
            return {"type": "object"}
        if ann is str:
            return {"type": "string"}
        if ann is bool:
            return {"type": "boolean"}
        if ann is int:
            return {"type": "integer", "format": "int32"}
        if ann is float:
            return {"type": "number", "format": "double"}
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return _ref(self.add(ann))
        raise TypeError(f"no OpenAPI schema for the type {ann!r}")


# ----------------------------------------------------------------------------------------------
# Paths: one neutral description of each operation, rendered for v2 and v3
# ----------------------------------------------------------------------------------------------

_JSON_YAML = ("application/json", "application/yaml")
_WATCH = (*_JSON_YAML, "application/json;stream=watch")
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")

# Query and path parameters: name → (in, type, description).
_PARAMS: dict[str, tuple[str, str, str]] = {
    "name": ("path", "string", "name of the object"),
    "namespace": ("path", "string", "object name and auth scope, such as for teams and projects"),
    "pretty": ("query", "string", "If 'true', then the output is pretty printed."),
    "dryRun": ("query", "string", "When present, indicates that modifications should not be "
               "persisted. Valid values are: - All: all dry run stages will be processed"),
    "fieldManager": ("query", "string", "fieldManager is a name associated with the actor or "
                     "entity that is making these changes."),
    "fieldValidation": ("query", "string", "fieldValidation instructs the server on how to "
                        "handle objects in the request (POST/PUT/PATCH) containing unknown or "
                        "duplicate fields: Ignore, Warn (the default) or Strict."),
    "force": ("query", "boolean", "Force is going to \"force\" Apply requests. It means user "
              "will re-acquire conflicting fields owned by other people. Must be unset for "
              "non-apply patch requests."),
    "gracePeriodSeconds": ("query", "integer", "The duration in seconds before the object "
                           "should be deleted. Zero means delete immediately."),
    "orphanDependents": ("query", "boolean", "Deprecated: use propagationPolicy. Whether the "
                         "dependent objects should be orphaned."),
    "propagationPolicy": ("query", "string", "Whether and how garbage collection will be "
                          "performed: Orphan, Background or Foreground."),
    "allowWatchBookmarks": ("query", "boolean", "allowWatchBookmarks requests watch events "
                            "with type \"BOOKMARK\"."),
    "continue": ("query", "string", "The continue option should be set when retrieving more "
                 "results from the server, with the value of a previous list's "
                 "metadata.continue."),
    "fieldSelector": ("query", "string", "A selector to restrict the list of returned objects "
                      "by their fields. Defaults to everything."),
    "labelSelector": ("query", "string", "A selector to restrict the list of returned objects "
                      "by their labels. Defaults to everything."),
    "limit": ("query", "integer", "limit is a maximum number of responses to return for a list "
              "call; the list's metadata.continue then fetches the next chunk."),
    "resourceVersion": ("query", "string", "resourceVersion sets a constraint on what resource "
                        "versions a request may be served from."),
    "resourceVersionMatch": ("query", "string", "resourceVersionMatch determines how "
                             "resourceVersion is applied to list calls."),
    "timeoutSeconds": ("query", "integer", "Timeout for the list/watch call."),
    "watch": ("query", "boolean", "Watch for changes to the described resources and return them "
              "as a stream of add, update, and remove notifications."),
    "container": ("query", "string", "The container in the pod. Defaults to the only container "
                  "if there is only one."),
    "follow": ("query", "boolean", "Follow the log stream of the pod."),
    "limitBytes": ("query", "integer", "The number of bytes to read from the server before "
                   "terminating the log output."),
    "previous": ("query", "boolean", "Return previous terminated container logs."),
    "sinceSeconds": ("query", "integer", "A relative time in seconds before the current time "
                     "from which to show logs."),
    "tailLines": ("query", "integer", "The number of lines from the end of the logs to show."),
    "timestamps": ("query", "boolean", "Add an RFC3339 timestamp at the beginning of every line "
                   "of log output."),
    "command": ("query", "string", "Command is the remote command to execute. argv array "
                "(repeat the parameter). Not executed within a shell."),
    "stdin": ("query", "boolean", "Redirect the standard input stream of the pod."),
    "stdout": ("query", "boolean", "Redirect the standard output stream of the pod."),
    "stderr": ("query", "boolean", "Redirect the standard error stream of the pod."),
    "tty": ("query", "boolean", "Allocate a terminal."),
    "ports": ("query", "integer", "List of ports to forward."),
}
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
                "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch")
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_DELETE_COLLECTION_PARAMS = ("continue", "dryRun", "fieldSelector", "gracePeriodSeconds",
                             "labelSelector", "limit", "orphanDependents", "propagationPolicy",
                             "resourceVersion", "resourceVersionMatch", "timeoutSeconds")
# The pod streams the HTTP front proxies to the kubelets: the connect kinds and parameters.
_STREAMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "exec": ("PodExecOptions", ("command", "container", "stderr", "stdin", "stdout", "tty")),
    "attach": ("PodAttachOptions", ("container", "stderr", "stdin", "stdout", "tty")),
    "portforward": ("PodPortForwardOptions", ("ports",)),
}
_LOG_PARAMS = ("container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines",
               "timestamps")


@dataclass(frozen=True)
class _Op:
    """One operation, independent of the OpenAPI version it is rendered in."""

    method: str  # get, put, post, patch, delete
    operation_id: str
    description: str
    action: str  # x-kubernetes-action, upstream's words: get list watch watchlist post put ...
    tag: str
    gvk: dict[str, str] | None = None
    params: tuple[str, ...] = ()
    body: str | None = None  # definition name of the request body
    response: str | None = None  # definition name of the answer; None: a string (a stream)
    codes: tuple[str, ...] = ("200",)
    consumes: tuple[str, ...] = ("*/*",)
    produces: tuple[str, ...] = _JSON_YAML


@dataclass(frozen=True)
class _Path:
    path: str
    params: tuple[str, ...]  # path-level parameters
    ops: tuple[_Op, ...]


def _camel_group(group: str) -> str:
    """Upstream's operation-id spelling of a group: `rbac.authorization.k8s.io` → RbacAuthorization,
    "" → Core."""
    if not group:
        return "Core"
    return "".join(p[:1].upper() + p[1:] for p in group.removesuffix(".k8s.io").split("."))


def _tag(group: str, version: str = "") -> str:
    camel = _camel_group(group)
    tag = camel[:1].lower() + camel[1:]
    return f"{tag}_{version}" if version else tag


def _prefix(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


_CODE_TEXT = {"200": "OK", "201": "Created", "202": "Accepted", "401": "Unauthorized"}


class _Paths:
    """The operations of every served resource, as kube-apiserver's installer lays them out."""

    def __init__(self, defs: _Definitions) -> None:
        self.defs = defs
        self.by_doc: dict[str, list[_Path]] = {}  # v3 document path → its paths
        status = defs.add(Status)
        defs.set_gvk(status, [_gvk("", "v1", "Status")])
        gvs = _group_versions()
        served = [_gvk("", "v1", "")] + [_gvk(g, v, "") for g, v in gvs if g]
        # Upstream lists these two under every group version (any group's DELETE takes
        # DeleteOptions, any group's watch streams WatchEvents).
        self.delete_options = defs.add(policy.DeleteOptions)
        self.watch_event = defs.add(WatchEvent)
        defs.set_gvk(self.delete_options, [{**g, "kind": "DeleteOptions"} for g in served])
        defs.set_gvk(self.watch_event, [{**g, "kind": "WatchEvent"} for g in served])
        self.status, self.patch = status, defs.add(Patch)
        discovery: tuple[type[BaseModel], ...] = (APIResourceList, APIGroup, APIGroupList,
                                                  APIVersions)
        for model in discovery:
            defs.set_gvk(defs.add(model), [_gvk("", "v1", model.__name__)])
        self._roots(gvs)
        for info in RESOURCES.values():
            doc = _doc_path(info.group, info.version)
            self.by_doc[doc].extend(self._resource(info))

    def _roots(self, gvs: list[tuple[str, str]]) -> None:
        """Discovery and version: /api/, /apis/, /apis/GROUP/, /api/v1/, /version/."""
        def get(path: str, op_id: str, desc: str, tag: str, response: str) -> _Path:
            return _Path(path, (), (_Op("get", op_id, desc, "", tag, response=response,
                                        consumes=_JSON_YAML),))
        self.by_doc["api"] = [get("/api/", "getCoreAPIVersions", "get available API versions",
                                  "core", definition_name(APIVersions))]
        self.by_doc["apis"] = [get("/apis/", "getAPIVersions", "get available API versions",
                                   "apis", definition_name(APIGroupList))]
        self.by_doc["version"] = [get("/version/", "getCodeVersion", "get the version "
                                      "information for this server", "version",
                                      self.defs.add(VersionInfo))]
        for group, version in gvs:
            camel = _camel_group(group)
            if group and f"apis/{group}" not in self.by_doc:
                self.by_doc[f"apis/{group}"] = [get(
                    f"/apis/{group}/", f"get{camel}APIGroup", "get information of a group",
                    _tag(group), definition_name(APIGroup))]
            self.by_doc[_doc_path(group, version)] = [get(
                f"{_prefix(group, version)}/", f"get{camel}{version.title()}APIResources",
                "get available resources", _tag(group, version),
                definition_name(APIResourceList))]

    def _resource(self, info: ResourceInfo) -> Iterator[_Path]:
        g, v, kind = info.group, info.version, info.kind
        gv = f"{_camel_group(g)}{v.title()}"
        tag, gvk = _tag(g, v), _gvk(g, v, kind)
        obj = self.defs.add(info.model)
        self.defs.set_gvk(obj, [gvk])
        base = _prefix(g, v)
        ns = "Namespaced" if info.namespaced else ""
        scope = f"/namespaces/{{namespace}}/{info.name}" if info.namespaced else f"/{info.name}"
        scope_params: tuple[str, ...] = ("namespace",) if info.namespaced else ()
        collection, item = f"{base}{scope}", f"{base}{scope}/{{name}}"
        verbs = set(info.verbs)

        def op(method: str, verb: str, desc: str, action: str, **kw: Any) -> _Op:
            return _Op(method, f"{verb}{gv}{ns}{kind}", desc, action, tag, gvk, **kw)

        ops = []
        if "list" in verbs:
            ops.append(op("get", "list", f"list or watch objects of kind {kind}", "list",
                          params=_LIST_PARAMS, response=self.defs.add_list(info),
                          produces=_WATCH))
        if "create" in verbs:
            ops.append(op("post", "create", f"create a {kind}", "post", params=_WRITE_PARAMS,
                          body=obj, response=obj, codes=("200", "201", "202")))
        if "deletecollection" in verbs:
            ops.append(_Op("delete", f"delete{gv}Collection{ns}{kind}",
                           f"delete collection of {kind}", "deletecollection", tag, gvk,
                           params=_DELETE_COLLECTION_PARAMS, body=self.delete_options,
                           response=self.status))
        if ops:
            yield _Path(collection, (*scope_params, "pretty"), tuple(ops))
        if info.virtual:
            return  # create-only: no objects to name, list or watch

        yield _Path(item, ("name", *scope_params, "pretty"), (
            op("get", "read", f"read the specified {kind}", "get", response=obj),
            op("put", "replace", f"replace the specified {kind}", "put", params=_WRITE_PARAMS,
               body=obj, response=obj, codes=("200", "201")),
            op("patch", "patch", f"partially update the specified {kind}", "patch",
               params=(*_WRITE_PARAMS, "force"), body=self.patch, response=obj,
               codes=("200", "201"), consumes=PATCH_TYPES),
            op("delete", "delete", f"delete a {kind}", "delete", params=_DELETE_PARAMS,
               body=self.delete_options, response=self.status, codes=("200", "202")),
        ))
        if info.namespaced:  # across namespaces: /api/v1/pods
            yield _Path(f"{base}/{info.name}", ("pretty",), (_Op(
                "get", f"list{gv}{kind}ForAllNamespaces", f"list or watch objects of kind {kind}",
                "list", tag, gvk, params=_LIST_PARAMS, response=self.defs.add_list(info),
                produces=_WATCH),))
        # The deprecated /watch/ paths, still used by old clients (the front serves them).
        watch = f"{base}/watch{scope}"
        yield _Path(watch, (*scope_params, "pretty"), (_Op(
            "get", f"watch{gv}{ns}{kind}List", f"watch individual changes to a list of {kind}. "
            "deprecated: use the 'watch' parameter with a list operation instead.", "watchlist",
            tag, gvk, params=_LIST_PARAMS, response=self.watch_event, produces=_WATCH),))
        yield _Path(f"{watch}/{{name}}", ("name", *scope_params, "pretty"), (_Op(
            "get", f"watch{gv}{ns}{kind}", f"watch changes to an object of kind {kind}. "
            "deprecated: use the 'watch' parameter with a list operation instead, filtered to "
            "a single item with the 'fieldSelector' parameter.", "watch", tag, gvk,
            params=_LIST_PARAMS, response=self.watch_event, produces=_WATCH),))
        if info.namespaced:
            yield _Path(f"{base}/watch/{info.name}", ("pretty",), (_Op(
                "get", f"watch{gv}{kind}ListForAllNamespaces",
                f"watch individual changes to a list of {kind}. deprecated: use the 'watch' "
                "parameter with a list operation instead.", "watchlist", tag, gvk,
                params=_LIST_PARAMS, response=self.watch_event, produces=_WATCH),))
        yield from self._subresources(info, item, ("name", *scope_params, "pretty"), obj)

    def _subresources(self, info: ResourceInfo, item: str, params: tuple[str, ...],
                      obj: str) -> Iterator[_Path]:
        g, v, kind = info.group, info.version, info.kind
        gv, tag = f"{_camel_group(g)}{v.title()}", _tag(g, v)
        ns = "Namespaced" if info.namespaced else ""

        def kind_of(model: type[meta.TypedObject] | None) -> tuple[str, dict[str, str]]:
            """The definition and GVK a subresource takes: its own kind's, or the parent's."""
            if model is None:
                return obj, _gvk(g, v, kind)
            name = self.defs.add(model)
            gvk = _gvk(*_split_api_version(model.API_VERSION), model.KIND)
            self.defs.set_gvk(name, [gvk])
            return name, gvk

        subs = set(info.subresources)
        if info.name == "pods":
            subs |= {"log", *_STREAMS}
        for sub in sorted(subs):
            camel = sub.title()
            path = f"{item}/{sub}"
            if sub in ("status", "scale"):
                body, gvk = kind_of(SCALE_MODEL if sub == "scale" else None)
                yield _Path(path, params, (
                    _Op("get", f"read{gv}{ns}{kind}{camel}", f"read {sub} of the specified "
                        f"{kind}", "get", tag, gvk, response=body),
                    _Op("put", f"replace{gv}{ns}{kind}{camel}", f"replace {sub} of the "
                        f"specified {kind}", "put", tag, gvk, params=_WRITE_PARAMS, body=body,
                        response=body, codes=("200", "201")),
                    _Op("patch", f"patch{gv}{ns}{kind}{camel}", f"partially update {sub} of "
                        f"the specified {kind}", "patch", tag, gvk,
                        params=(*_WRITE_PARAMS, "force"), body=self.patch, response=body,
                        codes=("200", "201"), consumes=PATCH_TYPES),
                ))
            elif sub in ("binding", "eviction", "token"):
                bodies: dict[str, type[meta.TypedObject]] = {
                    "binding": BINDING_MODEL, "eviction": policy.Eviction,
                    "token": TOKEN_REQUEST_MODEL}
                body, gvk = kind_of(bodies[sub])
                yield _Path(path, params, (_Op(
                    "post", f"create{gv}{ns}{kind}{camel}", f"create {sub} of a {kind}", "post",
                    tag, gvk, params=_WRITE_PARAMS, body=body, response=body,
                    codes=("200", "201", "202")),))
            elif sub == "finalize":
                yield _Path(path, params, (_Op(
                    "put", f"replace{gv}{ns}{kind}{camel}", f"replace finalize of the "
                    f"specified {kind}", "put", tag, _gvk(g, v, kind), params=_WRITE_PARAMS,
                    body=obj, response=obj, codes=("200", "201")),))
            elif sub == "log":
                yield _Path(path, params, (_Op(
                    "get", f"read{gv}{ns}{kind}Log", f"read log of the specified {kind}", "get",
                    tag, _gvk(g, v, kind), params=_LOG_PARAMS,
                    produces=("text/plain", *_JSON_YAML)),))
            elif sub in _STREAMS:
                connect_kind, connect_params = _STREAMS[sub]
                yield _Path(path, params, tuple(_Op(
                    method, f"connect{gv}{method.title()}{ns}{kind}{camel}",
                    f"connect {method.upper()} requests to {sub} of {kind}", "connect", tag,
                    _gvk(g, v, connect_kind), params=connect_params, produces=("*/*",))
                    for method in ("get", "post")))
            else:
                raise ValueError(f"{info.name}/{sub}: no OpenAPI operations for this "
                                 "subresource")


def _doc_path(group: str, version: str) -> str:
    """The v3 document of a group version: `api/v1`, `apis/apps/v1`."""
    return f"api/{version}" if not group else f"apis/{group}/{version}"


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _v2_param(name: str) -> dict[str, Any]:
    where, typ, desc = _PARAMS[name]
    out: dict[str, Any] = {"description": desc, "in": where, "name": name, "type": typ,
                           "uniqueItems": True}
    if where == "path":
        out["required"] = True
    return out


def _v3_param(name: str) -> dict[str, Any]:
    where, typ, desc = _PARAMS[name]
    out: dict[str, Any] = {"description": desc, "in": where, "name": name,
                           "schema": {"type": typ, "uniqueItems": True}}
    if where == "path":
        out["required"] = True
    return out


def _answer(op: _Op, prefix: str) -> dict[str, Any]:
    return {"$ref": prefix + op.response} if op.response else {"type": "string"}


def _extensions(op: _Op) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if op.action:
        out["x-kubernetes-action"] = op.action
    if op.gvk:
        out["x-kubernetes-group-version-kind"] = op.gvk  # one object here, a list on schemas
    return out


def _v2_op(op: _Op) -> dict[str, Any]:
    params = [_v2_param(p) for p in op.params]
    if op.body:
        params.insert(0, {"in": "body", "name": "body", "required": True,
                          "schema": _ref(op.body)})
    responses: dict[str, Any] = {
        code: {"description": _CODE_TEXT[code], "schema": _answer(op, _V2_REF)}
        for code in op.codes}
    responses["401"] = {"description": _CODE_TEXT["401"]}
    out: dict[str, Any] = {"description": op.description, "operationId": op.operation_id,
                           "consumes": list(op.consumes), "produces": list(op.produces),
                           "schemes": ["https"], "tags": [op.tag], "responses": responses}
    if params:
        out["parameters"] = params
    return {**out, **_extensions(op)}


def _v3_op(op: _Op) -> dict[str, Any]:
    responses: dict[str, Any] = {
        code: {"description": _CODE_TEXT[code],
               "content": {t: {"schema": _answer(op, _V3_REF)} for t in op.produces}}
        for code in op.codes}
    responses["401"] = {"description": _CODE_TEXT["401"]}
    out: dict[str, Any] = {"description": op.description, "operationId": op.operation_id,
                           "tags": [op.tag], "responses": responses}
    if op.params:
        out["parameters"] = [_v3_param(p) for p in op.params]
    if op.body:
        out["requestBody"] = {"required": True, "content": {
            t: {"schema": {"$ref": _V3_REF + op.body}} for t in op.consumes}}
    return {**out, **_extensions(op)}


def _v2_path(p: _Path) -> dict[str, Any]:
    item: dict[str, Any] = {op.method: _v2_op(op) for op in p.ops}
    if p.params:
        item["parameters"] = [_v2_param(n) for n in p.params]
    return item


def _v3_path(p: _Path) -> dict[str, Any]:
    item: dict[str, Any] = {op.method: _v3_op(op) for op in p.ops}
    if p.params:
        item["parameters"] = [_v3_param(n) for n in p.params]
    return item


def _to_v3(schema: Any) -> Any:
    """A v2 schema in OpenAPI 3.0 terms: refs into components, and a `$ref` with siblings
    (a description, patch extensions) wrapped in allOf, since 3.0 ignores a `$ref`'s siblings.
    kubectl's v3 readers (explain, strategic merge patch) unwrap a one-element allOf."""
    if isinstance(schema, list):
        return [_to_v3(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = {"$ref": _V3_REF + schema["$ref"].removeprefix(_V2_REF)}
        rest = {k: _to_v3(v) for k, v in schema.items() if k != "$ref"}
        return {"allOf": [ref], **rest} if rest else ref
    return {k: _to_v3(v) for k, v in schema.items()}


def _refs(node: Any, prefix: str) -> Iterator[str]:
    """The definition names a document fragment refers to."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(prefix):
                yield v.removeprefix(prefix)
            else:
                yield from _refs(v, prefix)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v, prefix)


@functools.cache
def _model() -> tuple[_Definitions, _Paths]:
    defs = _Definitions()
    paths = _Paths(defs)
    return defs, paths


def _build_v2() -> dict[str, Any]:
    defs, paths = _model()
    return {
        "swagger": "2.0",
        "info": dict(_INFO),
        "paths": {p.path: _v2_path(p) for doc in paths.by_doc.values() for p in doc},
        "definitions": dict(defs.schemas),
        "securityDefinitions": dict(_BEARER),
        "security": [{"BearerToken": []}],
    }


def _build_v3(doc_path: str) -> dict[str, Any] | None:
    defs, paths = _model()
    doc = paths.by_doc.get(doc_path)
    if doc is None:
        return None
    rendered = {p.path: _v3_path(p) for p in doc}
    # Only the schemas this group version reaches, as upstream (the apps/v1 document carries
    # autoscaling/v1 Scale because deployments/scale returns it).
    wanted: list[str] = []
    todo = list(_refs(rendered, _V3_REF))
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.append(name)
            todo.extend(_refs(defs.schemas[name], _V2_REF))
    return {
        "openapi": "3.0.0",
        "info": dict(_INFO),
        "paths": rendered,
        "components": {
            "schemas": {n: _V3_LEAVES.get(n) or _to_v3(defs.schemas[n]) for n in sorted(wanted)},
            "securitySchemes": dict(_BEARER),
        },
        "security": [{"BearerToken": []}],
    }


# ----------------------------------------------------------------------------------------------
# Public API: documents, their bytes and ETags
# ----------------------------------------------------------------------------------------------


def _encode(doc: dict[str, Any]) -> tuple[bytes, str]:
    """Stable bytes (sorted keys) and kube-openapi's ETag of them: upper-case hex SHA-512,
    which is also the `hash=` of the v3 URLs."""
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return data, hashlib.sha512(data).hexdigest().upper()


@functools.cache
def _v2_bytes() -> tuple[bytes, str]:
    return _encode(_build_v2())


@functools.cache
def _v2_protobuf_bytes() -> tuple[bytes, str]:
    # Encoded from the served JSON (sorted keys), so both say the same. The ETag is the hash of
    # the protobuf bytes: a client cache that ignores `Vary: Accept` must not answer a protobuf
    # request with a JSON copy it holds (kube-openapi gives both the JSON's hash).
    data = openapi_pb.encode_document(json.loads(_v2_bytes()[0]))
    return data, hashlib.sha512(data).hexdigest().upper()


@functools.cache
def _v3_bytes(doc_path: str) -> tuple[bytes, str] | None:
    doc = _build_v3(doc_path)
    return None if doc is None else _encode(doc)


def _v3_paths() -> list[str]:
    return sorted(_model()[1].by_doc)


@functools.cache
def _index_bytes() -> tuple[bytes, str]:
    paths: dict[str, Any] = {}
    for doc_path in _v3_paths():
        encoded = _v3_bytes(doc_path)
        assert encoded is not None  # listed, so it exists
        paths[doc_path] = {"serverRelativeURL": f"/openapi/v3/{doc_path}?hash={encoded[1]}"}
    return _encode({"paths": paths})


def document_bytes(kind: str, path: str = "") -> tuple[bytes, str] | None:
    """The bytes of a document and its ETag (unquoted), cached for the process.

    kind "v2": `/openapi/v2` as JSON (path ignored). kind "v2-protobuf": the same document as
    gnostic's protobuf `openapi.v2.Document`, for an `Accept:` of V2_PROTOBUF_TYPES. kind "v3":
    the index for path "", else the document of a group version (`api/v1`, `apis/apps/v1`,
    `apis/apps`, `api`, `apis`, `version`; a leading `/openapi/v3/` or slashes are tolerated),
    JSON. None for an unknown kind or path.

    kubectl and client-go ask for `/openapi/v2` with `Accept: V2_PROTOBUF` alone and
    proto-decode whatever comes back (no JSON fallback): kubectl 1.20, 1.27 and 1.28 need the
    protobuf for `create/apply/replace` (client-side validation), `diff` and `explain`; 1.29+
    only need the v3 documents (they fall back to v2 only for a `kind: List` manifest or
    `explain --output plaintext-openapiv2`).
    """
    if kind == "v2":
        return _v2_bytes()
    if kind == "v2-protobuf":
        return _v2_protobuf_bytes()
    if kind != "v3":
        return None
    path = path.removeprefix("/openapi/v3").strip("/")
    return _index_bytes() if not path else _v3_bytes(path)


def openapi_v2() -> dict[str, Any]:
    """The Swagger 2.0 document of `/openapi/v2` (a fresh copy of exactly what is served)."""
    data = document_bytes("v2")
    assert data is not None
    return dict(json.loads(data[0]))


def openapi_v3_index() -> dict[str, Any]:
    """`/openapi/v3`: every document path → `{"serverRelativeURL": "/openapi/v3/...?hash=..."}`."""
    data = document_bytes("v3")
    assert data is not None
    return dict(json.loads(data[0]))


def openapi_v3(group_version_path: str) -> dict[str, Any] | None:
    """The OpenAPI 3.0 document of one path of the index (`api/v1`, `apis/apps/v1`, ...), or
    None for one this server does not serve."""
    if not group_version_path.strip("/"):
        return None
    data = document_bytes("v3", group_version_path)
    return None if data is None else dict(json.loads(data[0]))
