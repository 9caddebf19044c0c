"""The gRPC `Api` service: thin handlers that decode envelopes and call the request handler.

Everything a request goes through (authentication, impersonation, authorization, the registry,
audit, metrics) is in handler.py, shared with the HTTP front (rest/). This module only turns a
gRPC call into `Credentials` and a request envelope, and an `ApiError` into its gRPC status code
plus the Kubernetes `Status` in trailing metadata.

Envelopes that do not parse are the client's mistake, and are answered as one: grpcio would
answer them itself, with UNKNOWN and a Python exception's class name, before any of our code
ran. So the service is registered (`add_to_server`) with request deserializers that never raise:
they hand the servicer an `Undecodable`, which it refuses as BadRequest in API words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from apiserver.auth import Credentials
from apiserver.authn import bearer, metadata_values
from apiserver.handler import Answer, RequestHandler, discovery_document, internal
from apiserver.registry import Result

log = logging.getLogger(__name__)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def _abort(context: grpc.aio.ServicerContext, e: errors.ApiError) -> NoReturn:
    context.set_trailing_metadata(e.trailing_metadata())
    await context.abort(e.grpc_code, e.grpc_details())
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


def _source_ip(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` → the address."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
    return host.strip("[]")


_IMPERSONATION = ("impersonate-user", "impersonate-group", "impersonate-uid")


def credentials(context: grpc.aio.ServicerContext) -> Credentials:
    """What a gRPC call carries: the verified client certificate, a bearer token, the
    impersonation metadata, the user agent and the peer's address."""
    md = context.invocation_metadata()
    pems = (context.auth_context() or {}).get("x509_pem_cert") or []
    agent = metadata_values(md, "user-agent")
    headers = tuple((k, v) for k in _IMPERSONATION for v in metadata_values(md, k))
    return Credentials(cert=pems[0] if pems else None,
                       token=bearer(metadata_values(md, "authorization")), headers=headers,
                       user_agent=agent[0] if agent else "", source_ip=_source_ip(context.peer()))


SERVICE = "tinykube.v1.Api"


@dataclass(frozen=True)
class Undecodable:
    """A request message that did not parse: what the servicer gets instead of it."""

    message: str  # the protobuf message's full name: tinykube.v1.CreateRequest
    problem: str

    def error(self) -> errors.BadRequest:
        return errors.BadRequest(message=f"the request is not a valid {self.message} message: "
                                 f"{self.problem}")


def _tolerant(parse: Callable[[bytes], Any], name: str) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as e:
            problem = ("a string field is not valid UTF-8" if "UTF-8" in str(e) else
                       "its protobuf encoding is truncated or corrupt")
            return Undecodable(name, problem)
    return deserialize


class _Capture:
    """Stands in for a server to the generated add_ApiServicer_to_server: keeps its method
    handlers, so that the method list stays the generated one."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, _service: str,
                                       handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = handlers


def add_to_server(servicer: ApiServicer, server: grpc.aio.Server) -> None:
    """Register the Api service as the generated code does, but with tolerant request
    deserializers (see the module docstring)."""
    capture = _Capture()
    pb_grpc.add_ApiServicer_to_server(servicer, capture)
    handlers = {}
    for method, h in capture.handlers.items():
        # An empty message is a valid one of every type: it tells the type's name.
        full = h.request_deserializer(b"").DESCRIPTOR.full_name
        handlers[method] = h._replace(
            request_deserializer=_tolerant(h.request_deserializer, full))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


async def _decoded(requests: AsyncIterator[Any], bad: list[errors.ApiError]
                   ) -> AsyncIterator[Any]:
    """A client stream's messages, ending at the first that did not parse (kept in `bad`)."""
    async for m in requests:
        if isinstance(m, Undecodable):
            bad.append(m.error())
            return
        yield m


def _response(result: Answer) -> pb.ObjectResponse:
    if isinstance(result, Result):
        return pb.ObjectResponse(object=_dumps(result.object), warnings=result.warnings)
    return pb.ObjectResponse(object=_dumps(result))


class ApiServicer(pb_grpc.ApiServicer):
    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    async def _call(self, context: grpc.aio.ServicerContext, request: Any,
                    verb: Callable[[Credentials, Any], Awaitable[Answer]]
                    ) -> pb.ObjectResponse:
        try:
            creds = credentials(context)
            if isinstance(request, Undecodable):
                await self.handler.authenticate(creds)  # strangers learn nothing, not even this
                raise request.error()
            return _response(await verb(creds, request))
        except errors.ApiError as e:
            await _abort(context, e)

    async def Create(self, request: pb.CreateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.create)

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext
                  ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.get)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.list)

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.update)

    async def Patch(self, request: pb.PatchRequest, context: grpc.aio.ServicerContext
                    ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.patch)

    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.delete)

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest,
                               context: grpc.aio.ServicerContext) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.delete_collection)

    async def Bind(self, request: pb.BindRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        return await self._call(context, request, self.handler.bind)

    async def Discovery(self, request: pb.DiscoveryRequest, context: grpc.aio.ServicerContext
                        ) -> pb.ObjectResponse:
        try:
            await self.handler.nonresource(credentials(context), "/api")
            if isinstance(request, Undecodable):
                raise request.error()
        except errors.ApiError as e:
            await _abort(context, e)
        return pb.ObjectResponse(object=_dumps(discovery_document()))

    async def Watch(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> None:
        # A coroutine writing with context.write, not an async generator: grpc then has no
        # generator of ours to finalize or close from elsewhere, and the stream's end (the
        # client's timeoutSeconds) is the stream's own deadline, never a cancel scope around a
        # yield (watchcache.WatchStream says why both broke a watch for good, issue 20).
        try:
            creds = credentials(context)
            if isinstance(request, Undecodable):
                await self.handler.authenticate(creds)
                raise request.error()
            stream = await self.handler.watch(creds, request)
        except errors.ApiError as e:
            await _abort(context, e)
        try:
            async for message in stream:
                await context.write(message)
        finally:
            await stream.aclose()  # WatchStream's never suspends: safe while cancelled

    # --- streams proxied to the kubelets (apiserver/kubeletproxy.py) ------------------------

    async def Logs(self, request: pb.LogsRequest, context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[pb.LogChunk]:
        creds = credentials(context)
        if isinstance(request, Undecodable):
            try:
                await self.handler.authenticate(creds)
                raise request.error()
            except errors.ApiError as e:
                await _abort(context, e)
        rec = self.handler.record(creds, "get", "pods", request.namespace, request.name, "log")
        error: errors.ApiError | None = None
        try:
            proxy = await self.handler.stream_begin(creds, rec)
            async for chunk in proxy.logs(request):
                yield chunk
        except errors.ApiError as e:
            error = e
        except Exception as e:
            log.exception("pods/log %s/%s failed", request.namespace, request.name)
            error = internal(e)
        finally:
            self.handler.stream_end(rec, error)
        if error is not None:
            await _abort(context, error)

    async def Exec(self, request_iterator: AsyncIterator[pb.ExecRequest],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecResponse]:
        creds = credentials(context)
        rec = self.handler.record(creds, "create", "pods", subresource="exec")
        error: errors.ApiError | None = None
        bad: list[errors.ApiError] = []  # a message that did not parse ends the client's input
        requests = aiter(_decoded(request_iterator, bad))
        try:
            # Nothing is read from a caller before it proved who it is; the first message
            # then names the pod, which is what gets authorized.
            await self.handler.authenticate(creds)
            first = await anext(requests, None)
            if bad:
                raise bad[0]
            if first is None or not first.HasField("start"):
                raise errors.BadRequest(message="the first message of an exec must be `start`")
            start = first.start
            rec.namespace, rec.name = start.namespace, start.name
            proxy = await self.handler.stream_begin(creds, rec)
            async for resp in proxy.exec(start, requests):
                yield resp
            if bad:
                raise bad[0]
        except errors.ApiError as e:
            error = e
        except Exception as e:
            log.exception("pods/exec %s/%s failed", rec.namespace, rec.name)
            error = internal(e)
        finally:
            self.handler.stream_end(rec, error)
        if error is not None:
            await _abort(context, error)
