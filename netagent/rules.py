"""The agent's iptables rules: forward pod traffic, masquerade what leaves the cluster network.

flannel's rules (pkg/trafficmngr/iptables), in our own chains so that they can be rewritten
whole and removed without touching anybody else's:

- filter `FLANNEL-FWD`, jumped to from FORWARD: accept anything from or to the cluster network
  (a host whose FORWARD policy is DROP, as Docker sets it, still forwards pod traffic);
- nat `FLANNEL-POSTRTG`, jumped to from the top of POSTROUTING:
  1. RETURN what kube-proxy marked (0x4000): KUBE-POSTROUTING masquerades it already, and a
     second NAT of the same packet is what the mark avoids;
  2. RETURN pod → pod (`-s cidr -d cidr`): pods see each other's real addresses;
  3. MASQUERADE pod → anything else but multicast (`--random-fully`, as flannel where the
     kernel supports it): the outside world knows no route back to pod addresses;
  4. RETURN non-pod → this node's own podCIDR: traffic arriving for our pods keeps its source;
  5. MASQUERADE non-pod → other nodes' pods (the host itself talking to a remote pod), so that
     the reply comes back to an address the remote side can route to.

The chains are written with `iptables-restore --noflush` (a declared chain is flushed and refilled
in one transaction: applying twice leaves one copy); the jump rules are checked with `-C` and
added only when missing. Rule text is pure and unit-tested; `apply`/`cleanup` run the binaries.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess

log = logging.getLogger(__name__)

FWD_CHAIN = "FLANNEL-FWD"
MASQ_CHAIN = "FLANNEL-POSTRTG"
KUBE_PROXY_MARK = "0x4000/0x4000"
FWD_COMMENT = "flanneld forward"
MASQ_COMMENT = "flanneld masq"

# (table, parent chain, position flag, rule spec): the jumps into our chains. POSTROUTING's jump
# goes first (-I) as flannel's does, so that our RETURNs come before anyone's masquerade.
JUMPS: list[tuple[str, str, str, list[str]]] = [
    ("filter", "FORWARD", "-A", ["-m", "comment", "--comment", FWD_COMMENT, "-j", FWD_CHAIN]),
    ("nat", "POSTROUTING", "-I",
     ["-m", "comment", "--comment", MASQ_COMMENT, "-j", MASQ_CHAIN]),
]


class RulesError(Exception):
    """iptables refused something; the message has its stderr."""


def forward_rules(cluster_cidr: ipaddress.IPv4Network) -> list[str]:
    n = str(cluster_cidr)
    c = f'-m comment --comment "{FWD_COMMENT}"'
    return [f"-A {FWD_CHAIN} -s {n} {c} -j ACCEPT",
            f"-A {FWD_CHAIN} -d {n} {c} -j ACCEPT"]


def masq_rules(cluster_cidr: ipaddress.IPv4Network, pod_cidr: ipaddress.IPv4Network,
               random_fully: bool = True) -> list[str]:
    n, sn = str(cluster_cidr), str(pod_cidr)
    c = f'-m comment --comment "{MASQ_COMMENT}"'
    rf = " --random-fully" if random_fully else ""
    return [f"-A {MASQ_CHAIN} -m mark --mark {KUBE_PROXY_MARK} {c} -j RETURN",
            f"-A {MASQ_CHAIN} -s {n} -d {n} {c} -j RETURN",
            f"-A {MASQ_CHAIN} -s {n} ! -d 224.0.0.0/4 {c} -j MASQUERADE{rf}",
            f"-A {MASQ_CHAIN} ! -s {n} -d {sn} {c} -j RETURN",
            f"-A {MASQ_CHAIN} ! -s {n} -d {n} {c} -j MASQUERADE{rf}"]


def restore_input(cluster_cidr: ipaddress.IPv4Network, pod_cidr: ipaddress.IPv4Network,
                  ip_masq: bool, random_fully: bool = True) -> str:
    """The whole `iptables-restore --noflush` input: our chains, declared (hence flushed) and
    refilled. Without masquerading the nat chain is declared empty, so that turning
    --ip-masq off on a restart also takes the old masquerade rules away."""
    lines = ["*filter", f":{FWD_CHAIN} - [0:0]", *forward_rules(cluster_cidr), "COMMIT",
             "*nat", f":{MASQ_CHAIN} - [0:0]"]
    if ip_masq:
        lines += masq_rules(cluster_cidr, pod_cidr, random_fully)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def _run(args: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=input, capture_output=True, text=True, timeout=60)


def _jump_args(op: str, table: str, chain: str, spec: list[str]) -> list[str]:
    return ["iptables", "-w", "5", "-t", table, op, chain, *spec]


def apply(cluster_cidr: ipaddress.IPv4Network, pod_cidr: ipaddress.IPv4Network,
          ip_masq: bool) -> list[str]:
    """Make the kernel hold exactly our rules (blocking). Returns what it had to add, for the
    log: an empty list when everything was already in place apart from the chains' refill."""
    text = restore_input(cluster_cidr, pod_cidr, ip_masq)
    r = _run(["iptables-restore", "-w", "5", "--noflush"], text)
    if r.returncode != 0 and "random-fully" in r.stderr:
        # An iptables without --random-fully (flannel checks HasRandomFully the same way).
        text = restore_input(cluster_cidr, pod_cidr, ip_masq, random_fully=False)
        r = _run(["iptables-restore", "-w", "5", "--noflush"], text)
    if r.returncode != 0:
        raise RulesError(f"iptables-restore: {r.stderr.strip()}")
    added = []
    for table, chain, op, spec in JUMPS:
        if _run(_jump_args("-C", table, chain, spec)).returncode == 0:
            continue
        args = _jump_args(op, table, chain, spec)
        r = _run(args)
        if r.returncode != 0:
            raise RulesError(f"iptables -t {table} {op} {chain}: {r.stderr.strip()}")
        added.append(f"{table} {chain} -j {spec[-1]}")
    return added


def cleanup() -> list[str]:
    """Remove the jumps and our chains (blocking); returns what was removed."""
    removed = []
    for table, chain, _op, spec in JUMPS:
        while _run(_jump_args("-D", table, chain, spec)).returncode == 0:
            removed.append(f"jump {table} {chain} -j {spec[-1]}")
    for table, chain in (("filter", FWD_CHAIN), ("nat", MASQ_CHAIN)):
        if _run(["iptables", "-w", "5", "-t", table, "-F", chain]).returncode == 0:
            r = _run(["iptables", "-w", "5", "-t", table, "-X", chain])
            if r.returncode != 0:
                raise RulesError(f"iptables -t {table} -X {chain}: {r.stderr.strip()}")
            removed.append(f"chain {table} {chain}")
    return removed


def enable_forwarding() -> bool:
    """net.ipv4.ip_forward=1 in this network namespace; True when it was off."""
    path = "/proc/sys/net/ipv4/ip_forward"
    with open(path) as f:
        if f.read().strip() == "1":
            return False
    with open(path, "w") as f:
        f.write("1")
    return True
