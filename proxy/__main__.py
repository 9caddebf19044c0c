"""tk-proxy (kube-proxy): flags → backend (iptables, or IPVS where the kernel has it) → Proxier.

Wiring only; the rules are in proxy/iptables.py (or proxy/ipvs.py), the loop in proxy/proxier.py.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import sys

from client.flags import Parser, add_client_flags, duration, make_client, run_main, setup_logging
from proxy.iptables import IptablesBackend
from proxy.metrics import Metrics
from proxy.proxier import Backend, Proxier

PROG = "tk-proxy"


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="Programs this node's Service rules (kube-proxy).")
    add_client_flags(p)
    p.add_argument("--hostname-override", default=socket.gethostname(), help="the node name")
    p.add_argument("--proxy-mode", choices=("iptables", "ipvs"), default="iptables")
    p.add_argument("--cluster-cidr", default="", help="pod network; off-cluster traffic to "
                   "ClusterIPs is masqueraded (default: none)")
    p.add_argument("--min-sync-period", type=duration, default=1.0, metavar="DURATION")
    p.add_argument("--sync-period", type=duration, default=30.0, metavar="DURATION")
    p.add_argument("--masquerade-bit", type=int, default=14)
    p.add_argument("--metrics-bind-address", default="127.0.0.1:10249", help='"0" disables')
    p.add_argument("--cleanup", action="store_true", help="remove every rule, then exit")
    a = p.parse_args(argv)
    if a.cluster_cidr:
        try:
            a.cluster_cidr = str(ipaddress.IPv4Network(a.cluster_cidr, strict=False))
        except ValueError:
            p.error(f"--cluster-cidr: {a.cluster_cidr!r} is not an IPv4 CIDR")
    if not 0 <= a.masquerade_bit <= 31:
        p.error(f"--masquerade-bit: must be within 0..31 (got {a.masquerade_bit})")
    if not a.sync_period > 0:
        p.error("--sync-period: must be positive")
    if a.min_sync_period > a.sync_period:
        p.error("--min-sync-period: must not exceed --sync-period")
    a.metrics = None
    if a.metrics_bind_address not in ("0", ""):
        host, _, port = a.metrics_bind_address.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            p.error(f"--metrics-bind-address: want HOST:PORT or 0 (got {a.metrics_bind_address!r})")
        a.metrics = (host, int(port))
    return a, p


def backend(a: argparse.Namespace) -> Backend:
    if a.proxy_mode == "iptables":
        return IptablesBackend(a.cluster_cidr, a.masquerade_bit)
    from proxy import ipvs  # here, not at the top: it imports pyroute2 (~200 ms)

    reason = ipvs.ipvs_unavailable()
    if reason is not None:
        print(f"{PROG}: --proxy-mode ipvs: this kernel has no IPVS ({reason}); use "
              "--proxy-mode iptables", file=sys.stderr)
        sys.exit(1)
    return ipvs.IpvsBackend(a.cluster_cidr, a.masquerade_bit, node_name=a.hostname_override)


def cleanup_ipvs() -> None:
    """What IPVS mode leaves (virtual servers, kube-ipvs0 with every VIP bound as a local
    address), whatever --proxy-mode says now: as upstream's CleanupLeftovers, which cleans IPVS
    too. Without it, `--cleanup` after an IPVS run kept the ClusterIPs local and balanced."""
    from proxy import ipvs

    ipvs.IpvsBackend("").cleanup()


async def _run(a: argparse.Namespace, p: Parser, be: Backend) -> None:
    client = make_client(p, a, PROG)
    metrics = Metrics()
    if a.metrics is not None:
        metrics.serve(*a.metrics)
    try:
        await client.wait_ready()
        await Proxier(client, a.hostname_override, be, min_sync_period=a.min_sync_period,
                      sync_period=a.sync_period, metrics=metrics).run()
    finally:
        await asyncio.shield(client.close())


def main() -> None:
    a, p = parse(sys.argv[1:])
    setup_logging(a.verbose)
    if a.cleanup:  # upstream's CleanupLeftovers: iptables rules whatever the mode
        IptablesBackend().cleanup()
        cleanup_ipvs()
        return
    run_main(_run(a, p, backend(a)), PROG)


if __name__ == "__main__":
    main()
