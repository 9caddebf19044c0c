"""tk-controller-manager: flags → ControllerContext → the chosen controllers, under a lease."""

from __future__ import annotations

import argparse
import sys

from client.flags import (
    Parser,
    add_client_flags,
    add_leader_election_flags,
    check_leader_election,
    csv,
    duration,
    make_client,
    run_elected_component,
    run_main,
    setup_logging,
)
from client.informer import SharedInformerFactory
from controllers.base import ControllerContext, Options
from controllers.manager import run_controllers, select
from controllers.nodeipam import CIDRSet

PROG = "tk-controller-manager"


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="Runs tinykube's controllers in one process.")
    add_client_flags(p)
    add_leader_election_flags(p, default_name="kube-controller-manager")
    p.add_argument("--controllers", default="*",
                   help="comma-separated: * for all, NAME to enable, -NAME to disable")
    p.add_argument("--concurrent-syncs", type=int, default=5, metavar="N",
                   help="workers per controller")
    p.add_argument("--concurrent-gc-syncs", type=int, default=20, metavar="N")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--allocate-node-cidrs", default=True, action=argparse.BooleanOptionalAction)
    p.add_argument("--node-monitor-period", type=duration, default=5.0, metavar="DURATION")
    p.add_argument("--node-monitor-grace-period", type=duration, default=40.0,
                   metavar="DURATION")
    p.add_argument("--node-startup-grace-period", type=duration, default=60.0,
                   metavar="DURATION")
    p.add_argument("--root-ca-file", default="", metavar="FILE",
                   help="the CA bundle the root-ca-cert-publisher puts into every namespace's "
                   "kube-root-ca.crt ConfigMap (default: the CA of --kubeconfig)")
    a = p.parse_args(argv)
    check_leader_election(p, a)
    try:
        a.selected = select(csv(a.controllers))
    except ValueError as e:
        p.error(str(e))
    if not a.selected:
        p.error(f"--controllers: {a.controllers!r} selects no controller (* selects them all)")
    for flag, value in (("--concurrent-syncs", a.concurrent_syncs),
                        ("--concurrent-gc-syncs", a.concurrent_gc_syncs)):
        if value < 1:
            p.error(f"{flag}: must be at least 1")
    for flag, seconds in (("--node-monitor-period", a.node_monitor_period),
                          ("--node-monitor-grace-period", a.node_monitor_grace_period),
                          ("--node-startup-grace-period", a.node_startup_grace_period)):
        if seconds <= 0:
            p.error(f"{flag}: must be greater than 0")
    if a.allocate_node_cidrs and "nodeipam" in a.selected:
        try:
            CIDRSet(a.cluster_cidr, a.node_cidr_mask_size)
        except ValueError as e:
            p.error(str(e))
    return a, p


async def _run(a: argparse.Namespace, p: Parser) -> None:
    client = make_client(p, a, PROG)
    options = Options(
        concurrent_syncs=a.concurrent_syncs, cluster_cidr=a.cluster_cidr,
        node_cidr_mask_size=a.node_cidr_mask_size, allocate_node_cidrs=a.allocate_node_cidrs,
        node_monitor_period=a.node_monitor_period,
        node_monitor_grace_period=a.node_monitor_grace_period,
        node_startup_grace_period=a.node_startup_grace_period,
        gc_workers=a.concurrent_gc_syncs, root_ca_file=a.root_ca_file)

    async def work() -> None:
        ctx = ControllerContext(client, SharedInformerFactory(client), options)
        try:
            await run_controllers(ctx, a.selected)
        finally:
            await ctx.close()

    await run_elected_component(client, a, work, PROG)


def main() -> None:
    a, p = parse(sys.argv[1:])
    setup_logging(a.verbose)
    run_main(_run(a, p), PROG)


if __name__ == "__main__":
    main()
