"""`tkctl describe`: fetch an object and what explains it, and print kubectl's page for it.

Besides the object this reads what kubectl's describers read: the Events whose involvedObject is
the object (by uid, through the events field selector), a Deployment's ReplicaSets, a
ReplicaSet's pods, a Service's Endpoints, a Node's pods. A name that matches nothing is tried as a
prefix, as kubectl does (`describe pods nginx` describes every pod whose name starts with nginx).
"""

from __future__ import annotations

import argparse
from typing import Any

from api import errors
from tkctl import cli, describe, printers
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import (
    Query,
    Target,
    fetch,
    namespace_of,
    no_resources,
    parse_targets,
    targets_from_files,
    with_type,
)

Obj = dict[str, Any]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE [NAME_PREFIX] | TYPE/NAME)")
    cli.add_filename(p, "describe")
    cli.add_selector(p)
    cli.add_bool(p, "-A", "--all-namespaces", help="Describe across all namespaces")
    p.add_argument("--show-events", action=argparse.BooleanOptionalAction, default=True,
                   help="If true, display events related to the described object")


def _targets(ctx: Context, args: argparse.Namespace) -> list[Target]:
    if args.filename:
        return targets_from_files(ctx, args)
    if not args.resources:
        raise UsageError("You must specify the type of resource to describe. Use \"tkctl "
                         "api-resources\" for a complete list of supported resources.")
    return parse_targets(args.resources, "describe")


async def run(ctx: Context, args: argparse.Namespace) -> None:
    pages: list[str] = []
    targets = _targets(ctx, args)
    for target in targets:
        for obj in await _objects(ctx, args, target):
            pages.append(await page_for(ctx, obj, show_events=args.show_events))
    if pages:
        ctx.print("\n\n\n".join(pages))
    elif not ctx.failed:
        info = targets[0].info if len(targets) == 1 else None
        ctx.print_err(no_resources(ctx, info, args.all_namespaces))


async def _objects(ctx: Context, args: argparse.Namespace, target: Target) -> list[Obj]:
    query = Query(all_namespaces=args.all_namespaces, label_selector=args.selector)
    if not target.names:
        return await fetch(ctx, target, query)
    out: list[Obj] = []
    for name in target.names:
        one = Target(target.info, [name], target.namespaces, target.source)
        try:
            out.append(with_type(
                await ctx.client.get(target.info.name, name, namespace_of(ctx, one, name)),
                target.info))
        except errors.NotFound as e:
            matches = await _by_prefix(ctx, one, name)
            if not matches:
                ctx.api_error(e)
            out.extend(matches)
        except errors.ApiError as e:
            ctx.api_error(e)
    return out


async def _by_prefix(ctx: Context, target: Target, prefix: str) -> list[Obj]:
    items = await fetch(ctx, Target(target.info), Query())
    return [o for o in items if str(printers.name_of(o)).startswith(prefix)]


async def events_for(ctx: Context, obj: Obj) -> list[Obj]:
    """Events about this object, by uid (falling back to kind and name)."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace") or None
    try:
        items, _ = await ctx.client.list_all(
            "events", ns, field_selector=f"involvedObject.uid={md.get('uid', '')}")
        return items
    except errors.ApiError:
        pass
    try:
        items, _ = await ctx.client.list_all("events", ns)
    except errors.ApiError:
        return []
    return [e for e in items if _about(e, obj)]


def _about(ev: Obj, obj: Obj) -> bool:
    inv, md = ev.get("involvedObject") or {}, obj.get("metadata") or {}
    if inv.get("uid") and md.get("uid"):
        return bool(inv["uid"] == md["uid"])
    return bool(inv.get("kind") == obj.get("kind") and inv.get("name") == md.get("name"))


async def _owned(ctx: Context, resource: str, owner: Obj) -> list[Obj]:
    md = owner.get("metadata") or {}
    try:
        items, _ = await ctx.client.list_all(resource, md.get("namespace"))
    except errors.ApiError:
        return []
    return [i for i in items if any(
        r.get("uid") == md.get("uid") for r in (i.get("metadata") or {}).get("ownerReferences")
        or [])]


async def _optional_get(ctx: Context, resource: str, name: str, ns: str) -> Obj | None:
    try:
        return await ctx.client.get(resource, name, ns)
    except errors.ApiError:
        return None


async def page_for(ctx: Context, obj: Obj, *, show_events: bool = True) -> str:
    kind, now = obj.get("kind"), printers.utcnow()
    events = await events_for(ctx, obj) if show_events else None
    md = obj.get("metadata") or {}
    if kind == "Pod":
        return describe.describe_pod(obj, events, now)
    if kind == "Deployment":
        return describe.describe_deployment(obj, await _owned(ctx, "replicasets", obj), events,
                                            now)
    if kind in ("ReplicaSet", "ReplicationController"):
        return describe.describe_replicaset(obj, await _owned(ctx, "pods", obj), events, now)
    if kind == "Service":
        endpoints = await _optional_get(ctx, "endpoints", md.get("name", ""),
                                        md.get("namespace", ""))
        return describe.describe_service(obj, endpoints, events, now)
    if kind == "Node":
        return describe.describe_node(obj, await _node_pods(ctx, md.get("name", "")), events,
                                      now)
    if kind == "Namespace":
        return describe.describe_namespace(obj, events, now)
    if kind == "ConfigMap":
        return describe.describe_configmap(obj, events, now)
    if kind == "Secret":
        return describe.describe_secret(obj, events, now)
    return describe.describe_generic(obj, events, now)


async def _node_pods(ctx: Context, node: str) -> list[Obj]:
    try:
        items, _ = await ctx.client.list_all("pods", None, field_selector=f"spec.nodeName={node}")
    except errors.ApiError:
        return []
    return items


COMMAND = Command(
    name="describe",
    summary="Show details of a specific resource or group of resources",
    usage="tkctl describe (-f FILENAME | TYPE [NAME_PREFIX | -l label] | TYPE/NAME) [flags]",
    configure=configure,
    run=run,
    group="Troubleshooting and Debugging Commands",
)
