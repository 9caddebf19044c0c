"""The gRPC `Api` service: thin handlers that decode envelopes and call the registry.

Every handler resolves the resource, times the call for the metrics, and turns an ApiError into
its gRPC status code plus the Kubernetes `Status` in trailing metadata. Anything else is a bug in
the server: it is logged with its traceback and the client gets one InternalError line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.resources import RESOURCES, ResourceInfo
from apiserver import metrics
from apiserver.registry import Registry, Result
from apiserver.watchcache import WatchCache

log = logging.getLogger(__name__)

VERSION = {"major": "1", "minor": "0", "gitVersion": "v1.0.0-tinykube",
           "platform": "linux/amd64", "tinykubeVersion": "0.1.0"}


def _resource(name: str) -> ResourceInfo:
    info = RESOURCES.get(name)
    if info is None:
        raise errors.NotFound(message=f'the server could not find the requested resource '
                              f'"{name}"', kind="resource")
    return info


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def _abort(context: grpc.aio.ServicerContext, e: errors.ApiError) -> NoReturn:
    context.set_trailing_metadata(e.trailing_metadata())
    await context.abort(e.grpc_code, e.message)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


class ApiServicer(pb_grpc.ApiServicer):
    def __init__(self, registry: Registry, cache: WatchCache, bookmark_interval: float) -> None:
        self.registry = registry
        self.cache = cache
        self.bookmark_interval = bookmark_interval

    async def _unary(self, verb: str, resource: str, context: grpc.aio.ServicerContext,
                     fn: Callable[[ResourceInfo], Awaitable[Result | dict[str, Any]]]
                     ) -> pb.ObjectResponse:
        start = time.perf_counter()
        code = "200"
        try:
            result = await fn(_resource(resource))
            if isinstance(result, Result):
                return pb.ObjectResponse(object=_dumps(result.object), warnings=result.warnings)
            return pb.ObjectResponse(object=_dumps(result))
        except errors.ApiError as e:
            code = str(e.code)
            await _abort(context, e)
        except Exception as e:
            code = "500"
            log.exception("%s %s failed", verb, resource)
            await _abort(context, errors.InternalError(message=f"Internal error occurred: {e}"))
        finally:
            metrics.REQUESTS.labels(verb, resource, code).inc()
            metrics.LATENCY.labels(verb, resource).observe(time.perf_counter() - start)

    async def Create(self, request: pb.CreateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._unary("create", request.resource, context, lambda info: (
            self.registry.create(info, request.namespace, request.object, request.dry_run)))

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext
                  ) -> pb.ObjectResponse:
        return await self._unary("get", request.resource, context, lambda info: (
            self.registry.get(info, request.namespace, request.name, request.subresource)))

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        return await self._unary("list", request.resource, context, lambda info: (
            self.registry.list(info, request.namespace, request.options)))

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._unary("update", request.resource, context, lambda info: (
            self.registry.update(info, request.namespace, request.name, request.subresource,
                                 request.object, request.dry_run)))

    async def Patch(self, request: pb.PatchRequest, context: grpc.aio.ServicerContext
                    ) -> pb.ObjectResponse:
        return await self._unary("patch", request.resource, context, lambda info: (
            self.registry.patch(info, request.namespace, request.name, request.subresource,
                                request.patch_type, request.patch, request.dry_run)))

    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._unary("delete", request.resource, context, lambda info: (
            self.registry.delete(info, request.namespace, request.name, request.options)))

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest,
                               context: grpc.aio.ServicerContext) -> pb.ObjectResponse:
        return await self._unary("deletecollection", request.resource, context, lambda info: (
            self.registry.delete_collection(info, request.namespace, request.list_options,
                                            request.options)))

    async def Bind(self, request: pb.BindRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        return await self._unary("create", "pods", context, lambda _info: (
            self.registry.bind(request.namespace, request.name, request.binding)))

    async def Discovery(self, request: pb.DiscoveryRequest, context: grpc.aio.ServicerContext
                        ) -> pb.ObjectResponse:
        # Nothing here can fail, so no _unary: it would also count the call as some resource's.
        metrics.REQUESTS.labels("get", "discovery", "200").inc()
        return pb.ObjectResponse(object=_dumps(discovery_document()))

    async def Watch(self, request: pb.ListRequest, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[pb.WatchEvent]:
        opts = request.options
        try:
            info = _resource(request.resource)
            ns = request.namespace if info.namespaced else ""
            watcher = await self.cache.watch(info.name, ns, self.registry.matcher(info, opts),
                                             opts.resource_version)
        except errors.ApiError as e:
            metrics.REQUESTS.labels("watch", request.resource, str(e.code)).inc()
            await _abort(context, e)
        metrics.REQUESTS.labels("watch", request.resource, "200").inc()
        stream = self.cache.stream(watcher, opts.allow_watch_bookmarks, self.bookmark_interval,
                                   info.kind, info.api_version)
        sent = metrics.WATCH_EVENTS_SENT.labels(info.name)
        unreported = 0  # the counter takes a lock: report in batches, not per event
        try:
            async with asyncio.timeout(opts.timeout_seconds or None):
                async for message in stream:
                    unreported += 1
                    if unreported >= 64:
                        sent.inc(unreported)
                        unreported = 0
                    yield message
        except TimeoutError:
            return  # the client asked for a bounded watch; ending it is the answer
        finally:
            sent.inc(unreported)
            await stream.aclose()


def discovery_document() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "APIResourceList",
        "serverVersion": VERSION,
        "resources": [
            {
                "name": r.name, "singularName": r.singular, "namespaced": r.namespaced,
                "group": r.group, "version": r.version, "apiVersion": r.api_version,
                "kind": r.kind, "verbs": list(r.verbs), "shortNames": list(r.short_names),
                "subresources": sorted(r.subresources),
            }
            for r in RESOURCES.values()
        ],
    }
