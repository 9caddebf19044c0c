"""pods/log, pods/exec, pods/attach and pods/portforward: the apiserver's side of `logs`,
`exec`, `attach` and `port-forward` (tkctl's over gRPC, kubectl's over the HTTP front's
WebSockets).

As upstream (pkg/registry/core/pod/strategy.go LogLocation / ExecLocation), the apiserver does
not run anything itself: it checks the request against the pod (the container must be named
when the pod has several, and must be one of the pod's), finds the pod's Node, and proxies the
stream to that node's kubelet at the Node's address (InternalIP first) and
`status.daemonEndpoints.kubeletEndpoint.Port`. The connection is TLS with the apiserver's kubelet
client certificate (`--kubelet-client-certificate`/`--kubelet-client-key`, identity
`kube-apiserver-kubelet-client`) and the kubelet's serving certificate is verified against
`--kubelet-certificate-authority` (default: the client CA, which signs the kubelets' serving
certificates in tinykube's PKI) and must name the node, since a Node's address can be anything
its kubelet wrote. With `--insecure` it dials plaintext, like everything else then.

One gRPC channel per kubelet address is kept (channels reconnect by themselves), so a `logs -f`
storm does not mean a TLS handshake per request. A kubelet that cannot be reached is a
ServiceUnavailable naming the node and the address; errors the kubelet returns (its Status) are
passed on as they are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.resources import RESOURCES
from apiserver.registry import Registry

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Upstream's --kubelet-preferred-address-types, minus the DNS names tinykube nodes never have.
ADDRESS_PREFERENCE = ("InternalIP", "Hostname", "ExternalIP")
DEFAULT_KUBELET_PORT = 10250
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


@dataclass(frozen=True)
class KubeletTLS:
    """The apiserver's client credentials towards kubelets, PEM. cert/key None: no client
    certificate (the kubelets will refuse the handshake, which the error then says)."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


@dataclass(frozen=True)
class Target:
    """Where one pods/log or pods/exec request goes."""

    pod: Obj
    container: str
    node: str
    address: str  # host:port


def container_names(pod: Obj) -> list[str]:
    """Every container of the pod, init containers first (upstream podutil.VisitContainers)."""
    spec = pod.get("spec") or {}
    return [str(c.get("name", "")) for key in ("initContainers", "containers",
                                                 "ephemeralContainers")
            for c in spec.get(key) or ()]


def validate_container(pod: Obj, container: str) -> str:
    """The container a request means (upstream's validateContainer, same messages)."""
    name = str((pod.get("metadata") or {}).get("name", ""))
    if not container:
        containers = (pod.get("spec") or {}).get("containers") or []
        if len(containers) == 1:
            return str(containers[0].get("name", ""))
        if not containers:
            raise errors.BadRequest(message=f"a container name must be specified for pod {name}")
        # Go's %s of a []string: [a b].
        raise errors.BadRequest(message=f"a container name must be specified for pod {name}, "
                                f"choose one of: [{' '.join(container_names(pod))}]")
    if container not in container_names(pod):
        raise errors.BadRequest(message=f"container {container} is not valid for pod {name}")
    return container


def kubelet_address(node: Obj) -> str:
    """host:port of a Node's kubelet server; BadRequest when the Node does not say."""
    name = str((node.get("metadata") or {}).get("name", ""))
    status = node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []
                 if a.get("address")}
    host = next((addresses[t] for t in ADDRESS_PREFERENCE if t in addresses), None)
    if host is None:
        raise errors.BadRequest(message=f'node "{name}" has no address in its status: its '
                                "kubelet cannot be reached", kind="nodes", name=name)
    endpoint = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
    port = int(endpoint.get("Port") or DEFAULT_KUBELET_PORT)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class KubeletProxy:
    def __init__(self, registry: Registry, tls: KubeletTLS | None) -> None:
        """`tls` None: plaintext (an --insecure apiserver)."""
        self.registry = registry
        self.tls = tls
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for ch in channels:
            await ch.close()

    def _stub(self, target: Target) -> pb_grpc.KubeletStub:
        key = (target.address, target.node)
        ch = self._channels.get(key)
        if ch is None:
            if self.tls is None:
                ch = grpc.aio.insecure_channel(target.address, options=_CHANNEL_OPTIONS)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=self.tls.ca_pem, private_key=self.tls.key_pem,
                    certificate_chain=self.tls.cert_pem)
                # The kubelet's serving certificate must name the node (its SANs are the
                # node name and addresses), whatever address the Node claims.
                ch = grpc.aio.secure_channel(target.address, creds, options=[
                    *_CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", target.node)])
            self._channels[key] = ch
        return pb_grpc.KubeletStub(ch)

    async def target(self, namespace: str, name: str, container: str) -> Target:
        pod = await self.registry.get(RESOURCES["pods"], namespace, name)
        container = validate_container(pod, container)
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node_name:
            raise errors.BadRequest(message=f"pod {name} does not have a host assigned",
                                    kind="pods", name=name)
        node = await self.registry.get(RESOURCES["nodes"], "", node_name)
        return Target(pod, container, node_name, kubelet_address(node))

    def _error(self, e: grpc.aio.AioRpcError, target: Target) -> errors.ApiError:
        """The kubelet's own error as it sent it; a transport failure naming node and
        address (kind/name set, so that clients do not take it for their own connection)."""
        trailing = e.trailing_metadata()
        if any(k == errors.STATUS_METADATA_KEY for k, _ in trailing or ()):
            return errors.from_grpc(e.code(), e.details() or "", trailing)
        what = f'the kubelet of node "{target.node}" at {target.address}'
        detail = e.details() or e.code().name
        if e.code() == grpc.StatusCode.UNAVAILABLE:
            return errors.ServiceUnavailable(
                message=f"error dialing backend: cannot reach {what}: {detail}",
                kind="nodes", name=target.node)
        return errors.InternalError(message=f"error talking to {what}: {detail}",
                                    kind="nodes", name=target.node)

    async def logs(self, req: pb.LogsRequest) -> AsyncIterator[pb.LogChunk]:
        target = await self.target(req.namespace, req.name, req.container)
        fwd = pb.LogsRequest()
        fwd.CopyFrom(req)
        fwd.container = target.container
        call = self._stub(target).Logs(fwd)
        try:
            async for chunk in call:
                yield chunk
        except grpc.aio.AioRpcError as e:
            raise self._error(e, target) from None
        finally:
            call.cancel()

    async def forward_target(self, namespace: str, name: str) -> Target:
        """Where a port-forward of the pod goes: its node's kubelet, in the pod's network
        namespace, which any container of the pod leads to (the first is named)."""
        pod = await self.registry.get(RESOURCES["pods"], namespace, name)
        containers = (pod.get("spec") or {}).get("containers") or []
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        if not node_name:
            raise errors.BadRequest(message=f"pod {name} does not have a host assigned",
                                    kind="pods", name=name)
        node = await self.registry.get(RESOURCES["nodes"], "", node_name)
        first = str(containers[0].get("name", "")) if containers else ""
        return Target(pod, first, node_name, kubelet_address(node))

    async def _bidi(self, target: Target, method: str, start: Any, requests: AsyncIterator[Any],
                    last: Callable[[Any], bool]) -> AsyncGenerator[Any, None]:
        """One bidirectional call to the target's kubelet: `start` first, then the client's
        messages; the kubelet's answers until one that `last` says ends the session.

        The client's messages go on only once the kubelet said the session started (its
        first, empty message): a write racing the kubelet's refusal would turn the refusal
        into gRPC's "Internal error from Core" (grpc/grpc#36066)."""
        started = asyncio.Event()
        ok = False

        async def upstream() -> AsyncIterator[Any]:
            yield start
            await started.wait()
            if not ok:
                return
            async for m in requests:
                if m.WhichOneof("kind") != "start":  # one start per session
                    yield m

        call = getattr(self._stub(target), method)(upstream())
        try:
            async for resp in call:
                if not ok:
                    ok = True
                    started.set()
                yield resp
                if last(resp):
                    return  # the end: anything after is the kubelet closing the stream
        except grpc.aio.AioRpcError as e:
            raise self._error(e, target) from None
        finally:
            started.set()
            call.cancel()

    async def exec(self, start: pb.ExecStart, requests: AsyncIterator[pb.ExecRequest]
                   ) -> AsyncGenerator[pb.ExecResponse, None]:
        """Proxy one exec: `start` (already read from the client) with the container filled
        in, then the client's further messages, to the kubelet; its answers back."""
        if not start.command:
            raise errors.BadRequest(
                message="you must specify at least one command for the container")
        target = await self.target(start.namespace, start.name, start.container)
        fwd = pb.ExecStart()
        fwd.CopyFrom(start)
        fwd.container = target.container
        async for resp in self._bidi(target, "Exec", pb.ExecRequest(start=fwd), requests,
                                     lambda r: bool(r.exited or r.error)):
            yield resp

    async def attach(self, start: pb.ExecStart, requests: AsyncIterator[pb.ExecRequest]
                     ) -> AsyncGenerator[pb.ExecResponse, None]:
        """Proxy one attach: as exec, to the container's own process (no command)."""
        target = await self.target(start.namespace, start.name, start.container)
        fwd = pb.ExecStart()
        fwd.CopyFrom(start)
        fwd.container = target.container
        del fwd.command[:]
        async for resp in self._bidi(target, "Attach", pb.ExecRequest(start=fwd), requests,
                                     lambda r: bool(r.exited or r.error)):
            yield resp

    async def port_forward(self, start: pb.PortForwardStart,
                           requests: AsyncIterator[pb.PortForwardRequest],
                           target: Target | None = None
                           ) -> AsyncGenerator[pb.PortForwardResponse, None]:
        """Proxy one TCP connection to a port of a pod: the kubelet's first message (empty)
        says it is open, or carries the `error` why not; then the pod's bytes, until the pod
        closes its side. `target`: forward_target's answer, when the caller has it."""
        if not 0 < start.port < 65536:
            raise errors.BadRequest(message=f"invalid port {start.port}: must be 1-65535")
        if target is None:
            target = await self.forward_target(start.namespace, start.name)
        fwd = pb.PortForwardStart()
        fwd.CopyFrom(start)
        fwd.container = target.container
        async for resp in self._bidi(target, "PortForward", pb.PortForwardRequest(start=fwd),
                                     requests, lambda r: bool(r.error)):
            yield resp
