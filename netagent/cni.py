"""tk-cni: the CNI plugin (bridge + host-local IPAM) the kubelet execs for every pod sandbox.

The kubelet does not set up pod networking itself: as upstream, it execs a plugin per the CNI
spec (1.0.0; 0.3.x and 0.4.0 results too) with the network config as JSON on stdin and the
`CNI_*` environment, and reads a result (or an error) as JSON on stdout. This is that plugin,
installed into the CNI bin dir as `tinykube` by `tk-cni install`:

- ADD: an address from host-local IPAM (netagent/ipam.py) out of the node's pod subnet
  (subnet.env of the network agent, else the `ipRanges` capability the kubelet fills from the
  Node's podCIDR, else `ipam.subnet`); the bridge (`cni0`) with the gateway address, up; a veth
  pair whose host end is a bridge port (hairpin on, so a pod reaches itself through a Service)
  and whose other end is created directly inside the container's netns as CNI_IFNAME, with the
  address and a default route via the gateway; IPv4 forwarding on, and FORWARD ACCEPT rules
  for the bridge (Docker sets the FORWARD policy to DROP).
- DEL: releases the address and deletes the veth; idempotent, and it needs neither the netns
  nor the subnet any more (the container may be long gone).
- CHECK: the address is still reserved, the interface in the netns still has it, the host end
  is still on the bridge.
- VERSION.

Speed matters: the plugin runs on every pod start. It is a short process, so the import cost
counts as much as the work; pyroute2 alone costs ~180 ms to import here, more than everything
else together. The netlink work is instead two `ip -batch` runs (one on the host, one inside the
netns through `nsenter`), ~2 ms each; the container end of the veth is created in its netns
directly, so no rename step is needed; the MAC is derived from the address (0a:58:<ip>, as
kubenet and the old bridge plugin did), so a reused address keeps its MAC and the result needs
no read-back. Measured on an idle 2-core machine, a whole ADD takes ~55 ms: ~35 ms starting
the interpreter (site and the editable install's finder), ~13 ms importing this module, ~8 ms
of work. The first ADD on a bridge adds the FORWARD rules (~15 ms of iptables), later ones
only check a marker.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import zlib

from netagent import ipam

# Every import is paid on every pod start: typing, subprocess and hashlib (~15 ms together)
# are kept out of the run-time path; mypy still reads the annotations.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
DEFAULT_BRIDGE = "cni0"
DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_NETWORK = "tinykube"
DEFAULT_MTU = 1500
PLUGIN_TYPE = "tinykube"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
LEAK_GRACE = 120.0  # seconds: a reservation without its veth younger than this may be an ADD
CONFLIST_NAME = "10-tinykube.conflist"
_SEARCH_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin")

# Error codes of the CNI spec; 100+ are this plugin's own.
ERR_VERSION = 1
ERR_ENV = 4
ERR_IO = 5
ERR_DECODE = 6
ERR_CONFIG = 7
ERR_NO_CONTAINER = 3
ERR_TRY_LATER = 11
ERR_SETUP = 100


class PluginError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


# --- configuration ----------------------------------------------------------------------------

def _valid_ifname(name: Any) -> bool:
    return (isinstance(name, str) and 0 < len(name) <= 15 and name not in (".", "..")
            and not any(c in name for c in "/: \t\n"))


class NetConf:
    """The validated network configuration of one call."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        version = raw.get("cniVersion")
        if not isinstance(version, str) or not version:
            raise PluginError(ERR_VERSION, "cniVersion: missing from the network config")
        if version not in SUPPORTED_VERSIONS:
            raise PluginError(ERR_VERSION, f"cniVersion: {version} is not supported "
                              f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
        self.version: str = version
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise PluginError(ERR_CONFIG, "name: missing network name")
        self.name: str = name
        self.bridge = raw.get("bridge", DEFAULT_BRIDGE)
        if not _valid_ifname(self.bridge):
            raise PluginError(ERR_CONFIG, f"bridge: {self.bridge!r} is not a valid interface "
                              "name (1-15 characters, no '/', ':' or spaces)")
        mtu = raw.get("mtu")
        if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int)
                                or not 68 <= mtu <= 65535):
            raise PluginError(ERR_CONFIG, f"mtu: {mtu!r} is not an MTU (68-65535)")
        self.mtu: int | None = mtu
        self.subnet_file = raw.get("subnetFile", DEFAULT_SUBNET_FILE)
        if not isinstance(self.subnet_file, str):
            raise PluginError(ERR_CONFIG, f"subnetFile: {self.subnet_file!r} is not a path")
        ipam_conf = raw.get("ipam", {})
        if ipam_conf is None:
            ipam_conf = {}
        if not isinstance(ipam_conf, dict):
            raise PluginError(ERR_CONFIG, "ipam: want an object")
        self.data_dir = ipam_conf.get("dataDir", DEFAULT_DATA_DIR)
        if not isinstance(self.data_dir, str) or not self.data_dir:
            raise PluginError(ERR_CONFIG, f"ipam.dataDir: {self.data_dir!r} is not a path")
        self.hairpin = raw.get("hairpinMode", True) is not False
        dns = raw.get("dns") or {}
        self.dns: dict[str, Any] = dns if isinstance(dns, dict) else {}

    def store(self) -> ipam.Store:
        try:
            return ipam.Store(self.data_dir, self.name)
        except ipam.ConfigError as e:
            raise PluginError(ERR_CONFIG, str(e)) from None


def parse_conf(data: bytes) -> NetConf:
    try:
        raw = json.loads(data or b"{}")
    except ValueError as e:
        raise PluginError(ERR_DECODE, f"decoding the network config from stdin: {e}") from None
    if not isinstance(raw, dict):
        raise PluginError(ERR_DECODE, "the network config on stdin is not a JSON object")
    return NetConf(raw)


def _env(name: str, *, required: bool = True) -> str:
    value = os.environ.get(name, "")
    if required and not value:
        raise PluginError(ERR_ENV, f"{name}: required environment variable is not set")
    return value


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


# --- the links ------------------------------------------------------------------------------

def host_veth_name(container_id: str, ifname: str) -> str:
    """Deterministic, so that DEL finds it without the netns and a repeated ADD replaces it."""
    return f"veth{zlib.crc32(f'{container_id}/{ifname}'.encode()):08x}"


def container_mac(ip: ipam.IPv4) -> str:
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


def _which(prog: str) -> str:
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), *_SEARCH_PATH]
    for d in dirs:
        path = os.path.join(d, prog)
        if d and os.access(path, os.X_OK):
            return path
    raise PluginError(ERR_SETUP, f"{prog}: not found in PATH or {', '.join(_SEARCH_PATH)} "
                      "(install iproute2 / util-linux)")


def _run(argv: list[str], stdin: str = "") -> tuple[int, str]:
    """Run `argv` with `stdin`; (exit status, stdout and stderr together). posix_spawn and two
    pipes instead of the subprocess module, whose import alone costs more than the run. The
    input is a few hundred bytes (less than a pipe buffer), so writing it all before reading
    cannot deadlock."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, out_w, 2)])
    finally:
        os.close(in_r)
        os.close(out_w)
    try:
        if stdin:
            os.write(in_w, stdin.encode())
    except BrokenPipeError:
        pass
    finally:
        os.close(in_w)
    chunks = []
    try:
        while chunk := os.read(out_r, 65536):
            chunks.append(chunk)
    finally:
        os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def ip_batch(steps: list[tuple[str, str]], netns: str | None = None) -> None:
    """Run `ip` commands in one process (inside `netns` if given); a failure names its step."""
    argv = [_which("ip"), "-batch", "-"]
    if netns is not None:
        argv = [_which("nsenter"), f"--net={netns}", *argv]
    rc, out = _run(argv, "".join(cmd + "\n" for _, cmd in steps))
    if rc == 0:
        return
    err = out.strip()
    what = "running ip"
    for line in err.splitlines():
        if line.startswith("Command failed -:"):
            try:
                what = steps[int(line.rsplit(":", 1)[1]) - 1][0]
            except (ValueError, IndexError):
                pass
    detail = " ".join(ln for ln in err.splitlines() if not ln.startswith("Command failed"))
    raise PluginError(ERR_SETUP, f"{what}: {detail or 'ip exited ' + str(rc)}",
                      err)


def _sys_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def delete_link(ifname: str) -> None:
    """Delete a host interface (a veth: its peer goes with it); gone already is fine."""
    if not _sys_exists(ifname):
        return
    rc, out = _run([_which("ip"), "link", "del", ifname])
    if rc != 0 and _sys_exists(ifname):
        raise PluginError(ERR_SETUP, f"deleting {ifname}: {out.strip()}")


NET_ADDR_SET = "3"  # /sys/class/net/*/addr_assign_type of an address set explicitly


def ensure_bridge(name: str) -> None:
    """The bridge exists and its MAC is its own. A Linux bridge whose address was never set
    takes the lowest MAC of its ports and changes it as ports come and go (00:00:00:00:00:00
    without any): every pod's ARP entry for the gateway would then point at a MAC the bridge
    no longer answers to, and pod egress stalls until the entry goes stale (~30s) after every
    pod deletion on the node. As upstream's bridge plugin does, the address is set to itself
    once, which pins it."""
    if not _sys_exists(name):
        rc, out = _run([_which("ip"), "link", "add", "name", name, "type", "bridge"])
        if rc != 0 and not _sys_exists(name):  # another ADD may have just made it
            raise PluginError(ERR_SETUP, f"creating bridge {name}: {out.strip()}")
    if _read(f"/sys/class/net/{name}/addr_assign_type") == NET_ADDR_SET:
        return
    mac = _read(f"/sys/class/net/{name}/address")
    if not mac or mac == "00:00:00:00:00:00":
        # A bridge left without ports by an older plugin: a random locally administered
        # unicast address (not 0a:58:, the prefix of the pods' own MACs).
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
    rc, out = _run([_which("ip"), "link", "set", "dev", name, "address", mac])
    if rc != 0:
        raise PluginError(ERR_SETUP, f"setting the address of bridge {name}: {out.strip()}")


def forward_rules(bridge: str) -> list[list[str]]:
    """The FORWARD rules that let pods on `bridge` talk to each other and to the world: Docker
    sets the FORWARD policy to DROP, and with br_netfilter (which kube-proxy needs) even
    traffic between two ports of one bridge passes that chain (flannel adds the same ACCEPTs
    for the cluster network)."""
    comment = ["-m", "comment", "--comment", f"tinykube: pods on {bridge}"]
    return [["FORWARD", "-i", bridge, *comment, "-j", "ACCEPT"],
            ["FORWARD", "-o", bridge, *comment, "-j", "ACCEPT"]]


def ensure_forward_rules(bridge: str, state_dir: str) -> None:
    """Add `forward_rules` once per bridge: an iptables run costs ~7 ms, too much for every
    ADD, so a marker (the boot id and the bridge's ifindex) says they were added for this very
    bridge; a recreated bridge (a test) gets them checked again, and so does the first ADD
    after a reboot, which empties the chains (the marker lives in the persistent data dir and
    a bridge made at the same point of the boot gets the same ifindex again). Call under the
    IPAM lock, so two first ADDs do not both append."""
    ifindex = _read(f"/sys/class/net/{bridge}/ifindex")
    marker = os.path.join(state_dir, f".forward-{bridge}")
    stamp = f"{_read(BOOT_ID)} {ifindex}"
    if ifindex and _read(marker) == stamp:
        return
    iptables = _which("iptables")
    for rule in forward_rules(bridge):
        if _run([iptables, "-w", "-C", *rule])[0] == 0:
            continue
        rc, out = _run([iptables, "-w", "-A", *rule])
        if rc != 0:
            raise PluginError(ERR_SETUP, f"allowing forwarding on {bridge}: {out.strip()}")
    with open(marker, "w") as f:
        f.write(stamp)


def enable_forwarding() -> None:
    path = "/proc/sys/net/ipv4/ip_forward"
    if _read(path) != "1":
        try:
            with open(path, "w") as f:
                f.write("1")
        except OSError as e:
            raise PluginError(ERR_IO, f"enabling net.ipv4.ip_forward: {e.strerror}") from None


# --- commands -------------------------------------------------------------------------------

def _leaked(container_id: str, ifname: str, age: float) -> bool:
    """A reservation nobody will release: its host veth is gone (deleted, or destroyed with
    the container's netns) although the reservation is older than any ADD still in flight
    (an ADD creates the veth milliseconds after reserving; the kubelet kills a plugin after
    60s and then DELs). A DEL that comes later finds the address under another container id
    and leaves it alone."""
    return (bool(container_id) and bool(ifname) and age > LEAK_GRACE
            and not _sys_exists(host_veth_name(container_id, ifname)))


def cmd_add(conf: NetConf) -> dict[str, Any]:
    cid, netns, ifname = _env("CNI_CONTAINERID"), _env("CNI_NETNS"), _env("CNI_IFNAME")
    if not _valid_ifname(ifname):
        raise PluginError(ERR_ENV, f"CNI_IFNAME: {ifname!r} is not a valid interface name")
    if not os.path.exists(netns):
        raise PluginError(ERR_NO_CONTAINER, f"CNI_NETNS: network namespace {netns} does "
                          "not exist")
    try:
        subnet = ipam.choose_subnet(conf.raw, conf.subnet_file)
    except ipam.ConfigError as e:
        raise PluginError(ERR_CONFIG, str(e)) from None
    mtu = subnet.mtu or conf.mtu or DEFAULT_MTU
    rng = subnet.range
    store = conf.store()
    try:
        with store.locked():
            try:
                ip = store.allocate(cid, ifname, rng)
            except ipam.Exhausted:
                # Only when the range is full (the scan costs a stat per address): addresses
                # whose owner is surely gone go back to the pool, then one more try.
                if not store.reclaim(_leaked):
                    raise
                ip = store.allocate(cid, ifname, rng)
    except ipam.Exhausted as e:
        raise PluginError(ERR_TRY_LATER, str(e)) from None
    except OSError as e:
        raise PluginError(ERR_IO, f"ipam.dataDir: {store.dir}: {e.strerror}") from None
    veth = host_veth_name(cid, ifname)
    try:
        setup(conf, rng, ip, mtu, veth, netns, ifname)
        with store.locked():
            ensure_forward_rules(conf.bridge, store.dir)
    except BaseException:
        with store.locked():
            store.release(cid, ifname)
        try:
            delete_link(veth)
        except PluginError:
            pass
        raise
    prefix = rng.subnet.prefixlen
    ip_entry: dict[str, Any] = {"address": f"{ip}/{prefix}", "gateway": str(rng.gateway),
                                "interface": 2}
    if version_tuple(conf.version) < (1, 0, 0):
        ip_entry["version"] = "4"
    return {
        "cniVersion": conf.version,
        "interfaces": [
            {"name": conf.bridge, "mac": _read(f"/sys/class/net/{conf.bridge}/address")},
            {"name": veth, "mac": _read(f"/sys/class/net/{veth}/address")},
            {"name": ifname, "mac": container_mac(ip), "sandbox": netns},
        ],
        "ips": [ip_entry],
        "routes": [{"dst": "0.0.0.0/0", "gw": str(rng.gateway)}],
        "dns": conf.dns,
    }


def setup(conf: NetConf, rng: ipam.Range, ip: ipam.IPv4, mtu: int, veth: str, netns: str,
          ifname: str) -> None:
    enable_forwarding()
    delete_link(veth)  # left over from an ADD of this container that failed half-way
    ensure_bridge(conf.bridge)
    br, prefix = conf.bridge, rng.subnet.prefixlen
    ip_batch([
        (f"adding gateway {rng.gateway}/{prefix} to bridge {br}",
         f"addr replace {rng.gateway}/{prefix} brd + dev {br}"),
        (f"setting bridge {br} up", f"link set {br} up"),
        (f"creating veth pair {veth}/{ifname} into {netns}",
         f"link add {veth} mtu {mtu} type veth peer name {ifname} mtu {mtu} "
         f"address {container_mac(ip)} netns {netns}"),
        (f"attaching {veth} to bridge {br}", f"link set {veth} master {br} up"),
    ])
    if conf.hairpin:
        try:
            with open(f"/sys/class/net/{veth}/brport/hairpin_mode", "w") as f:
                f.write("1")
        except OSError as e:
            raise PluginError(ERR_IO, f"setting hairpin mode on {veth}: {e.strerror}") from None
    ip_batch([
        ("setting lo up in the container", "link set lo up"),
        (f"adding {ip}/{prefix} to {ifname} in the container",
         f"addr add {ip}/{prefix} brd + dev {ifname}"),
        (f"setting {ifname} up in the container", f"link set {ifname} up"),
        (f"adding the default route via {rng.gateway} in the container",
         f"route add default via {rng.gateway} dev {ifname}"),
    ], netns=netns)


def cmd_del(conf: NetConf) -> None:
    cid, ifname = _env("CNI_CONTAINERID"), _env("CNI_IFNAME")
    store = conf.store()
    if os.path.isdir(store.dir):
        try:
            with store.locked():
                store.release(cid, ifname)
        except OSError as e:
            raise PluginError(ERR_IO, f"ipam.dataDir: {store.dir}: {e.strerror}") from None
    delete_link(host_veth_name(cid, ifname))


def cmd_check(conf: NetConf) -> None:
    if version_tuple(conf.version) < (0, 4, 0):
        raise PluginError(ERR_VERSION, f"cniVersion: CHECK needs 0.4.0 or later, "
                          f"not {conf.version}")
    cid, netns, ifname = _env("CNI_CONTAINERID"), _env("CNI_NETNS"), _env("CNI_IFNAME")
    prev = conf.raw.get("prevResult")
    if not isinstance(prev, dict) or not prev.get("ips"):
        raise PluginError(ERR_CONFIG, "prevResult: missing (CHECK needs the ADD result)")
    want = {str(e.get("address", "")).split("/")[0] for e in prev["ips"]}
    store = conf.store()
    with store.locked():
        held = {str(a) for a in store.find(cid, ifname)}
    if not want <= held:
        raise PluginError(ERR_SETUP, f"ipam: {', '.join(sorted(want - held))} not reserved "
                          f"for container {cid} in {store.dir}")
    veth = host_veth_name(cid, ifname)
    if not _sys_exists(veth):
        raise PluginError(ERR_SETUP, f"host interface {veth} does not exist")
    master = os.path.basename(os.path.realpath(f"/sys/class/net/{veth}/master"))
    if master != conf.bridge:
        raise PluginError(ERR_SETUP, f"host interface {veth} is not attached to bridge "
                          f"{conf.bridge}")
    if not os.path.exists(netns):
        raise PluginError(ERR_NO_CONTAINER, f"CNI_NETNS: network namespace {netns} does "
                          "not exist")
    rc, out = _run([_which("nsenter"), f"--net={netns}", _which("ip"), "-j", "addr", "show",
                    "dev", ifname])
    if rc != 0:
        raise PluginError(ERR_SETUP, f"interface {ifname} in {netns}: {out.strip()}")
    try:
        have = {a.get("local") for link in json.loads(out or "[]")
                for a in link.get("addr_info", [])}
    except ValueError:
        have = set()
    if not want <= have:
        raise PluginError(ERR_SETUP, f"interface {ifname} in {netns} lacks "
                          f"{', '.join(sorted(want - have))}")


# --- entry points ---------------------------------------------------------------------------

def _fail(err: PluginError, version: str) -> NoReturn:
    out: dict[str, Any] = {"cniVersion": version, "code": err.code, "msg": err.msg}
    if err.details:
        out["details"] = err.details
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    sys.exit(1)


def run_plugin(stdin: bytes) -> dict[str, Any] | None:
    """One CNI call: the result to print (None for a command that prints nothing)."""
    command = _env("CNI_COMMAND")
    if command == "VERSION":
        return {"cniVersion": "1.0.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    if command not in ("ADD", "DEL", "CHECK"):
        raise PluginError(ERR_ENV, f"CNI_COMMAND: unknown command {command!r} "
                          "(want ADD, DEL, CHECK or VERSION)")
    conf = parse_conf(stdin)
    if command == "ADD":
        return cmd_add(conf)
    if command == "DEL":
        cmd_del(conf)
    else:
        cmd_check(conf)
    return None


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "install":
        sys.exit(install(sys.argv[2:]))
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    version = "1.0.0"
    try:
        try:
            raw = json.loads(stdin) if stdin.strip() else {}
            if isinstance(raw, dict) and isinstance(raw.get("cniVersion"), str):
                version = raw["cniVersion"]
        except ValueError:
            pass  # parse_conf reports it
        result = run_plugin(stdin)
    except PluginError as e:
        _fail(e, version)
    except OSError as e:
        _fail(PluginError(ERR_IO, f"{e.filename or 'I/O'}: {e.strerror or e}",
                          errno.errorcode.get(e.errno or 0, "")), version)
    if result is not None:
        sys.stdout.write(json.dumps(result) + "\n")


# --- tk-cni install -------------------------------------------------------------------------

def conflist(name: str, bridge: str, subnet_file: str, data_dir: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{
            "type": PLUGIN_TYPE,
            "bridge": bridge,
            "subnetFile": subnet_file,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": data_dir},
            "capabilities": {"ipRanges": True},
        }],
    }


def _self_path() -> str:
    """The tk-cni executable to link to: the script run now, else the venv's console script."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.basename(argv0) != "cni.py" and os.access(argv0, os.X_OK):
        return os.path.abspath(argv0)
    candidate = os.path.join(os.path.dirname(sys.executable), "tk-cni")
    if os.access(candidate, os.X_OK):
        return candidate
    raise SystemExit("tk-cni install: cannot find the tk-cni executable to link to")


def install(argv: list[str]) -> int:
    """`tk-cni install`: link the plugin into the bin dir as `tinykube` and write the conflist
    (both replaced atomically: a kubelet may be reading the conf dir at this moment)."""
    import argparse

    p = argparse.ArgumentParser(prog="tk-cni install",
                                description="Install the tinykube CNI plugin and its config.")
    p.add_argument("--bin-dir", default="/opt/cni/bin")
    p.add_argument("--conf-dir", default="/etc/cni/net.d")
    p.add_argument("--bridge", default=DEFAULT_BRIDGE)
    p.add_argument("--subnet-file", default=DEFAULT_SUBNET_FILE)
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--name", default=DEFAULT_NETWORK)
    a = p.parse_args(argv)
    if not _valid_ifname(a.bridge):
        p.error(f"--bridge: {a.bridge!r} is not a valid interface name (at most 15 characters)")
    os.makedirs(a.bin_dir, exist_ok=True)
    os.makedirs(a.conf_dir, exist_ok=True)
    target, link = _self_path(), os.path.join(a.bin_dir, PLUGIN_TYPE)
    tmp = f"{link}.tmp{os.getpid()}"
    os.symlink(target, tmp)
    os.replace(tmp, link)
    path = os.path.join(a.conf_dir, CONFLIST_NAME)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(conflist(a.name, a.bridge, a.subnet_file, a.data_dir), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    print(f"installed {link} -> {target} and {path}")
    return 0


if __name__ == "__main__":
    main()
