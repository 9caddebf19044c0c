"""`lab/lab` (`python -m lab`): bring up, inspect, reset and remove the multi-node lab.

Like kind's CLI for tinykube's docker-compose lab (lab/docker-compose.yml). User mistakes and
failures of the tools it drives are one line (or the tool's own words) and exit status 1; bad
flags exit 2, naming the flag.
"""

from __future__ import annotations

import argparse
import os
import sys

from lab import commands
from lab.cluster import DEFAULT_NAME, DEFAULT_WORKERS, Lab, LabError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lab/lab", description="tinykube's multi-node lab: every node a container.")
    p.add_argument("--name", default=os.environ.get("TK_LAB_NAME", DEFAULT_NAME),
                   help=f"which lab (default $TK_LAB_NAME or {DEFAULT_NAME!r}): its containers "
                        "are NAME-etcd, NAME-control-plane, NAME-worker-N")
    sub = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, what in (("up", "create the lab (or start a stopped one, or check a running "
                              "one) and wait until it works"),
                       ("demo", "up, then deploy the hostnames demo and ask its NodePort")):
        v = sub.add_parser(verb, help=what, description=what)
        v.add_argument("--workers", type=_positive, default=DEFAULT_WORKERS, metavar="N",
                       help=f"worker nodes (default {DEFAULT_WORKERS})")
        if verb == "up":
            v.add_argument("--api-port", type=_positive, default=None, metavar="PORT",
                           help="the apiserver's HTTPS port (Kubernetes' HTTP API, kubectl) on "
                                "127.0.0.1 (default 16443, or any free)")
            v.add_argument("--grpc-port", type=_positive, default=None, metavar="PORT",
                           help="its gRPC port (tkctl) on 127.0.0.1 (default 16442, or any "
                                "free)")
    sub.add_parser("status", help="containers, components, nodes and timings")
    sub.add_parser("down", help="remove the lab's containers (running or stopped), volumes, "
                                "network and state; nothing to do for no lab")
    sub.add_parser("reset", help="wipe etcd, pods, KUBE-* chains and flannel.1: a fresh cluster "
                                 "in the same containers")
    li = sub.add_parser("load-image", help="copy local images into every running worker's "
                                                 "dockerd (exit 1 naming a stopped one)")
    li.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_parser("kubeconfig", help="how to point tkctl at the lab (eval \"$(lab/lab "
                                      "kubeconfig)\")")
    lg = sub.add_parser("logs", help="a node's components, or one component's log")
    lg.add_argument("node", metavar="NODE", help="etcd, control-plane or worker-N")
    lg.add_argument("component", nargs="?", metavar="COMPONENT")
    lg.add_argument("--tail", type=_positive, default=50, metavar="N")
    return p


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return n


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        lab = Lab(args.name)
        if os.environ.get("TK_LAB_CHECK_ONLY"):
            # lab/lab's first call, before its minutes of preparation (install, image builds):
            # the user's mistakes now, not after.
            if args.verb in ("up", "demo"):
                commands.check_up(lab, args.workers, getattr(args, "api_port", None),
                                  getattr(args, "grpc_port", None))
            return 0
        if args.verb == "up":
            commands.up(lab, args.workers, args.api_port, args.grpc_port)
            commands.kubeconfig(lab)
        elif args.verb == "demo":
            commands.demo(lab, args.workers)
        elif args.verb == "status":
            return commands.status(lab)
        elif args.verb == "down":
            commands.down(lab)
        elif args.verb == "reset":
            commands.reset(lab)
        elif args.verb == "load-image":
            commands.load_image(lab, args.images)
        elif args.verb == "kubeconfig":
            commands.kubeconfig(lab)
        elif args.verb == "logs":
            commands.logs(lab, args.node, args.component, args.tail)
    except LabError as e:
        print(f"lab/lab: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `lab/lab status | head`: the reader has what it wanted; no traceback at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0 if args.verb in ("status", "kubeconfig", "logs") else 1
    except KeyboardInterrupt:
        # docker-compose got the same ctrl-C: what it created stays, stopped or half-started.
        if args.verb in ("up", "demo", "reset"):
            print(f"\nlab/lab: {args.verb} interrupted: `lab/lab {args.verb}` again carries on, "
                  "`lab/lab down` removes what there is", file=sys.stderr)
        else:
            print(f"\nlab/lab: {args.verb} interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
