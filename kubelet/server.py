"""The kubelet's own gRPC server: container logs, exec, attach and port-forward, the end of
`logs`, `exec`, `attach` and `port-forward` (tkctl's and kubectl's).

Upstream's kubelet serves /containerLogs, /exec, /attach and /portForward over HTTPS on port
10250 and the apiserver proxies `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`
there. tinykube does the same with `service Kubelet { Logs, Exec, Attach, PortForward }`
(api/proto/tinykube.proto); the apiserver dials it at the address and port in the Node's status.

A port-forward connection is opened as upstream's container runtimes open it: to
localhost:PORT inside the pod's network namespace (entered by a short-lived thread with
setns(2)), so a port the pod binds to 127.0.0.1 only is reachable too, and no route to the pod
network is needed.

Security as upstream's kubelet with `--authentication-x509 --authorization-mode=Webhook`:
- TLS with the kubelet's serving certificate (`--tls-cert-file`, `--tls-private-key-file`), and
  a client certificate REQUIRED, signed by `--client-ca-file` (the handshake refuses others);
- the certificate's CN is the user, its O entries the groups;
- the caller must be allowed the verb on `nodes/proxy` of this node, which the kubelet asks the
  apiserver with a SubjectAccessReview under its own node credentials (the Node authorizer lets
  a node create SARs). Answers are cached, 5 minutes when allowed and 30 seconds when denied,
  upstream's webhook authorizer defaults. The verb follows upstream's HTTP mapping: logs are a
  GET (`get`), exec a POST (`create`); the apiserver's identity holds `*` on nodes/proxy through
  the `system:kubelet-api-admin` ClusterRole.
Without TLS material (a cluster whose apiserver runs `--insecure`) it serves plaintext and
allows everything, like the apiserver it answers to.

The Docker SDK is blocking: logs and the exec output are read by a thread per stream that hands
chunks to the event loop through a bounded asyncio queue (back-pressure on a slow client), and
the thread is stopped by closing its connection to Docker when the client goes away.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import inspect
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import docker
import docker.errors
import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from api import errors
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from client.apiclient import ApiClient

log = logging.getLogger(__name__)

DEFAULT_PORT = 10250
ALLOWED_TTL = 300.0  # upstream --authorization-webhook-cache-authorized-ttl
DENIED_TTL = 30.0  # upstream --authorization-webhook-cache-unauthorized-ttl
_QUEUE_CHUNKS = 64  # chunks a stream may run ahead of a slow client
_READ_SIZE = 32 * 1024
_CLONE_NEWNET = 0x40000000  # <sched.h>; os.setns only exists from Python 3.12
_CONNECT_TIMEOUT = 10.0

# resolve(namespace, pod name, container or None, previous) -> container id; raises
# api.errors.NotFound / BadRequest with upstream's messages (the Kubelet's, H5).
Resolve = Callable[[str, str, str | None, bool], str | Awaitable[str]]


@dataclass(frozen=True)
class Caller:
    """Who called, from the client certificate (upstream's x509 CommonNameUserConversion)."""

    user: str
    groups: tuple[str, ...]


ANONYMOUS = Caller("system:anonymous", ("system:unauthenticated",))


def caller_from_certificate(pem: bytes) -> Caller:
    cert = x509.load_pem_x509_certificate(pem)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    groups = [str(o.value) for o in orgs]
    if "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return Caller(str(cns[0].value) if cns else "", tuple(groups))


class SARAuthorizer:
    """Upstream's webhook authorizer in the kubelet: a SubjectAccessReview per (caller, verb),
    answers cached (allowed 5 min, denied 30 s). Errors asking are not cached: the request is
    refused and the next one asks again."""

    def __init__(self, client: ApiClient, node_name: str, *, allowed_ttl: float = ALLOWED_TTL,
                 denied_ttl: float = DENIED_TTL) -> None:
        self.client = client
        self.node_name = node_name
        self.allowed_ttl = allowed_ttl
        self.denied_ttl = denied_ttl
        self._cache: dict[tuple[Caller, str, str], tuple[bool, float]] = {}

    async def allowed(self, caller: Caller, verb: str, subresource: str) -> bool:
        key = (caller, verb, subresource)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        review = {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": caller.user, "groups": list(caller.groups),
                     "resourceAttributes": {"verb": verb, "resource": "nodes",
                                            "subresource": subresource,
                                            "name": self.node_name}},
        }
        answer = await self.client.create("subjectaccessreviews", review)
        ok = bool((answer.get("status") or {}).get("allowed"))
        if len(self._cache) > 4096:  # callers are few; this only bounds a flood of identities
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
        self._cache[key] = (ok, now + (self.allowed_ttl if ok else self.denied_ttl))
        return ok


class Authorizer(Protocol):
    """What KubeletServer needs of an authorizer (SARAuthorizer, or a test's own)."""

    async def allowed(self, caller: Caller, verb: str, subresource: str) -> bool: ...


async def _abort(context: grpc.aio.ServicerContext, e: errors.ApiError) -> NoReturn:
    context.set_trailing_metadata(e.trailing_metadata())
    await context.abort(e.grpc_code, e.message)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


# --- blocking Docker streams as async iterators -------------------------------------------

_END = object()


async def thread_stream(open_stream: Callable[[], Iterator[bytes]],
                        close: Callable[[], None], *, name: str) -> AsyncIterator[bytes]:
    """Iterate a blocking byte stream in its own thread, chunks through a bounded queue.

    `close` is called (from the event loop) when the consumer stops early: it must unblock the
    thread's read (shut the connection down). A dedicated daemon thread, not the default
    executor: a followed log may stay open for hours.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(_QUEUE_CHUNKS)
    stop = threading.Event()

    def put(item: object) -> bool:
        try:
            fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                fut.result(timeout=0.5)
                return True
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    fut.cancel()
                    return False
            except (concurrent.futures.CancelledError, RuntimeError):
                return False

    def work() -> None:
        try:
            for chunk in open_stream():
                if stop.is_set() or (chunk and not put(chunk)):
                    return
            put(_END)
        except Exception as e:  # handed to the consumer, which raises it in the loop
            if not stop.is_set():
                put(e)

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            close()


def demux_frames(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed attach/exec stream (no TTY): 8-byte headers `[stream, 0, 0, 0,
    size (big-endian uint32)]` followed by `size` bytes; stream 1 = stdout, 2 = stderr."""
    while True:
        header = _read_exact(read, 8)
        if len(header) < 8:
            return
        kind, size = struct.unpack(">BxxxL", header)
        payload = _read_exact(read, size)
        if payload:
            yield kind, payload
        if len(payload) < size:
            return


def _read_exact(read: Callable[[int], bytes], n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


# --- the service --------------------------------------------------------------------------


class _Servicer(pb_grpc.KubeletServicer):
    def __init__(self, server: KubeletServer) -> None:
        self.s = server

    async def Logs(self, request: pb.LogsRequest, context: grpc.aio.ServicerContext
                   ) -> AsyncIterator[pb.LogChunk]:
        try:
            await self.s.authorize(context, "get")
            cid = await self.s.resolve_container(request.namespace, request.name,
                                                 request.container, request.previous)
        except errors.ApiError as e:
            await _abort(context, e)
        error: errors.ApiError | None = None
        try:
            async for data in self.s.container_logs(cid, request):
                yield pb.LogChunk(data=data)
        except errors.ApiError as e:
            error = e
        except Exception as e:  # a bug or a Docker surprise: one line to the caller
            log.exception("logs of %s/%s failed", request.namespace, request.name)
            error = errors.InternalError(message=f"failed to stream the logs: {e}")
        if error is not None:
            await _abort(context, error)

    async def Exec(self, request_iterator: AsyncIterator[pb.ExecRequest],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecResponse]:
        try:
            await self.s.authorize(context, "create")
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("start"):
                raise errors.BadRequest(message="the first message of an exec must be `start`")
            start = first.start
            if not start.command:
                raise errors.BadRequest(
                    message="you must specify at least one command for the container")
            cid = await self.s.resolve_container(start.namespace, start.name, start.container,
                                                 False)
            session = await self.s.exec_session(cid, start)
        except errors.ApiError as e:
            await _abort(context, e)
        except Exception as e:
            log.exception("exec failed")
            await _abort(context, errors.InternalError(
                message=f"error executing command in container: {e}"))
        yield pb.ExecResponse()  # started: the client may send stdin now
        async for resp in session.run(request_iterator):
            yield resp


    async def Attach(self, request_iterator: AsyncIterator[pb.ExecRequest],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ExecResponse]:
        try:
            await self.s.authorize(context, "create")
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("start"):
                raise errors.BadRequest(
                    message="the first message of an attach must be `start`")
            start = first.start
            cid = await self.s.resolve_container(start.namespace, start.name, start.container,
                                                 False)
            session = await self.s.attach_session(cid, start)
        except errors.ApiError as e:
            await _abort(context, e)
        except Exception as e:
            log.exception("attach failed")
            await _abort(context, errors.InternalError(
                message=f"error attaching to container: {e}"))
        yield pb.ExecResponse()  # attached: the client may send stdin now
        async for resp in session.run(request_iterator):
            yield resp

    async def PortForward(self, request_iterator: AsyncIterator[pb.PortForwardRequest],
                          context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[pb.PortForwardResponse]:
        try:
            await self.s.authorize(context, "create")
            first = await anext(aiter(request_iterator), None)
            if first is None or not first.HasField("start"):
                raise errors.BadRequest(
                    message="the first message of a port-forward must be `start`")
            start = first.start
            if not 0 < start.port < 65536:
                raise errors.BadRequest(message=f"invalid port {start.port}: must be 1-65535")
            cid = await self.s.resolve_container(start.namespace, start.name, start.container,
                                                 False)
        except errors.ApiError as e:
            await _abort(context, e)
        try:
            reader, writer = await self.s.pod_connection(cid, start.port)
        except (OSError, errors.ApiError) as e:
            # Upstream's words (kubelet's portForward), which kubectl prints after "an error
            # occurred forwarding L -> R: ".
            why = e.message if isinstance(e, errors.ApiError) else str(e)
            yield pb.PortForwardResponse(
                error=f"error forwarding port {start.port} to pod "
                f"{start.namespace}/{start.name}: failed to connect to localhost:{start.port} "
                f"inside the pod's network namespace: {why}")
            return
        yield pb.PortForwardResponse()  # connected: the client may send now
        async for resp in pipe_connection(reader, writer, request_iterator):
            yield resp


async def pipe_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          requests: AsyncIterator[pb.PortForwardRequest]
                          ) -> AsyncIterator[pb.PortForwardResponse]:
    """Bytes both ways between a client's messages and a TCP connection. The client's `close`
    (or the end of its messages) half-closes the connection, so a request/response protocol
    still gets its answer; the pod closing its side ends the stream."""
    async def upstream() -> None:
        try:
            async for m in requests:
                kind = m.WhichOneof("kind")
                if kind == "data":
                    writer.write(m.data)
                    await writer.drain()
                elif kind == "close":
                    break
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError) as e:  # the pod went away first: its side says so
            log.debug("port-forward: writing to the pod failed: %s", e)

    task = asyncio.create_task(upstream(), name="port-forward upstream")
    try:
        while True:
            try:
                data = await reader.read(_READ_SIZE)
            except OSError as e:
                yield pb.PortForwardResponse(error=f"error reading from the pod: {e}")
                return
            if not data:
                return
            yield pb.PortForwardResponse(data=data)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        writer.close()


def _connect_in_netns(netns: str, port: int) -> socket.socket:
    """A TCP connection to localhost:port in the network namespace at `netns`. Runs in a
    thread of its own, which setns(2) moves into the namespace for good: the thread ends right
    after, and a socket stays in the namespace it was created in."""
    fd = os.open(netns, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"entering the pod's network namespace: {os.strerror(err)}")
    finally:
        os.close(fd)
    errors_seen = []
    for host in ("127.0.0.1", "::1"):  # as upstream's runtimes: IPv4, then IPv6
        try:
            return socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
        except OSError as e:
            errors_seen.append(f"{host}: {e.strerror or e}")
    raise ConnectionRefusedError(", ".join(errors_seen))


async def connect_in_netns(netns: str, port: int) -> socket.socket:
    fut: concurrent.futures.Future[socket.socket] = concurrent.futures.Future()

    def run() -> None:
        try:
            fut.set_result(_connect_in_netns(netns, port))
        except BaseException as e:
            fut.set_exception(e)

    # Not the default executor: its threads are reused, and this one leaves its namespace
    # changed.
    threading.Thread(target=run, name="port-forward connect", daemon=True).start()
    return await asyncio.wrap_future(fut)


class ExecSession:
    """One `docker exec`: the hijacked connection, stdin in, stdout/stderr out, exit code."""

    def __init__(self, api: docker.APIClient, exec_id: str, sock: Any, start: pb.ExecStart
                 ) -> None:
        self.api = api
        self.exec_id = exec_id
        self.sock = sock  # socket.SocketIO over Docker's unix socket (or a socket)
        self.raw: socket.socket = getattr(sock, "_sock", sock)
        self.start = start
        # Whether Docker sends the output raw (a terminal) or multiplexed.
        self.tty = start.tty
        self._stdin_closed = False

    def _frames(self) -> Iterator[bytes]:
        """Chunks tagged by a one-byte stream prefix (1 stdout, 2 stderr) for thread_stream."""
        if self.tty:
            while True:
                data = self.raw.recv(_READ_SIZE)
                if not data:
                    return
                yield b"\x01" + data
        else:
            for kind, payload in demux_frames(self.raw.recv):
                yield bytes([kind]) + payload

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    async def _pump_stdin(self, requests: AsyncIterator[pb.ExecRequest]) -> None:
        async for req in requests:
            kind = req.WhichOneof("kind")
            if kind == "stdin" and self.start.stdin and not self._stdin_closed:
                await asyncio.to_thread(self.raw.sendall, req.stdin)
            elif kind == "stdin_close":
                await self._close_stdin()
            elif kind == "resize" and self.tty:
                await self._resize(req.resize.width, req.resize.height)
        # The client finished sending (half-closed): that is the end of its stdin too.
        await self._close_stdin()

    async def _close_stdin(self) -> None:
        if self._stdin_closed:
            return
        self._stdin_closed = True
        # Docker closes the process's stdin when the hijacked connection is half-closed.
        with contextlib.suppress(OSError):
            self.raw.shutdown(socket.SHUT_WR)

    async def _resize(self, width: int, height: int) -> None:
        if not width or not height:
            return
        try:
            await asyncio.to_thread(self.api.exec_resize, self.exec_id, height=height,
                                    width=width)
        except docker.errors.APIError as e:  # the process may have just exited
            log.debug("exec resize failed: %s", e)

    async def exit_code(self) -> int | None:
        """The exit code once Docker has it (it may lag the end of the output a little)."""
        for _ in range(50):
            info = await asyncio.to_thread(self.api.exec_inspect, self.exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            await asyncio.sleep(0.05)
        return None

    async def run(self, requests: AsyncIterator[pb.ExecRequest]
                  ) -> AsyncIterator[pb.ExecResponse]:
        if not self.start.stdin:
            await self._close_stdin()
        pump = asyncio.create_task(self._pump_stdin(requests), name="exec stdin")
        try:
            async for chunk in thread_stream(self._frames, self._close, name="exec output"):
                if chunk[0] == 2:
                    yield pb.ExecResponse(stderr=chunk[1:])
                else:
                    yield pb.ExecResponse(stdout=chunk[1:])
            code = await self.exit_code()
            if code is None:
                yield pb.ExecResponse(error="the exit code of the command is unknown")
            else:
                yield pb.ExecResponse(exited=True, exit_code=code)
        except (OSError, docker.errors.DockerException) as e:
            yield pb.ExecResponse(error=f"error executing command in container: {e}")
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            self._close()


class AttachSession(ExecSession):
    """`docker attach` to a container's own process: ExecSession's streams, the container's
    terminal setting, and no exit code (the process outlives a detach)."""

    def __init__(self, api: docker.APIClient, container_id: str, sock: Any,
                 start: pb.ExecStart, tty: bool) -> None:
        super().__init__(api, "", sock, start)
        self.container_id = container_id
        self.tty = tty

    async def _resize(self, width: int, height: int) -> None:
        if not width or not height:
            return
        try:
            await asyncio.to_thread(self.api.resize, self.container_id, height=height,
                                    width=width)
        except docker.errors.APIError as e:
            log.debug("attach resize failed: %s", e)

    async def exit_code(self) -> int | None:
        return 0  # the attach ended; upstream reports Success, whatever the process does


class KubeletServer:
    """`service Kubelet` on `address:port` (port 0 = pick one; `port` is the bound one after
    start()).

    `docker_client`: the runtime's DockerClient (DockerRuntime.docker_client); `resolve`: the
    Kubelet's container lookup (sync or async); `authorizer`: usually a SARAuthorizer over the
    kubelet's own ApiClient, None to allow every caller the TLS handshake accepted. TLS material
    is PEM bytes; all three None → plaintext (only beside an --insecure apiserver).
    """

    def __init__(self, *, docker_client: docker.DockerClient, resolve: Resolve,
                 authorizer: Authorizer | None,
                 address: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 tls_cert: bytes | None = None, tls_key: bytes | None = None,
                 client_ca: bytes | None = None) -> None:
        if (tls_cert is None) != (tls_key is None) or (client_ca is not None
                                                        and tls_cert is None):
            raise ValueError("--tls-cert-file, --tls-private-key-file and --client-ca-file go "
                             "together")
        if tls_cert is not None and client_ca is None:
            raise ValueError("--client-ca-file is required with --tls-cert-file: every caller "
                             "must present a client certificate")
        self.docker = docker_client
        self.api: docker.APIClient = docker_client.api
        self._resolve = resolve
        self.authorizer = authorizer
        self.address = address
        self.port = port
        self.tls = (tls_cert, tls_key, client_ca) if tls_cert is not None else None
        self._server: grpc.aio.Server | None = None

    @property
    def secure(self) -> bool:
        return self.tls is not None

    async def start(self) -> int:
        server = grpc.aio.server(options=[("grpc.keepalive_permit_without_calls", 1),
                                          ("grpc.http2.min_ping_interval_without_data_ms",
                                           5_000)])
        pb_grpc.add_KubeletServicer_to_server(_Servicer(self), server)
        where = f"{self.address}:{self.port}"
        if self.tls is not None:
            cert, key, ca = self.tls
            assert key is not None
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca,
                                                require_client_auth=True)
            bound = server.add_secure_port(where, creds)
        else:
            bound = server.add_insecure_port(where)
        if bound == 0:
            raise OSError(f"--port: cannot listen on {where}")
        await server.start()
        self._server = server
        self.port = bound
        log.info("kubelet server on %s:%d (%s)", self.address, bound,
                 "TLS, client certificates" if self.tls else "plaintext")
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # --- the steps of a call --------------------------------------------------------------

    def caller(self, context: grpc.aio.ServicerContext) -> Caller:
        pems = (context.auth_context() or {}).get("x509_pem_cert") or []
        if not pems:
            return ANONYMOUS
        try:
            return caller_from_certificate(pems[0])
        except ValueError:
            return ANONYMOUS

    async def authorize(self, context: grpc.aio.ServicerContext, verb: str) -> Caller:
        if not self.secure:
            return ANONYMOUS
        caller = self.caller(context)
        if not caller.user or caller == ANONYMOUS:
            raise errors.Unauthorized(message="Unauthorized")
        if self.authorizer is None:
            return caller
        try:
            ok = await self.authorizer.allowed(caller, verb, "proxy")
        except errors.ApiError as e:
            log.warning("SubjectAccessReview for %s failed: %s", caller.user, e)
            raise errors.InternalError(
                message=f"Authorization error (user={caller.user}, verb={verb}, "
                f"resource=nodes, subresource=proxy): {e}") from None
        if not ok:
            # Upstream kubelet's wording (server.go authorize()).
            raise errors.Forbidden(message=f"Forbidden (user={caller.user}, verb={verb}, "
                                   "resource=nodes, subresource=proxy)", kind="nodes")
        return caller

    async def resolve_container(self, namespace: str, name: str, container: str,
                                previous: bool) -> str:
        out = self._resolve(namespace, name, container or None, previous)
        if inspect.isawaitable(out):
            out = await out
        return str(out)

    # --- logs -----------------------------------------------------------------------------

    async def container_logs(self, container_id: str, req: pb.LogsRequest
                             ) -> AsyncIterator[bytes]:
        kwargs: dict[str, Any] = {
            "stdout": True, "stderr": True, "stream": True, "follow": req.follow,
            "timestamps": req.timestamps,
            "tail": int(req.tail_lines) if req.tail_lines >= 0 else "all",
        }
        if req.since_seconds > 0:
            kwargs["since"] = int(time.time() - req.since_seconds)
        holder: list[Any] = []
        closed = False
        lock = threading.Lock()

        def open_stream() -> Iterator[bytes]:
            nonlocal closed
            tty = bool((self.api.inspect_container(container_id).get("Config") or {})
                       .get("Tty"))
            stream = self.api.logs(container_id, **kwargs)
            with lock:
                # The client may have gone while Docker was answering: close() found nothing
                # to close, and a followed log of a quiet container would block forever.
                if closed:
                    stream.close()
                    return iter(())
                holder.append(stream)
            return self._tty_chunks(stream) if tty else iter(stream)

        def close() -> None:
            nonlocal closed
            with lock:
                closed = True
                if holder:
                    holder[0].close()

        left = req.limit_bytes if req.limit_bytes > 0 else -1
        try:
            async for chunk in thread_stream(open_stream, close, name="container logs"):
                if left >= 0:
                    chunk = chunk[:left]
                    left -= len(chunk)
                yield chunk
                if left == 0:
                    return
        except docker.errors.NotFound:
            raise errors.NotFound(message=f'container "{container_id}" not found',
                                  kind="containers") from None
        except docker.errors.APIError as e:
            raise errors.InternalError(
                message=f"failed to get logs of container {container_id[:12]}: "
                f"{e.explanation or e}") from None

    def _tty_chunks(self, stream: Any) -> Iterator[bytes]:
        """A TTY container's log as Docker sends it. The SDK reads such a log one byte at a
        time (`_stream_raw_result(chunk_size=1)`), which here would be one queue hand-off and
        one gRPC message per byte; the HTTP chunks Docker writes are read instead (each up
        to _READ_SIZE, handed on as soon as it arrives, so a follow is not delayed)."""
        res = stream._response
        self.api._raise_for_status(res)
        self.api._disable_socket_timeout(self.api._get_raw_response_socket(res))
        if not res.raw.chunked:  # not what Docker sends; the SDK's way then
            yield from stream
            return
        yield from res.raw.stream(_READ_SIZE, decode_content=False)

    # --- port-forward -------------------------------------------------------------------

    async def netns_of(self, container_id: str) -> str:
        """/proc/PID/ns/net of the pod a container belongs to: its sandbox's (app containers
        join it), so a restarting app container does not matter."""
        def find() -> str:
            info = self.api.inspect_container(container_id)
            mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
            if mode.startswith("container:"):
                info = self.api.inspect_container(mode.split(":", 1)[1])
            pid = int((info.get("State") or {}).get("Pid") or 0)
            if not pid:
                raise errors.BadRequest(message=f"the sandbox of container "
                                        f"{container_id[:12]} is not running")
            return f"/proc/{pid}/ns/net"

        try:
            return await asyncio.to_thread(find)
        except docker.errors.NotFound:
            raise errors.NotFound(message=f'container "{container_id[:12]}" not found',
                                  kind="containers") from None
        except docker.errors.APIError as e:
            raise errors.InternalError(message=f"inspecting container {container_id[:12]}: "
                                       f"{e.explanation or e}") from None

    async def pod_connection(self, container_id: str, port: int
                             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = await connect_in_netns(await self.netns_of(container_id), port)
        sock.settimeout(None)
        sock.setblocking(False)
        return await asyncio.open_connection(sock=sock, limit=_READ_SIZE * 2)

    # --- attach ---------------------------------------------------------------------------

    async def attach_session(self, container_id: str, start: pb.ExecStart) -> AttachSession:
        def attach() -> AttachSession:
            info = self.api.inspect_container(container_id)
            config = info.get("Config") or {}
            if not (info.get("State") or {}).get("Running"):
                raise errors.BadRequest(message=f'container "{start.container}" in pod '
                                        f'"{start.name}" is not running')
            # stdin only where the container has one open (`stdin: true`), as upstream.
            stdin = bool(start.stdin and config.get("OpenStdin"))
            sock = self.api.attach_socket(container_id, params={
                "stdin": int(stdin), "stdout": 1, "stderr": 1, "stream": 1})
            fwd = pb.ExecStart()
            fwd.CopyFrom(start)
            fwd.stdin = stdin
            return AttachSession(self.api, container_id, sock, fwd, bool(config.get("Tty")))

        try:
            return await asyncio.to_thread(attach)
        except docker.errors.NotFound:
            raise errors.NotFound(message=f'container "{start.container}" not found in pod '
                                  f'"{start.name}"', kind="pods", name=start.name) from None
        except docker.errors.APIError as e:
            raise errors.BadRequest(message=f"unable to attach to container "
                                    f'"{start.container}" of pod "{start.name}": '
                                    f"{e.explanation or e}") from None

    # --- exec -----------------------------------------------------------------------------

    async def exec_session(self, container_id: str, start: pb.ExecStart) -> ExecSession:
        def create() -> ExecSession:
            created = self.api.exec_create(container_id, list(start.command), stdout=True,
                                           stderr=True, stdin=start.stdin, tty=start.tty)
            sock = self.api.exec_start(created["Id"], tty=start.tty, socket=True)
            return ExecSession(self.api, created["Id"], sock, start)

        try:
            return await asyncio.to_thread(create)
        except docker.errors.NotFound:
            raise errors.NotFound(message=f'container "{start.container}" not found in pod '
                                  f'"{start.name}"', kind="pods", name=start.name) from None
        except docker.errors.APIError as e:
            # e.g. 409 "Container ... is not running"
            raise errors.BadRequest(message=f"unable to exec in container "
                                    f'"{start.container}" of pod "{start.name}": '
                                    f"{e.explanation or e}") from None

