"""Discovery: the documents that tell kubectl and client libraries which resources exist.

kubectl's first requests on a new cluster are `/api` and `/apis` (aggregated discovery,
`apidiscovery.k8s.io/v2`, in one round trip each since 1.26; the legacy per-group-version
`APIResourceList`s otherwise). From them it learns resource names, kinds, short names (`po`),
categories (`get all`), verbs and subresources. Everything here is derived from the one resource
table, api/resources.py, so a resource added there is discoverable at once. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import Any

from api.resources import RESOURCES, ResourceInfo

# Subresource → (group, version, kind of the object it takes/returns, verbs), as upstream's
# discovery lists them ("" group/version: the parent's).
_SUBRESOURCES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "status": ("", "", "", ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
    "finalize": ("", "", "", ("update",)),
    "log": ("", "v1", "Pod", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
}
# Kinds in the `all` category (`kubectl get all`), as upstream's.
_ALL = frozenset({"pods", "services", "replicationcontrollers", "replicasets", "deployments",
                  "daemonsets", "statefulsets", "jobs", "cronjobs",
                  "horizontalpodautoscalers"})
_STREAMS = ("log", "exec", "attach", "portforward")


def _subresources(info: ResourceInfo) -> list[str]:
    subs = set(info.subresources)
    if info.name == "pods":
        subs |= set(_STREAMS)
    return sorted(subs)


def _storage_hash(info: ResourceInfo) -> str:
    """Upstream's storageVersionHash: a stable digest of group/version/kind (clients use it to
    notice a storage version change; ours never changes)."""
    raw = hashlib.sha256(f"{info.group}/{info.version}/{info.kind}".encode()).digest()
    return base64.b64encode(raw[:8]).decode()


def group_versions() -> dict[str, list[str]]:
    """group ("" = core) → its versions, in the table's order."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES.values():
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


def _in(group: str, version: str) -> list[ResourceInfo]:
    return [r for r in RESOURCES.values() if r.group == group and r.version == version]


# --- legacy discovery -------------------------------------------------------------------------


def api_versions(server_address: str) -> dict[str, Any]:
    """`/api`: the core group's versions."""
    return {"kind": "APIVersions", "versions": group_versions().get("", ["v1"]),
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                             "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    """`/apis`: every named group."""
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group(g, vs) for g, vs in group_versions().items() if g]}


def api_group(name: str) -> dict[str, Any] | None:
    """`/apis/GROUP`, or None for a group this server does not serve."""
    versions = group_versions().get(name) if name else None
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """`/api/v1` or `/apis/GROUP/VERSION`: its resources and their subresources."""
    infos = _in(group, version)
    if not infos:
        return None
    resources: list[dict[str, Any]] = []
    for r in infos:
        entry: dict[str, Any] = {"name": r.name, "singularName": r.singular,
                                 "namespaced": r.namespaced, "kind": r.kind,
                                 "verbs": sorted(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.name in _ALL:
            entry["categories"] = ["all"]
        if not r.virtual:
            entry["storageVersionHash"] = _storage_hash(r)
        resources.append(entry)
        for sub in _subresources(r):
            g, v, kind, verbs = _SUBRESOURCES[sub]
            s: dict[str, Any] = {"name": f"{r.name}/{sub}", "singularName": "",
                                 "namespaced": r.namespaced, "kind": kind or r.kind,
                                 "verbs": list(verbs)}
            if g or v:
                s.update(group=g, version=v)
            resources.append(s)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


# --- aggregated discovery (apidiscovery.k8s.io/v2 and v2beta1) ----------------------------------


def _aggregated_resource(r: ResourceInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resource": r.name,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular, "verbs": sorted(r.verbs)}
    if r.short_names:
        out["shortNames"] = list(r.short_names)
    if r.name in _ALL:
        out["categories"] = ["all"]
    subs = []
    for sub in _subresources(r):
        g, v, kind, verbs = _SUBRESOURCES[sub]
        subs.append({"subresource": sub,
                     "responseKind": {"group": g if v else r.group, "version": v or r.version,
                                      "kind": kind or r.kind},
                     "verbs": list(verbs)})
    if subs:
        out["subresources"] = subs
    return out


def aggregated(core: bool, version: str = "v2") -> dict[str, Any]:
    """`/api` (core=True) or `/apis` as one APIGroupDiscoveryList."""
    items = []
    for group, versions in group_versions().items():
        if bool(group) == core:
            continue
        items.append({
            "metadata": {"name": group} if group else {},
            "versions": [{"version": v, "freshness": "Current",
                          "resources": [_aggregated_resource(r) for r in _in(group, v)]}
                         for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


@cache
def encoded(name: str, *args: Any) -> tuple[bytes, str]:
    """The JSON bytes and ETag of one discovery document (they never change while the server
    runs; clients revalidate with If-None-Match)."""
    doc = api_group_list() if name == "api_group_list" else aggregated(*args)
    body = json.dumps(doc, separators=(",", ":")).encode()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
