"""host-local IPAM for the CNI plugin: which pod address is free, on disk, safe under concurrency.

The kubelet starts pods in parallel, so several plugin processes run ADD at the same moment;
they share nothing but the file system. As upstream's host-local plugin does, every allocated
address is a file named after the address under `<dataDir>/<network>/`, holding the container
id and interface name, created with O_EXCL under an flock on `<dataDir>/<network>/lock`: two
ADDs can never hand out the same address, and a crashed plugin leaves nothing half-held. The
last address handed out is remembered (`last_reserved_ip.0`) so addresses are reused as late as
possible (round-robin), which keeps a just-deleted pod's address from being handed to a new pod
while stale ARP or conntrack entries still point at it.

Also here: choosing the pod subnet (subnet.env of the network agent, else the ranges the kubelet
passes as the `ipRanges` capability, else `ipam.subnet`), because it is pure logic worth testing
on its own. Errors are `ConfigError`s naming the field that is wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import time

# The plugin runs once per pod start: typing and dataclasses would add ~15 ms of imports to
# every run, so neither is imported at run time (mypy still reads the annotations).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

IPv4 = ipaddress.IPv4Address
LAST_RESERVED = "last_reserved_ip.0"
LOCK = "lock"
LINE_BREAK = "\r\n"  # what upstream host-local writes between container id and ifname


class ConfigError(ValueError):
    """The network configuration (or subnet file) is invalid; the message names the field."""


class Exhausted(RuntimeError):
    """Every address of the range is taken."""


class Range:
    """One IPv4 range: addresses `start`..`end` of `subnet`, `gateway` excluded."""

    def __init__(self, subnet: ipaddress.IPv4Network, start: IPv4, end: IPv4,
                 gateway: IPv4) -> None:
        self.subnet, self.start, self.end, self.gateway = subnet, start, end, gateway

    def __repr__(self) -> str:
        return f"Range({self.subnet}, {self.start}-{self.end}, gateway {self.gateway})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Range) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def contains(self, ip: IPv4) -> bool:
        return self.start <= ip <= self.end and ip != self.gateway


def _address(value: Any, field: str) -> IPv4:
    try:
        return ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{field}: {value!r} is not an IPv4 address") from None


def make_range(subnet: Any, *, field: str, gateway: Any = None, start: Any = None,
               end: Any = None) -> Range:
    """A Range from a CIDR (host bits allowed: "10.244.1.1/24" is the subnet 10.244.1.0/24
    whose gateway is 10.244.1.1, the form flannel writes), with host-local's defaults: the
    gateway is the first address, the range the rest minus the broadcast address."""
    if not isinstance(subnet, str):
        raise ConfigError(f"{field}: {subnet!r} is not a CIDR")
    try:
        iface = ipaddress.IPv4Interface(subnet)
    except ValueError:
        raise ConfigError(f"{field}: {subnet!r} is not an IPv4 CIDR") from None
    net = iface.network
    if net.prefixlen > 30:
        raise ConfigError(f"{field}: {subnet!r} is too small for pods (at most /30)")
    # Sibling fields are named like the subnet field: "ipam.subnet" → "ipam.gateway".
    prefix = field[: -len("subnet")] if field.endswith("subnet") else ""
    first, last = net.network_address + 1, net.broadcast_address - 1
    gw = iface.ip if iface.ip != net.network_address else first
    if gateway is not None:
        gw = _address(gateway, prefix + "gateway")
    lo = _address(start, prefix + "rangeStart") if start is not None else first
    hi = _address(end, prefix + "rangeEnd") if end is not None else last
    for name, ip in (("gateway", gw), ("rangeStart", lo), ("rangeEnd", hi)):
        if ip not in net:
            raise ConfigError(f"{prefix}{name}: {ip} is not in {field} {net}")
    if lo > hi:
        raise ConfigError(f"{prefix}rangeStart: {lo} is after rangeEnd {hi}")
    return Range(net, lo, hi, gw)


def parse_subnet_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines as flannel writes /run/flannel/subnet.env (comments and blanks skipped)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


class Subnet:
    """The chosen pod range, where it came from, and the MTU the subnet file asks for."""

    def __init__(self, range_: Range, source: str, mtu: int | None = None) -> None:
        self.range, self.source, self.mtu = range_, source, mtu


def choose_subnet(conf: dict[str, Any], subnet_file: str) -> Subnet:
    """subnet.env (the network agent's, authoritative once it exists), else the kubelet's
    `runtimeConfig.ipRanges` (the Node's podCIDR), else `ipam.subnet`."""
    text: str | None
    try:
        with open(subnet_file) as f:
            text = f.read()
    except FileNotFoundError:
        text = None
    except OSError as e:
        raise ConfigError(f"subnetFile: cannot read {subnet_file}: {e.strerror}") from None
    if text is not None:
        env = parse_subnet_env(text)
        if "FLANNEL_SUBNET" not in env:
            raise ConfigError(f"subnetFile: {subnet_file} has no FLANNEL_SUBNET")
        mtu = None
        if "FLANNEL_MTU" in env:
            try:
                mtu = int(env["FLANNEL_MTU"])
            except ValueError:
                raise ConfigError(f"subnetFile: FLANNEL_MTU in {subnet_file} is not a number: "
                                  f"{env['FLANNEL_MTU']!r}") from None
        rng = make_range(env["FLANNEL_SUBNET"], field=f"FLANNEL_SUBNET in {subnet_file}")
        return Subnet(rng, subnet_file, mtu)
    ranges = (conf.get("runtimeConfig") or {}).get("ipRanges")
    if ranges:
        if not isinstance(ranges, list) or not all(isinstance(s, list) for s in ranges):
            raise ConfigError("runtimeConfig.ipRanges: want a list of range sets (lists)")
        for i, rangeset in enumerate(ranges):
            for j, r in enumerate(rangeset):
                field = f"runtimeConfig.ipRanges[{i}][{j}].subnet"
                if not isinstance(r, dict) or "subnet" not in r:
                    raise ConfigError(f"{field}: missing")
                if ":" in str(r["subnet"]):
                    continue  # IPv6: not supported, an IPv4 range may follow
                rng = make_range(r["subnet"], field=field, gateway=r.get("gateway"),
                                 start=r.get("rangeStart"), end=r.get("rangeEnd"))
                return Subnet(rng, "runtimeConfig.ipRanges")
    ipam = conf.get("ipam") or {}
    if not isinstance(ipam, dict):
        raise ConfigError("ipam: want an object")
    if ipam.get("subnet") is not None:
        rng = make_range(ipam["subnet"], field="ipam.subnet", gateway=ipam.get("gateway"),
                         start=ipam.get("rangeStart"), end=ipam.get("rangeEnd"))
        return Subnet(rng, "ipam.subnet")
    raise ConfigError(f"no pod subnet: {subnet_file} does not exist, runtimeConfig.ipRanges "
                      "is empty (the Node has no spec.podCIDR yet?) and ipam.subnet is not set")


class Store:
    """The allocations of one network in `<data_dir>/<network>/`."""

    def __init__(self, data_dir: str, network: str) -> None:
        if not network or "/" in network or network in (".", ".."):
            raise ConfigError(f"name: {network!r} is not a usable network name")
        self.dir = os.path.join(data_dir, network)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _entries(self) -> Iterator[tuple[str, str, str]]:
        """(address, container id, ifname) of every reservation."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name in (LOCK, LAST_RESERVED) or name.startswith("."):
                continue
            try:
                with open(os.path.join(self.dir, name), newline="") as f:
                    text = f.read()
            except (FileNotFoundError, IsADirectoryError):
                continue
            cid, _, ifname = text.partition(LINE_BREAK)
            if not _:  # an older host-local wrote "id\n" or only the id
                cid, _, ifname = text.partition("\n")
            yield name, cid.strip(), ifname.strip()

    def find(self, container_id: str, ifname: str) -> list[IPv4]:
        """The addresses held by this container's interface (call under `locked`)."""
        out = []
        for name, cid, ifn in self._entries():
            if cid == container_id and (ifn == ifname or not ifn):
                with contextlib.suppress(ValueError):
                    out.append(ipaddress.IPv4Address(name))
        return out

    def allocate(self, container_id: str, ifname: str, rng: Range) -> IPv4:
        """A free address of `rng` reserved for the container (the one it already holds in
        `rng`, on a repeated ADD). Call under `locked`."""
        held = self.find(container_id, ifname)
        for ip in held:
            if rng.contains(ip):
                return ip
        for ip in held:  # the subnet changed since: let the old one go
            self._remove(str(ip))
        last = self._last_reserved()
        size = int(rng.end) - int(rng.start) + 1
        if last is not None and rng.start <= last <= rng.end:
            offset = int(last) - int(rng.start) + 1
        else:
            offset = 0
        record = f"{container_id}{LINE_BREAK}{ifname}"
        for i in range(size):
            ip = ipaddress.IPv4Address(int(rng.start) + (offset + i) % size)
            if ip == rng.gateway:
                continue
            path = os.path.join(self.dir, str(ip))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            self._write_last(ip)
            return ip
        raise Exhausted(f"no IP addresses available in range set: {rng}")

    def release(self, container_id: str, ifname: str) -> list[IPv4]:
        """Free what the container's interface holds; nothing held is fine (DEL is idempotent).
        Call under `locked`."""
        gone = self.find(container_id, ifname)
        for ip in gone:
            self._remove(str(ip))
        return gone

    def reclaim(self, leaked: Callable[[str, str, float], bool]) -> list[IPv4]:
        """Free the reservations `leaked(container id, ifname, age in seconds)` says nobody
        will ever release: a DEL that never came (the runtime lost the container) or an ADD
        killed between reserving and its rollback. Call under `locked`."""
        now = time.time()
        freed = []
        for name, cid, ifname in self._entries():
            try:
                age = now - os.stat(os.path.join(self.dir, name)).st_mtime
                ip = ipaddress.IPv4Address(name)
            except (FileNotFoundError, ValueError):
                continue
            if leaked(cid, ifname, age):
                self._remove(name)
                freed.append(ip)
        return freed

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, name))

    def _last_reserved(self) -> IPv4 | None:
        try:
            with open(os.path.join(self.dir, LAST_RESERVED)) as f:
                return ipaddress.IPv4Address(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _write_last(self, ip: IPv4) -> None:
        tmp = os.path.join(self.dir, f".{LAST_RESERVED}.tmp")
        with open(tmp, "w") as f:
            f.write(str(ip))
        os.replace(tmp, os.path.join(self.dir, LAST_RESERVED))
