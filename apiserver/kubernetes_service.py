"""The `kubernetes` Service and its Endpoints in `default`: how a pod finds the apiserver.

Every Kubernetes cluster has them (upstream: pkg/controlplane/controller/kubernetesservice and
the endpoint reconcilers of pkg/controlplane/reconcilers). The apiserver writes them itself,
through its own registry (so they are validated, admitted and allocated like any write, and the
ClusterIP is claimed in the allocator in the Service's own transaction):

- Service default/kubernetes: ClusterIP = the first address of --service-cluster-ip-range
  (10.96.0.1 by default; the allocator never hands that address out dynamically), two ports:
  `https` 443/TCP → the apiserver's --secure-port (Kubernetes' HTTP API, which takes
  ServiceAccount tokens: the official clients' in-cluster configuration goes there, as
  upstream), and `grpc` 6444/TCP → its --token-port (--grpc-port when there is none, i.e.
  --insecure), the gRPC port that takes ServiceAccount tokens, for tinykube's own client in a
  pod, which finds it through `KUBERNETES_SERVICE_PORT_GRPC` (a deviation: upstream's has one
  port, docs/deviations.md). `https` comes first, so `KUBERNETES_SERVICE_PORT` stays 443.
  Labels component=apiserver, provider=kubernetes, no selector, so the endpoints controller
  leaves its Endpoints alone.
- Endpoints default/kubernetes: one subset, the --advertise-address with the ports `https` and
  `grpc` = those ports, as upstream's master-count reconciler writes it for one apiserver.
  Labelled `endpointslice.kubernetes.io/skip-mirror` like upstream's; never left with the
  endpoints controller's trigger-time annotation (`repaired_endpoints` says why).

Both are created at start when missing and reconciled every interval (upstream: 10s): a deleted
one comes back, ports, type or selector someone changed are put back, and a Service that lost its
ClusterIP to another (only possible by deleting and re-creating it, since the field is
immutable) is re-created with the right one. On a clean shutdown the apiserver takes its address
out of the Endpoints again, as upstream's Stop does, so that nobody is sent to an apiserver that
is gone.

Deviation (docs/deviations.md): one apiserver's address (the master-count reconciler with a
count of 1); no lease reconciler for several apiservers, and no EndpointSlice (tinykube has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import socket
import struct
from typing import Any

from api import errors
from api.proto import tinykube_pb2 as pb
from api.resources import RESOURCES
from apiserver.registry import Registry

log = logging.getLogger(__name__)

NAME = "kubernetes"
NAMESPACE = "default"
PORT_NAME = "https"
SERVICE_PORT = 443
GRPC_PORT_NAME = "grpc"
GRPC_SERVICE_PORT = 6444
LABELS = {"component": "apiserver", "provider": "kubernetes"}
# Upstream labels the Endpoints so that the EndpointSlice mirroring controller skips them (the
# reconciler writes the EndpointSlice itself).
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
# What the endpoints controller notes on the Endpoints it writes (controllers/endpoints.py).
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
INTERVAL = 10.0  # upstream's DefaultEndpointReconcilerInterval

Obj = dict[str, Any]


def service_ip(cidr: str) -> str:
    """The first address of the service range: the `kubernetes` Service's ClusterIP
    (upstream's ServiceIPRange → GetIndexedIP(range, 1))."""
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


# --- advertise address -------------------------------------------------------------------------

SIOCGIFADDR = 0x8915


def _interface_ipv4(name: str) -> str | None:
    """The (primary) IPv4 address of an interface, or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            ifreq = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                                struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(ifreq[20:24])


def _default_route_interface(route_file: str = "/proc/net/route") -> str | None:
    """The interface of the IPv4 default route (the lowest metric), from /proc/net/route."""
    best: tuple[int, str] | None = None
    try:
        with open(route_file) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...; RTF_UP = 0x1.
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        if not int(fields[3], 16) & 0x1:
            continue
        metric = int(fields[6])
        if best is None or metric < best[0]:
            best = (metric, fields[0])
    return best[1] if best else None


def choose_advertise_address(bind_address: str) -> str:
    """kube-apiserver's default for --advertise-address: the bind address when it is a specific
    non-loopback IPv4 address, else the IPv4 address of the interface holding the default
    route (upstream's ChooseHostInterface), else the first non-loopback IPv4 address of any
    interface, else 127.0.0.1 (a machine with no network at all)."""
    with contextlib.suppress(ValueError):
        bind = ipaddress.ip_address(bind_address)
        if isinstance(bind, ipaddress.IPv4Address) and not (
                bind.is_unspecified or bind.is_loopback):
            return str(bind)
    iface = _default_route_interface()
    if iface is not None:
        ip = _interface_ipv4(iface)
        if ip is not None:
            return ip
    for _, name in socket.if_nameindex():
        ip = _interface_ipv4(name)
        if ip is not None and not ipaddress.IPv4Address(ip).is_loopback:
            return ip
    return "127.0.0.1"


# --- the objects ------------------------------------------------------------------------------

def expected_ports(https_port: int, grpc_port: int) -> list[Obj]:
    return [{"name": PORT_NAME, "port": SERVICE_PORT, "protocol": "TCP", "targetPort": https_port},
            {"name": GRPC_PORT_NAME, "port": GRPC_SERVICE_PORT, "protocol": "TCP",
             "targetPort": grpc_port}]


def expected_service(cluster_ip: str, https_port: int, grpc_port: int) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": expected_ports(https_port, grpc_port), "sessionAffinity": "None"},
    }


def expected_subsets(advertise: str, https_port: int, grpc_port: int) -> list[Obj]:
    return [{"addresses": [{"ip": advertise}],
             "ports": [{"name": PORT_NAME, "port": https_port, "protocol": "TCP"},
                       {"name": GRPC_PORT_NAME, "port": grpc_port, "protocol": "TCP"}]}]


def expected_endpoints(advertise: str, https_port: int, grpc_port: int) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": NAMESPACE,
                     "labels": {SKIP_MIRROR: "true"}},
        "subsets": expected_subsets(advertise, https_port, grpc_port),
    }


def _port_shape(p: Obj) -> tuple[Any, ...]:
    return (p.get("name") or "", p.get("port"), p.get("protocol") or "TCP",
            p.get("targetPort"), p.get("nodePort"))


def service_needs_update(svc: Obj, https_port: int, grpc_port: int) -> bool:
    """Upstream's checkServiceFormat (ports and type), plus the selector: one added by someone
    would hand the Endpoints to the endpoints controller."""
    spec = svc.get("spec") or {}
    have = [_port_shape(p) for p in spec.get("ports") or []]
    want = [_port_shape(p) for p in expected_ports(https_port, grpc_port)]
    return have != want or spec.get("type") != "ClusterIP" or bool(spec.get("selector"))


def _subset_shape(ss: Obj) -> tuple[Any, ...]:
    return (sorted(a.get("ip") for a in ss.get("addresses") or []),
            sorted(a.get("ip") for a in ss.get("notReadyAddresses") or []),
            sorted(_port_shape(p)[:3] for p in ss.get("ports") or []))


def endpoints_need_update(ep: Obj, advertise: str, https_port: int, grpc_port: int) -> bool:
    have = [_subset_shape(s) for s in ep.get("subsets") or []]
    want = [_subset_shape(s) for s in expected_subsets(advertise, https_port, grpc_port)]
    md = ep.get("metadata") or {}
    labels = md.get("labels") or {}
    return (have != want or labels.get(SKIP_MIRROR) != "true"
            or TRIGGER_TIME in (md.get("annotations") or {}))


def repaired_endpoints(ep: Obj, advertise: str, https_port: int, grpc_port: int) -> Obj:
    """`ep` in the apiserver's shape: its subsets, the skip-mirror label, and without the
    endpoints controller's trigger-time annotation.

    The annotation can only be there because the Service had a selector for a moment (someone
    patched one in; the repair takes it off): the endpoints controller then wrote these
    Endpoints, as upstream's does. It says when the change behind *that* content happened;
    once the subsets are the apiserver's again it lies, as the endpoints controller itself
    reasons when it drops a stale one. Upstream's reconciler keeps it, and a leftover of it was
    what made test_endpoints_controller_leaves_it_alone fail in some test orders (issue 20).
    Other annotations and labels are left as they are."""
    md = dict(ep.get("metadata") or {})
    md["labels"] = {**(md.get("labels") or {}), SKIP_MIRROR: "true"}
    annotations = {k: v for k, v in (md.get("annotations") or {}).items() if k != TRIGGER_TIME}
    if annotations:
        md["annotations"] = annotations
    else:
        md.pop("annotations", None)
    return {**ep, "metadata": md,
            "subsets": expected_subsets(advertise, https_port, grpc_port)}


# --- the reconciler ---------------------------------------------------------------------------

class KubernetesService:
    """Creates and repairs default/kubernetes (Service + Endpoints); see the module docstring."""

    def __init__(self, registry: Registry, cluster_ip: str, advertise: str, https_port: int,
                 grpc_port: int, interval: float = INTERVAL) -> None:
        """`https_port`: the apiserver's --secure-port; `grpc_port`: its gRPC port for
        ServiceAccount tokens (--token-port, or --grpc-port when there is none)."""
        self.registry = registry
        self.cluster_ip = cluster_ip
        self.advertise = advertise
        self.https_port = https_port
        self.grpc_port = grpc_port
        self.interval = interval
        self.services = RESOURCES["services"]
        self.endpoints = RESOURCES["endpoints"]

    async def reconcile(self) -> None:
        """One pass over both objects (idempotent). Errors are the caller's to log."""
        await self.reconcile_service()
        await self.reconcile_endpoints()

    async def reconcile_service(self) -> None:
        info = self.services
        for _ in range(8):
            try:
                svc = await self.registry.get(info, NAMESPACE, NAME)
            except errors.NotFound:
                body = expected_service(self.cluster_ip, self.https_port, self.grpc_port)
                try:
                    await self.registry.create(info, NAMESPACE, json.dumps(body).encode())
                except errors.AlreadyExists:
                    continue
                log.info("created service %s/%s (%s:%d)", NAMESPACE, NAME, self.cluster_ip,
                         SERVICE_PORT)
                return
            md, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            if md.get("deletionTimestamp"):
                return  # going away (finalizers); re-created once it is gone
            if spec.get("clusterIP") != self.cluster_ip:
                # clusterIP is immutable: only a delete and a create give it back.
                log.warning("service %s/%s has clusterIP %s, not %s: re-creating it", NAMESPACE,
                            NAME, spec.get("clusterIP"), self.cluster_ip)
                opts = pb.DeleteOptions(precondition_uid=md.get("uid") or "")
                with contextlib.suppress(errors.NotFound, errors.Conflict):
                    await self.registry.delete(info, NAMESPACE, NAME, opts)
                continue
            if not service_needs_update(svc, self.https_port, self.grpc_port):
                return
            spec = {k: v for k, v in spec.items() if k != "selector"}
            spec.update(type="ClusterIP", ports=expected_ports(self.https_port, self.grpc_port))
            try:
                await self.registry.update(info, NAMESPACE, NAME, "",
                                           json.dumps({**svc, "spec": spec}).encode())
            except (errors.Conflict, errors.NotFound):
                continue
            log.info("repaired the ports and type of service %s/%s", NAMESPACE, NAME)
            return
        log.warning("could not reconcile service %s/%s: too many concurrent writers", NAMESPACE,
                    NAME)

    async def reconcile_endpoints(self) -> None:
        info = self.endpoints
        for _ in range(8):
            try:
                ep = await self.registry.get(info, NAMESPACE, NAME)
            except errors.NotFound:
                body = expected_endpoints(self.advertise, self.https_port, self.grpc_port)
                try:
                    await self.registry.create(info, NAMESPACE, json.dumps(body).encode())
                except errors.AlreadyExists:
                    continue
                log.info("created endpoints %s/%s (%s, ports %d and %d)", NAMESPACE, NAME,
                         self.advertise, self.https_port, self.grpc_port)
                return
            if not endpoints_need_update(ep, self.advertise, self.https_port,
                                         self.grpc_port):
                return
            new = repaired_endpoints(ep, self.advertise, self.https_port, self.grpc_port)
            try:
                await self.registry.update(info, NAMESPACE, NAME, "", json.dumps(new).encode())
            except (errors.Conflict, errors.NotFound):
                continue
            log.info("reconciled endpoints %s/%s to %s, ports %d and %d", NAMESPACE, NAME,
                     self.advertise, self.https_port, self.grpc_port)
            return
        log.warning("could not reconcile endpoints %s/%s: too many concurrent writers",
                    NAMESPACE, NAME)

    async def remove_endpoints(self) -> None:
        """Take this apiserver's address out of the Endpoints (upstream's RemoveEndpoints on
        shutdown): one apiserver, so the subsets become empty."""
        info = self.endpoints
        for _ in range(4):
            try:
                ep = await self.registry.get(info, NAMESPACE, NAME)
            except errors.NotFound:
                return
            subsets = []
            for ss in ep.get("subsets") or []:
                addresses = [a for a in ss.get("addresses") or [] if a.get("ip") != self.advertise]
                if addresses or ss.get("notReadyAddresses"):
                    subsets.append({**ss, "addresses": addresses})
            if subsets == (ep.get("subsets") or []):
                return
            try:
                await self.registry.update(info, NAMESPACE, NAME, "",
                                           json.dumps({**ep, "subsets": subsets}).encode())
                log.info("removed %s from endpoints %s/%s", self.advertise, NAMESPACE, NAME)
                return
            except errors.Conflict:
                continue
            except errors.NotFound:
                return

    async def reconcile_logged(self) -> None:
        try:
            await self.reconcile()
        except errors.ApiError as e:
            log.warning("unable to sync the kubernetes service: %s", e)

    async def run(self) -> None:
        """Reconcile every interval, until cancelled (upstream's wait.NonSlidingUntil on
        UpdateKubernetesService); the apiserver does the first pass before it serves."""
        while True:
            await asyncio.sleep(self.interval)
            await self.reconcile_logged()

