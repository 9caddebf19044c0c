"""The steps every API request takes, whichever front it came through.

tk-apiserver has two fronts, gRPC (service.py, for tinykube's own components and tkctl) and
Kubernetes' HTTP API (rest/, for kubectl and the client libraries). Each only decodes its wire
format into the registry's terms and encodes the answer back; everything between lives here, once,
as a kube-apiserver request goes through its filter chain:

authenticate (authn.py: certificate or bearer token; 401 without either) → impersonate (if asked,
and allowed) → authorize the verb on the resource (authz.py; 403 in upstream's words) → the
registry, with the user in `auth.CURRENT_USER` for admission → audit (audit.py) and metrics.

Every method raises `api.errors.ApiError` for a refusal; anything else that escapes the registry
is a bug in the server: it is logged with its traceback and becomes one InternalError line, never
a stack trace for the client.
"""

from __future__ import annotations

import base64
import binascii
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from api import codec, decoding, errors
from api.meta import TypedObject
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES, ResourceInfo
from apiserver import metrics
from apiserver.audit import AuditLog, AuditRecord
from apiserver.auth import CURRENT_USER, Attributes, Authorizer, Credentials, UserInfo
from apiserver.authn import Authenticator
from apiserver.authz import require
from apiserver.kubeletproxy import KubeletProxy
from apiserver.registry import Registry, Result
from apiserver.watchcache import WatchCache, WatchEvents

log = logging.getLogger(__name__)

VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-tinykube.0.1.0",
           "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
           "goVersion": "python3", "compiler": "cpython", "platform": "linux/amd64",
           "tinykubeVersion": "0.1.0"}

Answer = Result | dict[str, Any]

MIN_REQUEST_TIMEOUT = 1800.0  # seconds: upstream's --min-request-timeout, for watches


def resource_info(name: str) -> ResourceInfo:
    info = RESOURCES.get(name)
    if info is None:
        raise errors.NotFound(message=f'the server could not find the requested resource '
                              f'"{name}"', kind="resource")
    return info


def create_only(info: ResourceInfo) -> errors.MethodNotAllowed:
    """Reviews are answered, not stored: only create means anything (upstream: 405)."""
    return errors.MethodNotAllowed(message="the server does not allow this method on the "
                                   f"requested resource ({info.qualified_name} are create-only)",
                                   kind=info.name, group=info.group)


def body_namespace(raw: bytes) -> str:
    """The namespace a create's body names (what the registry will use when the request
    names none), so that it is authorized where it is written."""
    try:
        data = decoding.loads_json(raw)
    except decoding.DecodeError:
        return ""  # checked_body answers with the decoding error
    md = data.get("metadata") if isinstance(data, dict) else None
    ns = md.get("namespace") if isinstance(md, dict) else None
    return ns if isinstance(ns, str) else ""


def checked_body(raw: bytes, what: str = "the request body", *, json_object: bool = True
                 ) -> bytes:
    """A body, unchanged, once it is known to be JSON within api.decoding's limits (and an
    object, unless it is a patch, whose type the registry checks). Done here, where both
    fronts meet, so that the registry's own parse never meets a body that nests beyond Python's
    recursion, and every refusal is a BadRequest in API words."""
    if not raw.strip():
        raise errors.BadRequest(message=f"{what} is empty" + (
            ": it must be a JSON object" if json_object else ""))
    try:
        data = decoding.loads_json(raw)
    except decoding.DecodeError as e:
        raise errors.BadRequest(message=f"{what} is not valid JSON: {e}") from None
    if json_object and not isinstance(data, dict):
        raise errors.BadRequest(message=f"{what} must be a JSON object, not "
                                f"{decoding.json_type(data)}")
    return raw


def checked_options(opts: pb.ListOptions) -> pb.ListOptions:
    """List options, unchanged, once a `continue` token is known not to nest beyond
    api.decoding's limit: the token is the server's own base64 JSON, but a client can send any,
    and the registry's parse of a forged 50,000-deep one must not meet Python's recursion."""
    if opts.continue_token:
        try:
            raw = base64.urlsafe_b64decode(opts.continue_token.encode())
        except (ValueError, binascii.Error):
            return opts  # the registry answers that it is not a token it issued
        try:
            decoding.check_json_depth(raw)
        except decoding.LimitError:
            raise errors.BadRequest(message="continue key is not valid: not a token this "
                                    "server issued") from None
    return opts


def internal(e: Exception) -> errors.InternalError:
    return errors.InternalError(message=f"Internal error occurred: {e}")


class RequestHandler:
    """The verbs of the API, each: who is asking → may they → the registry → audit."""

    def __init__(self, registry: Registry, cache: WatchCache, bookmark_interval: float, *,
                 authenticator: Authenticator, authorizer: Authorizer,
                 audit: AuditLog | None = None, kubelets: KubeletProxy | None = None) -> None:
        self.registry = registry
        self.cache = cache
        self.bookmark_interval = bookmark_interval
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.audit = audit
        self.kubelets = kubelets

    # --- the steps every request takes ----------------------------------------------------

    @staticmethod
    def record(creds: Credentials, verb: str, resource: str = "", namespace: str = "",
               name: str = "", subresource: str = "", path: str = "") -> AuditRecord:
        """What the request asks, as authorization and audit see it."""
        info = RESOURCES.get(resource)
        if info is not None and not info.namespaced:
            namespace = ""
        if resource == "namespaces" and name:
            # Upstream's RequestInfo puts a namespace's own name in the namespace field, which
            # is how a RoleBinding in "ns" (view, admin) lets its subjects read namespace "ns".
            namespace = name
        return AuditRecord(
            verb=verb, resource=resource, subresource=subresource, namespace=namespace,
            name=name, path=path, api_group=info.group if info else "",
            api_version=info.version if info else "", source_ips=[creds.source_ip],
            user_agent=creds.user_agent)

    async def authenticate(self, creds: Credentials) -> UserInfo:
        return await self.authenticator.authenticate(creds)

    async def authorize(self, creds: Credentials, rec: AuditRecord) -> UserInfo:
        """Authenticate, impersonate, authorize: the user the request runs as."""
        user = await self.authenticator.authenticate(creds)
        rec.user = user
        acting = self.authenticator.impersonate(user, creds.headers, self.authorizer)
        if acting is not None:
            rec.impersonated = acting
            user = acting
        attrs = Attributes(user, rec.verb, resource=rec.resource, subresource=rec.subresource,
                           api_group=rec.api_group, namespace=rec.namespace, name=rec.name,
                           path=rec.path)
        require(self.authorizer, attrs)
        return user

    def finish(self, rec: AuditRecord, error: errors.ApiError | None) -> None:
        if error is not None:
            rec.code, rec.reason, rec.message = error.code, error.reason, error.message
        if self.audit is not None:
            self.audit.record(rec)

    async def unary(self, creds: Credentials, rec: AuditRecord,
                    fn: Callable[[ResourceInfo], Awaitable[Answer]]) -> Answer:
        start = time.perf_counter()
        code = "200"
        error: errors.ApiError | None = None
        reset = None
        try:
            user = await self.authorize(creds, rec)
            reset = CURRENT_USER.set(user)
            info = resource_info(rec.resource)
            if info.virtual and rec.verb != "create":
                raise create_only(info)
            result = await fn(info)
            if rec.verb == "create":
                rec.code = 201
                if not rec.name and isinstance(result, Result) and not info.virtual:
                    # A create names its object in the body (generateName: in the answer);
                    # the audit event names it, as upstream's does.
                    rec.name = str((result.object.get("metadata") or {}).get("name", ""))
            return result
        except errors.ApiError as e:
            code, error = str(e.code), e
            raise
        except ValidationError as e:
            # A model validated on a path that skipped the codec (a patched Scale's replicas
            # set on the object, say): still the client's invalid value, answered as decode()
            # would have; logged, because that path should decode.
            log.warning("%s %s: a model was validated without the codec: %s", rec.verb,
                        rec.resource, e.errors(include_url=False)[:3])
            res = RESOURCES.get(rec.resource)
            model = res.model if res is not None else TypedObject
            error = codec.invalid_from(model, e, res.kind if res else "", rec.name)
            code = str(error.code)
            raise error from None
        except Exception as e:
            code = "500"
            log.exception("%s %s failed", rec.verb, rec.resource)
            error = internal(e)
            raise error from None
        finally:
            if reset is not None:
                CURRENT_USER.reset(reset)
            self.finish(rec, error)
            metrics.REQUESTS.labels(rec.verb, rec.resource, code).inc()
            metrics.LATENCY.labels(rec.verb, rec.resource).observe(time.perf_counter() - start)

    # --- the verbs --------------------------------------------------------------------------

    async def create(self, creds: Credentials, req: pb.CreateRequest) -> Answer:
        ns = req.namespace
        info = RESOURCES.get(req.resource)
        if info is not None and info.namespaced and not ns and not req.subresource:
            ns = body_namespace(req.object) or "default"
        # Only a subresource create (serviceaccounts/NAME/token) names an existing object. A
        # plain create is authorized without a name, as upstream's: the registry ignores the
        # request's name and writes the body's, so authorizing the request's name would let a
        # rule's resourceNames allow creating any name.
        name = req.name if req.subresource else ""
        rec = self.record(creds, "create", req.resource, ns, name, req.subresource)
        return await self.unary(creds, rec, lambda info: self.registry.create(
            info, ns, checked_body(req.object), req.dry_run, name=req.name,
            subresource=req.subresource))

    async def get(self, creds: Credentials, req: pb.GetRequest) -> Answer:
        rec = self.record(creds, "get", req.resource, req.namespace, req.name, req.subresource)
        return await self.unary(creds, rec, lambda info: (
            self.registry.get(info, req.namespace, req.name, req.subresource)))

    async def list(self, creds: Credentials, req: pb.ListRequest) -> Answer:
        rec = self.record(creds, "list", req.resource, req.namespace)
        return await self.unary(creds, rec, lambda info: (
            self.registry.list(info, req.namespace, checked_options(req.options))))

    async def update(self, creds: Credentials, req: pb.UpdateRequest) -> Answer:
        rec = self.record(creds, "update", req.resource, req.namespace, req.name,
                          req.subresource)
        return await self.unary(creds, rec, lambda info: (
            self.registry.update(info, req.namespace, req.name, req.subresource,
                                 checked_body(req.object), req.dry_run)))

    async def patch(self, creds: Credentials, req: pb.PatchRequest) -> Answer:
        rec = self.record(creds, "patch", req.resource, req.namespace, req.name,
                          req.subresource)
        return await self.unary(creds, rec, lambda info: (
            self.registry.patch(info, req.namespace, req.name, req.subresource, req.patch_type,
                                checked_body(req.patch, "the patch", json_object=False),
                                req.dry_run)))

    async def delete(self, creds: Credentials, req: pb.DeleteRequest) -> Answer:
        rec = self.record(creds, "delete", req.resource, req.namespace, req.name)
        return await self.unary(creds, rec, lambda info: (
            self.registry.delete(info, req.namespace, req.name, req.options)))

    async def delete_collection(self, creds: Credentials,
                                req: pb.DeleteCollectionRequest) -> Answer:
        rec = self.record(creds, "deletecollection", req.resource, req.namespace)
        return await self.unary(creds, rec, lambda info: (
            self.registry.delete_collection(info, req.namespace,
                                            checked_options(req.list_options), req.options)))

    async def bind(self, creds: Credentials, req: pb.BindRequest) -> Answer:
        rec = self.record(creds, "create", "pods", req.namespace, req.name, "binding")
        return await self.unary(creds, rec, lambda _info: (
            self.registry.bind(req.namespace, req.name,
                               checked_body(req.binding, "the Binding"))))

    async def nonresource(self, creds: Credentials, path: str) -> None:
        """Authorize a `get` of a non-resource path (discovery, version, OpenAPI, health
        details); counted apart from resources."""
        rec = self.record(creds, "get", path=path)
        try:
            await self.authorize(creds, rec)
        except errors.ApiError as e:
            metrics.REQUESTS.labels("get", "discovery", str(e.code)).inc()
            self.finish(rec, e)
            raise
        metrics.REQUESTS.labels("get", "discovery", "200").inc()

    async def watch(self, creds: Credentials, req: pb.ListRequest) -> WatchEvents:
        """Authorize and register a watch; the events as a stream that ends at the client's
        timeout (timeoutSeconds) or when the server stops. Errors before the first event are
        raised here. The caller closes the stream when done, from a `finally`: a
        `watchcache.WatchStream`, whose `aclose()` never suspends and never raises (a stream
        dropped unclosed is closed when collected)."""
        opts = req.options
        rec = self.record(creds, "watch", req.resource, req.namespace)
        try:
            await self.authorize(creds, rec)
            info = resource_info(req.resource)
            if info.virtual:
                raise create_only(info)
            ns = req.namespace if info.namespaced else ""
            watcher = await self.cache.watch(info.name, ns, self.registry.matcher(info, opts),
                                             opts.resource_version)
        except errors.ApiError as e:
            metrics.REQUESTS.labels("watch", req.resource, str(e.code)).inc()
            self.finish(rec, e)
            raise
        metrics.REQUESTS.labels("watch", req.resource, "200").inc()
        # Every watch ends (upstream: timeoutSeconds, else a random 30-60 minutes from
        # --min-request-timeout), so a client that lost track of one is not held forever.
        timeout = opts.timeout_seconds or MIN_REQUEST_TIMEOUT * (1 + random.random())
        return self.cache.stream(watcher, opts.allow_watch_bookmarks, self.bookmark_interval,
                                 info.kind, info.api_version, timeout)

    # --- streams proxied to the kubelets (apiserver/kubeletproxy.py) ------------------------

    async def stream_begin(self, creds: Credentials, rec: AuditRecord) -> KubeletProxy:
        """Authorize a pods/log, pods/exec or pods/attach call; the proxy to serve it."""
        await self.authorize(creds, rec)
        if self.kubelets is None:
            raise errors.ServiceUnavailable(message="this apiserver does not proxy to kubelets")
        return self.kubelets

    def stream_end(self, rec: AuditRecord, error: errors.ApiError | None) -> None:
        self.finish(rec, error)
        metrics.REQUESTS.labels(rec.verb, f"pods/{rec.subresource}",
                                str(error.code) if error else "200").inc()


def discovery_document() -> dict[str, Any]:
    """tinykube's own one-call discovery (the gRPC Discovery verb): every resource."""
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
