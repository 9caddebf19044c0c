"""The `meta.k8s.io/v1` Table and PartialObjectMetadataList answers of Kubernetes' HTTP API.

kubectl asks `get` for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json`
and prints whatever columns the server sends; controllers built on client-go's metadata informers
ask for `as=PartialObjectMetadataList`. Both are views of the same list the registry returns, so
they are pure functions of that list here, shaped field for field as kube-apiserver shapes them
(the printers' TableGenerator, the generic registry's DefaultTableConvertor, and the handlers'
`asTable` / `asPartialObjectMetadataList` in k8s.io/apiserver/pkg/endpoints/handlers/response.go).
The per-kind columns come from `api.printers`, which tkctl prints from too.

No I/O: the HTTP front parses the Accept header and `includeObject`, calls these, and encodes the
dict it gets back.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from typing import Any

from api.errors import BadRequest
from api.printers import printer_for, utcnow
from api.resources import ResourceInfo

Obj = dict[str, Any]

GROUP_VERSION = "meta.k8s.io/v1"

# metav1.IncludeObjectPolicy: what each Table row carries besides its cells.
INCLUDE_NONE = "None"
INCLUDE_METADATA = "Metadata"  # upstream's default (also when includeObject is empty)
INCLUDE_OBJECT = "Object"
INCLUDE_OBJECT_POLICIES = (INCLUDE_NONE, INCLUDE_METADATA, INCLUDE_OBJECT)


def partial_object_metadata(obj: Obj) -> Obj:
    """meta.AsPartialObjectMetadata: the object's metadata under `meta.k8s.io/v1`
    PartialObjectMetadata (upstream sets the group version of the request, not the object's)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": GROUP_VERSION,
            # A copy: the answer must not share dicts with the caller's (cached) objects.
            "metadata": copy.deepcopy(obj.get("metadata") or {})}


def _list_metadata(list_meta: Obj | None) -> Obj:
    """The ListMeta fields a Table or PartialObjectMetadataList repeats from the list
    (all omitempty; remainingItemCount is a pointer, so 0 is kept and only None is dropped)."""
    lm = list_meta or {}
    out: Obj = {}
    if lm.get("resourceVersion"):
        out["resourceVersion"] = str(lm["resourceVersion"])
    if lm.get("continue"):
        out["continue"] = str(lm["continue"])
    if lm.get("remainingItemCount") is not None:
        out["remainingItemCount"] = int(lm["remainingItemCount"])
    return out


def _table_metadata(objects: list[Obj], list_meta: Obj | None) -> Obj:
    if list_meta is not None:
        return _list_metadata(list_meta)
    # A single object (GET of one name): the Table carries that object's resourceVersion, as
    # TableGenerator does through meta.CommonAccessor.
    if len(objects) == 1:
        rv = (objects[0].get("metadata") or {}).get("resourceVersion")
        return {"resourceVersion": str(rv)} if rv else {}
    return {}


def _row_object(info: ResourceInfo, obj: Obj, policy: str) -> Obj | None:
    if policy == INCLUDE_NONE:
        # RawExtension with no object marshals as JSON null; the key stays ("object": null).
        return None
    if policy == INCLUDE_OBJECT:
        if obj.get("apiVersion") and obj.get("kind"):
            return obj
        # Upstream converts to the request's version, which sets apiVersion and kind.
        return {**obj, "apiVersion": info.api_version, "kind": info.kind}
    return partial_object_metadata(obj)


def to_table(info: ResourceInfo, objects: list[dict[str, Any]], *,
             include_object: str = INCLUDE_METADATA, now: _dt.datetime | None = None,
             list_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `meta.k8s.io/v1` Table kube-apiserver answers for `objects` of resource `info`.

    `objects` is a list's items, or the one object of a GET. `list_meta` is the list's
    metadata (resourceVersion, continue, remainingItemCount, camelCase as on the wire); None
    means a GET, whose Table carries the object's resourceVersion. `include_object` is the
    `includeObject` query parameter: "None", "Metadata" (the default, also for "") or "Object";
    anything else is a BadRequest, as upstream. Every column is sent, the `-o wide` ones with
    priority 1, because kube-apiserver always generates the wide table and leaves hiding to
    the client. `now` is the clock the AGE cells are computed against.
    """
    policy = include_object or INCLUDE_METADATA
    if policy not in INCLUDE_OBJECT_POLICIES:
        raise BadRequest(message=f"unrecognized includeObject value: {json.dumps(policy)}")
    printer = printer_for(info.kind)
    when = now or utcnow()
    rows: list[Obj] = []
    for obj in objects:
        row: Obj = {"cells": printer.cells(obj, when)}
        conditions = printer.conditions(obj)
        if conditions:  # omitempty
            row["conditions"] = conditions
        row["object"] = _row_object(info, obj, policy)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": GROUP_VERSION,
        "metadata": _table_metadata(objects, list_meta),
        "columnDefinitions": [c.definition() for c in printer.columns],
        "rows": rows,
    }


def partial_object_metadata_list(info: ResourceInfo, objects: list[dict[str, Any]],
                                 list_meta: dict[str, Any] | None) -> dict[str, Any]:
    """The `meta.k8s.io/v1` PartialObjectMetadataList for a list's items.

    Every item becomes a PartialObjectMetadata whatever the resource (`info` is taken so that
    both converters are called alike by the HTTP front; the answer does not depend on it), and
    the list's resourceVersion / continue / remainingItemCount are carried over, so that a
    metadata-only informer can list and then watch from the same resourceVersion.
    """
    del info  # see the docstring: the shape is the same for every resource
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": GROUP_VERSION,
        "metadata": _list_metadata(list_meta),
        "items": [partial_object_metadata(o) for o in objects],
    }
