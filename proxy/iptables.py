"""kube-proxy's iptables mode: a ServiceMap rendered as iptables-restore text, and applied.

Rendering is a pure function (`render`) so that the exact rules can be unit-tested against
upstream's shapes (pkg/proxy/iptables/proxier.go): per service port a `KUBE-SVC-<hash>` chain
picking one `KUBE-SEP-<hash>` (one per endpoint: hairpin masquerade + DNAT) with the
`statistic` module, `KUBE-EXT-<hash>` for traffic arriving at a NodePort or an external IP,
and the fixed chains (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-MARK-MASQ, KUBE-POSTROUTING,
KUBE-FORWARD, KUBE-EXTERNAL-SERVICES). Chain names hash the service port name, protocol and
endpoint exactly as upstream does, so they are stable across restarts and across nodes.

`IptablesBackend` applies the text with one `iptables-restore --noflush` per sync: every chain
we (re)write is declared with `:CHAIN - [0:0]`, which flushes it, and stale service chains are
declared and deleted (`-X`) in the same transaction: the kernel only ever sees the old rule set
or the new one. Like upstream it syncs partially when it can (only the chains of service ports
that changed, plus the top-level chains) and fully at start, after a failure and every
`full_sync_period` (upstream's FullSyncPeriod, one hour): a full restore of 1,000 services takes
over a second, a partial one a tenth of that.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from proxy import conntrack
from proxy.model import Endpoint, ServiceMap, ServicePort, ServicePortName

log = logging.getLogger(__name__)

# The chains we own outright (declared, hence flushed and rewritten, on every sync).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)
# Per-service chains: found in iptables-save and deleted when their service port is gone.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-")


@dataclass(frozen=True)
class JumpRule:
    """A rule in a built-in chain that hands traffic to one of ours (upstream's jump chains)."""

    table: str
    chain: str  # built-in
    target: str  # ours
    comment: str
    extra: tuple[str, ...] = ()

    def args(self) -> list[str]:
        return [self.chain, "-m", "comment", "--comment", self.comment, *self.extra,
                "-j", self.target]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMP_RULES = (
    JumpRule("filter", "INPUT", KUBE_EXTERNAL_SERVICES,
             "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_EXTERNAL_SERVICES,
             "kubernetes externally-visible service portals", _NEW),
    JumpRule("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
    JumpRule("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
    JumpRule("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
    JumpRule("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
    JumpRule("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
)


@dataclass(frozen=True)
class Config:
    """What the rules depend on besides the services: cluster CIDR and masquerade mark."""

    cluster_cidr: str = ""  # "": no masquerade of off-cluster ClusterIP traffic (upstream too)
    masquerade_bit: int = 14
    random_fully: bool = True

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


# --- names --------------------------------------------------------------------------------------

def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_proto_hash(name: ServicePortName) -> str:
    """upstream's portProtoHash(servicePortName, protocol): base32(sha256(name + proto))[:16]."""
    return _hash16(str(name) + name.protocol.lower())


def svc_chain(name: ServicePortName) -> str:
    return "KUBE-SVC-" + port_proto_hash(name)


def ext_chain(name: ServicePortName) -> str:
    return "KUBE-EXT-" + port_proto_hash(name)


def sep_chain(name: ServicePortName, ep: Endpoint) -> str:
    """upstream's servicePortEndpointChainName: hash of name + protocol + "ip:port"."""
    return "KUBE-SEP-" + _hash16(str(name) + name.protocol.lower() + str(ep))


def probability(n: int) -> str:
    """upstream's computeProbability: 1/n with 10 decimals (iptables-save shows 11)."""
    return f"{1.0 / n:0.10f}"


def _q(comment: str) -> str:
    """A comment as upstream writes it: quoted when it has a space."""
    return f'"{comment}"' if " " in comment else comment


# --- one service port ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Fragment:
    """Everything one service port contributes to the rule set (cached per ServicePort)."""

    chains: tuple[str, ...] = ()  # nat chains it owns (SVC, SEP, EXT)
    chain_rules: str = ""  # nat rules inside those chains
    nat_services: str = ""  # lines in nat KUBE-SERVICES
    nat_nodeports: str = ""  # lines in nat KUBE-NODEPORTS
    filter_services: str = ""  # filter KUBE-SERVICES (REJECT without endpoints)
    filter_external: str = ""  # filter KUBE-EXTERNAL-SERVICES


def render_service(sp: ServicePort, cfg: Config) -> Fragment:
    """The rules of one service port, in upstream's order and shapes."""
    name = str(sp.name)
    proto = sp.protocol.lower()
    mp = f"-m {proto} -p {proto}"
    svc = svc_chain(sp.name)
    eps = sp.endpoints
    has_external = bool(sp.node_port or sp.external_ips)
    if not eps:
        # No ready endpoint: refuse at once (icmp-port-unreachable) instead of a timeout.
        c = _q(f"{name} has no endpoints")
        filt = f"-A KUBE-SERVICES -m comment --comment {c} {mp} -d {sp.cluster_ip} " \
               f"--dport {sp.port} -j REJECT\n"
        ext = "".join(
            f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} {mp} -d {ip} "
            f"--dport {sp.port} -j REJECT\n" for ip in sp.external_ips)
        if sp.node_port:
            ext += (f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} -m addrtype "
                    f"--dst-type LOCAL {mp} --dport {sp.node_port} -j REJECT\n")
        return Fragment(filter_services=filt, filter_external=ext)

    seps = [sep_chain(sp.name, ep) for ep in eps]
    chains = [svc, *seps]
    rules: list[str] = []
    cip = _q(f"{name} cluster IP")
    nat_services = [f"-A KUBE-SERVICES -m comment --comment {cip} {mp} -d {sp.cluster_ip} "
                    f"--dport {sp.port} -j {svc}\n"]
    nat_nodeports = ""
    if has_external:
        ext = ext_chain(sp.name)
        chains.append(ext)
        nat_services += [f"-A KUBE-SERVICES -m comment --comment {_q(name + ' external IP')} "
                         f"{mp} -d {ip} --dport {sp.port} -j {ext}\n" for ip in sp.external_ips]
        if sp.node_port:
            nat_nodeports = (f"-A KUBE-NODEPORTS -m comment --comment {_q(name)} {mp} "
                             f"--dport {sp.node_port} -j {ext}\n")
        # Traffic from outside is masqueraded so that replies come back through this node.
        rules.append(f"-A {ext} -m comment --comment "
                     f"{_q(f'masquerade traffic for {name} external destinations')} "
                     f"-j KUBE-MARK-MASQ\n")
        rules.append(f"-A {ext} -j {svc}\n")
    if cfg.cluster_cidr:
        # Off-cluster sources reaching a ClusterIP are masqueraded (replies must return here).
        rules.append(f"-A {svc} -m comment --comment {cip} {mp} -d {sp.cluster_ip} "
                     f"--dport {sp.port} ! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ\n")
    if sp.affinity_timeout is not None:
        for ep, sep in zip(eps, seps, strict=True):
            rules.append(f"-A {svc} -m comment --comment {_q(f'{name} -> {ep}')} -m recent "
                         f"--name {sep} --rcheck --seconds {sp.affinity_timeout} --reap "
                         f"-j {sep}\n")
    n = len(eps)
    for i, (ep, sep) in enumerate(zip(eps, seps, strict=True)):
        stat = f" -m statistic --mode random --probability {probability(n - i)}" \
            if i < n - 1 else ""
        rules.append(f"-A {svc} -m comment --comment {_q(f'{name} -> {ep}')}{stat} -j {sep}\n")
    qn = _q(name)
    recent = " -m recent --name {sep} --set" if sp.affinity_timeout is not None else ""
    for ep, sep in zip(eps, seps, strict=True):
        # Hairpin: an endpoint reaching its own service is masqueraded, or it would answer
        # itself directly and the client would drop the reply.
        rules.append(f"-A {sep} -m comment --comment {qn} -s {ep.ip}/32 -j KUBE-MARK-MASQ\n")
        rules.append(f"-A {sep} -m comment --comment {qn}{recent.format(sep=sep)} {mp} "
                     f"-j DNAT --to-destination {ep}\n")
    return Fragment(chains=tuple(chains), chain_rules="".join(rules),
                    nat_services="".join(nat_services), nat_nodeports=nat_nodeports)


# --- the whole rule set -------------------------------------------------------------------------

def _fixed_rules(cfg: Config) -> tuple[str, str]:
    """(filter, nat) rules of the fixed chains, after the per-service ones."""
    m = cfg.mark
    filt = (f'-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
            f"-m mark --mark {m}/{m} -j ACCEPT\n"
            '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
    masq = "MASQUERADE --random-fully" if cfg.random_fully else "MASQUERADE"
    nat = (f"-A KUBE-MARK-MASQ -j MARK --or-mark {m}\n"
           f"-A KUBE-POSTROUTING -m mark ! --mark {m}/{m} -j RETURN\n"
           f"-A KUBE-POSTROUTING -j MARK --xor-mark {m}\n"
           '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring '
           f'SNAT" -j {masq}\n')
    return filt, nat


NODEPORTS_LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: '
                  'this must be the last rule in this chain" -m addrtype --dst-type LOCAL '
                  "-j KUBE-NODEPORTS\n")


@dataclass
class Ruleset:
    text: str  # iptables-restore input (filter then nat)
    chains: set[str]  # every per-service nat chain of the desired state
    lines: int = 0


def render(fragments: Sequence[Fragment], cfg: Config, *,
           write: Iterable[Fragment] | None = None, delete: Iterable[str] = ()) -> Ruleset:
    """The restore text for the service ports' `fragments` (in KUBE-SERVICES order).

    `write`: the fragments whose own chains are (re)written; None = all (a full sync). The
    chains of the others are neither declared nor touched: they are already in the kernel
    (a partial sync). `delete`: stale per-service chains to flush and remove (-X).
    """
    filt_rules, nat_fixed = _fixed_rules(cfg)
    out: list[str] = ["*filter\n"]
    out += [f":{c} - [0:0]\n" for c in FILTER_CHAINS]
    out += [f.filter_services for f in fragments]
    out += [f.filter_external for f in fragments]
    out.append(filt_rules)
    out.append("COMMIT\n*nat\n")
    out += [f":{c} - [0:0]\n" for c in NAT_CHAINS]
    chains: set[str] = set()
    for f in fragments:
        chains.update(f.chains)
    written = fragments if write is None else list(write)
    out += [f":{c} - [0:0]\n" for f in written for c in f.chains]
    stale = sorted(set(delete) - chains)
    out += [f":{c} - [0:0]\n" for c in stale]
    out.append(nat_fixed)
    out += [f.nat_services for f in fragments]
    out.append(NODEPORTS_LAST)
    out += [f.nat_nodeports for f in fragments]
    out += [f.chain_rules for f in written]
    out += [f"-X {c}\n" for c in stale]
    out.append("COMMIT\n")
    text = "".join(out)
    return Ruleset(text=text, chains=chains, lines=text.count("\n"))


def render_map(services: ServiceMap, cfg: Config) -> str:
    """The full restore text of a ServiceMap (tests, benchmarks)."""
    return render([render_service(services[k], cfg) for k in sorted(services)], cfg).text


# --- applying it ---------------------------------------------------------------------------------

class RestoreError(RuntimeError):
    pass


_LINE = re.compile(r"line:? (\d+)")


def restore(text: str, *, binary: str = "iptables-restore") -> None:
    """`iptables-restore --noflush` of `text`; on failure the error names the failing line."""
    p = subprocess.run([binary, "-w", "--noflush"], input=text, capture_output=True,
                       text=True, timeout=120)
    if p.returncode != 0:
        err = "; ".join(ln for ln in p.stderr.strip().splitlines()
                        if ln and not ln.startswith("Try `"))
        m = _LINE.search(err)
        if m:
            lines = text.splitlines()
            n = int(m.group(1))
            if 0 < n <= len(lines):
                err += f" (line {n}: {lines[n - 1]!r})"
        raise RestoreError(f"iptables-restore failed: {err}")


def save(table: str) -> str:
    return subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True,
                          check=True, timeout=120).stdout


def chains_in(saved: str, prefixes: Sequence[str] = ("KUBE-",)) -> set[str]:
    """The chain names declared in an iptables-save table dump that start with `prefixes`."""
    out = set()
    for line in saved.splitlines():
        if line.startswith(":"):
            c = line[1:].split(" ", 1)[0]
            if c.startswith(tuple(prefixes)):
                out.add(c)
    return out


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True,
                          timeout=60)


def ensure_jump_rules() -> None:
    """Each jump from a built-in chain into ours, inserted first unless already there
    (`-C` then `-I`, upstream's EnsureRule(Prepend)): never duplicated across restarts."""
    for table, chain in sorted({(r.table, r.target) for r in JUMP_RULES}):
        if _iptables("-t", table, "-S", chain, "1").returncode != 0:
            _iptables("-t", table, "-N", chain)  # upstream's EnsureChain (-I needs it)
    for r in JUMP_RULES:
        if _iptables("-t", r.table, "-C", *r.args()).returncode != 0:
            p = _iptables("-t", r.table, "-I", *r.args())
            if p.returncode != 0:
                raise RestoreError(f"iptables -t {r.table} -I {r.chain}: {p.stderr.strip()}")


def _sysctl(path: str, value: str) -> None:
    p = Path("/proc/sys") / path.replace(".", "/")
    try:
        if p.read_text().strip() != value:
            p.write_text(value)
    except OSError as e:
        log.warning("cannot set %s=%s: %s", path, value, e)


def set_sysctls() -> None:
    # NodePorts on 127.0.0.1 are DNATed elsewhere: the kernel must route "localnet" sources.
    _sysctl("net.ipv4.conf.all.route_localnet", "1")
    if Path("/proc/sys/net/bridge").is_dir():
        # Bridged pod-to-service traffic must traverse iptables to be DNATed.
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")


def cleanup_text(filter_saved: str, nat_saved: str) -> str:
    """Restore text that removes every jump to a KUBE-* chain from the built-in chains and
    every KUBE-* chain (flush, then -X) in filter and nat, and nothing else."""
    out = []
    for table, saved in (("filter", filter_saved), ("nat", nat_saved)):
        ours = sorted(chains_in(saved))
        out.append(f"*{table}\n")
        out += [f":{c} - [0:0]\n" for c in ours]
        for line in saved.splitlines():
            if not line.startswith("-A "):
                continue
            chain, _, spec = line[3:].partition(" ")
            if not chain.startswith("KUBE-") and re.search(r"(^| )-j KUBE-", spec):
                out.append(f"-D {chain} {spec}\n")
        out += [f"-X {c}\n" for c in ours]
        out.append("COMMIT\n")
    return "".join(out)


def cleanup() -> None:
    restore(cleanup_text(save("filter"), save("nat")))


@dataclass
class IptablesBackend:
    """The iptables proxier's kernel side: `sync` programs a whole ServiceMap (blocking).

    Invariants: `_applied` and `_chains` describe what the kernel holds after the last
    successful restore; after a failure (or at start, when they are unknown) the next sync is
    full and re-reads the existing chains from iptables-save, so a restart converges to
    exactly the desired rules.
    """

    cluster_cidr: str = ""
    masquerade_bit: int = 14
    full_sync_period: float = 3600.0  # upstream's proxyutil.FullSyncPeriod
    clock: Callable[[], float] = time.monotonic
    # After each successful restore: UDP conntrack clean-up (proxy/conntrack.py).
    clean_conntrack: Callable[[ServiceMap | None, ServiceMap], None] = conntrack.clean_stale
    cfg: Config = field(init=False)
    last_sync_full: bool = field(default=False, init=False)
    last_restore_lines: int = field(default=0, init=False)
    _applied: dict[ServicePortName, ServicePort] | None = field(default=None, init=False)
    _chains: set[str] = field(default_factory=set, init=False)
    _cache: dict[ServicePort, Fragment] = field(default_factory=dict, init=False)
    _last_full: float = field(default=float("-inf"), init=False)
    # What the kernel's rules last became (kept across a failed restore, which changes nothing):
    # UDP conntrack clean-up compares it with the next one.
    _synced: ServiceMap | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.cfg = Config(cluster_cidr=self.cluster_cidr, masquerade_bit=self.masquerade_bit)

    def _fragment(self, sp: ServicePort) -> Fragment:
        f = self._cache.get(sp)
        if f is None:
            f = self._cache[sp] = render_service(sp, self.cfg)
        return f

    def sync(self, services: ServiceMap, node_ips: Sequence[str]) -> None:
        now = self.clock()
        full = self._applied is None or now - self._last_full >= self.full_sync_period
        order = sorted(services)
        fragments = [self._fragment(services[k]) for k in order]
        if full:
            set_sysctls()
            ensure_jump_rules()
            existing = chains_in(save("nat"), SERVICE_CHAIN_PREFIXES)
            rs = render(fragments, self.cfg, delete=existing)
        else:
            applied = self._applied or {}
            changed = [self._fragment(sp) for k, sp in services.items() if applied.get(k) != sp]
            rs = render(fragments, self.cfg, write=changed, delete=self._chains)
        try:
            restore(rs.text)
        except BaseException:
            self._applied = None  # unknown now: the next sync is full
            raise
        self.last_sync_full = full
        self.last_restore_lines = rs.lines
        if full:
            self._last_full = now
        self._applied = dict(services)
        self._chains = rs.chains
        self.clean_conntrack(self._synced, self._applied)  # logs, never raises
        self._synced = self._applied
        # Keep the cache to the live service ports (a changed one is a new key).
        live = set(services.values())
        if len(self._cache) > 2 * len(live) + 16:
            self._cache = {sp: f for sp, f in self._cache.items() if sp in live}

    def cleanup(self) -> None:
        cleanup()
        self._applied = None
        self._chains = set()
