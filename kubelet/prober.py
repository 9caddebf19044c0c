"""Probes: the kubelet's view of whether a container is alive, started and ready.

Docker knows whether a process runs; only the application knows whether it works. Kubernetes
asks it, with the container's liveness, readiness and startup probes (exec a command, GET an
HTTP path, open a TCP connection), and acts on the answers: a container that fails its liveness
probe `failureThreshold` times in a row is killed and restarted, one that fails its readiness
probe is taken out of its Services (the pod's Ready condition), and a startup probe holds the
other two back until a slow application has come up.

This is upstream's prober (pkg/kubelet/prober): one asyncio task per (pod, container, probe
type) for the container's current id, with upstream's defaults, thresholds, gating and event
messages; the kubelet asks `ready()` / `started()` / `liveness_failed()` when it computes a
pod's status and actions, and is woken through `on_change(pod_uid)` whenever an answer changes.
`run_handler` runs the same exec/httpGet actions for the lifecycle hooks (postStart, preStop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from api.validation import go_quote
from kubelet.runtime import EXEC_TIMEOUT_EXIT, DockerRuntime, RuntimeFailure

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Recorder = Callable[[Obj, str, str, str], None]  # (pod, type, reason, message)

WARNING = "Warning"
STARTUP, LIVENESS, READINESS = "startup", "liveness", "readiness"
# (probe type, pod spec field, the word upstream's events use)
KINDS = ((STARTUP, "startupProbe", "Startup"), (LIVENESS, "livenessProbe", "Liveness"),
         (READINESS, "readinessProbe", "Readiness"))
_FIELD = {kind: f for kind, f, _ in KINDS}
_LABEL = {kind: label for kind, _, label in KINDS}

# upstream's defaults (pkg/apis/core/v1/defaults.go)
DEFAULT_PERIOD = 10
DEFAULT_TIMEOUT = 1
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
MAX_BODY = 10 * 1024  # upstream reads at most 10 KiB of a probe's response
MAX_REDIRECTS = 10
USER_AGENT = "kube-probe/1.30"


class ProbeError(Exception):
    """The probe could not run at all (bad port name, runtime error): upstream's "probe errored",
    which does not count as a failure."""


@dataclass
class _Result:
    container_id: str
    success: bool


@dataclass
class _Worker:
    kind: str
    uid: str
    name: str
    container_id: str
    started: float  # monotonic time the container started
    pod: Obj
    container: Obj
    pod_ip: str
    probe: Obj
    trigger: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last: bool | None = None
    run: int = 0

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _containers(pod: Obj) -> list[Obj]:
    return list((pod.get("spec") or {}).get("containers") or [])


def _uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid", ""))


def format_pod(pod: Obj) -> str:
    """upstream's format.Pod: `name_namespace(uid)`."""
    md = pod.get("metadata") or {}
    return f"{md.get('name', '')}_{md.get('namespace', '')}({md.get('uid', '')})"




def resolve_port(port: Any, container: Obj) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, str) and not port.isdigit():
        for p in container.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ProbeError(f"couldn't find port: {port} in {container.get('ports') or []}")
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise ProbeError(f"invalid port number: {port}") from None
    if not 0 < number < 65536:
        raise ProbeError(f"invalid port number: {number}")
    return number


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _strerror(e: OSError) -> str:
    # Go prints syscall errors in lower case: "connect: connection refused" (asyncio's own
    # strerror is "Connect call failed (...)", so go by the errno)
    if e.errno:
        return os.strerror(e.errno).lower()
    return (e.strerror or str(e)).lower()


def http_url(action: Obj, host: str, port: int) -> str:
    scheme = str(action.get("scheme") or "HTTP").lower()
    path = str(action.get("path") or "")
    if path and not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{_host_port(host, port)}{path or '/'}"


async def http_get(url: str, headers: list[Obj], timeout: float) -> tuple[bool, str]:
    """(success, output) of an HTTP GET probe, as upstream's http prober: success for
    200 <= status < 400 (same-host redirects followed, others not); errors in Go's words."""
    deadline = time.monotonic() + timeout
    original = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.001)):
                status, location, body = await _request(url, headers)
        except TimeoutError:
            return False, (f'Get {go_quote(original)}: context deadline exceeded '
                           "(Client.Timeout exceeded while awaiting headers)")
        except ssl.SSLError as e:
            return False, f"Get {go_quote(original)}: {e.reason or e}"
        except OSError as e:
            parts = urlsplit(url)
            return False, (f"Get {go_quote(original)}: dial tcp "
                           f"{parts.netloc}: connect: {_strerror(e)}")
        except (EOFError, asyncio.IncompleteReadError, ValueError):
            return False, f"Get {go_quote(original)}: EOF"
        if 300 <= status < 400 and location:
            target = urljoin(url, location)
            if urlsplit(target).hostname == urlsplit(url).hostname:
                url = target
                continue
            return True, f"Probe terminated redirects, Response body: {body}"
        if 200 <= status < 400:
            return True, body
        return False, f"HTTP probe failed with statuscode: {status}"
    return False, f"Get {go_quote(original)}: stopped after {MAX_REDIRECTS} redirects"


async def _request(url: str, headers: list[Obj]) -> tuple[int, str, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = None
    if parts.scheme == "https":
        # upstream probes skip certificate verification
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        fields = {"host": ("Host", parts.netloc), "user-agent": ("User-Agent", USER_AGENT),
                  "accept": ("Accept", "*/*")}
        for h in headers:
            name = str(h.get("name", ""))
            if name:
                fields[name.lower()] = (name, str(h.get("value", "")))
        fields["connection"] = ("Connection", "close")
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        request = f"GET {target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.values()) + "\r\n"
        writer.write(request.encode("latin-1", errors="replace"))
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise EOFError
        pieces = status_line.decode("latin-1").split(None, 2)
        if len(pieces) < 2 or not pieces[0].startswith("HTTP/"):
            raise ValueError("malformed HTTP response")
        status = int(pieces[1])
        location = ""
        length: int | None = None
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "location":
                location = value.strip()
            elif name.strip().lower() == "content-length":
                with contextlib.suppress(ValueError):
                    length = int(value.strip())
        body = b""
        # The body only feeds messages: read what comes quickly, never wait for it.
        with contextlib.suppress(Exception):
            want = MAX_BODY if length is None else min(length, MAX_BODY)
            if want:
                async with asyncio.timeout(0.2):
                    body = await reader.read(want)
        return status, location, body.decode(errors="replace")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def tcp_check(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """(success, output) of a TCP probe: can a connection be opened within the timeout."""
    address = _host_port(host, port)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {address}: i/o timeout"
    except OSError as e:
        return False, f"dial tcp {address}: connect: {_strerror(e)}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, ""


async def grpc_check(host: str, port: int, service: str, timeout: float) -> tuple[bool, str]:
    """(success, output) of a gRPC probe: the standard health service answers SERVING."""
    import grpc  # imported lazily: only pods with gRPC probes need it
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = _host_port(host, port)
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            async with asyncio.timeout(timeout):
                await channel.channel_ready()
        except TimeoutError:
            return False, f'timeout: failed to connect service "{address}" within {timeout:g}s'
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service),
                                    timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, (f'timeout: health rpc did not complete within {timeout:g}s')
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                return False, ("this server does not implement the grpc health protocol "
                               "(grpc.health.v1.Health): " + (e.details() or ""))
            return False, f"rpc error: code = {e.code().name} desc = {e.details()}"
    if resp.status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        return False, f'service unhealthy (responded with "{name}")'
    return True, ""


class ProbeManager:
    """Probe workers for every running container of every pod, and their latest verdicts."""

    def __init__(self, runtime: DockerRuntime, record: Recorder,
                 on_change: Callable[[str], None], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._record = record
        self._on_change = on_change
        self._clock = clock
        self._pods: dict[str, Obj] = {}
        self._workers: dict[tuple[str, str, str], _Worker] = {}
        self._results: dict[tuple[str, str, str], _Result] = {}

    # -- the kubelet's side ---------------------------------------------------------------------

    def update_pod(self, pod: Obj, pod_ip: str, running: dict[str, tuple[str, float]]) -> None:
        """Start probe workers for `running` containers (name -> (container id, monotonic start
        time)) that have probes, stop those of containers no longer running or replaced."""
        uid = _uid(pod)
        self._pods[uid] = pod
        wanted: set[tuple[str, str, str]] = set()
        for c in _containers(pod):
            name = c.get("name", "")
            if name not in running:
                continue
            cid, started = running[name]
            for kind, spec_field, _ in KINDS:
                probe = c.get(spec_field)
                if not probe:
                    continue
                key = (uid, name, kind)
                wanted.add(key)
                w = self._workers.get(key)
                if w is not None and w.container_id == cid:
                    w.pod, w.container, w.pod_ip = pod, c, pod_ip
                    continue
                if w is not None:
                    w.cancel()
                w = _Worker(kind, uid, name, cid, started, pod, c, pod_ip, probe)
                w.task = asyncio.get_running_loop().create_task(
                    self._run(w), name=f"probe {kind} {format_pod(pod)} {name}")
                self._workers[key] = w
        for key in [k for k in self._workers if k[0] == uid and k not in wanted]:
            self._workers.pop(key).cancel()

    def remove_pod(self, pod_uid: str) -> None:
        for key in [k for k in self._workers if k[0] == pod_uid]:
            self._workers.pop(key).cancel()
        for key in [k for k in self._results if k[0] == pod_uid]:
            del self._results[key]
        self._pods.pop(pod_uid, None)

    def _probe_of(self, pod_uid: str, name: str, kind: str) -> Obj | None:
        pod = self._pods.get(pod_uid)
        if pod is None:
            return None
        for c in _containers(pod):
            if c.get("name") == name:
                probe = c.get(_FIELD[kind])
                return probe if probe else None
        return None

    def _result(self, pod_uid: str, name: str, kind: str, container_id: str) -> bool | None:
        r = self._results.get((pod_uid, name, kind))
        if r is None or r.container_id != container_id:
            return None
        return r.success

    def started(self, pod_uid: str, name: str, container_id: str) -> bool:
        """True once the startup probe succeeded for this container (True without one)."""
        if self._probe_of(pod_uid, name, STARTUP) is None:
            return True
        return self._result(pod_uid, name, STARTUP, container_id) is True

    def ready(self, pod_uid: str, name: str, container_id: str) -> bool:
        """Started, and the readiness probe's last verdict for this container was a success
        (without a readiness probe: as soon as it is started)."""
        if not self.started(pod_uid, name, container_id):
            return False
        if self._probe_of(pod_uid, name, READINESS) is None:
            return True
        return self._result(pod_uid, name, READINESS, container_id) is True

    def liveness_failed(self, pod_uid: str, name: str, container_id: str) -> str | None:
        """`Container <name> failed liveness probe` (or `startup probe`) once the probe failed
        failureThreshold times in a row for this container; None otherwise."""
        if self._result(pod_uid, name, LIVENESS, container_id) is False:
            return f"Container {name} failed liveness probe"
        if self._result(pod_uid, name, STARTUP, container_id) is False:
            return f"Container {name} failed startup probe"
        return None

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for w in self._workers.values():
            w.cancel()
        self._workers.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- workers --------------------------------------------------------------------------------

    async def _run(self, w: _Worker) -> None:
        try:
            await self._loop(w)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not take the kubelet down
            log.exception("probe worker %s %s/%s", w.kind, w.uid, w.name)

    async def _loop(self, w: _Worker) -> None:
        p = w.probe
        period = float(p.get("periodSeconds") or DEFAULT_PERIOD)
        delay = float(p.get("initialDelaySeconds") or 0)
        wait = w.started + delay - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        while True:
            # startup gates the other two: they do not probe before it succeeded
            if w.kind == STARTUP or self.started(w.uid, w.name, w.container_id):
                if await self._probe_once(w):
                    return
            w.trigger.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result of an
            # awaitable that completes as the task is cancelled and drops the cancellation, so
            # a trigger set as the pod went away kept this worker probing for ever and its
            # close() waiting for it (a hung test teardown, issue 20's hunt). Same below and in
            # the rest of the kubelet.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await w.trigger.wait()

    async def _probe_once(self, w: _Worker) -> bool:
        """One probe and its bookkeeping; True when the worker is done for this container."""
        p = w.probe
        timeout = float(p.get("timeoutSeconds") or DEFAULT_TIMEOUT)
        label = _LABEL[w.kind]
        try:
            ok, output = await self._execute(w.probe, w.container, w.container_id, w.pod_ip,
                                             timeout)
        except (ProbeError, RuntimeFailure) as e:
            # upstream throws an errored probe's result away: it counts neither way
            self._record(w.pod, WARNING, "Unhealthy", f"{label} probe errored: {e}")
            return False
        if not ok:
            self._record(w.pod, WARNING, "Unhealthy", f"{label} probe failed: {output}")
        if w.last == ok:
            w.run += 1
        else:
            w.last, w.run = ok, 1
        failure_threshold = int(p.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD)
        success_threshold = int(p.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD)
        if (not ok and w.run < failure_threshold) or (ok and w.run < success_threshold):
            return False  # below the threshold: the verdict stands
        self._set(w, ok)
        if w.kind in (LIVENESS, STARTUP) and not ok:
            # the container will be killed: stop probing it (upstream's onHold)
            return True
        if w.kind == STARTUP and ok:
            # started for good: wake the liveness and readiness workers now
            for kind in (LIVENESS, READINESS):
                other = self._workers.get((w.uid, w.name, kind))
                if other is not None and other.container_id == w.container_id:
                    other.trigger.set()
            return True
        return False

    def _set(self, w: _Worker, ok: bool) -> None:
        key = (w.uid, w.name, w.kind)
        new = _Result(w.container_id, ok)
        if self._results.get(key) == new:
            return
        if self._workers.get(key) is not w:
            return  # replaced while probing: this verdict is about an old container
        self._results[key] = new
        try:
            self._on_change(w.uid)
        except Exception:
            log.exception("probe on_change for %s", w.uid)

    async def _execute(self, probe: Obj, container: Obj, container_id: str, pod_ip: str,
                       timeout: float) -> tuple[bool, str]:
        if "exec" in probe:
            command = list((probe["exec"] or {}).get("command") or [])
            code, out = await self._runtime.exec_sync(container_id, command, timeout)
            return code == 0, out.decode(errors="replace")
        if "httpGet" in probe:
            action = probe["httpGet"] or {}
            host = action.get("host") or pod_ip
            if not host:
                raise ProbeError("the pod has no IP address")
            url = http_url(action, host, resolve_port(action.get("port"), container))
            return await http_get(url, list(action.get("httpHeaders") or []), timeout)
        if "tcpSocket" in probe:
            action = probe["tcpSocket"] or {}
            host = action.get("host") or pod_ip
            if not host:
                raise ProbeError("the pod has no IP address")
            return await tcp_check(host, resolve_port(action.get("port"), container), timeout)
        if "grpc" in probe:
            action = probe["grpc"] or {}
            if not pod_ip:
                raise ProbeError("the pod has no IP address")
            return await grpc_check(pod_ip, resolve_port(action.get("port"), container),
                                    str(action.get("service") or ""), timeout)
        raise ProbeError("missing probe handler")

    # -- lifecycle hooks ------------------------------------------------------------------------

    async def run_handler(self, pod: Obj, container: Obj, container_id: str, pod_ip: str,
                          handler: Obj, timeout: float) -> str | None:
        """Run a postStart/preStop handler (exec, httpGet or sleep); upstream's error message
        if it failed, None if it succeeded. The caller records FailedPostStartHook /
        FailedPreStopHook and decides what follows."""
        name = container.get("name", "")
        if "exec" in handler:
            command = list((handler["exec"] or {}).get("command") or [])
            try:
                code, out = await self._runtime.exec_sync(container_id, command, timeout)
            except RuntimeFailure as e:
                code, out, error = -1, b"", str(e)
            else:
                text = out.decode(errors="replace")
                if code == 0:
                    return None
                error = text if code == EXEC_TIMEOUT_EXIT else \
                    f"command '{' '.join(command)}' exited with {code}: {text}"
            return (f"Exec lifecycle hook ([{' '.join(command)}]) for Container {go_quote(name)} "
                    f"in Pod {go_quote(format_pod(pod))} failed - error: {error}, message: "
                    f"{go_quote(out.decode(errors='replace'))}")
        if "httpGet" in handler:
            action = handler["httpGet"] or {}
            path = str(action.get("path") or "")
            try:
                host = action.get("host") or pod_ip
                if not host:
                    raise ProbeError("the pod has no IP address")
                url = http_url(action, host, resolve_port(action.get("port"), container))
                ok, output = await http_get(url, list(action.get("httpHeaders") or []), timeout)
            except ProbeError as e:
                ok, output = False, str(e)
            # upstream fails a hook only when the request fails, whatever the status code
            if ok or output.startswith("HTTP probe failed"):
                return None
            return (f"HTTP lifecycle hook ({path}) for Container {go_quote(name)} in Pod "
                    f"{go_quote(format_pod(pod))} failed - error: {output}")
        if "sleep" in handler:
            seconds = float((handler["sleep"] or {}).get("seconds") or 0)
            await asyncio.sleep(max(0.0, min(seconds, timeout)))
            return None
        return f"Invalid handler: {handler}"
