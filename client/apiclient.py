"""The async client every component and tkctl use to talk to the apiserver.

Two layers, as client-go has a dynamic and a typed client:
- `ApiClient`: verbs on any resource by name, objects as JSON dicts (tkctl, generic code);
- `ApiClient.resource(Model)`: a `ResourceClient[Model]` whose verbs take and return the pydantic
  models (controllers).

A failed call raises the same `api.errors.ApiError` subclass the server raised (NotFound,
Conflict, Gone, Invalid with field causes, ...), rebuilt from the Status in trailing metadata.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from api import errors
from api.meta import TypedObject
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.resources import ResourceInfo, for_model, lookup

DEFAULT_SERVER = "127.0.0.1:6443"
SERVER_ENV = "TINYKUBE_SERVER"

# Large lists and objects up to the apiserver's 1.5 MiB object limit, with headroom.
_MAX_MESSAGE = 64 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # While the channel is disconnected, calls fail fast and the channel only retries the
    # connection on its own back-off (default: up to 120 s). Capping it lets every informer
    # notice a restarted apiserver within ~2 s instead of tens of seconds; the reflector has
    # its own back-off on top.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

T = TypeVar("T", bound=TypedObject)
R = TypeVar("R")


def resolve_server(flag: str | None = None) -> str:
    """`--server` if given, else $TINYKUBE_SERVER, else 127.0.0.1:6443 (the documented order)."""
    return flag or os.environ.get(SERVER_ENV) or DEFAULT_SERVER


@dataclass
class WatchEvent:
    """One watch event: type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    type: str
    object: dict[str, Any]


async def _call(fn: Callable[[], Awaitable[R]]) -> R:
    try:
        return await fn()
    except grpc.aio.AioRpcError as e:
        raise errors.from_grpc(e.code(), e.details() or "", e.trailing_metadata()) from None


def _ns(info: ResourceInfo, namespace: str | None) -> str:
    return (namespace or "") if info.namespaced else ""


class ApiClient:
    """Verbs on any resource, objects as dicts. Create once, share, `await close()` at the end."""

    def __init__(self, server: str | None = None, *, user_agent: str = "tinykube") -> None:
        self.server = resolve_server(server)
        self._channel = grpc.aio.insecure_channel(
            self.server, options=[*_CHANNEL_OPTIONS, ("grpc.primary_user_agent", user_agent)]
        )
        self._stub = pb_grpc.ApiStub(self._channel)
        # Warnings from the last call (e.g. unknown fields dropped), as kubectl prints them.
        self.last_warnings: list[str] = []

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the channel connects (the apiserver may still be starting)."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise errors.ServiceUnavailable(
                message=f"the server at {self.server} is not reachable") from None

    def resource(self, model: type[T]) -> ResourceClient[T]:
        return ResourceClient(self, model)

    def _object(self, resp: pb.ObjectResponse) -> dict[str, Any]:
        self.last_warnings = list(resp.warnings)
        result: dict[str, Any] = json.loads(resp.object)
        return result

    # --- verbs ------------------------------------------------------------------------------

    async def create(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, dry_run: bool = False,
    ) -> dict[str, Any]:
        info = lookup(resource)
        ns = namespace or (obj.get("metadata") or {}).get("namespace") or ""
        req = pb.CreateRequest(
            resource=info.name, namespace=_ns(info, ns), object=json.dumps(obj).encode(),
            dry_run=dry_run,
        )
        return self._object(await _call(lambda: self._stub.Create(req)))

    async def get(
        self, resource: str, name: str, namespace: str | None = None, *, subresource: str = ""
    ) -> dict[str, Any]:
        info = lookup(resource)
        req = pb.GetRequest(
            resource=info.name, namespace=_ns(info, namespace), name=name, subresource=subresource
        )
        return self._object(await _call(lambda: self._stub.Get(req)))

    async def list(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", limit: int = 0, continue_token: str = "",
        resource_version: str = "",
    ) -> dict[str, Any]:
        """One page: a `<Kind>List` dict with `items` and `metadata.continue` when more remain."""
        info = lookup(resource)
        req = pb.ListRequest(
            resource=info.name, namespace=_ns(info, namespace),
            options=pb.ListOptions(
                label_selector=label_selector, field_selector=field_selector, limit=limit,
                continue_token=continue_token, resource_version=resource_version,
            ),
        )
        return self._object(await _call(lambda: self._stub.List(req)))

    async def list_all(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", page_size: int = 500,
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every item, fetched in pages; returns (items, resourceVersion of the snapshot)."""
        items: builtins.list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.list(
                resource, namespace, label_selector=label_selector,
                field_selector=field_selector, limit=page_size, continue_token=token,
            )
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion", ""))

    async def update(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, subresource: str = "", dry_run: bool = False,
    ) -> dict[str, Any]:
        info = lookup(resource)
        md = obj.get("metadata") or {}
        req = pb.UpdateRequest(
            resource=info.name, namespace=_ns(info, namespace or md.get("namespace")),
            name=md.get("name", ""), subresource=subresource, object=json.dumps(obj).encode(),
            dry_run=dry_run,
        )
        return self._object(await _call(lambda: self._stub.Update(req)))

    async def update_status(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return await self.update(resource, obj, namespace, subresource="status")

    async def patch(
        self, resource: str, name: str, patch: dict[str, Any] | builtins.list[Any],
        namespace: str | None = None, *, patch_type: str = "merge", subresource: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        info = lookup(resource)
        req = pb.PatchRequest(
            resource=info.name, namespace=_ns(info, namespace), name=name,
            subresource=subresource, patch_type=patch_type, patch=json.dumps(patch).encode(),
            dry_run=dry_run,
        )
        return self._object(await _call(lambda: self._stub.Patch(req)))

    async def delete(
        self, resource: str, name: str, namespace: str | None = None, *,
        grace_period_seconds: int | None = None, propagation_policy: str = "",
        precondition_uid: str = "", precondition_resource_version: str = "",
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Returns the object as it is after the call: gone (final state) or being finalized."""
        info = lookup(resource)
        req = pb.DeleteRequest(
            resource=info.name, namespace=_ns(info, namespace), name=name,
            options=_delete_options(
                grace_period_seconds, propagation_policy, precondition_uid,
                precondition_resource_version, dry_run,
            ),
        )
        return self._object(await _call(lambda: self._stub.Delete(req)))

    async def delete_collection(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", grace_period_seconds: int | None = None,
        propagation_policy: str = "",
    ) -> dict[str, Any]:
        info = lookup(resource)
        req = pb.DeleteCollectionRequest(
            resource=info.name, namespace=_ns(info, namespace),
            list_options=pb.ListOptions(
                label_selector=label_selector, field_selector=field_selector
            ),
            options=_delete_options(grace_period_seconds, propagation_policy, "", "", False),
        )
        return self._object(await _call(lambda: self._stub.DeleteCollection(req)))

    async def bind(self, namespace: str, name: str, node_name: str, uid: str = "") -> None:
        """Bind a pod to a node through the pods/binding subresource (what the scheduler does)."""
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        req = pb.BindRequest(namespace=namespace, name=name, binding=json.dumps(binding).encode())
        self._object(await _call(lambda: self._stub.Bind(req)))

    async def discovery(self) -> dict[str, Any]:
        return self._object(await _call(lambda: self._stub.Discovery(pb.DiscoveryRequest())))

    async def watch(
        self, resource: str, namespace: str | None = None, *, resource_version: str = "",
        label_selector: str = "", field_selector: str = "", allow_bookmarks: bool = False,
        timeout_seconds: int = 0,
    ) -> AsyncIterator[WatchEvent]:
        """Stream events until the server ends the watch (timeout, apiserver restart).

        A resourceVersion older than the server's watch cache raises `errors.Gone`: relist.
        """
        info = lookup(resource)
        req = pb.ListRequest(
            resource=info.name, namespace=_ns(info, namespace),
            options=pb.ListOptions(
                label_selector=label_selector, field_selector=field_selector,
                resource_version=resource_version, allow_watch_bookmarks=allow_bookmarks,
                timeout_seconds=timeout_seconds,
            ),
        )
        call = self._stub.Watch(req)
        try:
            async for ev in call:
                obj = json.loads(ev.object)
                if ev.type == "ERROR":
                    raise errors.from_status(obj)
                yield WatchEvent(ev.type, obj)
        except grpc.aio.AioRpcError as e:
            raise errors.from_grpc(e.code(), e.details() or "", e.trailing_metadata()) from None
        finally:
            call.cancel()


def _delete_options(
    grace: int | None, policy: str, uid: str, rv: str, dry_run: bool
) -> pb.DeleteOptions:
    return pb.DeleteOptions(
        grace_period_seconds=-1 if grace is None else grace, propagation_policy=policy,
        precondition_uid=uid, precondition_resource_version=rv, dry_run=dry_run,
    )


class ResourceClient(Generic[T]):
    """Typed verbs for one kind: `await client.resource(Pod).get("web-1", "default") -> Pod`."""

    def __init__(self, api: ApiClient, model: type[T]) -> None:
        self.api = api
        self.model = model
        self.info = for_model(model)

    def _parse(self, data: dict[str, Any]) -> T:
        return self.model.model_validate(data)

    async def get(self, name: str, namespace: str | None = None) -> T:
        return self._parse(await self.api.get(self.info.name, name, namespace))

    async def list(
        self, namespace: str | None = None, *, label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[T], str]:
        items, rv = await self.api.list_all(
            self.info.name, namespace, label_selector=label_selector,
            field_selector=field_selector,
        )
        return [self._parse(i) for i in items], rv

    async def create(self, obj: T, *, dry_run: bool = False) -> T:
        return self._parse(
            await self.api.create(self.info.name, obj.to_dict(), obj.metadata.namespace,
                                  dry_run=dry_run)
        )

    async def update(self, obj: T) -> T:
        return self._parse(await self.api.update(self.info.name, obj.to_dict()))

    async def update_status(self, obj: T) -> T:
        return self._parse(await self.api.update_status(self.info.name, obj.to_dict()))

    async def patch(
        self, name: str, patch: dict[str, Any] | builtins.list[Any],
        namespace: str | None = None, *, patch_type: str = "merge", subresource: str = "",
    ) -> T:
        return self._parse(
            await self.api.patch(self.info.name, name, patch, namespace, patch_type=patch_type,
                                 subresource=subresource)
        )

    async def delete(
        self, name: str, namespace: str | None = None, *,
        grace_period_seconds: int | None = None, propagation_policy: str = "",
        precondition_uid: str = "",
    ) -> dict[str, Any]:
        return await self.api.delete(
            self.info.name, name, namespace, grace_period_seconds=grace_period_seconds,
            propagation_policy=propagation_policy, precondition_uid=precondition_uid,
        )
