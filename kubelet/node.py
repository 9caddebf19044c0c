"""The kubelet's Node: registration, status (capacity, addresses, nodeInfo, conditions) and the
heartbeat Lease.

The control plane knows a node only through these objects: the scheduler reads allocatable and
the Ready condition, the node lifecycle controller reads the Lease in `kube-node-lease` (and
marks the node Unknown when it goes stale), the apiserver dials the kubelet at the InternalIP
and `daemonEndpoints.kubeletEndpoint.Port` for logs and exec. So, as upstream's kubelet:
- `register()` creates the Node (or adopts the existing one after a restart, patching labels)
  and posts a full status;
- the status is posted every `status_interval`, and at once when Ready flips: Ready is False
  ("KubeletNotReady") while the runtime is judged unhealthy (kubelet/health.py: Docker has not
  answered a check for 30 s, or the PLEG has not relisted for 3 minutes, as upstream; never on
  one slow ping) or while there is no CNI config, with upstream's messages, so `tkctl describe
  node` reads like Kubernetes; transition times are kept while a condition does not change;
- the Lease (owned by the Node, so the garbage collector removes it with the Node) is renewed
  every `lease_interval` with leaseDurationSeconds 40;
- the Node is watched (by name) to keep `pod_cidr` fresh: the node IPAM controller assigns it
  after registration, and the CNI plugin needs it until the network agent writes subnet.env.

The kubelet runs with a node's credentials (system:node:NAME), so everything here passes the
Node authorizer and NodeRestriction: only its own Node, Node status and Lease are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
from typing import Any

from api import errors
from api.core import Node
from api.meta import now_rfc3339
from client.apiclient import ApiClient
from client.informer import SharedInformer
from client.leaderelection import now_micro
from kubelet.cni import CNI
from kubelet.health import RuntimeHealth, go_duration
from kubelet.runtime import DockerRuntime

log = logging.getLogger("kubelet.node")

Obj = dict[str, Any]
KUBELET_VERSION = "v1.0.0-tinykube"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40  # seconds: upstream's nodeLeaseDurationSeconds
DEFAULT_ROOT_DIR = "/var/lib/tinykube/kubelet"
VERSION_TIMEOUT = 5.0  # the runtime's version is a nicety: never wait long for it
CHECK_INTERVAL = 1.0  # how often readiness is re-evaluated (a flip is posted at once)
NETWORK_NOT_READY = ("container runtime network not ready: NetworkReady=false "
                     "reason:NetworkPluginNotReady message:docker: {reason}")
_PRESSURE_CONDITIONS = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x"}


# --- facts about this machine ---------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def memory_capacity() -> str:
    """MemTotal of /proc/meminfo as a quantity in Ki, as cadvisor reports it."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1])}Ki"
    return "0"


def storage_capacity(root_dir: str) -> str:
    """Size of the file system holding the kubelet's root dir (the nearest existing parent)."""
    path = root_dir
    while not os.path.exists(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    st = os.statvfs(path or "/")
    return f"{st.f_blocks * st.f_frsize // 1024}Ki"


def os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def default_source_ip() -> str:
    """The source address of the default route: what the kernel picks to reach the outside
    (a UDP connect sends nothing). Loopback when there is no default route."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere specific
        return str(s.getsockname()[0])
    return "127.0.0.1"


def aggregate(messages: list[str]) -> str:
    """Several reasons as upstream's utilerrors.NewAggregate prints them."""
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


class NodeManager:
    """Registers this kubelet's Node and keeps its status and Lease fresh (`run()`)."""

    def __init__(self, client: ApiClient, node_name: str, runtime: DockerRuntime, cni: CNI, *,
                 node_ip: str | None, kubelet_port: int, lease_interval: float,
                 status_interval: float, labels: dict[str, str], max_pods: int = 110,
                 root_dir: str = DEFAULT_ROOT_DIR, health: RuntimeHealth | None = None) -> None:
        self.client = client
        self.name = node_name
        self.runtime = runtime
        self.cni = cni
        self._node_ip = node_ip or default_source_ip()
        self.kubelet_port = kubelet_port
        self.lease_interval = lease_interval
        self.status_interval = status_interval
        self.labels = labels
        self.max_pods = max_pods
        self.root_dir = root_dir
        # The runtime's health over time (upstream's runtimeState); the Kubelet's PLEG reports
        # its relists here too.
        self.health = health if health is not None else RuntimeHealth()
        self._pod_cidr: str | None = None
        self._node: Obj | None = None  # the Node as last read or written
        self._lease: Obj | None = None
        self._runtime_version = ""
        self._ready: tuple[str, str] | None = None  # (status, message) last posted
        self._stale = False  # someone else (node lifecycle) changed our Ready: post again
        self._informer: SharedInformer[Node] | None = None
        self._registered = asyncio.Event()

    @property
    def pod_cidr(self) -> str | None:
        return self._pod_cidr

    @property
    def node_ip(self) -> str:
        return self._node_ip

    # --- registration ---------------------------------------------------------------------

    def node_labels(self) -> dict[str, str]:
        return {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
                **self.labels}

    async def register(self) -> Obj:
        """Create the Node or adopt the existing one; post its status; create the Lease."""
        if not self.health.checked:
            await self.check_runtime()  # the first status then says whether Docker answers
        delay = 0.1
        while True:
            try:
                node = await self._register_once()
                break
            except (errors.Conflict, errors.ServiceUnavailable, errors.Timeout,
                    errors.InternalError) as e:
                log.info("registering node %s: %s; retrying", self.name, e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._registered.set()
        with contextlib.suppress(errors.ApiError):
            await self.renew_lease()
        return node

    async def _register_once(self) -> Obj:
        labels = self.node_labels()
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": labels}, "spec": {}}
        try:
            node = await self.client.create("nodes", body)
            log.info("registered node %s", self.name)
        except errors.AlreadyExists:
            node = await self.client.get("nodes", self.name)
            have = (node.get("metadata") or {}).get("labels") or {}
            missing = {k: v for k, v in labels.items() if have.get(k) != v}
            if missing:
                node = await self.client.patch("nodes", self.name,
                                               {"metadata": {"labels": missing}})
            log.info("node %s already registered: adopted", self.name)
        self._observe(node)
        await self.refresh_runtime_version()
        return await self.post_status(force=True) or node

    def _observe(self, node: Obj) -> None:
        self._node = node
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and cidr != self._pod_cidr:
            log.info("node %s: podCIDR %s", self.name, cidr)
            self._pod_cidr = cidr

    # --- status ---------------------------------------------------------------------------

    async def refresh_runtime_version(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(VERSION_TIMEOUT):  # not wait_for: see kubelet/prober.py
                self._runtime_version = await self.runtime.version()

    async def check_runtime(self) -> bool:
        """One runtime check (upstream's updateRuntimeUp): a ping bounded by the runtime
        request timeout, its outcome reported to `health`. Never decides Ready by itself."""
        timeout = self.health.thresholds.runtime_request_timeout
        try:
            # The ping's own timeout ends the pool thread; this guards the await too.
            async with asyncio.timeout(timeout + 1.0):
                await self.runtime.ping(timeout=timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self.health.runtime_failed(f"no answer within {go_duration(timeout)}")
            return False
        except Exception as e:  # any failure to answer counts as a failed check, as upstream
            self.health.runtime_failed(str(e) or type(e).__name__)
            return False
        self.health.runtime_ok()
        return True

    async def _runtime_loop(self) -> None:
        period = self.health.thresholds.runtime_check_period
        while True:
            await asyncio.sleep(period)
            try:
                await self.check_runtime()
            except Exception:
                log.exception("checking the container runtime")

    def readiness(self) -> tuple[str, str, str]:
        """(status, reason, message) of the Ready condition now: what the runtime's health
        says over time (no I/O here, so a slow runtime never delays the status), and the CNI
        config."""
        problems = self.health.runtime_errors()
        reason = self.cni.not_ready_reason()
        if reason is not None:
            problems.append(NETWORK_NOT_READY.format(reason=reason))
        if problems:
            return "False", "KubeletNotReady", aggregate(problems)
        return "True", "KubeletReady", "kubelet is posting ready status"

    def node_status(self, current: Obj, ready: tuple[str, str, str], now: str) -> Obj:
        old = {c.get("type"): c for c in current.get("conditions") or []}
        conditions = []
        for type_, status, reason, message in (
                *((t, "False", r, m) for t, r, m in _PRESSURE_CONDITIONS), ("Ready", *ready)):
            prev = old.get(type_) or {}
            since = prev.get("lastTransitionTime") if prev.get("status") == status else None
            conditions.append({"type": type_, "status": status, "reason": reason,
                               "message": message, "lastHeartbeatTime": now,
                               "lastTransitionTime": since or now})
        resources = {"cpu": str(os.cpu_count() or 1), "memory": memory_capacity(),
                     "pods": str(self.max_pods),
                     "ephemeral-storage": storage_capacity(self.root_dir)}
        machine_id = _read("/etc/machine-id")
        uname = os.uname()
        return {
            "capacity": resources, "allocatable": dict(resources),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self._node_ip},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": machine_id,
                "systemUUID": _read("/sys/class/dmi/id/product_uuid") or machine_id,
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release, "osImage": os_image(),
                "containerRuntimeVersion": self._runtime_version,
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": _ARCH.get(uname.machine, uname.machine),
            },
        }

    async def post_status(self, *, force: bool = False,
                          ready: tuple[str, str, str] | None = None) -> Obj | None:
        """Post the status (merge patch of nodes/status: no resourceVersion conflicts with the
        node lifecycle controller). Unless `force`, only when Ready changed."""
        if ready is None:
            ready = self.readiness()
        if not force and not self._stale and self._ready == (ready[0], ready[2]):
            return None
        self._stale = False
        if not self._runtime_version and ready[0] == "True":
            await self.refresh_runtime_version()
        current = (self._node or {}).get("status") or {}
        status = self.node_status(current, ready, now_rfc3339())
        try:
            node = await self.client.patch("nodes", self.name, {"status": status},
                                           subresource="status")
        except errors.NotFound:
            # Deleted under us (tkctl delete node): register again, as upstream's kubelet
            # does when it restarts; the Lease goes with the Node.
            log.warning("node %s was deleted; registering again", self.name)
            self._lease = None
            self._node = None
            return await self._register_once()
        if self._ready != (ready[0], ready[2]):
            log.info("node %s: Ready=%s %s", self.name, ready[0], ready[2])
        self._ready = (ready[0], ready[2])
        self._observe(node)
        return node

    async def _status_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_post = loop.time()
        check = min(CHECK_INTERVAL, self.status_interval)
        while True:
            await asyncio.sleep(check)
            due = loop.time() - last_post >= self.status_interval
            try:
                ready = self.readiness()
                if await self.post_status(force=due, ready=ready) is not None:
                    last_post = loop.time()
            except errors.ApiError as e:
                log.warning("posting node status: %s", e)
            except Exception:
                log.exception("posting node status")

    # --- lease ----------------------------------------------------------------------------

    async def renew_lease(self) -> Obj:
        """Renew the Lease (an update of the cached one, re-read after a conflict)."""
        if self._lease is None:
            self._lease = await self._get_or_create_lease()
        lease = self._lease
        lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": self.name,
                         "leaseDurationSeconds": LEASE_DURATION, "renewTime": now_micro()}
        try:
            self._lease = await self.client.update("leases", lease, LEASE_NAMESPACE)
        except (errors.Conflict, errors.NotFound):
            self._lease = None
            raise
        return self._lease

    async def _get_or_create_lease(self) -> Obj:
        try:
            return await self.client.get("leases", self.name, LEASE_NAMESPACE)
        except errors.NotFound:
            pass
        uid = ((self._node or {}).get("metadata") or {}).get("uid")
        if not uid:
            node = await self.client.get("nodes", self.name)
            self._observe(node)
            uid = node["metadata"]["uid"]
        owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": uid}]
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": owner},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION,
                         "renewTime": now_micro()}}
        try:
            return await self.client.create("leases", body, LEASE_NAMESPACE)
        except errors.AlreadyExists:
            return await self.client.get("leases", self.name, LEASE_NAMESPACE)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_interval)
            try:
                await self.renew_lease()
            except (errors.Conflict, errors.NotFound) as e:
                log.info("renewing lease: %s; retrying from a fresh read", e)
                with contextlib.suppress(errors.ApiError):
                    await self.renew_lease()
            except errors.ApiError as e:
                log.warning("renewing lease: %s", e)
            except Exception:
                log.exception("renewing lease")

    # --- run ------------------------------------------------------------------------------

    def _node_event(self, obj: Node) -> None:
        cidr = obj.spec.pod_cidr if obj.spec else None
        if cidr and cidr != self._pod_cidr:
            log.info("node %s: podCIDR %s", self.name, cidr)
            self._pod_cidr = cidr
        ready = next((c for c in (obj.status.conditions or []) if c.type == "Ready"), None) \
            if obj.status else None
        if ready is not None and self._ready is not None and ready.status != self._ready[0]:
            self._stale = True  # e.g. marked Unknown after a pause: correct it at once

    async def run(self) -> None:
        """Lease, status and runtime-check loops plus the watch of the Node, until
        cancelled."""
        if not self._registered.is_set():
            await self.register()
        self._informer = SharedInformer(self.client, Node, resource="nodes",
                                        field_selector=f"metadata.name={self.name}")
        self._informer.add_event_handler(on_add=self._node_event,
                                         on_update=lambda _old, new: self._node_event(new))
        self._informer.start()
        try:
            await asyncio.gather(self._lease_loop(), self._status_loop(), self._runtime_loop())
        finally:
            await self._informer.stop()
