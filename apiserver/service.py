"""The gRPC `Api` service: thin handlers that decode envelopes and call the registry.

Every call goes through the same steps, as a kube-apiserver request goes through its filter
chain: authenticate (authn.py: certificate or bearer token; 401 without either) → impersonate
(if asked, and allowed) → authorize the verb on the resource (authz.py; 403 in upstream's words)
→ the registry, with the user in `auth.CURRENT_USER` for admission → audit (audit.py). An
ApiError becomes its gRPC status code plus the Kubernetes `Status` in trailing metadata.
Anything else is a bug in the server: it is logged with its traceback and the client gets one
InternalError line.
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
from apiserver.audit import AuditLog, AuditRecord
from apiserver.auth import CURRENT_USER, Attributes, Authorizer, UserInfo
from apiserver.authn import Authenticator, metadata_values
from apiserver.authz import require
from apiserver.kubeletproxy import KubeletProxy
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


def _create_only(info: ResourceInfo) -> errors.MethodNotAllowed:
    """Reviews are answered, not stored: only create means anything (upstream: 405)."""
    return errors.MethodNotAllowed(message="the server does not allow this method on the "
                                   f"requested resource ({info.qualified_name} are create-only)",
                                   kind=info.name, group=info.group)


def _source_ip(peer: str) -> str:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` → the address."""
    _, _, rest = peer.partition(":")
    host = rest.rsplit(":", 1)[0] if rest.count(":") >= 1 else rest
    return host.strip("[]")


def _body_namespace(raw: bytes) -> str:
    """The namespace a create's body names (what the registry will use when the request
    names none), so that it is authorized where it is written."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return ""  # the registry answers with the decoding error
    md = data.get("metadata") if isinstance(data, dict) else None
    ns = md.get("namespace") if isinstance(md, dict) else None
    return ns if isinstance(ns, str) else ""


class ApiServicer(pb_grpc.ApiServicer):
    def __init__(self, registry: Registry, cache: WatchCache, bookmark_interval: float, *,
                 authenticator: Authenticator, authorizer: Authorizer,
                 audit: AuditLog | None = None, kubelets: KubeletProxy | None = None) -> None:
        self.registry = registry
        self.kubelets = kubelets
        self.cache = cache
        self.bookmark_interval = bookmark_interval
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.audit = audit

    # --- the steps every call takes ---------------------------------------------------------

    def _record(self, context: grpc.aio.ServicerContext, verb: str, resource: str = "",
                namespace: str = "", name: str = "", subresource: str = "",
                path: str = "") -> AuditRecord:
        """What the request asks, as authorization and audit see it."""
        info = RESOURCES.get(resource)
        if info is not None and not info.namespaced:
            namespace = ""
        if resource == "namespaces" and name:
            # Upstream's RequestInfo puts a namespace's own name in the namespace field, which
            # is how a RoleBinding in "ns" (view, admin) lets its subjects read namespace "ns".
            namespace = name
        agent = metadata_values(context.invocation_metadata(), "user-agent")
        return AuditRecord(
            verb=verb, resource=resource, subresource=subresource, namespace=namespace,
            name=name, path=path, api_group=info.group if info else "",
            api_version=info.version if info else "", source_ips=[_source_ip(context.peer())],
            user_agent=agent[0] if agent else "")

    async def _authorize(self, context: grpc.aio.ServicerContext, rec: AuditRecord) -> UserInfo:
        """Authenticate, impersonate, authorize: the user the request runs as."""
        user = await self.authenticator.authenticate(context)
        rec.user = user
        acting = self.authenticator.impersonate(user, context.invocation_metadata(),
                                                self.authorizer)
        if acting is not None:
            rec.impersonated = acting
            user = acting
        attrs = Attributes(user, rec.verb, resource=rec.resource, subresource=rec.subresource,
                           api_group=rec.api_group, namespace=rec.namespace, name=rec.name,
                           path=rec.path)
        require(self.authorizer, attrs)
        return user

    def _finish(self, rec: AuditRecord, error: errors.ApiError | None) -> None:
        if error is not None:
            rec.code, rec.reason, rec.message = error.code, error.reason, error.message
        if self.audit is not None:
            self.audit.record(rec)

    async def _unary(self, context: grpc.aio.ServicerContext, rec: AuditRecord,
                     fn: Callable[[ResourceInfo], Awaitable[Result | dict[str, Any]]]
                     ) -> pb.ObjectResponse:
        start = time.perf_counter()
        code = "200"
        error: errors.ApiError | None = None
        reset = None
        try:
            user = await self._authorize(context, rec)
            reset = CURRENT_USER.set(user)
            info = _resource(rec.resource)
            if info.virtual and rec.verb != "create":
                raise _create_only(info)
            result = await fn(info)
            if rec.verb == "create":
                rec.code = 201
                if not rec.name and isinstance(result, Result) and not info.virtual:
                    # A create names its object in the body (generateName: in the answer);
                    # the audit event names it, as upstream's does.
                    rec.name = str((result.object.get("metadata") or {}).get("name", ""))
            if isinstance(result, Result):
                return pb.ObjectResponse(object=_dumps(result.object), warnings=result.warnings)
            return pb.ObjectResponse(object=_dumps(result))
        except errors.ApiError as e:
            code, error = str(e.code), e
            await _abort(context, e)
        except Exception as e:
            code = "500"
            log.exception("%s %s failed", rec.verb, rec.resource)
            error = errors.InternalError(message=f"Internal error occurred: {e}")
            await _abort(context, error)
        finally:
            if reset is not None:
                CURRENT_USER.reset(reset)
            self._finish(rec, error)
            metrics.REQUESTS.labels(rec.verb, rec.resource, code).inc()
            metrics.LATENCY.labels(rec.verb, rec.resource).observe(time.perf_counter() - start)

    # --- the RPCs ---------------------------------------------------------------------------

    async def Create(self, request: pb.CreateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        ns = request.namespace
        info = RESOURCES.get(request.resource)
        if info is not None and info.namespaced and not ns and not request.subresource:
            ns = _body_namespace(request.object) or "default"
        # Only a subresource create (serviceaccounts/NAME/token) names an existing object. A
        # plain create is authorized without a name, as upstream's: the registry ignores the
        # request's name and writes the body's, so authorizing the request's name would let a
        # rule's resourceNames allow creating any name.
        name = request.name if request.subresource else ""
        rec = self._record(context, "create", request.resource, ns, name, request.subresource)
        return await self._unary(context, rec, lambda info: self.registry.create(
            info, ns, request.object, request.dry_run, name=request.name,
            subresource=request.subresource))

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext
                  ) -> pb.ObjectResponse:
        rec = self._record(context, "get", request.resource, request.namespace, request.name,
                           request.subresource)
        return await self._unary(context, rec, lambda info: (
            self.registry.get(info, request.namespace, request.name, request.subresource)))

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        rec = self._record(context, "list", request.resource, request.namespace)
        return await self._unary(context, rec, lambda info: (
            self.registry.list(info, request.namespace, request.options)))

    async def Update(self, request: pb.UpdateRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        rec = self._record(context, "update", request.resource, request.namespace, request.name,
                           request.subresource)
        return await self._unary(context, rec, lambda info: (
            self.registry.update(info, request.namespace, request.name, request.subresource,
                                 request.object, request.dry_run)))

    async def Patch(self, request: pb.PatchRequest, context: grpc.aio.ServicerContext
                    ) -> pb.ObjectResponse:
        rec = self._record(context, "patch", request.resource, request.namespace, request.name,
                           request.subresource)
        return await self._unary(context, rec, lambda info: (
            self.registry.patch(info, request.namespace, request.name, request.subresource,
                                request.patch_type, request.patch, request.dry_run)))

    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
                     ) -> pb.ObjectResponse:
        rec = self._record(context, "delete", request.resource, request.namespace, request.name)
        return await self._unary(context, rec, lambda info: (
            self.registry.delete(info, request.namespace, request.name, request.options)))

    async def DeleteCollection(self, request: pb.DeleteCollectionRequest,
                               context: grpc.aio.ServicerContext) -> pb.ObjectResponse:
        rec = self._record(context, "deletecollection", request.resource, request.namespace)
        return await self._unary(context, rec, lambda info: (
            self.registry.delete_collection(info, request.namespace, request.list_options,
                                            request.options)))

    async def Bind(self, request: pb.BindRequest, context: grpc.aio.ServicerContext
                   ) -> pb.ObjectResponse:
        rec = self._record(context, "create", "pods", request.namespace, request.name,
                           "binding")
        return await self._unary(context, rec, lambda _info: (
            self.registry.bind(request.namespace, request.name, request.binding)))

    async def Discovery(self, request: pb.DiscoveryRequest, context: grpc.aio.ServicerContext
                        ) -> pb.ObjectResponse:
        # No _unary: it would count the call as some resource's.
        rec = self._record(context, "get", path="/api")
        try:
            await self._authorize(context, rec)
        except errors.ApiError as e:
            metrics.REQUESTS.labels("get", "discovery", str(e.code)).inc()
            self._finish(rec, e)
            await _abort(context, e)
        metrics.REQUESTS.labels("get", "discovery", "200").inc()
        return pb.ObjectResponse(object=_dumps(discovery_document()))

    async def Watch(self, request: pb.ListRequest, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[pb.WatchEvent]:
        opts = request.options
        rec = self._record(context, "watch", request.resource, request.namespace)
        try:
            await self._authorize(context, rec)
            info = _resource(request.resource)
            if info.virtual:
                raise _create_only(info)
            ns = request.namespace if info.namespaced else ""
            watcher = await self.cache.watch(info.name, ns, self.registry.matcher(info, opts),
                                             opts.resource_version)
        except errors.ApiError as e:
            metrics.REQUESTS.labels("watch", request.resource, str(e.code)).inc()
            self._finish(rec, e)
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


    # --- streams proxied to the kubelets (apiserver/kubeletproxy.py) ------------------------

    async def _stream_begin(self, context: grpc.aio.ServicerContext, rec: AuditRecord
                            ) -> KubeletProxy:
        """Authorize a pods/log or pods/exec call; the proxy to serve it."""
        await self._authorize(context, rec)
        if self.kubelets is None:
            raise errors.ServiceUnavailable(message="this apiserver does not proxy to kubelets")
        return self.kubelets

    def _stream_end(self, rec: AuditRecord, error: errors.ApiError | None) -> None:
        self._finish(rec, error)
        metrics.REQUESTS.labels(rec.verb, f"pods/{rec.subresource}",
                                str(error.code) if error else "200").inc()

    async def Logs(self, request: pb.LogsRequest, context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[pb.LogChunk]:
        rec = self._record(context, "get", "pods", request.namespace, request.name, "log")
        error: errors.ApiError | None = None
        try:
            proxy = await self._stream_begin(context, rec)
            async for chunk in proxy.logs(request):
                yield chunk
        except errors.ApiError as e:
            error = e
        except Exception as e:
            log.exception("pods/log %s/%s failed", request.namespace, request.name)
            error = errors.InternalError(message=f"Internal error occurred: {e}")
        finally:
            self._stream_end(rec, error)
        if error is not None:
            await _abort(context, error)

    async def Exec(self, request_iterator: AsyncIterator[pb.ExecRequest],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecResponse]:
        rec = self._record(context, "create", "pods", subresource="exec")
        error: errors.ApiError | None = None
        try:
            # Nothing is read from a caller before it proved who it is; the first message
            # then names the pod, which is what gets authorized.
            await self.authenticator.authenticate(context)
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("start"):
                raise errors.BadRequest(message="the first message of an exec must be `start`")
            start = first.start
            rec.namespace, rec.name = start.namespace, start.name
            proxy = await self._stream_begin(context, rec)
            async for resp in proxy.exec(start, request_iterator):
                yield resp
        except errors.ApiError as e:
            error = e
        except Exception as e:
            log.exception("pods/exec %s/%s failed", rec.namespace, rec.name)
            error = errors.InternalError(message=f"Internal error occurred: {e}")
        finally:
            self._stream_end(rec, error)
        if error is not None:
            await _abort(context, error)


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
