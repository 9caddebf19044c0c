"""Manifests for tests and benchmarks, written once.

Many tests need "a pod named x on node y" or "a deployment of n replicas of image z"; each
writing the dict itself drifted into a dozen near-copies. These builders return plain dicts
(what the apiserver takes); a test passes whatever else it cares about as spec fields.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def condition(obj: Obj, type_: str) -> Obj:
    """`obj`'s status condition of that type, or {} (so `.get("status")` reads either)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def pod(name: str, *, image: str = "pause", labels: Obj | None = None,
        annotations: Obj | None = None, **spec: Any) -> Obj:
    """A one-container Pod; `spec` fields (nodeName, tolerations, ...) go in as given."""
    meta: Obj = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": image}], **spec}}


def deployment(name: str, replicas: int = 3, image: str = "nginx:1", *,
               strategy: Obj | None = None, annotations: Obj | None = None,
               pod_annotations: Obj | None = None, **spec: Any) -> Obj:
    """A Deployment of `image` selecting its pods by `app: name`."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, **({"annotations": annotations} if annotations else {})},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            **({"strategy": strategy} if strategy else {}), **spec,
            "template": {
                "metadata": {"labels": labels,
                             **({"annotations": pod_annotations} if pod_annotations else {})},
                "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }
