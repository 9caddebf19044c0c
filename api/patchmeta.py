"""Patch metadata: how strategic merge patch treats each list and map field of our models.

Upstream declares this with Go struct tags on k8s.io/api types (`patchStrategy:"merge"
patchMergeKey:"name"`, plus the `+listType=map` / `+listMapKey=` markers server-side apply and
OpenAPI use). Our models are pydantic classes with no such tags, so this module is the one table
that says, per (model class, JSON field name), what upstream's tags say. Two readers depend on it:
`api.strategicpatch` (how `kubectl apply` / `kubectl patch` merge lists instead of replacing
them) and the OpenAPI generator (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, which kubectl reads to build its patches).

A field without an entry has no strategy: a list is atomic (a patch replaces it whole) and a
map merges key by key, exactly as upstream treats an untagged field. When you add a model field
that upstream tags, add its row here (the unit tests check that each row's merge key is a field
of the list's item model).

Stable API (other modules build on it; keep the signatures):
- `FieldMeta(strategy, merge_key, list_type, list_map_keys)`, frozen;
- `field_meta(model, json_field) -> FieldMeta | None`;
- `patched_fields(model) -> dict[str, FieldMeta]`;
- `model_field(model, json_field) -> FieldInfo | None`;
- `field_model(model, json_field) -> type[BaseModel] | None`;
- `unwrap_model(annotation) -> type[BaseModel] | None`;
- `PATCH_META`, the whole table (read-only).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from api import apps, core, meta

# Upstream's strategy names (k8s.io/apimachinery strategicpatch), as they appear in the tag.
MERGE = "merge"
RETAIN_KEYS = "retainKeys"
REPLACE = "replace"


@dataclass(frozen=True)
class FieldMeta:
    """The patch metadata of one field, as upstream's struct tags and markers state it.

    strategy: "" (none: lists are atomic), "merge", "retainKeys", "merge,retainKeys" or
        "replace" — the `patchStrategy` tag, verbatim, so it can be emitted as
        `x-kubernetes-patch-strategy`.
    merge_key: the `patchMergeKey` tag: the item field that identifies an element of a merged
        list of objects ("" for lists of primitives, which merge as sets, and for non-lists).
    list_type: the `+listType` marker: "map", "set", "atomic", or "" when upstream states none.
    list_map_keys: the `+listMapKey` markers (server-side apply's key; may be wider than
        merge_key: container ports are keyed by containerPort and protocol there).
    """

    strategy: str = ""
    merge_key: str = ""
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategy split on commas: ("merge", "retainKeys") for "merge,retainKeys"."""
        return tuple(s for s in self.strategy.split(",") if s)

    @property
    def merges(self) -> bool:
        """Whether a patch merges into this list (element-wise, or as a set) instead of
        replacing it."""
        return MERGE in self.strategies

    @property
    def replaces(self) -> bool:
        return REPLACE in self.strategies

    @property
    def retains_keys(self) -> bool:
        """Whether clients send `$retainKeys` for this map (or each item of this list): a union
        such as a Deployment strategy or a volume source, whose other members must be cleared
        when one is set."""
        return RETAIN_KEYS in self.strategies


def _merge_by(key: str, *list_map_keys: str) -> FieldMeta:
    """A list of objects merged element-wise by `key` (upstream: patchStrategy=merge,
    patchMergeKey=key, listType=map)."""
    return FieldMeta(MERGE, key, "map", list_map_keys or (key,))


_SET = FieldMeta(MERGE, "", "set")  # a list of strings merged as a set (finalizers, podCIDRs)

# (model, JSON field name) -> metadata. Checked against k8s.io/api core/v1, apps/v1 and
# k8s.io/apimachinery meta/v1 types.go. Fields upstream leaves untagged (tolerations, taints,
# envFrom, command/args, endpoints subsets, service status.loadBalancer, every rbac list, a
# ServiceAccount's imagePullSecrets, a Namespace's spec.finalizers) are atomic and need no row.
_TABLE: dict[tuple[type[BaseModel], str], FieldMeta] = {
    # meta/v1
    (meta.ObjectMeta, "ownerReferences"): _merge_by("uid"),
    (meta.ObjectMeta, "finalizers"): _SET,
    # core/v1 Container (upstream's EphemeralContainerCommon carries the same tags)
    (core.Container, "ports"): _merge_by("containerPort", "containerPort", "protocol"),
    (core.Container, "env"): _merge_by("name"),
    (core.Container, "volumeMounts"): _merge_by("mountPath"),
    (core.Container, "volumeDevices"): _merge_by("devicePath"),
    # core/v1 PodSpec. Volumes also retain keys: a volume's source is a union (emptyDir,
    # configMap, ...), so switching a volume's source must drop the old one.
    (core.PodSpec, "volumes"): FieldMeta(f"{MERGE},{RETAIN_KEYS}", "name", "map", ("name",)),
    (core.PodSpec, "initContainers"): _merge_by("name"),
    (core.PodSpec, "containers"): _merge_by("name"),
    (core.PodSpec, "ephemeralContainers"): _merge_by("name"),
    (core.PodSpec, "imagePullSecrets"): _merge_by("name"),
    (core.PodSpec, "hostAliases"): _merge_by("ip"),
    (core.PodSpec, "topologySpreadConstraints"): _merge_by(
        "topologyKey", "topologyKey", "whenUnsatisfiable"),
    # core/v1 statuses
    (core.PodStatus, "conditions"): _merge_by("type"),
    (core.PodStatus, "podIPs"): _merge_by("ip"),
    # Upstream tags hostIPs mergeable by ip but lists it as atomic for server-side apply.
    (core.PodStatus, "hostIPs"): FieldMeta(MERGE, "ip", "atomic"),
    (core.NodeSpec, "podCIDRs"): _SET,
    (core.NodeStatus, "conditions"): _merge_by("type"),
    # Upstream warns that `type` does not identify an address uniquely; it is still the tag.
    (core.NodeStatus, "addresses"): _merge_by("type"),
    (core.NamespaceStatus, "conditions"): _merge_by("type"),
    (core.ReplicationControllerStatus, "conditions"): _merge_by("type"),
    # Upstream merges service ports by port alone (patchMergeKey) although SSA keys them by
    # port and protocol: a TCP and a UDP port 53 collide under strategic merge patch there too.
    (core.ServiceSpec, "ports"): _merge_by("port", "port", "protocol"),
    (core.ServiceStatus, "conditions"): _merge_by("type"),
    (core.ServiceAccount, "secrets"): _merge_by("name"),
    # apps/v1. A Deployment strategy is a union: switching to Recreate drops rollingUpdate.
    (apps.DeploymentSpec, "strategy"): FieldMeta(RETAIN_KEYS),
    (apps.DeploymentStatus, "conditions"): _merge_by("type"),
    (apps.ReplicaSetStatus, "conditions"): _merge_by("type"),
}

PATCH_META: Mapping[tuple[type[BaseModel], str], FieldMeta] = types.MappingProxyType(_TABLE)


def field_meta(model: type[BaseModel], json_field: str) -> FieldMeta | None:
    """The patch metadata of `model`'s field whose JSON (camelCase) name is `json_field`, or
    None when upstream declares none (atomic list, plain map or scalar) or the field is unknown.

    Subclasses inherit their bases' rows, as Go's embedded structs do.
    """
    for cls in model.__mro__:
        found = _TABLE.get((cls, json_field))
        if found is not None:
            return found
    return None


def patched_fields(model: type[BaseModel]) -> dict[str, FieldMeta]:
    """Every field of `model` (JSON names) that has patch metadata, in the model's field order:
    what the OpenAPI generator annotates for one schema."""
    out: dict[str, FieldMeta] = {}
    for name in _fields_by_alias(model):
        fm = field_meta(model, name)
        if fm is not None:
            out[name] = fm
    return out


def model_field(model: type[BaseModel], json_field: str) -> FieldInfo | None:
    """pydantic's FieldInfo of `model`'s field with JSON name `json_field` (None if unknown)."""
    return _fields_by_alias(model).get(json_field)


def field_model(model: type[BaseModel], json_field: str) -> type[BaseModel] | None:
    """The pydantic model a field holds, through `X | None`, `list[X]` and `dict[str, X]`:
    `field_model(PodSpec, "containers") is Container`. None for scalars, loosely typed
    `dict[str, Any]` fields and unknown fields."""
    info = model_field(model, json_field)
    return None if info is None else unwrap_model(info.annotation)


def unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class inside an annotation (`X`, `X | None`, `list[X]`,
    `dict[str, X]`, `Annotated[X, ...]`, nested), or None when there is none or the annotation
    allows more than one non-None type."""
    ann = strip_optional(annotation)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is list and len(args) == 1:
        return unwrap_model(args[0])
    if origin is dict and len(args) == 2:
        return unwrap_model(args[1])
    return None


def strip_optional(annotation: Any) -> Any:
    """`X | None` -> `X` and `Annotated[X, ...]` -> `X`; anything else unchanged (a union of two
    real types, such as IntOrString, stays a union)."""
    ann = annotation
    while True:
        origin = typing.get_origin(ann)
        if origin is Annotated:
            ann = typing.get_args(ann)[0]
            continue
        if origin is Union or origin is types.UnionType:
            rest = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(rest) == 1:
                ann = rest[0]
                continue
        return ann


@functools.cache
def _fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    # K8sModel generates camelCase aliases; a model without aliases uses the Python name.
    return {(info.alias or name): info for name, info in model.model_fields.items()}
