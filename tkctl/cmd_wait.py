"""`tkctl wait`: block until objects reach a condition, a field value, or are gone.

Walkthroughs and scripts need "until the pod is Ready" without a sleep that is too short on a
slow machine and too long on a fast one; kubectl's answer is `kubectl wait`, and this is it:
`--for=condition=Ready[=true]`, `--for=jsonpath='{.status.phase}'=Running` (kubectl's JSONPath,
tkctl/jsonpath.py: filters such as `{.status.conditions[?(@.type=="Ready")].status}=True` too;
the path must select one scalar) and `--for=delete`, with `--timeout` (default 30s). One line
`pod/web condition met` per object; on timeout kubectl's `timed out waiting for the condition on
pods/web` and exit 1. It polls (twice a second), which is all a person at a terminal needs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from api import errors
from tkctl import cli
from tkctl.context import Command, Context, UsageError
from tkctl.jsonpath import JSONPathError, Template, go_value, parse
from tkctl.resolve import Query, fetch, ref, verb_targets

Obj = dict[str, Any]
POLL = 0.5


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    p.add_argument("--for", dest="for_", default="",
                   help="The condition to wait on: [delete|condition=condition-name[=condition-"
                        "value]|jsonpath='{JSONPath expression}'=JSONPath Condition]. The default "
                        "condition-value is true.")
    p.add_argument("--timeout", type=cli.duration, default=30.0,
                   help="The length of time to wait before giving up, e.g. 30s, 1m. Zero means "
                        "check once and don't wait.")
    cli.add_filename(p, "wait for")
    cli.add_selector(p)
    cli.add_bool(p, "--all", help="Select all resources in the namespace of the specified "
                                  "resource types")


def _jsonpath_value(template: Template, obj: Obj) -> str | None:
    """The one scalar `template` selects in `obj` as Go's %v prints it (kubectl wait's rule);
    None when it selects nothing. More than one value, or a map or list, is an error."""
    try:
        values = template.results(obj)
    except JSONPathError as e:
        # `containerStatuses[0]` of a pod the kubelet has not reported on yet: not met yet
        # (the object may still grow the element), where `get -o jsonpath` fails at once.
        if e.reason.startswith("array index out of bounds"):
            return None
        raise UsageError(str(e)) from None
    if not values:
        return None
    if len(values) > 1:
        raise UsageError(f"given jsonpath expression matches more than one value: "
                         f"{template.source}")
    if isinstance(values[0], dict | list):
        raise UsageError(f"jsonpath leads to a nested object or list which is not supported: "
                         f"{template.source}")
    return go_value(values[0])


def condition_check(spec: str) -> Callable[[Obj | None], bool] | None:
    """The predicate `--for` describes (None: `delete`, met when the object is gone)."""
    kind, _, rest = spec.partition("=")
    if kind == "delete" and not rest:
        return None
    if kind == "condition" and rest:
        name, _, want = rest.partition("=")
        wanted = (want or "true").lower()

        def has_condition(obj: Obj | None) -> bool:
            for c in ((obj or {}).get("status") or {}).get("conditions") or []:
                if str(c.get("type", "")).lower() == name.lower():
                    return str(c.get("status", "")).lower() == wanted
            return False
        return has_condition
    if kind == "jsonpath" and rest:
        # `{.status.phase}=Running`, the braces possibly still quoted: '{...}'=Running. The
        # value follows the last `}`, so filters (`[?(@.type=="Ready")]`) keep their `==`.
        close = rest.rfind("}")
        tail = rest[close + 1:].lstrip("'\"")
        if close < 0 or not tail.startswith("="):
            raise UsageError("jsonpath wait format must be --for=jsonpath='{.status.readyReplicas}'"
                             "=3")
        expr, want = rest[:close + 1].lstrip("'\""), tail[1:]
        try:
            template = parse(expr)
        except JSONPathError as e:
            raise UsageError(str(e)) from None
        value = want.strip("'\"")
        return lambda obj: obj is not None and _jsonpath_value(template, obj) == value
    raise UsageError(f"unrecognized condition: {spec!r}" if spec else
                     "--for must be set: delete, condition=NAME[=VALUE] or "
                     "jsonpath='{.path}'=VALUE")


async def run(ctx: Context, args: argparse.Namespace) -> None:
    check = condition_check(args.for_)
    targets = verb_targets(ctx, args, args.resources, "wait",
                           missing="resource(s) were provided, but no name was specified",
                           selecting=bool(args.all or args.selector))
    deadline = time.monotonic() + max(0.0, args.timeout)
    # A named object that is already gone has met `--for=delete`; for the other conditions
    # fetch reports it (`pods "x" not found`) and the exit code is 1.
    query = Query(label_selector=args.selector, ignore_not_found=check is None)
    for target in targets:
        try:
            objs = await fetch(ctx, target, query)
        except errors.ApiError as e:
            ctx.api_error(e)
            continue
        if check is not None and not objs and not target.names:
            ctx.error("no matching resources found")
        for obj in objs:
            await _wait_one(ctx, target.info, obj, check, deadline)


async def _wait_one(ctx: Context, info: Any, obj: Obj,
                    check: Callable[[Obj | None], bool] | None, deadline: float) -> None:
    md = obj.get("metadata") or {}
    name, ns, uid = md.get("name", ""), md.get("namespace") or "", md.get("uid")
    current: Obj | None = obj
    while True:
        gone = current is None or (current.get("metadata") or {}).get("uid") != uid
        if (check is None and gone) or (check is not None and not gone and check(current)):
            ctx.print(f"{ref(info)}/{name} condition met")
            return
        if time.monotonic() >= deadline:
            ctx.error(f"timed out waiting for the condition on {info.name}/{name}")
            return
        await asyncio.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        try:
            current = await ctx.client.get(info.name, name, ns or None)
        except errors.NotFound:
            current = None
        except errors.ApiError as e:
            ctx.api_error(e)
            return


COMMAND = Command(
    name="wait", summary="Experimental: Wait for a specific condition on one or many resources",
    usage="tkctl wait ([-f FILENAME] | resource.group/resource.name | resource.group "
          "[(-l label | --all)]) [--for=delete|--for condition=available|--for=jsonpath='{}'"
          "[=value]]",
    configure=configure, run=run, group="Advanced Commands",
)
