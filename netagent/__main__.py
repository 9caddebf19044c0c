"""tk-netagent: flags → the Agent (netagent/agent.py), or `--cleanup`.

Wiring only. Bad flags, and an --iface/--public-ip that names nothing on this host, are one line
and exit 2; a podCIDR that changes under a running agent is one line and exit 1 (restart it).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys

from client.flags import Parser, add_client_flags, duration, make_client, run_main, setup_logging
from netagent.agent import Agent, FatalError, cleanup
from netagent.vxlan import NetlinkError

PROG = "tk-netagent"


def parse(argv: list[str]) -> tuple[argparse.Namespace, Parser]:
    p = Parser(prog=PROG, description="flannel's VXLAN backend: the overlay between nodes.")
    add_client_flags(p)
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME") or socket.gethostname())
    p.add_argument("--iface", default=None, help="underlay interface (default: the default "
                   "route's, or the one holding --public-ip)")
    p.add_argument("--public-ip", default=None, help="address other nodes send VXLAN to")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="the pod network")
    p.add_argument("--subnet-file", default="/run/flannel/subnet.env")
    p.add_argument("--ip-masq", default=True, action=argparse.BooleanOptionalAction,
                   help="masquerade pod traffic leaving the pod network (default on)")
    p.add_argument("--resync-period", type=duration, default=30.0, metavar="DURATION")
    p.add_argument("--cleanup", action="store_true", help="remove everything and exit")
    a = p.parse_args(argv)
    try:
        a.cluster_cidr = ipaddress.IPv4Network(a.cluster_cidr)
    except ValueError as e:
        p.error(f"--cluster-cidr: {e}")
    if a.public_ip is not None:
        try:
            a.public_ip = str(ipaddress.IPv4Address(a.public_ip))
        except ValueError:
            p.error(f"--public-ip: {a.public_ip!r} is not an IPv4 address")
    if not a.resync_period > 0:
        p.error("--resync-period: must be positive")
    if not a.node_name:
        p.error("--node-name: must not be empty")
    return a, p


async def _run(a: argparse.Namespace, p: Parser) -> None:
    client = make_client(p, a, PROG)
    agent = Agent(client, a.node_name, iface=a.iface, public_ip=a.public_ip,
                  cluster_cidr=a.cluster_cidr, subnet_file=a.subnet_file, ip_masq=a.ip_masq,
                  resync_period=a.resync_period)
    try:
        try:
            await agent.prepare()
        except NetlinkError as e:
            p.error(str(e))
        await client.wait_ready()
        await agent.run()
    except FatalError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        await client.close()


def main() -> None:
    a, p = parse(sys.argv[1:])
    setup_logging(a.verbose)
    if a.cleanup:
        for line in cleanup(a.subnet_file):
            logging.getLogger("netagent").info("cleanup: %s", line)
        return
    run_main(_run(a, p), PROG)


if __name__ == "__main__":
    main()
