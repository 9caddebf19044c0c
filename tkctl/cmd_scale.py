"""`tkctl scale`: set the replica count of a Deployment, ReplicaSet or ReplicationController.

Like kubectl it goes through the `scale` subresource (autoscaling/v1 Scale), so it changes only
`spec.replicas` whatever the kind. `--current-replicas` and `--resource-version` are
preconditions: the scale is refused when the object is not in the state the user expects.
"""

from __future__ import annotations

import argparse
from typing import Any

from api import errors
from tkctl import cli
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import Query, Target, fetch, ref, verb_targets

Obj = dict[str, Any]
SCALABLE = ("deployments", "replicasets", "replicationcontrollers")
CONFLICT_RETRIES = 5
_COUNT_ERROR = "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--replicas", type=int, default=None,
                   help="The new desired number of replicas. Required.")
    p.add_argument("--current-replicas", type=int, default=-1,
                   help="Precondition for current size. Requires that the current size of the "
                        "resource match this value in order to scale. -1 (default) for no "
                        "condition.")
    p.add_argument("--resource-version", default="",
                   help="Precondition for resource version. Requires that the current resource "
                        "version match this value in order to scale.")
    cli.add_filename(p, "scale")
    cli.add_selector(p)
    cli.add_bool(p, "--all", help="Select all resources in the namespace of the specified "
                                  "resource types")
    cli.add_output(p, ("name",))


def _targets(ctx: Context, args: argparse.Namespace) -> list[Target]:
    return verb_targets(ctx, args, args.resources, "scale",
                        missing="Required resource not specified.",
                        selecting=bool(args.all or args.selector))


async def run(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("name",))
    if args.replicas is None or args.replicas < 0:
        raise UsageError(_COUNT_ERROR)
    query = Query(label_selector=args.selector)
    for target in _targets(ctx, args):
        if target.info.name not in SCALABLE:
            for name in target.names or ["*"]:
                ctx.error(f'cannot scale {target.info.name} "{name}": only deployments, '
                          "replicasets and replicationcontrollers have a scale subresource")
            continue
        try:
            objs = await fetch(ctx, target, query)
        except errors.ApiError as e:
            ctx.api_error(e)
            continue
        for obj in objs:
            await _scale_one(ctx, args, target, obj)


async def _scale_one(ctx: Context, args: argparse.Namespace, target: Target, obj: Obj) -> None:
    md = obj.get("metadata") or {}
    name, ns = str(md.get("name", "")), str(md.get("namespace") or "")
    for attempt in range(CONFLICT_RETRIES):
        try:
            await _try_scale(ctx, args, target, name, ns)
        except _PreconditionFailed as e:
            ctx.error(str(e))
            return
        except errors.Conflict as e:
            # A controller wrote the object between our read and our write (status updates
            # bump its resourceVersion): read again and re-check, as kubectl retries.
            if attempt + 1 < CONFLICT_RETRIES:
                continue
            ctx.api_error(e)
            return
        except errors.ApiError as e:
            ctx.api_error(e)
            return
        break
    shown = f"{ref(target.info)}/{name}"
    ctx.print(shown if args.output == "name" else f"{shown} scaled")


class _PreconditionFailed(Exception):
    """--current-replicas or --resource-version does not hold (checked client-side, as
    kubectl's ScalePrecondition)."""


async def _try_scale(ctx: Context, args: argparse.Namespace, target: Target, name: str,
                     ns: str) -> None:
    scale = await ctx.client.get(target.info.name, name, ns, subresource="scale")
    current = int((scale.get("spec") or {}).get("replicas") or 0)
    meta = scale.setdefault("metadata", {})
    if args.current_replicas >= 0 and args.current_replicas != current:
        raise _PreconditionFailed(f"Expected replicas to be {args.current_replicas}, "
                                  f"was {current}")
    if args.resource_version and args.resource_version != meta.get("resourceVersion"):
        raise _PreconditionFailed(f"Expected resource version to be {args.resource_version}, "
                                  f"was {meta.get('resourceVersion')}")
    if args.current_replicas < 0 and not args.resource_version:
        # No precondition: the server applies the count to whatever version it has (kubectl
        # sends a patch here), so concurrent status writes cannot make it fail.
        meta.pop("resourceVersion", None)
    scale["spec"] = {**(scale.get("spec") or {}), "replicas": args.replicas}
    await ctx.client.update(target.info.name, scale, ns, subresource="scale")


COMMAND = Command(
    name="scale", summary="Set a new size for a deployment, replica set, or replication "
                          "controller",
    usage="tkctl scale [--resource-version=version] [--current-replicas=count] "
          "--replicas=COUNT (-f FILENAME | TYPE NAME)",
    configure=configure, run=run, group="Deploy Commands",
)
