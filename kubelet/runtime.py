"""The container runtime: the kubelet's only door to Docker, shaped like the dockershim.

The kubelet thinks in pods, sandboxes and containers; Docker thinks in containers, images and
events. This module translates, in one place: a pod's sandbox is a pause container that owns the
network, IPC and UTS namespaces; app containers join it (`container:<sandbox id>`), so the
containers of a pod share `localhost`, as in Kubernetes. Everything the kubelet must remember
about a container is written on it as labels (kubelet/labels.py), so `list_containers` after a
kubelet restart gives back pod uid, container name and restart count.

The Docker SDK is blocking; every call runs in a dedicated thread pool so that a slow Docker
never blocks the kubelet's event loop, and errors are translated into three exceptions the
kubelet can act on: `RuntimeUnavailable` (Docker does not answer: the node is not ready),
`ContainerNotFound`, and `RuntimeFailure` for anything else (message = Docker's explanation).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import math
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from api.quantity import QuantityError, cpu_millis, to_bytes
from kubelet import labels as L
from kubelet.envvars import expand

Obj = dict[str, Any]
T = TypeVar("T")

# Upstream's constants (pkg/kubelet/cm): CFS period, the smallest quota and the smallest share.
CPU_PERIOD = 100_000
MIN_QUOTA = 1_000
MIN_SHARES = 2
SHARES_PER_CPU = 1024
# What exec_sync returns as exit code when the command did not finish within its timeout.
EXEC_TIMEOUT_EXIT = -1
# Upstream probes read at most 10 KiB of output.
MAX_EXEC_OUTPUT = 10 * 1024
# The API version docker_client speaks when the daemon cannot be asked (Docker 20.10's).
FALLBACK_API_VERSION = "1.41"
# json-file as the kubelet's default container log rotation (10Mi, 5 files).
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "5"}}


class RuntimeFailure(Exception):
    """A Docker call failed; the message is Docker's explanation."""


class RuntimeUnavailable(RuntimeFailure):
    """Docker does not answer (socket missing, connection refused, timeout)."""


class ContainerNotFound(RuntimeFailure):
    """The container does not exist (any more)."""


@dataclass
class ContainerInfo:
    id: str
    name: str
    labels: dict[str, str]
    state: str  # "created" | "running" | "exited" | "unknown"
    exit_code: int | None
    reason: str  # "Completed" | "Error" | "OOMKilled" | "ContainerCannotRun" | ""
    message: str
    created_at: str  # RFC3339 to the second, as metav1.Time; "" if never
    started_at: str
    finished_at: str
    image: str
    image_id: str  # "docker://sha256:..."
    pid: int
    # Unix time of creation with sub-second precision: orders containers (created_at ties).
    created: float = 0.0

    @property
    def pod_uid(self) -> str:
        return self.labels.get(L.POD_UID, "")

    @property
    def container_name(self) -> str:
        return self.labels.get(L.CONTAINER_NAME, "")

    @property
    def restart_count(self) -> int:
        try:
            return int(self.labels.get(L.RESTART_COUNT, "0"))
        except ValueError:
            return 0

    @property
    def is_sandbox(self) -> bool:
        return self.labels.get(L.CONTAINER_TYPE) == L.TYPE_SANDBOX

    @property
    def sandbox_id(self) -> str:
        return self.labels.get(L.SANDBOX_ID, "")

    @property
    def node_name(self) -> str:
        return self.labels.get(L.NODE_NAME, "")


@dataclass
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class ContainerConfig:
    name: str
    image: str
    labels: dict[str, str]
    entrypoint: list[str] | None
    cmd: list[str] | None
    env: list[tuple[str, str]]
    working_dir: str
    mounts: list[Mount]
    sandbox_id: str
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpu_shares: int | None = None
    memory_limit: int | None = None
    user: str | None = None
    privileged: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    read_only_rootfs: bool = False
    share_pid: bool = False  # spec.shareProcessNamespace: join the sandbox's pid namespace


# --- pod spec -> container config ------------------------------------------------------------


def _cpu_config(resources: Obj) -> tuple[int | None, int | None, int]:
    """(cpu_quota, cpu_period, cpu_shares) as upstream's kuberuntime computes them."""
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    quota = period = None
    limit_m = cpu_millis(limits["cpu"]) if "cpu" in limits else 0
    if limit_m:
        period = CPU_PERIOD
        quota = max(limit_m * CPU_PERIOD // 1000, MIN_QUOTA)
    request_m = cpu_millis(requests["cpu"]) if "cpu" in requests else 0
    # A limit without a request: the request defaults to the limit (upstream does the same).
    millis = request_m or limit_m
    shares = max(millis * SHARES_PER_CPU // 1000, MIN_SHARES) if millis else MIN_SHARES
    return quota, period, shares


def _user(pod_sc: Obj, sc: Obj) -> str | None:
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    if uid is None:
        # Docker cannot set a group without a user; upstream's dockershim did not either.
        return None
    return f"{uid}:{gid}" if gid is not None else str(uid)


def container_config(pod: Obj, container: Obj, *, sandbox_id: str, restart_count: int,
                     env: list[tuple[str, str]], mounts: list[Mount],
                     node_name: str) -> ContainerConfig:
    """The Docker container for `container` of `pod`, as Kubernetes defines it.

    `command` replaces the image's ENTRYPOINT, `args` its CMD; both see `$(VAR)` expanded with
    the container's environment (`env`, already resolved by the caller). Raises ValueError for
    a resource quantity that does not parse (the API validates, so this is a bug elsewhere).
    """
    spec = pod.get("spec") or {}
    env_map = dict(env)
    command = container.get("command") or None
    args = container.get("args") or None
    entrypoint = [expand(a, env_map) for a in command] if command else None
    cmd = [expand(a, env_map) for a in args] if args else None
    try:
        quota, period, shares = _cpu_config(container.get("resources") or {})
        mem = (container.get("resources") or {}).get("limits", {}).get("memory")
        memory = to_bytes(mem) if mem is not None else None
    except QuantityError as e:
        raise ValueError(f"container {container.get('name')}: {e}") from e
    sc = container.get("securityContext") or {}
    pod_sc = spec.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    return ContainerConfig(
        name=L.container_name(pod, container["name"], restart_count),
        image=container.get("image", ""),
        labels=L.container_labels(pod, container, node_name, sandbox_id=sandbox_id,
                                  restart_count=restart_count),
        entrypoint=entrypoint, cmd=cmd, env=list(env),
        working_dir=container.get("workingDir") or "",
        mounts=list(mounts), sandbox_id=sandbox_id,
        tty=bool(container.get("tty")), stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        cpu_quota=quota, cpu_period=period, cpu_shares=shares, memory_limit=memory,
        user=_user(pod_sc, sc), privileged=bool(sc.get("privileged")),
        cap_add=list(caps.get("add") or []), cap_drop=list(caps.get("drop") or []),
        read_only_rootfs=bool(sc.get("readOnlyRootFilesystem")),
        share_pid=bool(spec.get("shareProcessNamespace")),
    )


def pod_hostname(pod: Obj) -> str:
    """spec.hostname or the pod's name, cut to 63 characters as upstream's GeneratePodHostName."""
    spec = pod.get("spec") or {}
    name = spec.get("hostname") or (pod.get("metadata") or {}).get("name", "")
    return name[:63].rstrip("-.")


# --- inspect -> ContainerInfo ----------------------------------------------------------------


def _rfc3339(docker_time: str | None) -> str:
    """Docker's nanosecond timestamps to RFC3339 seconds; its zero time to ""."""
    if not docker_time or docker_time.startswith("0001-01-01"):
        return ""
    return docker_time[:19] + "Z"


def _unix(docker_time: str | None) -> float:
    if not docker_time or docker_time.startswith("0001-01-01"):
        return 0.0
    base = datetime.strptime(docker_time[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    frac = docker_time[19:].rstrip("Z")
    if frac.startswith("."):
        digits = "".join(ch for ch in frac[1:] if ch.isdigit())
        return base.timestamp() + (float("0." + digits) if digits else 0.0)
    return base.timestamp()


def info_from_inspect(data: Obj) -> ContainerInfo:
    """A ContainerInfo from `docker inspect`, with the state logic of upstream's dockershim."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    created = _rfc3339(data.get("Created"))
    started = _rfc3339(state.get("StartedAt"))
    finished = _rfc3339(state.get("FinishedAt"))
    exit_code: int | None = None
    reason = ""
    message = state.get("Error") or ""
    if state.get("Running") or state.get("Paused") or state.get("Restarting"):
        st = "running"
    elif finished:
        st = "exited"
        exit_code = int(state.get("ExitCode") or 0)
        if state.get("OOMKilled"):
            reason = "OOMKilled"
        elif exit_code == 0:
            reason = "Completed"
        else:
            reason = "Error"
        if message and not started:
            reason = "ContainerCannotRun"
    elif state.get("ExitCode") or message:
        # Docker could not start it (bad entrypoint, missing mount source): it never ran.
        st = "exited"
        exit_code = int(state.get("ExitCode") or 128)
        reason = "ContainerCannotRun"
        finished = finished or created
    elif state.get("Status") in ("created", None) or not state:
        st = "created"
    else:
        st = "unknown"
    image_id = data.get("Image") or ""
    return ContainerInfo(
        id=data.get("Id", ""), name=(data.get("Name") or "").lstrip("/"),
        labels=dict(config.get("Labels") or {}), state=st, exit_code=exit_code, reason=reason,
        message=message, created_at=created, started_at=started, finished_at=finished,
        image=config.get("Image") or "",
        image_id=f"docker://{image_id}" if image_id else "",
        pid=int(state.get("Pid") or 0), created=_unix(data.get("Created")),
    )


def info_from_summary(data: Obj) -> ContainerInfo:
    """A partial ContainerInfo from `docker ps` (the list): id, name, labels, image and a state
    (exited without its exit code); times and pid unknown. For change detection only."""
    state = {"running": "running", "paused": "running", "restarting": "running",
             "created": "created", "exited": "exited", "dead": "exited"}.get(
        str(data.get("State") or ""), "unknown")
    names = data.get("Names") or [""]
    image_id = data.get("ImageID") or ""
    created = float(data.get("Created") or 0)
    return ContainerInfo(
        id=data.get("Id", ""), name=str(names[0]).lstrip("/"),
        labels=dict(data.get("Labels") or {}), state=state, exit_code=None, reason="",
        message="", created_at="", started_at="", finished_at="",
        image=data.get("Image") or "", image_id=f"docker://{image_id}" if image_id else "",
        pid=0, created=created)


# --- Docker errors -> our exceptions ----------------------------------------------------------


def _is_unavailable(e: BaseException) -> bool:
    if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                      ConnectionError, FileNotFoundError)):
        return True
    # DockerClient(version="auto") wraps the failed version probe in a plain DockerException.
    return (isinstance(e, docker.errors.DockerException)
            and not isinstance(e, docker.errors.APIError)
            and "Error while fetching server API version" in str(e))


def _explanation(e: docker.errors.APIError) -> str:
    text = e.explanation
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text or e)


PING_TIMEOUT = 5.0  # seconds


def _translate(e: BaseException) -> BaseException:
    if isinstance(e, RuntimeFailure):
        return e
    if _is_unavailable(e):
        return RuntimeUnavailable(f"Cannot connect to the Docker daemon: {e}")
    if isinstance(e, docker.errors.ImageNotFound):
        return RuntimeFailure(_explanation(e))
    if isinstance(e, docker.errors.NotFound):
        return ContainerNotFound(_explanation(e))
    if isinstance(e, docker.errors.APIError):
        return RuntimeFailure(_explanation(e))
    if isinstance(e, docker.errors.DockerException):
        return RuntimeFailure(str(e))
    return e


class _Done:
    """An awaitable that is already finished: lets `close()` work with or without `await`."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


class _StreamEnd:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class DockerRuntime:
    """The container runtime over the Docker Engine API (one per kubelet)."""

    # 32 threads: a burst of 30 pods has a Docker call in flight per pod worker (creates and
    # starts wait seconds in dockerd under load), plus relist, events and probes; with 16 the
    # pods' calls queued behind each other in the pool, not in dockerd.
    def __init__(self, base_url: str = "unix:///var/run/docker.sock", workers: int = 32,
                 kubelet_id: str = "", request_timeout: float = 120.0) -> None:
        # With an id (labels.kubelet_id), every container created carries it and only
        # containers carrying it are listed or watched: other kubelets' are not ours.
        self.kubelet_id = kubelet_id
        self._base_url = base_url
        self._workers = workers
        # upstream's --runtime-request-timeout: every call but the long-running ones (the SDK
        # lengthens a stop's by its grace period; streams have none).
        self._request_timeout = max(1, math.ceil(request_timeout))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker")
        self._client: docker.DockerClient | None = None
        self._fallback: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._streams: set[Any] = set()
        self._closed = False
        # Exited containers never change again (the kubelet never restarts a Docker container):
        # their inspect results are cached, keyed by id and the list's state.
        self._info_cache: dict[str, tuple[str, ContainerInfo]] = {}

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def docker_client(self) -> docker.DockerClient:
        """The SDK client (blocking!) for streaming logs and exec (kubelet/server.py).

        Never raises: while Docker is down it is a client pinned to API 1.41 (Debian's Docker
        20.10), which works once Docker is back; the runtime's own calls keep asking for the
        daemon's version until it answers."""
        try:
            return self._get_client()
        except RuntimeUnavailable:
            with self._client_lock:
                if self._fallback is None:
                    self._fallback = docker.DockerClient(
                        base_url=self._base_url, version=FALLBACK_API_VERSION,
                        timeout=self._request_timeout,
                        max_pool_size=self._workers + 4)
                return self._fallback

    def _get_client(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                try:
                    # `auto` asks the daemon for its API version: created lazily, so that a
                    # kubelet starts (and reports NotReady) while Docker is still down.
                    # The version probe gets the ping's short timeout (a hung dockerd must
                    # not hold this lock, and every caller behind it, for two minutes);
                    # the calls after it the runtime request timeout (a busy dockerd is
                    # slow).
                    client = docker.DockerClient(
                        base_url=self._base_url, version="auto", timeout=int(PING_TIMEOUT),
                        max_pool_size=self._workers + 4)
                    client.api.timeout = self._request_timeout
                    self._client = client
                except Exception as e:
                    raise _translate(e) from e
            return self._client

    async def _call(self, fn: Callable[[docker.DockerClient], T]) -> T:
        def run() -> T:
            try:
                return fn(self._get_client())
            except Exception as e:
                translated = _translate(e)
                if translated is e:
                    raise
                raise translated from e

        if self._closed:
            raise RuntimeUnavailable("runtime closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, run)

    def close(self) -> _Done:
        """Stop event streams and the thread pool. Works as `close()` and `await close()`."""
        self._closed = True
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                stream.close()
        self._streams.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            for client in (self._client, self._fallback):
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            self._client = self._fallback = None
        return _Done()

    # -- node -----------------------------------------------------------------------------------

    async def ping(self, timeout: float = PING_TIMEOUT) -> None:
        """RuntimeUnavailable unless Docker answers within `timeout`. Whether the node is Ready
        is not decided here: kubelet/health.py judges the runtime over time."""
        await self._call(lambda c: c.api._result(c.api._get(c.api._url("/_ping"),
                                                            timeout=timeout)))

    async def version(self) -> str:
        data = await self._call(lambda c: c.api.version())
        return f"docker://{data.get('Version', '')}"

    # -- containers -----------------------------------------------------------------------------

    def _owner_filter(self, node_name: str) -> list[str]:
        """Docker label filters (all must match) for the containers of this kubelet."""
        out = [f"{L.NODE_NAME}={node_name}"]
        if self.kubelet_id:
            out.append(f"{L.KUBELET_ID}={self.kubelet_id}")
        return out

    def _own(self, labels: dict[str, str]) -> dict[str, str]:
        return {**labels, L.KUBELET_ID: self.kubelet_id} if self.kubelet_id else labels

    async def list_containers(self, node_name: str, *, detail: bool = True
                              ) -> list[ContainerInfo]:
        """Every container (all states) labelled with `node_name`: sandboxes and app containers.

        `detail=False` answers from Docker's list alone (id, name, labels, state, creation
        second; no exit code, pid or start times): what a periodic relist needs to notice
        changes, without an inspect per container. Those inspects were most of the relist's
        cost, and an inspect waits on the container's lock in dockerd while it is being started,
        so a relist during a burst of pod starts took seconds and loaded dockerd further."""
        return await self._call(functools.partial(self._list_sync, node_name, detail))

    def _list_sync(self, node_name: str, detail: bool,
                   client: docker.DockerClient) -> list[ContainerInfo]:
        summaries = client.api.containers(all=True,
                                          filters={"label": self._owner_filter(node_name)})
        out: list[ContainerInfo] = []
        seen: set[str] = set()
        for s in summaries:
            cid = s["Id"]
            seen.add(cid)
            if not detail:
                out.append(info_from_summary(s))
                continue
            cached = self._info_cache.get(cid)
            if cached is not None and cached[0] == s.get("State"):
                out.append(cached[1])
                continue
            try:
                info = info_from_inspect(client.api.inspect_container(cid))
            except docker.errors.NotFound:
                continue  # removed between the list and the inspect
            if info.state == "exited":
                self._info_cache[cid] = (s.get("State", ""), info)
            out.append(info)
        for cid in list(self._info_cache):
            if cid not in seen and self._info_cache[cid][1].node_name == node_name:
                del self._info_cache[cid]
        return out

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        """The container's state, or None if it does not exist."""
        try:
            data = await self._call(lambda c: c.api.inspect_container(container_id))
        except ContainerNotFound:
            return None
        return info_from_inspect(data)

    async def create_sandbox(self, pod: Obj, node_name: str, attempt: int, image: str) -> str:
        """Create (not start) the pod's pause container; returns its id."""
        spec = pod.get("spec") or {}
        host_network = bool(spec.get("hostNetwork"))

        def create(c: docker.DockerClient) -> str:
            host_config = c.api.create_host_config(
                network_mode="host" if host_network else "none",
                ipc_mode="shareable", restart_policy={"Name": "no"}, log_config=LOG_CONFIG,
                # upstream gives sandboxes the minimum shares: they only sleep
                cpu_shares=MIN_SHARES,
            )
            resp = c.api.create_container(
                image, name=L.sandbox_name(pod, attempt),
                hostname=None if host_network else pod_hostname(pod),
                labels=self._own(L.sandbox_labels(pod, node_name)), host_config=host_config)
            return str(resp["Id"])

        return await self._call(create)

    async def create_container(self, cfg: ContainerConfig) -> str:
        """Create (not start) an app container in its sandbox's network, IPC and UTS namespaces."""

        def create(c: docker.DockerClient) -> str:
            joined = f"container:{cfg.sandbox_id}"
            host_config = c.api.create_host_config(
                network_mode=joined, ipc_mode=joined,
                pid_mode=joined if cfg.share_pid else None,
                restart_policy={"Name": "no"}, log_config=LOG_CONFIG,
                binds=[f"{m.host_path}:{m.container_path}:{'ro' if m.read_only else 'rw'}"
                       for m in cfg.mounts] or None,
                cpu_quota=cfg.cpu_quota, cpu_period=cfg.cpu_period, cpu_shares=cfg.cpu_shares,
                mem_limit=cfg.memory_limit,
                # no swap beyond the limit: a container over its limit is OOM-killed, as on a
                # Kubernetes node (which runs without swap)
                memswap_limit=cfg.memory_limit,
                privileged=cfg.privileged, cap_add=cfg.cap_add or None,
                cap_drop=cfg.cap_drop or None, read_only=cfg.read_only_rootfs or None,
            )
            config = c.api.create_container_config(
                cfg.image, cfg.cmd, entrypoint=cfg.entrypoint,
                environment=[f"{k}={v}" for k, v in cfg.env] or None,
                working_dir=cfg.working_dir or None, labels=self._own(cfg.labels), user=cfg.user,
                tty=cfg.tty, stdin_open=cfg.stdin, host_config=host_config)
            # Always set: docker-py defaults StdinOnce to true with stdin_open, which would
            # close the container's stdin when the first attached client detaches.
            config["StdinOnce"] = cfg.stdin_once
            resp = c.api.create_container_from_config(config, cfg.name)
            return str(resp["Id"])

        return await self._call(create)

    async def start(self, container_id: str) -> None:
        await self._call(lambda c: c.api.start(container_id))

    async def stop(self, container_id: str, timeout: float) -> None:
        """SIGTERM (the image's stop signal), then SIGKILL after `timeout` seconds."""
        seconds = max(0, int(timeout + 0.999))

        # The SDK lengthens the HTTP timeout by the grace period; 304 (already stopped) is fine.
        await self._call(lambda c: c.api.stop(container_id, timeout=seconds))

    async def remove(self, container_id: str) -> None:
        """Remove with force and its anonymous volumes; a missing container is fine."""
        try:
            await self._call(lambda c: c.api.remove_container(container_id, v=True, force=True))
        except ContainerNotFound:
            pass
        except RuntimeFailure as e:
            if "is already in progress" not in str(e):  # a concurrent remove of the same one
                raise
        self._info_cache.pop(container_id, None)

    async def netns_path(self, sandbox_id: str) -> str:
        """The sandbox's network namespace, as the CNI plugin wants it."""
        info = await self.inspect(sandbox_id)
        if info is None:
            raise ContainerNotFound(f"No such container: {sandbox_id}")
        if info.state != "running" or not info.pid:
            raise RuntimeFailure(f"sandbox {sandbox_id[:12]} is not running")
        return f"/proc/{info.pid}/ns/net"

    # -- exec -----------------------------------------------------------------------------------

    async def exec_sync(self, container_id: str, cmd: list[str],
                        timeout: float) -> tuple[int, bytes]:
        """Run `cmd` in the container; (exit code, stdout+stderr). After `timeout` seconds the
        command is killed and `(EXEC_TIMEOUT_EXIT, b'command "..." timed out')` returned, so a
        hanging probe never holds up the kubelet. ContainerNotFound / RuntimeFailure if Docker
        refuses (e.g. the container is not running)."""
        fn = functools.partial(self._exec_sync, container_id, cmd, timeout)
        try:
            # The thread itself obeys the deadline; this outer bound catches a stuck Docker
            # (asyncio.timeout, not wait_for: see kubelet/prober.py).
            async with asyncio.timeout(timeout + 30):
                return await self._call(fn)
        except TimeoutError:
            return EXEC_TIMEOUT_EXIT, _timed_out(cmd)

    def _exec_sync(self, container_id: str, cmd: list[str], timeout: float,
                   client: docker.DockerClient) -> tuple[int, bytes]:
        deadline = time.monotonic() + max(timeout, 0.001)
        api = client.api
        exec_id = api.exec_create(container_id, cmd, stdout=True, stderr=True)["Id"]
        sock = api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        output = bytearray()
        timed_out = False
        try:
            timed_out = not _read_frames(raw, deadline, output)
        finally:
            with contextlib.suppress(Exception):
                sock.close()
        if timed_out:
            _kill_exec(api, exec_id)
            return EXEC_TIMEOUT_EXIT, _timed_out(cmd)
        # The stream ends a moment before Docker records the exit code.
        for _ in range(100):
            data = api.exec_inspect(exec_id)
            if not data.get("Running"):
                code = data.get("ExitCode")
                return (int(code) if code is not None else EXEC_TIMEOUT_EXIT), bytes(output)
            time.sleep(0.01)
        return EXEC_TIMEOUT_EXIT, bytes(output)

    # -- images ---------------------------------------------------------------------------------

    async def image_id(self, ref: str) -> str | None:
        """The local image's id ("sha256:...") or None if it is not present."""
        try:
            data = await self._call(lambda c: c.api.inspect_image(ref))
        except RuntimeFailure as e:
            if isinstance(e.__cause__, docker.errors.NotFound):
                return None
            raise
        return str(data["Id"])

    async def pull(self, ref: str) -> str:
        """Pull `ref` (repository[:tag|@digest]); its image id. RuntimeFailure with Docker's
        message when the pull fails (always, here: there is no registry)."""

        def pull(c: docker.DockerClient) -> str:
            # The SDK splits the tag or digest off `ref`; streaming the progress makes sure an
            # error reported mid-stream is not lost.
            for chunk in c.api.pull(ref, stream=True, decode=True):
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise RuntimeFailure(str(chunk["error"]))
            return str(c.api.inspect_image(ref)["Id"])

        return await self._call(pull)

    # -- events ---------------------------------------------------------------------------------

    async def events(self, node_name: str | None = None) -> AsyncIterator[Obj]:
        """Docker's container events (raw dicts: `Action` is start/die/oom/destroy..., `id`,
        `Actor.Attributes` with the labels and `exitCode`), for the PLEG. With `node_name`,
        only that node's containers. Ends when the runtime is closed (or the consumer stops
        iterating); raises RuntimeUnavailable if Docker drops the stream."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Obj | _StreamEnd] = asyncio.Queue()
        filters: dict[str, Any] = {"type": "container"}
        if node_name:
            filters["label"] = self._owner_filter(node_name)
        stream = await self._call(lambda c: c.api.events(decode=True, filters=filters))
        self._streams.add(stream)
        stopping = threading.Event()

        def put(item: Obj | _StreamEnd) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def pump() -> None:
            error: BaseException | None = None
            try:
                for event in stream:
                    put(event)
            except Exception as e:
                error = e
            put(_StreamEnd(None if stopping.is_set() or self._closed else error or EOFError()))

        threading.Thread(target=pump, name="docker-events", daemon=True).start()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _StreamEnd):
                    if item.error is not None:
                        raise RuntimeUnavailable(f"docker event stream ended: {item.error!r}")
                    return
                yield item
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                stream.close()
            self._streams.discard(stream)


def _timed_out(cmd: list[str]) -> bytes:
    # upstream's message (utilexec.TimeoutError from the CRI's ExecSync)
    return f'command "{" ".join(cmd)}" timed out'.encode()


def _read_frames(sock: socket.socket, deadline: float, out: bytearray) -> bool:
    """Read Docker's multiplexed exec stream (8-byte header: stream, 0, 0, 0, size) into `out`
    (stdout and stderr interleaved, capped) until EOF; False if the deadline passed first."""
    buf = bytearray()
    poller = select.poll()  # not select(): a busy kubelet may hold fds beyond FD_SETSIZE
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if not poller.poll(max(1, int(remaining * 1000))):
            return False
        try:
            chunk = sock.recv(65536)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EINTR):
                continue
            return True
        if not chunk:
            return True
        buf += chunk
        while len(buf) >= 8:
            size = struct.unpack(">I", bytes(buf[4:8]))[0]
            if len(buf) < 8 + size:
                break
            if len(out) < MAX_EXEC_OUTPUT:
                out += buf[8:8 + size][:MAX_EXEC_OUTPUT - len(out)]
            del buf[:8 + size]


def _kill_exec(api: Any, exec_id: str) -> None:
    """Kill a timed-out exec process: Docker has no API for it, but its host pid is known
    (once runc has started it: on a busy engine that can take a moment after a short timeout)."""
    with contextlib.suppress(Exception):
        for _ in range(50):
            data = api.exec_inspect(exec_id)
            pid = int(data.get("Pid") or 0)
            if pid > 0:
                if data.get("Running"):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)
