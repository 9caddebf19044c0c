"""The async client every component and tkctl use to talk to the apiserver.

Two layers, as client-go has a dynamic and a typed client:
- `ApiClient`: verbs on any resource by name, objects as JSON dicts (tkctl, generic code);
- `ApiClient.resource(Model)`: a `ResourceClient[Model]` whose verbs take and return the pydantic
  models (controllers).

The channel comes from a `client.config.ClientConfig` (a kubeconfig): TLS with the cluster CA
and a client certificate, or a bearer token, sent with every call as metadata.

A failed call raises the same `api.errors.ApiError` subclass the server raised (NotFound,
Conflict, Gone, Invalid with field causes, ...), rebuilt from the Status in trailing metadata.
A call that got no answer from the apiserver at all (connection refused, a failed TLS
handshake, a connection lost) raises `Unreachable`: a ServiceUnavailable too, so retry loops
treat both alike, but one that says the apiserver itself was not reached, which an apiserver
answering 503 "etcd unavailable" must never be mistaken for.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from api import errors
from api.authentication import IMPERSONATE_GROUP, IMPERSONATE_USER
from api.meta import TypedObject
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.resources import ResourceInfo, for_model, lookup
from client.config import DEFAULT_SERVER, SERVER_ENV, ClientConfig

# A token file is re-read at most this often: kubelets rotate projected tokens well before
# they expire, and client-go re-reads on a similar period.
_TOKEN_REREAD_SECONDS = 60.0

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
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Not a back-off despite its name: gRPC core uses it as the deadline of one connection
    # attempt (TCP + TLS handshake + the server's SETTINGS). At 100 ms, a loaded machine
    # aborted handshakes ("Handshake read failed", "timed out before receiving SETTINGS
    # frame"), which tkctl then reported as a refused certificate. gRPC's default.
    ("grpc.min_reconnect_backoff_ms", 20_000),
]

T = TypeVar("T", bound=TypedObject)
R = TypeVar("R")


def resolve_server(flag: str | None = None) -> str:
    """`--server` if given, else $TINYKUBE_SERVER, else 127.0.0.1:6442 (the documented order)."""
    return flag or os.environ.get(SERVER_ENV) or DEFAULT_SERVER


def open_channel(config: ClientConfig, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    """A channel to `config.server`: TLS (server verified against the CA, client certificate if
    any) when the config has a CA, plaintext otherwise."""
    if not config.secure:
        return grpc.aio.insecure_channel(config.server, options=list(options))
    creds = grpc.ssl_channel_credentials(
        root_certificates=config.ca_pem, private_key=config.key_pem,
        certificate_chain=config.cert_pem,
    )
    opts = list(options)
    if config.tls_server_name:
        # Verify the certificate against this name instead of the host dialled (an address
        # that is not among the apiserver certificate's SANs).
        opts.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.aio.secure_channel(config.server, creds, options=opts)


class _Token:
    """The bearer token of a config: inline, or read from its file (re-read periodically so a
    rotated token is picked up without restarting)."""

    def __init__(self, config: ClientConfig) -> None:
        self._inline = config.token
        self._file = config.token_file
        self._cached: str | None = None
        self._read_at = 0.0

    def get(self) -> str | None:
        if self._inline or not self._file:
            return self._inline
        now = time.monotonic()
        if self._cached is None or now - self._read_at >= _TOKEN_REREAD_SECONDS:
            try:
                with open(self._file) as f:
                    self._cached = f.read().strip()
                self._read_at = now
            except OSError:
                pass  # keep the last token; the server will say Unauthorized if it is stale
        return self._cached


@dataclass
class WatchEvent:
    """One watch event: type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."""

    type: str
    object: dict[str, Any]


class Unreachable(errors.ServiceUnavailable):
    """No answer from the apiserver: gRPC's UNAVAILABLE without the Status that every answer
    of the apiserver carries in its trailing metadata (refused, TLS handshake, DNS, a lost
    connection). The server's own 503s (etcd down, shutting down) are plain
    ServiceUnavailable."""


def _answered(trailing: Any) -> bool:
    return any(key == errors.STATUS_METADATA_KEY for key, _ in trailing or ())


def rpc_error(e: grpc.aio.AioRpcError) -> errors.ApiError:
    """The ApiError of a failed call: the server's own (from its Status), or `Unreachable`
    when the apiserver was not reached at all."""
    trailing = e.trailing_metadata()
    if e.code() == grpc.StatusCode.UNAVAILABLE and not _answered(trailing):
        return Unreachable(message=e.details() or "UNAVAILABLE")
    return errors.from_grpc(e.code(), e.details() or "", trailing)


async def _call(fn: Callable[[], Awaitable[R]]) -> R:
    try:
        return await fn()
    except grpc.aio.AioRpcError as e:
        raise rpc_error(e) from None


def _ns(info: ResourceInfo, namespace: str | None) -> str:
    return (namespace or "") if info.namespaced else ""


class ApiClient:
    """Verbs on any resource, objects as dicts. Create once, share, `await close()` at the end.

    `ApiClient(config=load_config(...))` opens a TLS channel with the client certificate and/or
    bearer token of a kubeconfig; `ApiClient("host:port")` (the old positional form) a plaintext
    one, which only an `--insecure` apiserver answers. `impersonate_user`/`impersonate_groups`
    act as another identity (kubectl's `--as`/`--as-group`), if the server allows it.
    """

    def __init__(
        self, server: str | None = None, *, config: ClientConfig | None = None,
        user_agent: str = "tinykube", impersonate_user: str | None = None,
        impersonate_groups: Sequence[str] = (),
    ) -> None:
        self.config = config or ClientConfig(server=resolve_server(server))
        self.server = self.config.server
        self._channel = open_channel(
            self.config, [*_CHANNEL_OPTIONS, ("grpc.primary_user_agent", user_agent)])
        self._stub = pb_grpc.ApiStub(self._channel)
        self._impersonation: builtins.list[tuple[str, str]] = []
        if impersonate_user:
            self._impersonation.append((IMPERSONATE_USER, impersonate_user))
        self._impersonation += [(IMPERSONATE_GROUP, g) for g in impersonate_groups]
        self._token = _Token(self.config)
        # Warnings from the last call (e.g. unknown fields dropped), as kubectl prints them.
        self.last_warnings: list[str] = []

    @property
    def secure(self) -> bool:
        return self.config.secure

    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The per-call metadata: bearer token and impersonation headers (None if neither)."""
        md = list(self._impersonation)
        # A bearer token goes only over TLS: on a plaintext channel anyone on the path could
        # replay it, and the only server there (`--insecure`) ignores credentials anyway.
        token = self._token.get() if self.secure else None
        if token:
            md.append(("authorization", f"Bearer {token}"))
        return tuple(md) or None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the channel connects (the apiserver may still be starting)."""
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # arrives as the awaitable completes.
            async with asyncio.timeout(timeout):
                await self._channel.channel_ready()
        except TimeoutError:
            raise Unreachable(
                message=f"the server at {self.server} is not reachable") from None

    def resource(self, model: type[T]) -> ResourceClient[T]:
        return ResourceClient(self, model)

    async def _unary(self, rpc: Callable[..., Any], req: Any, timeout: float | None = None
                     ) -> dict[str, Any]:
        """One unary call with this client's metadata and an optional deadline (`timeout`
        seconds: then errors.Timeout); server errors as `api.errors`."""
        resp = await _call(lambda: rpc(req, metadata=self.metadata(), timeout=timeout))
        return self._object(resp)

    def _object(self, resp: pb.ObjectResponse) -> dict[str, Any]:
        self.last_warnings = list(resp.warnings)
        result: dict[str, Any] = json.loads(resp.object)
        return result

    # --- verbs ------------------------------------------------------------------------------

    async def create(
        self, resource: str, obj: dict[str, Any], namespace: str | None = None,
        *, dry_run: bool = False, name: str = "", subresource: str = "",
    ) -> dict[str, Any]:
        """Create `obj`; with `name` and `subresource`, create on a subresource of an existing
        object instead (`serviceaccounts/NAME/token` with a TokenRequest body)."""
        info = lookup(resource)
        ns = namespace or (obj.get("metadata") or {}).get("namespace") or ""
        req = pb.CreateRequest(
            resource=info.name, namespace=_ns(info, ns), object=json.dumps(obj).encode(),
            dry_run=dry_run, name=name, subresource=subresource,
        )
        return await self._unary(self._stub.Create, req)

    async def get(
        self, resource: str, name: str, namespace: str | None = None, *, subresource: str = ""
    ) -> dict[str, Any]:
        info = lookup(resource)
        req = pb.GetRequest(
            resource=info.name, namespace=_ns(info, namespace), name=name, subresource=subresource
        )
        return await self._unary(self._stub.Get, req)

    async def list(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", limit: int = 0, continue_token: str = "",
        resource_version: str = "", timeout: float | None = None,
    ) -> dict[str, Any]:
        """One page: a `<Kind>List` dict with `items` and `metadata.continue` when more remain.
        With `timeout`, the call's deadline in seconds (errors.Timeout when it passes)."""
        info = lookup(resource)
        req = pb.ListRequest(
            resource=info.name, namespace=_ns(info, namespace),
            options=pb.ListOptions(
                label_selector=label_selector, field_selector=field_selector, limit=limit,
                continue_token=continue_token, resource_version=resource_version,
            ),
        )
        return await self._unary(self._stub.List, req, timeout)

    async def list_all(
        self, resource: str, namespace: str | None = None, *, label_selector: str = "",
        field_selector: str = "", page_size: int = 500, timeout: float | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str]:
        """Every item, fetched in pages; returns (items, resourceVersion of the snapshot).
        With `timeout`, a deadline in seconds for all the pages together."""
        items: builtins.list[dict[str, Any]] = []
        token = ""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise errors.Timeout(message=f"listing {resource} took longer than "
                                     f"{timeout:g}s")
            page = await self.list(
                resource, namespace, label_selector=label_selector,
                field_selector=field_selector, limit=page_size, continue_token=token,
                timeout=remaining,
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
        return await self._unary(self._stub.Update, req)

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
        return await self._unary(self._stub.Patch, req)

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
        return await self._unary(self._stub.Delete, req)

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
        return await self._unary(self._stub.DeleteCollection, req)

    async def bind(self, namespace: str, name: str, node_name: str, uid: str = "") -> None:
        """Bind a pod to a node through the pods/binding subresource (what the scheduler does)."""
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        req = pb.BindRequest(namespace=namespace, name=name, binding=json.dumps(binding).encode())
        await self._unary(self._stub.Bind, req)

    async def discovery(self) -> dict[str, Any]:
        return await self._unary(self._stub.Discovery, pb.DiscoveryRequest())

    async def watch(
        self, resource: str, namespace: str | None = None, *, resource_version: str = "",
        label_selector: str = "", field_selector: str = "", allow_bookmarks: bool = False,
        timeout_seconds: int = 0, request_timeout: float | None = None,
    ) -> AsyncIterator[WatchEvent]:
        """Stream events until the server ends the watch (`timeout_seconds`, apiserver
        restart). `request_timeout` is the call's own deadline, for when the server does not
        end it (errors.Timeout then): give it more than `timeout_seconds`.

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
        call = self._stub.Watch(req, metadata=self.metadata(), timeout=request_timeout)
        try:
            async for ev in call:
                obj = json.loads(ev.object)
                if ev.type == "ERROR":
                    raise errors.from_status(obj)
                yield WatchEvent(ev.type, obj)
        except grpc.aio.AioRpcError as e:
            raise rpc_error(e) from None
        finally:
            call.cancel()


    async def logs(
        self, namespace: str, name: str, *, container: str = "", follow: bool = False,
        previous: bool = False, tail_lines: int = -1, timestamps: bool = False,
        since_seconds: int = 0, limit_bytes: int = 0,
    ) -> AsyncGenerator[bytes, None]:
        """A container's log (pods/log), as the bytes arrive; with `follow` until the client
        stops reading or the container's log ends."""
        req = pb.LogsRequest(
            namespace=namespace, name=name, container=container, follow=follow,
            previous=previous, tail_lines=tail_lines, timestamps=timestamps,
            since_seconds=since_seconds, limit_bytes=limit_bytes,
        )
        call = self._stub.Logs(req, metadata=self.metadata())
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as e:
            raise rpc_error(e) from None
        finally:
            call.cancel()

    async def exec(
        self, start: pb.ExecStart, requests: AsyncIterator[pb.ExecRequest] | None = None,
    ) -> AsyncGenerator[pb.ExecResponse, None]:
        """Run a command in a container (pods/exec): `start` goes first, then `requests`
        (stdin bytes, terminal resizes, stdin_close); the answers are output and, last, the
        exit status."""
        # Nothing goes after `start` before the server's first (empty) message says the
        # command started: a write racing the server's refusal would turn the refusal into
        # gRPC's "Internal error from Core" (grpc/grpc#36066).
        started = asyncio.Event()
        ok = False

        async def outgoing() -> AsyncIterator[pb.ExecRequest]:
            yield pb.ExecRequest(start=start)
            await started.wait()
            if ok and requests is not None:
                async for r in requests:
                    yield r

        call = self._stub.Exec(outgoing(), metadata=self.metadata())
        try:
            async for resp in call:
                if not ok:
                    ok = True
                    started.set()
                    continue
                yield resp
                if resp.exited or resp.error:
                    return  # the session is over (the stream's own end may still be in flight)
        except grpc.aio.AioRpcError as e:
            raise rpc_error(e) from None
        finally:
            started.set()
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
