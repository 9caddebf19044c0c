"""Kubernetes' HTTP API over the one registry: what real kubectl and client libraries talk to.

A thin layer: route (paths.py) → decode (negotiate.py) → `RequestHandler` (handler.py: the same
authentication, impersonation, authorization, admission, registry, audit and metrics as the gRPC
front) → encode. No verb's meaning is written here; only the wire: query parameters into the
registry's option envelopes, JSON and YAML bodies, the patch media types, Table and
PartialObjectMetadata output, chunked watch streams, `metav1.Status` errors with upstream's HTTP
codes, `Warning` headers. Streams (logs, exec, attach, port-forward) are in streams.py.

TLS as kube-apiserver: the server asks every client for a certificate without requiring one, so
certificates (verified against --client-ca-file in the handshake) and bearer tokens share the
port. With --insecure it is plain HTTP with no authentication.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from aiohttp import web

from api import errors
from api.proto import tinykube_pb2 as pb
from api.resources import ResourceInfo
from apiserver import metrics
from apiserver.auth import FIELD_MANAGER, FIELD_VALIDATION, FORCE_APPLY, Credentials
from apiserver.authn import bearer
from apiserver.handler import VERSION, Answer, RequestHandler
from apiserver.registry import Result
from apiserver.rest import discovery, negotiate, paths, streams
from apiserver.rest.negotiate import choose

log = logging.getLogger(__name__)

# Above the registry's 1.5 MiB object limit, so an oversized object gets its clear error; a
# body beyond this is refused by the server before it is read whole (413).
MAX_BODY = 3 * 1024 * 1024
_TRUE = ("1", "true", "True")
_JSON = "application/json"
_IMPERSONATE = (("Impersonate-User", "impersonate-user"),
                ("Impersonate-Group", "impersonate-group"),
                ("Impersonate-Uid", "impersonate-uid"))
_TABLE_KINDS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
_DISCOVERY_KINDS = ("APIGroupDiscoveryList",)
# Upstream's --min-request-timeout: a watch without timeoutSeconds ends after 30-60 minutes,
# spreading the reconnects of many clients.
_WATCH_TIMEOUT = 1800


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def status_response(e: errors.ApiError) -> web.Response:
    headers = {}
    if e.retry_after_seconds:
        headers["Retry-After"] = str(e.retry_after_seconds)
    return web.Response(status=e.code, body=dumps(e.to_status()), content_type=_JSON,
                        headers=headers)


def credentials(request: web.Request) -> Credentials:
    """What an HTTP request carries: the verified client certificate (DER), a bearer token,
    the Impersonate-* headers, the user agent and the peer's address."""
    cert = None
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is not None:
        cert = ssl_object.getpeercert(binary_form=True)
    headers = tuple((key, v) for header, key in _IMPERSONATE
                    for v in request.headers.getall(header, []))
    return Credentials(cert=cert or None, token=bearer(request.headers.getall("Authorization", [])),
                       headers=headers, user_agent=request.headers.get("User-Agent", ""),
                       source_ip=request.remote or "")


def _warning_headers(warnings: list[str]) -> list[tuple[str, str]]:
    # RFC 7234 warn-code 299 ("miscellaneous persistent warning"), as kube-apiserver sends them
    # and kubectl prints them ("Warning: unknown field ...").
    return [("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
            for w in warnings]


def _int(query: Any, name: str, default: int = 0) -> int:
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise errors.BadRequest(message=f'{name}: Invalid value: "{raw}": must be an integer'
                                ) from None


def list_options(query: Any) -> pb.ListOptions:
    rvm = query.get("resourceVersionMatch", "")
    if rvm not in ("", "NotOlderThan", "Exact"):
        raise errors.BadRequest(message=f'resourceVersionMatch: Unsupported value: "{rvm}": '
                                'supported values: "Exact", "NotOlderThan"')
    limit = _int(query, "limit")
    if limit < 0:
        raise errors.BadRequest(message=f"limit: Invalid value: {limit}: must be >= 0")
    timeout = _int(query, "timeoutSeconds")
    if timeout < 0:
        raise errors.BadRequest(message=f"timeoutSeconds: Invalid value: {timeout}: must be "
                                ">= 0")
    return pb.ListOptions(
        label_selector=query.get("labelSelector", ""), field_selector=query.get("fieldSelector",
                                                                               ""),
        limit=limit, continue_token=query.get("continue", ""),
        resource_version=query.get("resourceVersion", ""),
        allow_watch_bookmarks=query.get("allowWatchBookmarks", "") in _TRUE,
        timeout_seconds=timeout)


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.BadRequest(message=f'dryRun: Unsupported value: "{v}": supported '
                                    'values: "All"')
    return bool(values)


def _field_validation(query: Any) -> str:
    mode = query.get("fieldValidation", "") or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise errors.BadRequest(message=f'fieldValidation: Unsupported value: "{mode}": '
                                'supported values: "Ignore", "Strict", "Warn"')
    return mode


def delete_options(query: Any, raw: bytes, content_type: str = "") -> pb.DeleteOptions:
    """DeleteOptions from the body (kubectl sends one, JSON or protobuf) and the query
    parameters."""
    body: dict[str, Any] = {}
    if raw.strip():
        try:
            body = json.loads(negotiate.decode_body(raw, content_type))
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.BadRequest(message=f"DeleteOptions: not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise errors.BadRequest(message="DeleteOptions: must be a JSON object")
    grace = body.get("gracePeriodSeconds")
    if grace is None and query.get("gracePeriodSeconds") not in (None, ""):
        grace = _int(query, "gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.BadRequest(message="gracePeriodSeconds: must be an integer")
    if grace is not None and grace < 0:
        raise errors.invalid("DeleteOptions", "", [errors.Cause(
            "gracePeriodSeconds", f"Invalid value: {grace}: must be >= 0")])
    policy = body.get("propagationPolicy") or query.get("propagationPolicy", "")
    if body.get("orphanDependents") is True or query.get("orphanDependents") in _TRUE:
        policy = policy or "Orphan"
    pre = body.get("preconditions") or {}
    if not isinstance(pre, dict):
        raise errors.BadRequest(message="preconditions: must be an object")
    dry = body.get("dryRun") or []
    if not isinstance(dry, list) or any(d != "All" for d in dry):
        raise errors.BadRequest(message='dryRun: Unsupported value: supported values: "All"')
    return pb.DeleteOptions(
        grace_period_seconds=-1 if grace is None else grace, propagation_policy=str(policy),
        precondition_uid=str(pre.get("uid") or ""),
        precondition_resource_version=str(pre.get("resourceVersion") or ""),
        dry_run=bool(dry) or _dry_run(query))


class RestFront:
    """The aiohttp application and its listener."""

    def __init__(self, handler: RequestHandler, *, server_address: str = "",
                 ready: Callable[[], Awaitable[bool]] | None = None) -> None:
        self.handler = handler
        self.server_address = server_address
        self.ready = ready
        self.app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner: web.AppRunner | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
        # handler_cancellation: a client that goes away ends its watch or log stream at once.
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                    handler_cancellation=True, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, ssl_context=ssl_context, backlog=1024,
                           reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # --- plumbing ---------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
        """Every refusal as a `metav1.Status` with its HTTP code; never a stack trace."""
        try:
            return await handler(request)
        except errors.ApiError as e:
            return status_response(e)
        except web.HTTPRequestEntityTooLarge:
            return status_response(errors.RequestEntityTooLarge(
                message=f"the request body is too large: the limit is {MAX_BODY} bytes"))
        except web.HTTPException as e:  # aiohttp's own refusals (bad request line, ...)
            return status_response(_from_http(e))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            log.exception("%s %s failed", request.method, request.path)
            return status_response(errors.InternalError(message=f"Internal error occurred: {e}"))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(
                ("/healthz/", "/livez/", "/readyz/")):
            return await self._health(path)
        creds = credentials(request)
        if path in ("/version", "/version/"):
            await self.handler.nonresource(creds, "/version")
            return web.Response(body=dumps(VERSION), content_type=_JSON)
        if path.startswith("/openapi"):
            await self.handler.nonresource(creds, path)
            return self._openapi(request, path)
        if path == "/metrics":  # upstream: authorized (`get` /metrics: system:monitoring)
            await self.handler.nonresource(creds, path)
            body, ctype = metrics.exposition()
            return web.Response(body=body, headers={"Content-Type": ctype})
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] in ("api", "apis") and _is_discovery(parts):
            await self.handler.nonresource(creds, path)
            return self._discovery(request, parts)
        req = paths.parse(request.method, path, request.query.get("watch", ""))
        q = request.query
        manager = q.get("fieldManager", "")
        if len(manager) > 128:
            raise errors.invalid("PatchOptions.meta.k8s.io", "", [errors.Cause(
                "fieldManager", "Too long: may not be longer than 128")])
        tokens = (FIELD_VALIDATION.set(_field_validation(q)), FIELD_MANAGER.set(manager),
                  FORCE_APPLY.set(q.get("force", "") in _TRUE))
        try:
            return await self._resource(request, creds, req)
        finally:
            FIELD_VALIDATION.reset(tokens[0])
            FIELD_MANAGER.reset(tokens[1])
            FORCE_APPLY.reset(tokens[2])

    async def _health(self, path: str) -> web.Response:
        # Unauthenticated, as upstream's system:public-info-viewer lets anyone ask (load
        # balancers' health checks carry no credentials).
        if path.startswith("/readyz") and self.ready is not None and not await self.ready():
            return web.Response(status=500, text="[-]etcd failed: reason withheld\n"
                                "readyz check failed\n")
        return web.Response(text="ok")

    def _openapi(self, request: web.Request, path: str) -> web.Response:
        from apiserver import openapi  # generated on first use, then cached
        if path.rstrip("/") == "/openapi/v2":
            # kubectl/client-go < 1.29 ask for gnostic's protobuf only and decode it as such;
            # the first Accept entry that is either protobuf or JSON-like decides.
            for mt in negotiate.parse_accept(request.headers.get("Accept", "")):
                if mt.mime in openapi.V2_PROTOBUF_TYPES:
                    doc = openapi.document_bytes("v2-protobuf")
                    assert doc is not None
                    return _cached(request, *doc, openapi.V2_PROTOBUF_CONTENT_TYPE)
                if mt.mime in (_JSON, "application/*", "*/*"):
                    break
            doc = openapi.document_bytes("v2")
        elif path.rstrip("/") == "/openapi/v3":
            doc = openapi.document_bytes("v3")
        elif path.startswith("/openapi/v3/"):
            doc = openapi.document_bytes("v3", path[len("/openapi/v3/"):])
        else:
            doc = None
        if doc is None:
            raise errors.NotFound(message="the server could not find the requested resource")
        return _cached(request, *doc)

    def _discovery(self, request: web.Request, parts: list[str]) -> web.Response:
        accept = request.headers.get("Accept", "")
        if len(parts) == 1:
            if choose(accept, _DISCOVERY_KINDS) == "APIGroupDiscoveryList":
                version = negotiate.accept_param(accept, "APIGroupDiscoveryList", "v", "v2")
                body, etag = discovery.encoded("aggregated", parts[0] == "api", version)
                ctype = (f"application/json;g=apidiscovery.k8s.io;v={version};"
                         "as=APIGroupDiscoveryList")
                return _cached(request, body, etag, ctype)
            if parts[0] == "api":
                return web.Response(body=dumps(discovery.api_versions(self._address(request))),
                                    content_type=_JSON)
            return _cached(request, *discovery.encoded("api_group_list"))
        if parts[0] == "api":
            doc = discovery.api_resource_list("", parts[1])
        elif len(parts) == 2:
            doc = discovery.api_group(parts[1])
        else:
            doc = discovery.api_resource_list(parts[1], parts[2])
        if doc is None:
            raise errors.NotFound(message="the server could not find the requested resource")
        return web.Response(body=dumps(doc), content_type=_JSON)

    def _address(self, request: web.Request) -> str:
        return self.server_address or request.host

    # --- resources --------------------------------------------------------------------------

    async def _resource(self, request: web.Request, creds: Credentials,
                        req: paths.RequestInfo) -> web.StreamResponse:
        if req.subresource in paths.STREAM_SUBRESOURCES:
            return await streams.serve(request, self.handler, creds, req)
        verb, info, q = req.verb, req.info, request.query
        accept = request.headers.get("Accept", "")
        if verb == "watch":
            return await self._watch(request, creds, req, choose(accept, _TABLE_KINDS))
        want = choose(accept, _TABLE_KINDS) if verb in ("get", "list") else choose(accept)
        ns, name, sub = req.namespace, req.name, req.subresource
        answer: Answer
        if verb == "get":
            answer = await self.handler.get(creds, pb.GetRequest(
                resource=info.name, namespace=ns, name=name, subresource=sub))
        elif verb == "list":
            answer = await self.handler.list(creds, pb.ListRequest(
                resource=info.name, namespace=ns, options=list_options(q)))
        elif verb == "create":
            answer = await self._create(request, creds, req)
        elif verb == "update":
            body = await _body(request)
            answer = await self.handler.update(creds, pb.UpdateRequest(
                resource=info.name, namespace=ns, name=name, subresource=sub, object=body,
                dry_run=_dry_run(q)))
        elif verb == "patch":
            answer = await self._patch(request, creds, req)
        elif verb == "delete":
            answer = await self.handler.delete(creds, pb.DeleteRequest(
                resource=info.name, namespace=ns, name=name,
                options=delete_options(q, await request.read(),
                                       request.headers.get("Content-Type", ""))))
        else:  # deletecollection
            answer = await self.handler.delete_collection(creds, pb.DeleteCollectionRequest(
                resource=info.name, namespace=ns, list_options=list_options(q),
                options=delete_options(q, await request.read(),
                                       request.headers.get("Content-Type", ""))))
        return self._answer(request, info, verb, answer, want)

    async def _create(self, request: web.Request, creds: Credentials,
                      req: paths.RequestInfo) -> Answer:
        body = await _body(request)
        if req.subresource == "binding":
            return await self.handler.bind(creds, pb.BindRequest(
                namespace=req.namespace, name=req.name, binding=body))
        return await self.handler.create(creds, pb.CreateRequest(
            resource=req.info.name, namespace=req.namespace, object=body,
            dry_run=_dry_run(request.query), name=req.name, subresource=req.subresource))

    async def _patch(self, request: web.Request, creds: Credentials,
                     req: paths.RequestInfo) -> Answer:
        kind = negotiate.patch_type(request.headers.get("Content-Type", ""))
        raw = await request.read()
        if kind == "apply":
            # Server-side apply's body is YAML or JSON; the registry takes JSON.
            raw = dumps(negotiate.load_yaml(raw))
        return await self.handler.patch(creds, pb.PatchRequest(
            resource=req.info.name, namespace=req.namespace, name=req.name,
            subresource=req.subresource, patch_type=kind, patch=raw,
            dry_run=_dry_run(request.query)))

    def _answer(self, request: web.Request, info: ResourceInfo, verb: str, answer: Answer,
                want: str) -> web.Response:
        warnings: list[str] = []
        if isinstance(answer, Result):
            obj, warnings = answer.object, answer.warnings
        else:
            obj = answer
        status = 200
        if verb == "create" and not info.virtual:
            status = 201
        if verb == "create" and obj.get("kind") == "Status":
            status = int(obj.get("code") or 201)
        if verb == "delete" and obj.get("metadata", {}).get("deletionTimestamp"):
            status = 202  # accepted: it goes when its finalizers and grace period are done
        if want and obj.get("kind") != "Status":
            obj = _as(want, info, obj, request.query.get("includeObject", ""))
        return web.Response(status=status, body=dumps(obj), content_type=_JSON,
                            headers=_warning_headers(warnings))

    async def _watch(self, request: web.Request, creds: Credentials, req: paths.RequestInfo,
                     want: str) -> web.StreamResponse:
        opts = list_options(request.query)
        if req.name:  # a watch of one object: upstream turns it into a field selector
            sel = f"metadata.name={req.name}"
            opts.field_selector = f"{opts.field_selector},{sel}" if opts.field_selector else sel
        try:
            events = await self.handler.watch(creds, pb.ListRequest(
                resource=req.info.name, namespace=req.namespace, options=opts))
        except errors.Gone as e:
            # Upstream answers a watch from a compacted resourceVersion with 200 and one ERROR
            # event carrying the 410 Status; reflectors then relist.
            events = _error_stream(e)
        timeout = opts.timeout_seconds or int(_WATCH_TIMEOUT * (1 + random.random()))
        resp = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        include = request.query.get("includeObject", "")
        try:
            async with asyncio.timeout(timeout):
                async for ev in events:
                    await resp.write(_event_bytes(ev, req.info, want, include))
        except TimeoutError:
            pass  # the watch's time is up: ending the stream is the answer
        except (ConnectionResetError, asyncio.CancelledError):
            await events.aclose()
            raise
        finally:
            await events.aclose()
        await resp.write_eof()
        return resp


async def _body(request: web.Request) -> bytes:
    """The request's object as JSON (from JSON, YAML or Kubernetes protobuf)."""
    return negotiate.decode_body(await request.read(), request.headers.get("Content-Type", ""))


def _is_discovery(parts: list[str]) -> bool:
    """`/api`, `/api/v1`, `/apis`, `/apis/GROUP`, `/apis/GROUP/VERSION`: not a resource."""
    return len(parts) <= (2 if parts[0] == "api" else 3)


def _cached(request: web.Request, body: bytes, etag: str,
            content_type: str = _JSON) -> web.Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache, private", "Vary": "Accept"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    resp = web.Response(body=body, headers=headers)
    resp.headers["Content-Type"] = content_type
    return resp


def _as(want: str, info: ResourceInfo, obj: dict[str, Any], include: str) -> dict[str, Any]:
    """The object or list in the representation the client asked for."""
    from api import tables  # the shared printers (also tkctl's)
    is_list = "items" in obj and obj.get("kind", "").endswith("List")
    items = obj["items"] if is_list else [obj]
    list_meta = obj.get("metadata") if is_list else None
    if want == "Table":
        return tables.to_table(info, items, include_object=include or "Metadata",
                               list_meta=list_meta)
    if want == "PartialObjectMetadataList" or (want == "PartialObjectMetadata" and is_list):
        return tables.partial_object_metadata_list(info, items, list_meta)
    return tables.partial_object_metadata_list(info, items, None)["items"][0]


def _event_bytes(ev: pb.WatchEvent, info: ResourceInfo, want: str, include: str) -> bytes:
    if not want or ev.type in ("ERROR", "BOOKMARK"):
        # The cache encoded the object once for every watcher: splice it, do not re-encode.
        return b'{"type":"' + ev.type.encode() + b'","object":' + ev.object + b"}\n"
    obj = _as(want, info, json.loads(ev.object), include)
    return dumps({"type": ev.type, "object": obj}) + b"\n"


async def _error_stream(e: errors.ApiError) -> AsyncGenerator[pb.WatchEvent, None]:
    yield pb.WatchEvent(type="ERROR", object=dumps(e.to_status()))


def _from_http(e: web.HTTPException) -> errors.ApiError:
    if e.status == 405:
        return errors.MethodNotAllowed(message=e.reason)
    if e.status == 404:
        return errors.NotFound(message="the server could not find the requested resource")
    if e.status == 415:
        return errors.UnsupportedMediaType(message=e.reason)
    return errors.BadRequest(message=e.text or e.reason)


def ssl_context(cert_file: str, key_file: str, client_ca: bytes) -> ssl.SSLContext:
    """TLS that asks for a client certificate and takes a connection without one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.load_verify_locations(cadata=client_ca.decode())
    ctx.verify_mode = ssl.CERT_OPTIONAL
    # HTTP/1.1 only: Go's client then keeps one connection per request in flight instead of
    # multiplexing, which aiohttp does not speak.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
