"""exec, attach and port-forward over WebSocket, as kubectl (1.30+) and the official client
libraries speak them, bridged to the kubelet proxy's gRPC streams (apiserver/kubeletproxy.py).

Why here and not in the kubelet: tinykube's kubelets speak gRPC only, so the apiserver ends the
client's WebSocket itself, as upstream's apiserver does for `v5.channel.k8s.io` (its
StreamTranslator) and for port-forward's SPDY-over-WebSocket tunnel, and hands the bytes to the
same `KubeletProxy.exec` / `attach` / `port_forward` calls the gRPC front uses, after the
same authorization (`create pods/exec`, `pods/attach`, `pods/portforward`) and the same audit.

Three wire protocols, learnt from upstream (k8s.io/apimachinery util/httpstream/wsstream,
util/proxy, client-go tools/remotecommand and tools/portforward); no code of theirs:

- The channel protocols, for exec and attach: every binary message starts with its stream's
  byte (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize as JSON `{"Width":W,"Height":H}`);
  `v5.channel.k8s.io` adds 255 + a stream byte to close a stream (kubectl's stdin EOF). At the
  end the error stream carries a `metav1.Status` as JSON (v4 and v5: Success, or
  NonZeroExitCode with the exit code in details.causes; attach reports none) or, for the older
  protocols, the failure's message as text. The `base64.` variants send text messages: the
  stream as the digit '0'+n, then base64. The subprotocol is the first one the client offers
  that the server speaks (upstream's rule; clients list the newest first).
- Port-forward over the channel protocol (`v4.channel.k8s.io`, the Python client's
  `portforward=True`): the ports are in the query (`ports=8080,9090`), port i gets a data
  stream 2i and an error stream 2i+1, each opened by a message carrying the port as two
  little-endian bytes; one TCP connection per port for the life of the WebSocket.
- Port-forward through the tunnel (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+): the
  WebSocket's binary messages carry a SPDY/3.1 byte stream. kubectl opens, per local connection,
  an error stream and a data stream (SYN_STREAM with headers streamtype, port, requestid); the
  server accepts each (SYN_REPLY), pairs them by requestid, and pipes DATA frames to a TCP
  connection the pod's kubelet opens. `SpdyCodec` is the framing this needs and no more:
  SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, PING and GOAWAY, header blocks compressed with zlib
  and SPDY's dictionary (one stream of compression per direction for the whole connection);
  SETTINGS, WINDOW_UPDATE and HEADERS are read and ignored (kubectl's SPDY library has no flow
  control either).

Everything that can be refused is refused before the upgrade, as an ordinary HTTP `Status`
(not found, forbidden, no command, a bad container, SPDY without WebSocket), so kubectl prints it
as it prints any API error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import WSMsgType, web

from api import errors
from api.proto import tinykube_pb2 as pb
from apiserver.auth import Credentials
from apiserver.handler import RequestHandler, internal
from apiserver.kubeletproxy import KubeletProxy, Target
from apiserver.rest import paths

log = logging.getLogger(__name__)

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
BASE64 = "base64.channel.k8s.io"
# What exec speaks, newest first. v2 and v3 mean, over WebSocket, what channel.k8s.io means
# (their differences from v1 were SPDY's); v4 brought the JSON Status on the error stream.
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, BASE64)
_JSON_STATUS = frozenset({V5, V4, V4_BASE64})
# Upstream's kubelet serves the channel port-forward as v4 (binary or base64) or with no
# subprotocol at all.
PORTFORWARD_PROTOCOLS = (V4, V4_BASE64)
TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE_SIGNAL = 255  # v5: [255, stream] closes that stream
_TRUE = ("1", "true", "True")
_INBOX = 64  # client messages that may wait for the kubelet before the client is held back

T = TypeVar("T")


async def serve(request: web.Request, handler: RequestHandler, creds: Credentials,
                req: paths.RequestInfo) -> web.StreamResponse:
    """pods/exec, pods/attach and pods/portforward over WebSocket."""
    rec = handler.record(creds, "create", "pods", req.namespace, req.name, req.subresource)
    error: errors.ApiError | None = None
    try:
        proxy = await handler.stream_begin(creds, rec)
        if req.subresource in ("exec", "attach"):
            return await _remote_command(request, proxy, req)
        if req.subresource == "portforward":
            return await _port_forward(request, proxy, req)
        raise errors.NotFound(message="the server could not find the requested resource")
    except errors.ApiError as e:
        error = e
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as e:
        log.exception("pods/%s %s/%s failed", req.subresource, req.namespace, req.name)
        error = internal(e)
        raise error from None
    finally:
        handler.stream_end(rec, error)


# --- the upgrade -------------------------------------------------------------------------------


def is_websocket(request: web.Request) -> bool:
    """Upstream's wsstream.IsWebSocketRequest: `Upgrade: websocket` and `Connection: upgrade`."""
    tokens = [t.strip().lower() for t in request.headers.get("Connection", "").split(",")]
    return request.headers.get("Upgrade", "").lower() == "websocket" and "upgrade" in tokens


def offered_protocols(request: web.Request) -> list[str]:
    return [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in h.split(",") if p.strip()]


def choose_protocol(offered: Sequence[str], supported: Sequence[str]) -> str:
    """The first protocol the client offers that the server speaks ("" when it offers none),
    as upstream's wsstream handshake chooses."""
    if not offered:
        return ""
    for p in offered:
        if p in supported:
            return p
    raise errors.BadRequest(message=f"requested protocol(s) are not supported: "
                            f"[{' '.join(offered)}]; supports [{' '.join(supported)}]")


def require_websocket(request: web.Request, what: str) -> None:
    """Refuse, before anything starts, a request that is not a WebSocket upgrade: SPDY (kubectl
    before 1.30, or with its WebSocket feature gates off) and plain requests."""
    if is_websocket(request):
        return
    upgrade = request.headers.get("Upgrade", "")
    if upgrade.upper().startswith("SPDY/"):
        raise errors.BadRequest(
            message=f"pods/{what} over SPDY (Upgrade: {upgrade}) is not supported by tinykube: "
            "it is served over WebSocket only (kubectl 1.30 or newer for exec, 1.31 or newer "
            "for port-forward; the client libraries' WebSocket streams)")
    raise errors.BadRequest(message=f"Upgrade request required: pods/{what} is served over "
                            "WebSocket (Upgrade: websocket)")


async def upgrade(request: web.Request, protocol: str) -> web.WebSocketResponse:
    # No compression (the streams are small or already compressed), no size limit on a
    # message a client sends (stdin may come in big pieces); the close handshake waits up to
    # 10s for the client's answer.
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), compress=False,
                               max_msg_size=0, timeout=10.0, autoping=True)
    await ws.prepare(request)
    return ws


class Channels:
    """Messages of a channel protocol: a stream byte (or digit, base64) in front of the data."""

    def __init__(self, ws: web.WebSocketResponse, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.base64 = "base64" in protocol

    async def send(self, stream: int, data: bytes) -> None:
        if self.base64:
            await self.ws.send_str(chr(ord("0") + stream) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes((stream,)) + data)

    def decode(self, msg: Any) -> tuple[int, bytes] | None:
        """(stream, data) of a client's message; None for one that is not data."""
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            return None
        raw = msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
        if not raw:
            return None
        if self.base64:
            try:
                return raw[0] - ord("0"), base64.b64decode(raw[1:])
            except ValueError:
                log.debug("a base64 channel message that is not base64: dropped")
                return None
        return raw[0], raw[1:]


class Inbox(Generic[T]):
    """A client's messages on their way to a gRPC request stream: bounded, so a fast client
    waits for a slow kubelet, and never blocking once the stream it feeds has ended."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(_INBOX)
        self._closed = False
        self._dead = False

    async def put(self, item: T) -> None:
        if not self._closed and not self._dead:
            await self._queue.put(item)

    def close(self) -> None:
        """No more messages: the request stream ends once they are consumed."""
        if not self._closed:
            self._closed = True
            # A full queue needs no marker: the consumer stops once it is empty.
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

    def kill(self) -> None:
        """The consumer is gone: drop what waits, and whatever comes."""
        self._dead = True
        self._drain()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        if self._dead:
            raise StopAsyncIteration
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item


# --- exec --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecOptions:
    """Upstream's PodExecOptions (PodAttachOptions: no command), as the query carries them."""

    command: list[str]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def exec_options(request: web.Request, attach: bool = False) -> ExecOptions:
    q = request.query

    def flag(name: str) -> bool:
        return q.get(name, "") in _TRUE

    stdin, stdout, stderr, tty = flag("stdin"), flag("stdout"), flag("stderr"), flag("tty")
    if tty and stderr:
        stderr = False  # a terminal has one output stream (upstream drops stderr the same way)
    if not (stdin or stdout or stderr):
        raise errors.BadRequest(message="you must specify at least 1 of stdin, stdout, stderr")
    command = [] if attach else q.getall("command", [])
    if not command and not attach:
        raise errors.BadRequest(message="you must specify at least one command for the "
                                "container")
    return ExecOptions(list(command), q.get("container", ""), stdin, stdout, stderr, tty)


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(command: Sequence[str], code: int) -> dict[str, Any]:
    """The error stream's Status for an exit code: upstream's kubelet words, with the runtime's
    `error executing command [ARGV], exit code N` (Go's %v of the argv)."""
    if code == 0:
        return success_status()
    return {"metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(command)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def failure_status(e: errors.ApiError) -> dict[str, Any]:
    """An error as Go marshals a metav1.Status built without TypeMeta (field order as Go's)."""
    full = e.to_status()
    out: dict[str, Any] = {"metadata": {}, "status": "Failure", "message": full["message"],
                           "reason": full["reason"]}
    details = full.get("details") or {}
    if e.code == 500 and not details.get("causes"):
        # apierrors.NewInternalError keeps the cause: "Internal error occurred: <cause>".
        cause = e.message.removeprefix("Internal error occurred: ")
        details = {**details, "causes": [{"message": cause}]}
    if details:
        out["details"] = {k: ([{ck: cv for ck, cv in c.items() if cv} for c in v]
                              if k == "causes" else v) for k, v in details.items()}
    out["code"] = full["code"]
    return out


async def _remote_command(request: web.Request, proxy: KubeletProxy,
                          req: paths.RequestInfo) -> web.StreamResponse:
    """exec, or attach (the same streams, to the container's own process)."""
    attach = req.subresource == "attach"
    opts = exec_options(request, attach)
    # The pod and the container first: a kubectl that falls back to SPDY after a refused
    # upgrade must see "not found" rather than "SPDY is not supported".
    await proxy.target(req.namespace, req.name, opts.container)
    require_websocket(request, req.subresource)
    protocol = choose_protocol(offered_protocols(request), EXEC_PROTOCOLS)
    inbox: Inbox[pb.ExecRequest] = Inbox()
    start = pb.ExecStart(namespace=req.namespace, name=req.name, container=opts.container,
                         command=opts.command, stdin=opts.stdin, tty=opts.tty)
    responses = proxy.attach(start, inbox) if attach else proxy.exec(start, inbox)
    try:
        # The kubelet's first answer says the command runs; a refusal (container not
        # running, ...) is still an ordinary HTTP error here.
        await anext(responses)
        ws = await upgrade(request, protocol)
        await ExecSession(ws, Channels(ws, protocol), opts, inbox).run(responses)
        return ws
    finally:
        inbox.kill()
        await responses.aclose()


class ExecSession:
    """One exec (or attach: ExecOptions without a command) over an upgraded WebSocket: client
    streams in, the command's output out, the exit status on the error stream, then the close
    handshake."""

    def __init__(self, ws: web.WebSocketResponse, channels: Channels, opts: ExecOptions,
                 inbox: Inbox[pb.ExecRequest]) -> None:
        self.ws = ws
        self.channels = channels
        self.opts = opts
        self.inbox = inbox
        self._resize = b""

    async def run(self, responses: AsyncIterator[pb.ExecResponse]) -> None:
        # An empty message on the lowest stream the client reads: "started" (upstream's).
        first = STDOUT if self.opts.stdout else STDERR if self.opts.stderr else ERROR
        try:
            await self.channels.send(first, b"")
        except (ConnectionResetError, RuntimeError) as e:
            log.debug("exec: the client's connection ended: %s", e)
            return
        reader = asyncio.create_task(self._read(), name="exec: client messages")
        output = asyncio.create_task(self._output(responses), name="exec: output")
        try:
            done, _ = await asyncio.wait({reader, output},
                                         return_when=asyncio.FIRST_COMPLETED)
            if output in done:
                status = output.result()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await self._finish(status)
            # else: the client went away; the command's stream is cancelled below
        except (ConnectionResetError, RuntimeError) as e:  # the client's connection broke
            log.debug("exec: the client's connection ended: %s", e)
        finally:
            for task in (reader, output):
                task.cancel()
            await asyncio.gather(reader, output, return_exceptions=True)
            if not self.ws.closed:
                await self.ws.close()

    async def _output(self, responses: AsyncIterator[pb.ExecResponse]) -> dict[str, Any]:
        """Copy the command's output to the client; the Status that ends the session."""
        try:
            async for r in responses:
                if r.stdout and (self.opts.stdout or self.opts.tty):
                    await self.channels.send(STDOUT, r.stdout)
                if r.stderr and self.opts.stderr:
                    await self.channels.send(STDERR, r.stderr)
                if r.exited:
                    if not self.opts.command:  # attach: the stream ended, nothing to report
                        return success_status()
                    return exit_status(self.opts.command, r.exit_code)
                if r.error:
                    return failure_status(errors.InternalError(
                        message=f"Internal error occurred: {r.error}"))
        except errors.ApiError as e:  # the kubelet went away mid-stream
            return failure_status(e)
        return failure_status(errors.InternalError(
            message="Internal error occurred: the exec stream ended without an exit status"))

    async def _finish(self, status: dict[str, Any]) -> None:
        if self.channels.protocol in _JSON_STATUS:
            await self.channels.send(ERROR, json.dumps(status, separators=(",", ":")).encode())
        elif status["status"] != "Success":  # the older protocols: the message, as text
            await self.channels.send(ERROR, status["message"].encode())
        await self.ws.close()  # the close handshake: the client has read everything by then

    async def _read(self) -> None:
        """The client's messages → the exec's request stream, until the client closes."""
        try:
            async for msg in self.ws:
                decoded = self.channels.decode(msg)
                if decoded is None:
                    continue
                stream, data = decoded
                if stream == STDIN and self.opts.stdin and data:
                    await self.inbox.put(pb.ExecRequest(stdin=data))
                elif stream == RESIZE:
                    for width, height in self._sizes(data):
                        await self.inbox.put(pb.ExecRequest(
                            resize=pb.TerminalSize(width=width, height=height)))
                elif (stream == CLOSE_SIGNAL and self.channels.protocol == V5 and data
                      and data[0] == STDIN):
                    await self.inbox.put(pb.ExecRequest(stdin_close=True))
        finally:
            self.inbox.close()

    def _sizes(self, data: bytes) -> list[tuple[int, int]]:
        """Terminal sizes in the resize stream: JSON objects, which a message may split or
        join (upstream reads it with a streaming JSON decoder)."""
        self._resize += data
        out: list[tuple[int, int]] = []
        decoder = json.JSONDecoder()
        text = self._resize.decode(errors="replace")
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break  # incomplete: wait for the rest
            if isinstance(obj, dict):
                with contextlib.suppress(TypeError, ValueError):
                    out.append((int(obj.get("Width") or 0), int(obj.get("Height") or 0)))
        self._resize = text[pos:].encode()
        if len(self._resize) > 4096:  # not JSON after all: do not grow forever
            self._resize = b""
        return [(w, h) for w, h in out if 0 <= w < 65536 and 0 <= h < 65536]


# --- port-forward ------------------------------------------------------------------------------


def forward_ports(request: web.Request) -> list[int]:
    """The `ports` of the query (repeated, or comma-separated), as upstream's kubelet reads
    its `port` parameters."""
    ports: list[int] = []
    for raw in request.query.getall("ports", []):
        if not raw:
            raise errors.BadRequest(message='query parameter "ports" cannot be empty')
        for p in raw.split(","):
            try:
                port = int(p)
            except ValueError:
                raise errors.BadRequest(message=f'unable to parse "{raw}" as a port') from None
            if not 0 < port < 65536:
                raise errors.BadRequest(message=f'port "{raw}" must be > 0 and < 65536')
            ports.append(port)
    return ports


async def _port_forward(request: web.Request, proxy: KubeletProxy,
                        req: paths.RequestInfo) -> web.StreamResponse:
    ports = forward_ports(request)
    target = await proxy.forward_target(req.namespace, req.name)
    require_websocket(request, "portforward")
    offered = offered_protocols(request)
    if TUNNEL_PROTOCOL in offered:
        ws = await upgrade(request, TUNNEL_PROTOCOL)
        await SpdyTunnel(ws, proxy, target, req.namespace, req.name).run()
        return ws
    protocol = choose_protocol(offered, PORTFORWARD_PROTOCOLS)
    if not ports:
        raise errors.BadRequest(message='query parameter "ports" is required')
    ws = await upgrade(request, protocol)
    await ChannelForward(ws, Channels(ws, protocol), proxy, target, ports).run()
    return ws


async def forward_connection(proxy: KubeletProxy, target: Target, port: int,
                             inbox: Inbox[pb.PortForwardRequest],
                             send: Callable[[bytes], Awaitable[None]]) -> str:
    """One TCP connection to the pod, its bytes through `send`; the error message that ended
    it ("" for the pod closing its side)."""
    meta = target.pod.get("metadata") or {}
    start = pb.PortForwardStart(namespace=str(meta.get("namespace", "")),
                                name=str(meta.get("name", "")), port=port)
    responses = proxy.port_forward(start, inbox, target)
    try:
        async for r in responses:
            if r.error:
                return r.error
            if r.data:
                await send(r.data)
    except errors.ApiError as e:
        return f"error forwarding port {port} to pod {start.namespace}/{start.name}: {e.message}"
    finally:
        inbox.kill()
        await responses.aclose()
    return ""


class ChannelForward:
    """Port-forward over a channel protocol: a data and an error stream per port."""

    def __init__(self, ws: web.WebSocketResponse, channels: Channels, proxy: KubeletProxy,
                 target: Target, ports: list[int]) -> None:
        self.ws = ws
        self.channels = channels
        self.proxy = proxy
        self.target = target
        self.ports = ports
        self.inboxes: list[Inbox[pb.PortForwardRequest]] = [Inbox() for _ in ports]

    async def run(self) -> None:
        for i, port in enumerate(self.ports):  # each stream opens with its port (LE uint16)
            await self.channels.send(2 * i, struct.pack("<H", port))
            await self.channels.send(2 * i + 1, struct.pack("<H", port))
        forwards = [asyncio.create_task(self._forward(i), name=f"port-forward {port}")
                    for i, port in enumerate(self.ports)]
        reader = asyncio.create_task(self._read(), name="port-forward: client messages")
        try:
            # Upstream closes the connection once every port's connection has ended; the
            # client closing it ends them all.
            everything: asyncio.Future[Any] = asyncio.gather(*forwards)
            waiting: set[asyncio.Future[Any]] = {everything, reader}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionResetError, RuntimeError) as e:
            log.debug("port-forward: the client's connection ended: %s", e)
        finally:
            for t in (*forwards, reader):
                t.cancel()
            await asyncio.gather(*forwards, reader, return_exceptions=True)
            if not self.ws.closed:
                await self.ws.close()

    async def _forward(self, i: int) -> None:
        async def send(data: bytes) -> None:
            await self.channels.send(2 * i, data)

        try:
            error = await forward_connection(self.proxy, self.target, self.ports[i],
                                             self.inboxes[i], send)
            if error:
                await self.channels.send(2 * i + 1, error.encode())
        except (ConnectionResetError, RuntimeError) as e:  # the client's connection ended
            log.debug("port-forward %d: %s", self.ports[i], e)

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                decoded = self.channels.decode(msg)
                if decoded is None:
                    continue
                stream, data = decoded
                i, kind = divmod(stream, 2)
                if kind == 0 and i < len(self.ports) and data:
                    await self.inboxes[i].put(pb.PortForwardRequest(data=data))
        finally:
            for inbox in self.inboxes:
                inbox.close()


# --- SPDY/3.1, as much of it as port-forward's tunnel needs -------------------------------------


def _spdy_dictionary() -> bytes:
    """SPDY/3's zlib dictionary for header blocks (the spec's, byte for byte: adler32
    0xe3c6a7c2): 65 length-prefixed words, then common values."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
              "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
        "504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad "
        "Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not "
        "Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
        "00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,"
        "image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return b"".join(struct.pack(">I", len(w)) + w.encode() for w in words) + tail.encode()


SPDY_DICTIONARY = _spdy_dictionary()
SPDY_VERSION = 3
DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    0, 1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5
_MAX_FRAME = 1 << 24  # a frame's length field is 24 bits
_MAX_HEADERS = 64 * 1024  # a decompressed header block larger than this is an attack


class SpdyError(Exception):
    """The peer broke the protocol: the connection ends (GOAWAY with PROTOCOL_ERROR)."""


@dataclass
class SpdyFrame:
    type: int  # DATA (0) or a control frame's type
    flags: int
    stream_id: int = 0  # DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE
    data: bytes = b""  # DATA's payload
    headers: dict[str, list[str]] = field(default_factory=dict)
    value: int = 0  # PING's id, RST_STREAM's and GOAWAY's status


class SpdyCodec:
    """Frames from a byte stream and to bytes. Header blocks use one zlib stream per direction
    for the whole connection (SPDY's rule), so frames must be encoded in the order they are
    sent, and every block read must be decompressed, even of frames that are ignored."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=SPDY_DICTIONARY)
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS, 9,
                                         zdict=SPDY_DICTIONARY)

    # --- reading ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[SpdyFrame]:
        """The frames `data` completes (a frame may span WebSocket messages)."""
        self._buf += data
        frames = []
        while len(self._buf) >= 8:
            first, flags_len = struct.unpack_from(">II", self._buf)
            length = flags_len & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            body = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            frame = self._frame(first, flags_len >> 24, body)
            if frame is not None:
                frames.append(frame)
        return frames

    def _frame(self, first: int, flags: int, body: bytes) -> SpdyFrame | None:
        if not first & 0x80000000:
            return SpdyFrame(DATA, flags, stream_id=first & 0x7FFFFFFF, data=body)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != SPDY_VERSION:
            raise SpdyError(f"SPDY version {version} (this server speaks 3.1)")
        if kind == SYN_STREAM:
            if len(body) < 10:
                raise SpdyError("short SYN_STREAM")
            sid = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return SpdyFrame(kind, flags, stream_id=sid, headers=self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            if len(body) < 4:
                raise SpdyError("short header frame")
            sid = struct.unpack_from(">I", body)[0] & 0x7FFFFFFF
            return SpdyFrame(kind, flags, stream_id=sid, headers=self._headers(body[4:]))
        if kind in (RST_STREAM, GOAWAY):
            if len(body) < 8:
                raise SpdyError("short RST_STREAM or GOAWAY")
            sid, status = struct.unpack_from(">II", body)
            return SpdyFrame(kind, flags, stream_id=sid & 0x7FFFFFFF, value=status)
        if kind == PING:
            if len(body) < 4:
                raise SpdyError("short PING")
            return SpdyFrame(kind, flags, value=struct.unpack_from(">I", body)[0])
        return None  # SETTINGS, WINDOW_UPDATE, CREDENTIAL, unknown: nothing to do

    def _headers(self, block: bytes) -> dict[str, list[str]]:
        try:
            raw = self._inflate.decompress(block, _MAX_HEADERS)
        except zlib.error as e:
            raise SpdyError(f"header block: {e}") from None
        if self._inflate.unconsumed_tail:
            raise SpdyError("header block too large")
        try:
            (count,) = struct.unpack_from(">I", raw)
            pos, out = 4, {}
            for _ in range(count):
                (n,) = struct.unpack_from(">I", raw, pos)
                name = raw[pos + 4:pos + 4 + n].decode().lower()
                pos += 4 + n
                (n,) = struct.unpack_from(">I", raw, pos)
                value = raw[pos + 4:pos + 4 + n].decode()
                pos += 4 + n
                out[name] = value.split("\0")
        except (struct.error, UnicodeDecodeError) as e:
            raise SpdyError(f"header block: {e}") from None
        return out

    # --- writing ---------------------------------------------------------------------------

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | SPDY_VERSION, kind, flags << 24 | len(body)) + body

    def _block(self, headers: dict[str, list[str]]) -> bytes:
        raw = struct.pack(">I", len(headers))
        for name, values in headers.items():
            n, v = name.lower().encode(), "\0".join(values).encode()
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_reply(self, stream_id: int, headers: dict[str, list[str]] | None = None,
                  fin: bool = False) -> bytes:
        body = struct.pack(">I", stream_id) + self._block(headers or {})
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, body)

    def syn_stream(self, stream_id: int, headers: dict[str, list[str]],
                   fin: bool = False) -> bytes:
        """(What a client sends; the tests speak it.)"""
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    @staticmethod
    def data(stream_id: int, data: bytes = b"", fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, (FLAG_FIN if fin else 0) << 24 | len(data)) + data

    @classmethod
    def rst_stream(cls, stream_id: int, status: int) -> bytes:
        return cls._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @classmethod
    def ping(cls, ping_id: int) -> bytes:
        return cls._control(PING, 0, struct.pack(">I", ping_id))

    @classmethod
    def goaway(cls, last_stream_id: int, status: int = 0) -> bytes:
        return cls._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


@dataclass
class _Pair:
    """The error and data streams of one forwarded connection (one requestid)."""

    request_id: str
    port: int
    error_id: int = 0
    data_id: int = 0
    inbox: Inbox[pb.PortForwardRequest] = field(default_factory=Inbox)
    task: asyncio.Task[None] | None = None


class SpdyTunnel:
    """kubectl's port-forward through the SPDY-over-WebSocket tunnel: the server side of a
    SPDY connection whose streams come in error/data pairs, each pair one TCP connection."""

    def __init__(self, ws: web.WebSocketResponse, proxy: KubeletProxy, target: Target,
                 namespace: str, name: str) -> None:
        self.ws = ws
        self.proxy = proxy
        self.target = target
        self.where = f"{namespace}/{name}"
        self.codec = SpdyCodec()
        self._send_lock = asyncio.Lock()
        self.pairs: dict[str, _Pair] = {}
        self.streams: dict[int, _Pair] = {}
        self.last_stream = 0

    async def send(self, make: Callable[[], bytes]) -> None:
        """Encode and send one frame; encoding under the lock keeps header compression in the
        order of the wire."""
        async with self._send_lock:
            await self.ws.send_bytes(make())

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    if msg.type == WSMsgType.TEXT:
                        raise SpdyError("a text message in a binary tunnel")
                    continue
                for frame in self.codec.feed(msg.data):
                    if not await self._handle(frame):
                        return
        except SpdyError as e:
            log.info("port-forward to %s: %s", self.where, e)
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.send(lambda: self.codec.goaway(self.last_stream, 1))
        except (ConnectionResetError, RuntimeError) as e:
            log.debug("port-forward to %s: the client's connection ended: %s", self.where, e)
        finally:
            tasks = [p.task for p in self.pairs.values() if p.task is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.ws.closed:
                await self.ws.close()

    async def _handle(self, frame: SpdyFrame) -> bool:
        """Act on one frame; False when the connection is to end (GOAWAY)."""
        if frame.type == SYN_STREAM:
            await self._new_stream(frame)
        elif frame.type == DATA:
            pair = self.streams.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                if frame.data:
                    await pair.inbox.put(pb.PortForwardRequest(data=frame.data))
                if frame.flags & FLAG_FIN:  # the local side will send no more
                    pair.inbox.close()
        elif frame.type == RST_STREAM:
            pair = self.streams.get(frame.stream_id)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif frame.type == PING:
            # Pings of the client (odd ids) come back as they are; the server sends none.
            await self.send(lambda: self.codec.ping(frame.value))
        elif frame.type == GOAWAY:
            return False
        return True

    async def _new_stream(self, frame: SpdyFrame) -> None:
        sid = frame.stream_id
        self.last_stream = max(self.last_stream, sid)
        h = {k: v[0] if v else "" for k, v in frame.headers.items()}
        kind, raw_port = h.get("streamtype", ""), h.get("port", "")
        try:
            port = int(raw_port)
        except ValueError:
            port = 0
        if kind not in ("error", "data") or not 0 < port < 65536:
            log.info("port-forward to %s: refused stream %d (streamtype %r, port %r)",
                     self.where, sid, kind, raw_port)
            await self.send(lambda: self.codec.syn_reply(sid, fin=True))
            return
        await self.send(lambda: self.codec.syn_reply(sid))
        # Clients older than requestid paired streams by their ids (error first, data next).
        rid = h.get("requestid") or str(sid if kind == "error" else sid - 2)
        pair = self.pairs.get(rid)
        if pair is None:
            pair = self.pairs[rid] = _Pair(rid, port)
        if kind == "error":
            pair.error_id = sid
        else:
            pair.data_id = sid
        self.streams[sid] = pair
        if frame.flags & FLAG_FIN and kind == "data":
            pair.inbox.close()
        if pair.error_id and pair.data_id and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair),
                                            name=f"port-forward {pair.port} #{rid}")

    async def _forward(self, pair: _Pair) -> None:
        async def send(data: bytes) -> None:
            await self.send(lambda: self.codec.data(pair.data_id, data))

        error = ""
        try:
            error = await forward_connection(self.proxy, self.target, pair.port, pair.inbox,
                                             send)
        except asyncio.CancelledError:  # the client reset a stream, or left
            with contextlib.suppress(Exception):
                if not self.ws.closed:
                    await self.send(lambda: self.codec.rst_stream(pair.data_id, RST_CANCEL))
            raise
        finally:
            # What the client still sends on these streams is dropped from now on.
            self.pairs.pop(pair.request_id, None)
            self.streams.pop(pair.error_id, None)
            self.streams.pop(pair.data_id, None)
        # As upstream's kubelet: the error (if any) on the error stream, then both closed.
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            if error:
                log.info("port-forward to %s: %s", self.where, error)
                await self.send(lambda: self.codec.data(pair.error_id, error.encode()))
            await self.send(lambda: self.codec.data(pair.error_id, fin=True))
            await self.send(lambda: self.codec.data(pair.data_id, fin=True))
