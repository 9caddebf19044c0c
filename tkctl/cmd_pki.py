"""`tkctl pki init` and `tkctl pki add-node`: the cluster's certificates, like kubeadm's
`init phase certs` and `init phase kubeconfig`.

A secure cluster cannot start without them (the apiserver refuses to run without a serving
certificate and a client CA unless told `--insecure`), so creating them is one idempotent command
that scripts run every time: existing files are kept and reported `exists`. The work is
`client.pki`; this module is flags and output. Keys are never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import re
from datetime import timedelta
from pathlib import Path

from client import pki
from tkctl import cli
from tkctl.context import Command, Context, UsageError

DEFAULT_VALIDITY = "8760h"


_FORCE_HELP = ("Make every file anew, even if it exists (a new CA: every kubeconfig and "
               "component must get the new files)")


def _common_flags(p: argparse.ArgumentParser, force_help: str = _FORCE_HELP) -> None:
    p.add_argument("--dir", default=pki.DEFAULT_DIR,
                   help=f"The directory of the cluster's PKI (default {pki.DEFAULT_DIR})")
    p.add_argument("--grpc-server", default=None, metavar="HOST:PORT",
                   help="The apiserver's gRPC address for client certificates, written into "
                        "the kubeconfigs' tinykube.io/grpc extension (default: the --server "
                        f"host, port {pki.DEFAULT_GRPC_PORT}; without --server, add-node and "
                        "user take admin.conf's)")
    p.add_argument("--token-server", default=None, metavar="HOST:PORT",
                   help="Its gRPC address for bearer tokens (default: the --server host, port "
                        f"{pki.DEFAULT_TOKEN_PORT}; the same way)")
    p.add_argument("--validity", default=DEFAULT_VALIDITY,
                   help="How long leaf certificates are valid, as a duration (default "
                        f"{DEFAULT_VALIDITY}); CAs are valid for 10 years")
    cli.add_bool(p, "--force", help=force_help)


def configure_init(p: argparse.ArgumentParser) -> None:
    _common_flags(p)
    p.add_argument("--apiserver-san", action="append", default=[], metavar="SAN",
                   help="An extra IP address or DNS name for the apiserver certificate "
                        "(repeatable)")
    p.add_argument("--etcd-san", action="append", default=[], metavar="SAN",
                   help="An extra IP address or DNS name for the etcd server certificate "
                        "(repeatable)")
    p.add_argument("--node", action="append", default=[], metavar="NAME[=IP,...]",
                   help="A node to make kubeconfigs (kubelet, network agent) and a kubelet "
                        "serving certificate for, with its IP addresses (repeatable)")


def configure_add_node(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--ip", action="append", default=[],
                   help="An IP address of the node, for its kubelet serving certificate "
                        "(repeatable)")
    _common_flags(p)


def _validity(text: str) -> timedelta:
    try:
        seconds = cli.duration(text)
    except ValueError:
        raise UsageError(f'invalid argument "{text}" for "--validity" flag: expected a '
                         "duration such as 8760h or 720h30m") from None
    if seconds <= 0:
        raise UsageError(f'invalid argument "{text}" for "--validity" flag: must be positive')
    return timedelta(seconds=seconds)


def _server_url(args: argparse.Namespace) -> str | None:
    """The apiserver URL written into the kubeconfigs: the global `--server`, as a URL."""
    server: str | None = getattr(args, "server", None)
    if not server:
        return None
    return server if "://" in server else f"https://{server}"


_ADDRESS = re.compile(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})")


def _grpc_servers(args: argparse.Namespace) -> dict[str, str | None]:
    """`--grpc-server` and `--token-server`, checked: HOST:PORT."""
    out: dict[str, str | None] = {}
    for flag, key in (("--grpc-server", "grpc_server"), ("--token-server", "token_server")):
        value: str | None = getattr(args, key)
        m = _ADDRESS.fullmatch(value) if value is not None else None
        if value is not None and (m is None or not 0 < int(m.group(2)) < 65536):
            raise UsageError(f'invalid argument "{value}" for "{flag}" flag: expected HOST:PORT '
                             "(e.g. 127.0.0.1:6442)")
        out[key] = value
    return out


def _ip(text: str, flag: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: not an IP '
                         "address") from None


def _san(text: str, flag: str) -> str:
    """An IP address or a DNS name (letters, digits, '-', '.', a leading '*.')."""
    ok = text and all(c.isalnum() or c in "-.*" for c in text) and "*" not in text[2:]
    if not ok:
        raise UsageError(f'invalid argument "{text}" for "{flag}" flag: not an IP address '
                         "or DNS name")
    return text


# A Node's name is a DNS subdomain (upstream's validation); it also names a directory
# (nodes/NAME/), so nothing else may pass: `../x` would write outside the PKI directory.
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _node_name(name: str, what: str) -> str:
    if len(name) > 253 or not _NODE_NAME.fullmatch(name):
        raise UsageError(f'invalid {what} "{name}": a node name must be a lowercase RFC 1123 '
                         "subdomain (letters, digits, '-', '.'; e.g. node-1)")
    return name


def parse_nodes(specs: list[str]) -> dict[str, list[str]]:
    """`--node n1=10.0.0.1,10.0.0.2 --node n2` -> {"n1": [...], "n2": []}."""
    nodes: dict[str, list[str]] = {}
    for spec in specs:
        name, _, ips = spec.partition("=")
        if not name:
            raise UsageError(f'invalid argument "{spec}" for "--node" flag: expected '
                             "NAME[=IP,IP]")
        _node_name(name, "--node")
        nodes[name] = [_ip(ip, "--node") for ip in ips.split(",") if ip]
    return nodes


def _report(ctx: Context, statuses: list[pki.Status]) -> None:
    for path, status in statuses:
        ctx.print(f"{path} {status}")


async def run_init(ctx: Context, args: argparse.Namespace) -> None:
    validity = _validity(args.validity)
    apiserver_sans = [_san(s, "--apiserver-san") for s in args.apiserver_san]
    etcd_sans = [_san(s, "--etcd-san") for s in args.etcd_san]
    nodes = parse_nodes(args.node)
    server_url = _server_url(args) or pki.DEFAULT_SERVER_URL
    try:
        statuses = await asyncio.to_thread(
            pki.init_pki, Path(args.dir), server_url=server_url, **_grpc_servers(args),
            apiserver_sans=apiserver_sans, etcd_sans=etcd_sans, nodes=nodes, validity=validity,
            force=args.force,
        )
    except OSError as e:
        raise UsageError(f"cannot write the PKI in {args.dir}: {e.strerror}: "
                         f"{e.filename or args.dir}") from None
    _report(ctx, statuses)


async def run_add_node(ctx: Context, args: argparse.Namespace) -> None:
    if not args.name:
        raise UsageError("NAME is required: tkctl pki add-node NAME [--ip IP]...")
    _node_name(args.name, "NAME")
    validity = _validity(args.validity)
    ips = [_ip(ip, "--ip") for ip in args.ip]
    try:
        statuses = await asyncio.to_thread(
            pki.add_node, Path(args.dir), args.name, ips=ips, server_url=_server_url(args),
            **_grpc_servers(args), validity=validity, force=args.force,
        )
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the PKI in {args.dir}: {e.strerror}: "
                         f"{e.filename or args.dir}") from None
    _report(ctx, statuses)


def configure_user(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--group", action="append", default=[],
                   help="A group the user belongs to (the certificate's O; repeatable)")
    p.add_argument("--out", default="", metavar="FILE",
                   help="Where to write the kubeconfig (default NAME.conf in --dir); an "
                        "existing file is replaced only with --force")
    _common_flags(p, force_help="Replace the kubeconfig if it exists")


async def run_user(ctx: Context, args: argparse.Namespace) -> None:
    if not args.name:
        raise UsageError("NAME is required: tkctl pki user NAME [--group GROUP]... [--out FILE]")
    validity = _validity(args.validity)
    if not args.out and ("/" in args.name or args.name.startswith(".")):
        raise UsageError(f'NAME "{args.name}" cannot name a file in --dir: pass --out FILE')
    out = Path(args.out) if args.out else Path(args.dir) / f"{args.name}.conf"
    if not args.out and out.name in pki.COMPONENT_CONFIGS:
        # `pki user admin` must not replace the cluster's admin.conf (nor scheduler.conf ...).
        raise UsageError(f"{out} is the cluster's own kubeconfig: pass --out FILE for a user "
                         f'named "{args.name}"')
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists: pass --force to replace it (with a new certificate)")
    try:
        path = await asyncio.to_thread(
            pki.add_user, Path(args.dir), args.name, args.group, path=out,
            server_url=_server_url(args), **_grpc_servers(args), validity=validity)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    ctx.print(f"{path} created")


async def run_pki(ctx: Context, args: argparse.Namespace) -> None:
    ctx.print(cli.group_help(
        "Create and extend the cluster's certificates and kubeconfigs.",
        [("init", "Create the cluster CA, certificates, keys and kubeconfigs"),
         ("add-node", "Add a node's kubelet and network agent kubeconfigs and kubelet "
                      "serving certificate"),
         ("user", "Write a kubeconfig with a new client certificate for a user")],
        "tkctl pki (init | add-node NAME | user NAME) [flags]",
    ))


_INIT_HELP = (
    "Create the cluster CA and every certificate, key and kubeconfig in --dir (kept if they "
    "exist). Then: start the apiserver with them (scripts/up does) and "
    "`export TINYKUBE_CONFIG=<dir>/admin.conf`. The global --server sets the apiserver URL "
    f"written into the kubeconfigs (default {pki.DEFAULT_SERVER_URL}), for kubectl; tkctl and "
    "the components dial the gRPC addresses of their tinykube.io/grpc extension "
    "(--grpc-server, --token-server)."
)

COMMANDS = [
    Command(name="pki", summary="Create the cluster's certificates and kubeconfigs",
            usage="tkctl pki (init | add-node NAME | user NAME) [flags]",
            configure=lambda p: None,
            run=run_pki, group="Settings Commands", needs_server=False),
    Command(name="pki init", summary=_INIT_HELP,
            usage="tkctl pki init [--dir DIR] [--server URL] [--grpc-server HOST:PORT] "
                  "[--token-server HOST:PORT] [--apiserver-san SAN]... "
                  "[--node NAME[=IP,...]]... [--force]",
            configure=configure_init, run=run_init, group="Settings Commands",
            needs_server=False),
    Command(name="pki add-node", summary="Add a node's kubeconfigs, each an identity of that node "
                                         "alone: the kubelet's (CN system:node:NAME, O "
                                         "system:nodes) and the network agent's (CN "
                                         "system:netagent:NAME, O system:netagents), and its "
                                         "kubelet serving certificate",
            usage="tkctl pki add-node NAME [--ip IP]... [--dir DIR] [--force]",
            configure=configure_add_node, run=run_add_node, group="Settings Commands",
            needs_server=False),
    Command(name="pki user", summary="Write a kubeconfig for a user: a client certificate from "
                                     "the cluster CA with CN NAME and O each --group",
            usage="tkctl pki user NAME [--group GROUP]... [--out FILE] [--dir DIR]",
            configure=configure_user, run=run_user, group="Settings Commands",
            needs_server=False),
]
