"""A watch cache filled from dicts, over a storage that knows nothing else: enough for the
pure logic of authentication, authorization and admission, which only read objects."""

from __future__ import annotations

import uuid
from typing import Any

from apiserver.auth import UserInfo
from apiserver.watchcache import WatchCache

Obj = dict[str, Any]


class EmptyStorage:
    """What the cache falls back to on a miss: nothing is there."""

    async def get(self, key: str) -> Obj | None:
        return None


def cache_with(*objects: tuple[str, Obj]) -> WatchCache:
    cache = WatchCache(EmptyStorage())  # type: ignore[arg-type]
    for resource, obj in objects:
        put(cache, resource, obj)
    return cache


def put(cache: WatchCache, resource: str, obj: Obj) -> Obj:
    md = obj.setdefault("metadata", {})
    md.setdefault("uid", str(uuid.uuid4()))
    ns = md.get("namespace", "")
    cache.caches[resource].store[f"{ns}/{md['name']}" if ns else md["name"]] = obj
    return obj


def remove(cache: WatchCache, resource: str, ns: str, name: str) -> None:
    cache.caches[resource].store.pop(f"{ns}/{name}" if ns else name, None)


def node_user(name: str) -> UserInfo:
    return UserInfo(f"system:node:{name}", ("system:nodes", "system:authenticated"))


def pod(name: str, node: str = "", ns: str = "default", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4())},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     **({"nodeName": node} if node else {}), **spec}}
