"""ClusterIP and NodePort allocation, persisted in etcd and race-free.

Each allocated value is a key (`/registry/ranges/serviceips/10.96.0.10`,
`/registry/ranges/servicenodeports/30080`) claimed in the *same* etcd transaction that writes the
Service, guarded by "this key does not exist yet". Two apiserver requests racing for one value
cannot both win, and since the claim and the Service commit or fail together, a crash can
neither leak an allocation nor hand one out twice. Releasing is the reverse: the claim keys are
deleted in the transaction that deletes (or changes) the Service.
"""

from __future__ import annotations

import ipaddress
import random

from api import errors
from apiserver.storage import Storage

IP_PREFIX = "/registry/ranges/serviceips/"
PORT_PREFIX = "/registry/ranges/servicenodeports/"


def parse_port_range(value: str) -> tuple[int, int]:
    try:
        lo_s, hi_s = value.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise ValueError(
            f"--service-node-port-range: {value!r} is not a range like 30000-32767") from None
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"--service-node-port-range: {value!r} must lie within 1-65535")
    return lo, hi


def parse_ip_range(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"--service-cluster-ip-range: {value!r} is not a CIDR like 10.96.0.0/16") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.num_addresses < 8:
        raise ValueError(f"--service-cluster-ip-range: {value!r} must be an IPv4 CIDR of /29 "
                         "or larger")
    return net


class Allocator:
    """Picks free ClusterIPs and NodePorts; the claim itself happens in the Service's txn."""

    def __init__(self, storage: Storage, ip_range: str, port_range: str) -> None:
        self.storage = storage
        self.net = parse_ip_range(ip_range)
        self.ports = parse_port_range(port_range)

    def ip_key(self, ip: str) -> str:
        return IP_PREFIX + ip

    def port_key(self, port: int) -> str:
        return PORT_PREFIX + str(port)

    async def _taken(self, prefix: str) -> set[str]:
        start = prefix.encode()
        kvs, _, _, _ = await self.storage.range(start, start[:-1] + b"0", keys_only=True)
        return {kv.key.decode()[len(prefix):] for kv in kvs}

    async def ensure_free(self, key: str, field: str, value: object) -> None:
        """A value the user asked for must be free (the txn still guards the race)."""
        start = key.encode()
        kvs, _, _, _ = await self.storage.range(start, start + b"\0", keys_only=True)
        if kvs:
            what = "IP" if key.startswith(IP_PREFIX) else "port"
            raise errors.invalid("Service", "", [errors.Cause(
                field, f"Invalid value: {value}: provided {what} is already allocated")])

    def check_ip(self, ip: str, field: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise errors.invalid("Service", "", [errors.Cause(
                field, f'Invalid value: "{ip}": must be a valid IP address')]) from None
        if addr not in self.net or addr in (self.net.network_address, self.net.broadcast_address):
            raise errors.invalid("Service", "", [errors.Cause(
                field, f'Invalid value: "{ip}": provided IP is not in the valid range. '
                f"The range of valid IPs is {self.net}")])

    def check_port(self, port: int, field: str) -> None:
        lo, hi = self.ports
        if not lo <= port <= hi:
            raise errors.invalid("Service", "", [errors.Cause(
                field, f"Invalid value: {port}: provided port is not in the valid range. "
                f"The range of valid ports is {lo}-{hi}")])

    async def pick_ip(self, exclude: set[str]) -> str:
        # Skip the network address and .1, the `kubernetes` Service's (kubernetes_service.py).
        first, last = int(self.net.network_address) + 2, int(self.net.broadcast_address) - 1
        size = last - first + 1
        taken = {ip for ip in await self._taken(IP_PREFIX) | exclude
                 if first <= int(ipaddress.IPv4Address(ip)) <= last}
        if len(taken) >= size:
            raise errors.InternalError(message=f"failed to allocate a serviceIP: range {self.net} "
                                       "is full")
        # Random probing spreads concurrent allocators apart; fall back to a scan when dense.
        for _ in range(64):
            ip = str(ipaddress.IPv4Address(first + random.randrange(size)))
            if ip not in taken:
                return ip
        for n in range(first, last + 1):
            ip = str(ipaddress.IPv4Address(n))
            if ip not in taken:
                return ip
        raise errors.InternalError(message=f"range {self.net} is full")  # pragma: no cover

    async def pick_port(self, exclude: set[int]) -> int:
        taken = {int(p) for p in await self._taken(PORT_PREFIX)} | exclude
        lo, hi = self.ports
        free = [p for p in range(lo, hi + 1) if p not in taken]
        if not free:
            raise errors.InternalError(
                message=f"failed to allocate a nodePort: range {lo}-{hi} is full")
        return random.choice(free)
