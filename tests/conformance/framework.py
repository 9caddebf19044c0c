"""What the conformance tests share: the cluster as a client sees it, manifests, and polling.

The suite talks to a cluster only as a client would: through the project's async client
(`client.apiclient.ApiClient`, built from a kubeconfig) and, for logs and exec, through `tkctl`
run as a subprocess with the same kubeconfig (and `--server` when one was given); its kubectl
twin (test_kubectl.py) through the real `kubectl` binary (`Kubectl`, `find_kubectl`). Nothing
here reads etcd, Docker or a node's files: a cluster the suite did not start is tested the same
way as the session's lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from api import errors
from client.apiclient import ApiClient

ROOT = Path(__file__).resolve().parents[2]
Obj = dict[str, Any]
T = TypeVar("T")

SERVE_HOSTNAME = "tinykube/serve-hostname:1"  # HTTP (and UDP) on 9376: answers its pod name
BUSYBOX = "tinykube/busybox:1"
SERVE_PORT = 9376
# A pod starts in seconds on an idle lab, but this is a 2-core machine that may run several
# labs: generous deadlines, never asserted as durations.
POD_TIMEOUT = 120.0
API_TIMEOUT = 30.0

TIERS = ("conformance_api", "conformance_node", "conformance_network")


@dataclass
class Target:
    """The cluster under test: where it is and how `tkctl` reaches it."""

    kubeconfig: str
    server: str | None  # --server, when it overrides the kubeconfig's
    description: str  # for the report header: "lab h3 (https://127.0.0.1:49377)"

    def tkctl_args(self) -> list[str]:
        args = [sys.executable, "-m", "tkctl", "--kubeconfig", self.kubeconfig]
        if self.server:
            args += ["--server", self.server]
        return args


@dataclass
class Node:
    name: str
    internal_ip: str


class Conformance:
    """The admin client, the target, and the helpers a test needs, for one session."""

    def __init__(self, api: ApiClient, target: Target) -> None:
        self.api = api
        self.target = target

    # --- namespaces -------------------------------------------------------------------------

    async def new_namespace(self) -> str:
        name = f"conf-{uuid.uuid4().hex[:10]}"
        await self.api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": name,
                                                          "labels": {"e2e-suite": "conformance"}}})
        # The ServiceAccount admission needs the namespace's default ServiceAccount before a
        # pod can be created in it (upstream's framework waits for it in the same way).
        await until(lambda: exists(self.api, "serviceaccounts", "default", name),
                    API_TIMEOUT, what=f"ServiceAccount default in namespace {name}")
        return name

    # --- nodes ------------------------------------------------------------------------------

    async def schedulable_nodes(self) -> list[Node]:
        """Nodes that are Ready, not cordoned and without a NoSchedule/NoExecute taint."""
        out = []
        for node in (await self.api.list("nodes")).get("items") or []:
            spec, status = node.get("spec") or {}, node.get("status") or {}
            if spec.get("unschedulable"):
                continue
            if any(t.get("effect") in ("NoSchedule", "NoExecute")
                   for t in spec.get("taints") or []):
                continue
            if condition(node, "Ready").get("status") != "True":
                continue
            ips = [a["address"] for a in status.get("addresses") or []
                   if a.get("type") == "InternalIP"]
            out.append(Node(node["metadata"]["name"], ips[0] if ips else ""))
        return sorted(out, key=lambda n: n.name)

    # --- pods -------------------------------------------------------------------------------

    async def create(self, resource: str, obj: Obj, ns: str | None) -> Obj:
        return await self.api.create(resource, obj, ns)

    async def wait_pod(self, ns: str, name: str, check: Callable[[Obj], bool], what: str,
                       timeout: float = POD_TIMEOUT) -> Obj:
        async def get() -> Obj | None:
            pod = await self.api.get("pods", name, ns)
            return pod if check(pod) else None
        return await until(get, timeout, interval=0.5, what=f"pod {ns}/{name}: {what}")

    async def wait_running(self, ns: str, name: str, ready: bool = True) -> Obj:
        def ok(pod: Obj) -> bool:
            running = (pod.get("status") or {}).get("phase") == "Running"
            return running and (not ready or condition(pod, "Ready").get("status") == "True")
        return await self.wait_pod(ns, name, ok, "Running" + (" and Ready" if ready else ""))

    async def wait_phase(self, ns: str, name: str, *phases: str) -> Obj:
        return await self.wait_pod(ns, name,
                                   lambda p: (p.get("status") or {}).get("phase") in phases,
                                   f"phase {' or '.join(phases)}")

    async def pods(self, ns: str, selector: str = "") -> list[Obj]:
        items: list[Obj] = (await self.api.list("pods", ns, label_selector=selector))["items"]
        return items

    # --- tkctl ------------------------------------------------------------------------------

    async def tkctl(self, *args: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run tkctl against the target; (exit code, stdout, stderr)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TINYKUBE_SERVER": "",
               "TINYKUBE_CONFIG": ""}
        proc = await asyncio.create_subprocess_exec(
            *self.target.tkctl_args(), *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(
                f"tkctl {' '.join(args)} did not finish within {timeout}s") from None
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def exec(self, ns: str, pod: str, *command: str, container: str = "",
                   timeout: float = 60) -> tuple[int, str, str]:
        args = ["exec", "-n", ns, pod]
        if container:
            args += ["-c", container]
        return await self.tkctl(*args, "--", *command, timeout=timeout)

    async def logs(self, ns: str, pod: str, *extra: str) -> str:
        code, out, err = await self.tkctl("logs", "-n", ns, pod, *extra)
        assert code == 0, f"tkctl logs {ns}/{pod} failed ({code}): {err.strip()}"
        return out

    async def wait_logs(self, ns: str, pod: str, expect: Callable[[str], bool], what: str,
                        timeout: float = 60) -> str:
        async def check() -> str | None:
            code, out, _ = await self.tkctl("logs", "-n", ns, pod)
            return out if code == 0 and expect(out) else None
        return await until(check, timeout, interval=1.0, what=f"log of {ns}/{pod}: {what}")

    async def http_from_pod(self, ns: str, pod: str, url: str, container: str = "",
                            timeout: int = 5) -> str | None:
        """The body busybox's wget gets from `url` inside `pod`, or None if it failed."""
        code, out, _ = await self.exec(ns, pod, *wget(url, timeout), container=container,
                                       timeout=timeout + 30)
        return out if code == 0 else None


async def http_many(c: Conformance, ns: str, pod: str, url: str, count: int) -> list[str]:
    """`count` requests to `url` from `pod` in one exec (a tkctl process per request would
    cost more than the requests); the bodies that came back, failures left out."""
    script = (f"for i in $(seq {count}); do timeout 3 wget -q -O - '{url}' && echo; "
              "done; true")
    _, out, _ = await c.exec(ns, pod, "sh", "-c", script, timeout=30 + 4 * count)
    return [line for line in out.splitlines() if line]


def wget(url: str, timeout: int = 5) -> list[str]:
    """busybox's HTTP client, bounded by `timeout` (busybox-static's own `wget -T` crashes)."""
    return ["timeout", str(timeout), "wget", "-q", "-O", "-", url]


# --- kubectl ----------------------------------------------------------------------------------

KUBECTL_ENV = "TK_KUBECTL"  # which kubectl: a name on PATH or a path; "none": as if there were none
NO_KUBECTL = "no kubectl binary on this machine"


@dataclass(frozen=True)
class KubectlBinary:
    """A kubectl executable and its client version (major, minor)."""

    path: str
    version: tuple[int, int]

    def __str__(self) -> str:
        return f"kubectl {self.version[0]}.{self.version[1]} ({self.path})"


def find_kubectl() -> KubectlBinary | None:
    """$TK_KUBECTL (`none`: no kubectl), else `kubectl` on PATH; None when there is none.
    A ValueError when $TK_KUBECTL names nothing executable or the binary tells no version."""
    want = os.environ.get(KUBECTL_ENV, "").strip()
    if want == "none":
        return None
    path = shutil.which(want or "kubectl")
    if path is None:
        if want:
            raise ValueError(f"${KUBECTL_ENV}={want}: no such executable")
        return None
    proc = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True,
                          text=True, timeout=60, check=False)
    try:
        client = json.loads(proc.stdout)["clientVersion"]
        version = (int(client["major"]), int(re.sub(r"\D.*", "", client["minor"])))
    except (ValueError, KeyError) as e:
        raise ValueError(f"{path} version --client -o json: no version in {proc.stdout!r} "
                         f"{proc.stderr!r} ({e})") from None
    return KubectlBinary(os.path.realpath(path), version)


@dataclass
class Result:
    code: int
    out: str
    err: str


class Kubectl:
    """The real kubectl against the target: Kubernetes' HTTP API at the kubeconfig's `server`
    (not `--server`, which names the gRPC port)."""

    def __init__(self, binary: KubectlBinary, kubeconfig: str) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def argv(self, *args: str) -> list[str]:
        return [self.binary.path, "--kubeconfig", self.kubeconfig, *args]

    async def run(self, *args: str, input: str | None = None, timeout: float = 60) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args), env=self.env, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(input.encode() if input is not None else None), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"kubectl {' '.join(args)} did not finish within "
                                 f"{timeout:.0f}s") from None
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(errors="replace"),
                      err.decode(errors="replace"))

    async def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        """kubectl's stdout; an AssertionError with its stderr if it failed."""
        r = await self.run(*args, input=input, timeout=timeout)
        assert r.code == 0, f"kubectl {' '.join(args)} failed ({r.code}): {r.err.strip()}"
        return r.out

    async def fails(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        """kubectl's stderr, asserting that it failed (exit 1, as kubectl does on an error)."""
        r = await self.run(*args, input=input, timeout=timeout)
        assert r.code == 1, (f"kubectl {' '.join(args)}: exit {r.code}, expected 1\n"
                             f"stdout: {r.out}\nstderr: {r.err}")
        return r.err

    async def json(self, *args: str) -> Obj:
        out: Obj = json.loads(await self.ok(*args, "-o", "json"))
        return out

    async def names(self, *args: str) -> list[str]:
        """`kubectl get ARGS -o name` without the kind/ prefixes, sorted."""
        out = await self.ok("get", *args, "-o", "name")
        return sorted(line.split("/", 1)[1] for line in out.split())

    async def create(self, obj: Obj | list[Obj], ns: str | None = None) -> str:
        items = obj if isinstance(obj, list) else [obj]
        body = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return await self.ok("create", *(["-n", ns] if ns else []), "-f", "-", input=body)

    def watch(self, *args: str) -> KubectlWatch:
        """`kubectl get ARGS -w --output-watch-events -o json`, running (async with)."""
        return KubectlWatch(self, list(args))


class KubectlWatch:
    """A `kubectl get -w` in the background: its events as (type, object), in order.

    `started()` returns once kubectl's watch request is answered (its -v=6 log line with
    watch=true): kubectl watches from its list's resourceVersion, so nothing written after
    that is missed.
    """

    def __init__(self, kubectl: Kubectl, args: list[str]) -> None:
        self.kubectl = kubectl
        self.args = [*args, "-w", "--output-watch-events", "-o", "json", "-v=6"]
        self.events: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue()
        self.stderr: list[str] = []
        self._watching = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> KubectlWatch:
        self.proc = await asyncio.create_subprocess_exec(
            *self.kubectl.argv("get", *self.args), env=self.kubectl.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self._tasks = [asyncio.create_task(self._read_events()),
                       asyncio.create_task(self._read_stderr())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _read_events(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        while chunk := await self.proc.stdout.read(65536):
            buf += chunk.decode(errors="replace")
            while True:
                buf = buf.lstrip()
                try:
                    ev, end = decoder.raw_decode(buf)
                except ValueError:
                    break  # an incomplete object: more to read
                buf = buf[end:]
                self.events.put_nowait((str(ev.get("type")), ev.get("object") or {}))

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr.append(text)
            if "watch=true" in text:
                self._watching.set()

    async def started(self, timeout: float = API_TIMEOUT) -> None:
        try:
            await asyncio.wait_for(self._watching.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"kubectl get {' '.join(self.args)}: no watch within "
                                 f"{timeout:.0f}s; stderr: {self.stderr[-5:]}") from None

    async def next(self, count: int, timeout: float = API_TIMEOUT) -> list[tuple[str, Obj]]:
        """The next `count` events (bookmarks are not printed by kubectl)."""
        out: list[tuple[str, Obj]] = []
        while len(out) < count:
            try:
                out.append(await asyncio.wait_for(self.events.get(), timeout))
            except TimeoutError:
                got = [(t, o.get("metadata", {}).get("name")) for t, o in out]
                raise AssertionError(
                    f"kubectl get {' '.join(self.args)}: got {got}, still waiting for "
                    f"{count - len(out)} more after {timeout:.0f}s; "
                    f"stderr: {self.stderr[-3:]}") from None
        return out

    async def quiet(self, window: float = 2.0) -> None:
        """Assert that no event comes within `window` seconds."""
        try:
            ev = await asyncio.wait_for(self.events.get(), window)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected watch event {ev[0]} "
                             f"{ev[1].get('metadata', {}).get('name')}")


# --- manifests --------------------------------------------------------------------------------

def container(name: str, image: str, command: list[str] | None = None, **fields: Any) -> Obj:
    c: Obj = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", **fields}
    if command is not None:
        c["command"] = command
    return c


def pod(name: str, *containers: Obj, labels: Obj | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, **({"labels": labels} if labels else {})},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers),
                     **spec}}


def busybox_pod(name: str, script: str, labels: Obj | None = None, **spec: Any) -> Obj:
    return pod(name, container("c", BUSYBOX, ["sh", "-c", script]), labels=labels, **spec)


def serve_hostname_pod(name: str, labels: Obj | None = None, **spec: Any) -> Obj:
    return pod(name, container("c", SERVE_HOSTNAME,
                               ports=[{"containerPort": SERVE_PORT, "protocol": "TCP"}]),
               labels=labels, **spec)


def client_pod(name: str, **spec: Any) -> Obj:
    """A busybox pod that sleeps: the place to exec HTTP clients from (upstream's execPod)."""
    return busybox_pod(name, "sleep 3600", **spec)


def pod_template(labels: Obj, *containers: Obj) -> Obj:
    return {"metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers)}}


def replicaset(name: str, replicas: int, template: Obj, kind: str = "ReplicaSet") -> Obj:
    labels = template["metadata"]["labels"]
    if kind == "ReplicationController":
        return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name},
                "spec": {"replicas": replicas, "selector": dict(labels), "template": template}}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": template}}


def service(name: str, selector: Obj | None, port: int = 80, target_port: int = SERVE_PORT,
            type_: str = "ClusterIP", **spec: Any) -> Obj:
    body: Obj = {"type": type_, "ports": [{"name": "http", "port": port,
                                           "targetPort": target_port, "protocol": "TCP"}],
                 **spec}
    if selector is not None:
        body["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": body}


def configmap(name: str, data: Obj, labels: Obj | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **({"labels": labels} if labels else {})}, "data": data}


# --- reading objects --------------------------------------------------------------------------

def condition(obj: Obj, type_: str) -> Obj:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def rv(obj: Obj) -> str:
    return str(obj["metadata"]["resourceVersion"])


def owner_uids(obj: Obj) -> list[str]:
    return [str(r.get("uid")) for r in obj["metadata"].get("ownerReferences") or []]


def controller_of(obj: Obj) -> str | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return str(r.get("uid"))
    return None


def container_status(pod: Obj, name: str = "c") -> Obj:
    for s in (pod.get("status") or {}).get("containerStatuses") or []:
        if s.get("name") == name:
            return dict(s)
    return {}


def endpoint_ips(ep: Obj, field: str = "addresses") -> set[str]:
    return {a["ip"] for s in ep.get("subsets") or [] for a in s.get(field) or []}


# --- polling ----------------------------------------------------------------------------------

async def until(check: Callable[[], Any], timeout: float = API_TIMEOUT,
                interval: float = 0.3, what: str = "condition") -> Any:
    """Call `check` (plain or async) until it returns something truthy and return that; after
    `timeout` seconds an AssertionError saying what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            last = result
            if result:
                return result
        except (AssertionError, errors.NotFound) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s (last seen: {last!r})")
        await asyncio.sleep(interval)


async def exists(api: ApiClient, resource: str, name: str, ns: str | None = None) -> bool:
    try:
        await api.get(resource, name, ns)
    except errors.NotFound:
        return False
    return True


async def gone(api: ApiClient, resource: str, name: str, ns: str | None = None) -> bool:
    return not await exists(api, resource, name, ns)


async def close(stream: Any) -> None:
    """End a watch (ApiClient.watch is typed as an AsyncIterator; it is an async generator)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def delete_quietly(api: ApiClient, resource: str, name: str, ns: str | None = None) -> None:
    with contextlib.suppress(errors.ApiError):
        await api.delete(resource, name, ns)
