"""`tkctl delete`: by name, `TYPE/NAME`, `-f`, `-l` or `--all`, with kubectl's cascade choices.

`--cascade` maps onto the API's propagationPolicy (background, the default, lets the garbage
collector remove dependents after the owner; foreground removes them first; orphan keeps them).
Objects selected by `-l`/`--all` are listed first and deleted one by one, as kubectl does, so each
gets its own `pod "x" deleted` line. Like kubectl, it then waits (`--wait`, the default) until
the objects are really gone: a pod lives on while its kubelet stops its containers within the
grace period, an object with finalizers until they are done.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from api import errors
from tkctl import cli
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import (
    Query,
    Target,
    fetch,
    namespace_of,
    ref,
    verb_targets,
)

WAIT_POLL = 0.25  # seconds between checks while waiting for deleted objects to go
_CASCADE = {"background": "Background", "true": "Background", "foreground": "Foreground",
            "orphan": "Orphan", "false": "Orphan"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE [NAME ...] | TYPE/NAME ...")
    cli.add_filename(p, "delete")
    cli.add_selector(p)
    p.add_argument("--field-selector", default="", help="Selector (field query) to filter on")
    cli.add_bool(p, "--all", help="Delete all resources of the given types in the namespace")
    cli.add_bool(p, "-A", "--all-namespaces", help="With -l or --all: in every namespace")
    p.add_argument("--cascade", nargs="?", const="background", default="background",
                   help='"background" (default), "foreground" or "orphan"')
    p.add_argument("--grace-period", type=int, default=-1,
                   help="Seconds given to the resource to terminate gracefully (-1: its own)")
    cli.add_bool(p, "--now", help="Signal the resource for immediate shutdown (grace period 1)")
    cli.add_bool(p, "--force", help="With --grace-period=0: delete immediately")
    cli.add_bool(p, "--ignore-not-found", help="Treat \"resource not found\" as a success")
    cli.add_bool(p, "--wait", help="If true (the default), wait for resources to be gone before "
                                   "returning. This waits for finalizers.")
    p.add_argument("--no-wait", dest="wait", action="store_false", help=argparse.SUPPRESS)
    p.set_defaults(wait=True)
    p.add_argument("--timeout", type=cli.duration, default=0.0,
                   help="The length of time to wait before giving up on a delete, zero means "
                        "no limit (e.g. 30s, 1m)")
    cli.add_output(p, ("name",))


def _policy(value: str) -> str:
    policy = _CASCADE.get(value.lower())
    if policy is None:
        raise UsageError(f'invalid cascade value ({value}). Must be "background", "foreground", '
                         'or "orphan".')
    return policy


def _grace(ctx: Context, args: argparse.Namespace) -> int | None:
    if args.now:
        if args.grace_period >= 0:
            raise UsageError("--now and --grace-period cannot be specified together")
        return 1
    if args.force:
        if args.grace_period > 0:
            return args.grace_period
        ctx.print_err("Warning: Immediate deletion does not wait for confirmation that the "
                      "running resource has been terminated. The resource may continue to run "
                      "on the cluster indefinitely.")
        return 0
    if args.grace_period == 0:
        return 1  # kubectl: 0 without --force means "as fast as possible", i.e. 1 second
    return None if args.grace_period < 0 else args.grace_period


def _targets(ctx: Context, args: argparse.Namespace) -> list[Target]:
    return verb_targets(
        ctx, args, args.resources, "delete",
        missing="You must provide one or more resources by argument or filename.",
        selecting=bool(args.all or args.selector or args.field_selector), exclusive=True)


async def run(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("name",))
    policy, grace = _policy(args.cascade), _grace(ctx, args)
    found = 0
    pending: list[tuple[Target, str, str, str]] = []
    for target in _targets(ctx, args):
        names = await _names(ctx, args, target)
        found += len(names)
        for name, ns in names:
            uid = await _delete_one(ctx, args, target, name, ns, policy, grace)
            if uid:
                pending.append((target, name, ns, uid))
    if found == 0 and not ctx.failed:
        ctx.print("No resources found")
    if args.wait and pending:
        await _wait_gone(ctx, pending, args.timeout)


async def _wait_gone(ctx: Context, pending: list[tuple[Target, str, str, str]],
                     timeout: float) -> None:
    """kubectl's default `--wait`: return once every deleted object is gone (its finalizers
    done, a pod's containers stopped by its kubelet), or report the ones that are not."""
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while pending:
        still = []
        for target, name, ns, uid in pending:
            try:
                obj = await ctx.client.get(target.info.name, name, ns or None)
            except errors.NotFound:
                continue
            except errors.ApiError as e:
                ctx.api_error(e)
                continue
            if (obj.get("metadata") or {}).get("uid") == uid:
                still.append((target, name, ns, uid))
        pending = still
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            for target, name, _, _ in pending:
                ctx.error(f"timed out waiting for the condition on {target.info.name}/{name}")
            return
        await asyncio.sleep(WAIT_POLL)


async def _names(ctx: Context, args: argparse.Namespace, target: Target) -> list[tuple[str, str]]:
    """(name, namespace) pairs to delete: the named ones, or those the selectors list."""
    if target.names:
        return [(n, namespace_of(ctx, target, n)) for n in target.names]
    query = Query(all_namespaces=args.all_namespaces, label_selector=args.selector,
                  field_selector=args.field_selector)
    try:
        objs = await fetch(ctx, target, query)
    except errors.ApiError as e:
        ctx.api_error(e)
        return []
    return [(str(o["metadata"]["name"]), str(o["metadata"].get("namespace") or "")) for o in objs]


async def _delete_one(ctx: Context, args: argparse.Namespace, target: Target, name: str, ns: str,
                      policy: str, grace: int | None) -> str:
    """Delete one object; its uid while it still exists (being finalized), else ""."""
    try:
        after = await ctx.client.delete(target.info.name, name, ns, grace_period_seconds=grace,
                                        propagation_policy=policy)
    except errors.NotFound as e:
        if not args.ignore_not_found:
            ctx.api_error(e)
        return ""
    except errors.ApiError as e:
        ctx.api_error(e)
        return ""
    ctx.warnings()
    kind = ref(target.info)
    ctx.print(f"{kind}/{name}" if args.output == "name" else f'{kind} "{name}" deleted')
    md = after.get("metadata") or {}
    return str(md.get("uid") or "") if md.get("deletionTimestamp") else ""


COMMAND = Command(
    name="delete",
    summary="Delete resources by file names, stdin, resources and names, or by resources and "
            "label selector",
    usage="tkctl delete ([-f FILENAME] | TYPE [(NAME | -l label | --all)]) [flags]",
    configure=configure,
    run=run,
    group="Basic Commands",
)
