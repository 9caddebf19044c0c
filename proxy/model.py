"""What a proxy backend programs: Services and Endpoints reduced to service ports and endpoints.

Both backends (iptables, IPVS) are pure functions of one `ServiceMap`: for each service port
(upstream's ServicePortName, `namespace/name:port`), its virtual addresses (ClusterIP, NodePort,
externalIPs), its session affinity, and the endpoints that may receive traffic. Building it is
kept apart from both backends so they agree on every rule of selection: only ready addresses
are used (upstream's proxier ignores notReadyAddresses unless a Service publishes them, and the
endpoints controller then lists them as ready already); a port of a Service matches the
Endpoints port of the same name; ExternalName Services and headless ones (`clusterIP: None`)
have nothing to program.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]

# Upstream's default ClientIP affinity timeout (3 hours).
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True, order=True)
class ServicePortName:
    """namespace/name:port — upstream's key for one port of a Service."""

    namespace: str
    name: str
    port: str = ""  # the ServicePort's name ("" for an unnamed single port)
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@dataclass(frozen=True, order=True)
class Endpoint:
    """One address that may serve a service port."""

    ip: str
    port: int
    node_name: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    """One port of a Service and the endpoints behind it (ready ones only, sorted)."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    # ClientIP affinity timeout in seconds; None: no session affinity.
    affinity_timeout: int | None = None
    # externalTrafficPolicy: Local (NodePort traffic only to this node's endpoints).
    external_local: bool = False
    endpoints: tuple[Endpoint, ...] = field(default=())

    @property
    def protocol(self) -> str:
        return self.name.protocol


ServiceMap = dict[ServicePortName, ServicePort]


def _affinity(spec: Obj) -> int | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    return int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)


def _endpoints_by_port(endpoints: Obj | None) -> dict[tuple[str, str], list[Endpoint]]:
    """(port name, protocol) → ready endpoints, from an Endpoints object's subsets."""
    out: dict[tuple[str, str], list[Endpoint]] = {}
    for subset in (endpoints or {}).get("subsets") or []:
        for p in subset.get("ports") or []:
            key = (p.get("name") or "", p.get("protocol") or "TCP")
            for a in subset.get("addresses") or []:
                out.setdefault(key, []).append(
                    Endpoint(ip=a["ip"], port=int(p["port"]), node_name=a.get("nodeName") or ""))
    return out


def service_ports(service: Obj, endpoints: Obj | None) -> list[ServicePort]:
    """The service ports of one Service (a dict as the API returns it) with its Endpoints."""
    spec = service.get("spec") or {}
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or not cluster_ip or cluster_ip == "None":
        return []
    md = service["metadata"]
    by_port = _endpoints_by_port(endpoints)
    out = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        name = ServicePortName(md["namespace"], md["name"], p.get("name") or "", protocol)
        eps = sorted(set(by_port.get((name.port, protocol), [])))
        out.append(ServicePort(
            name=name, cluster_ip=cluster_ip, port=int(p["port"]),
            node_port=int(p.get("nodePort") or 0)
            if spec.get("type") in ("NodePort", "LoadBalancer") else 0,
            external_ips=tuple(spec.get("externalIPs") or ()),
            affinity_timeout=_affinity(spec),
            external_local=spec.get("externalTrafficPolicy") == "Local",
            endpoints=tuple(eps)))
    return out


def build_service_map(services: Iterable[Obj], endpoints: Iterable[Obj]) -> ServiceMap:
    """Every service port of `services`, with the ready endpoints of the same-named Endpoints."""
    eps = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    out: ServiceMap = {}
    for svc in services:
        md = svc["metadata"]
        for sp in service_ports(svc, eps.get((md["namespace"], md["name"]))):
            out[sp.name] = sp
    return out
