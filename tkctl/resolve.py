"""From what the user typed to the objects a verb acts on.

kubectl accepts `TYPE`, `TYPE NAME...`, `TYPE1,TYPE2`, `TYPE/NAME...`, `all`, short and
group-qualified names (`po`, `deployments.apps`), or `-f` manifests. This module turns those into
`Target`s (a resource plus names) and fetches the objects, reporting each missing one in kubectl's
words and carrying on with the rest.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from api import errors
from api.resources import ResourceInfo, for_kind, lookup
from tkctl import manifests
from tkctl.context import Context, UsageError

Obj = dict[str, Any]

# What `kubectl get all` shows (the "all" category), in kubectl's order.
ALL = ("pods", "services", "replicationcontrollers", "deployments", "replicasets")


@dataclass
class Target:
    """One resource type and the names asked for (none: every object, filtered by selectors)."""

    info: ResourceInfo
    names: list[str] = field(default_factory=list)
    # For objects from `-f`: the namespace each name lives in and the file it came from.
    namespaces: dict[str, str] = field(default_factory=dict)
    source: str = ""


def ref(info: ResourceInfo) -> str:
    """`deployment.apps` or `pod`: how kubectl names a kind in `created`/`deleted` lines."""
    kind = info.kind.lower()
    return f"{kind}.{info.group}" if info.group else kind


def _lookup_all(spec: str) -> list[ResourceInfo]:
    out: list[ResourceInfo] = []
    for part in spec.split(","):
        if not part:
            continue
        if part == "all":
            out.extend(lookup(r) for r in ALL)
        else:
            out.append(lookup(part))
    return out


def parse_targets(args: list[str], verb: str) -> list[Target]:
    """`TYPE[,TYPE] [NAME...]` or `TYPE/NAME...` into targets; UsageError or NotFound if bad."""
    if not args:
        return []
    if any("/" in a for a in args):
        return _slash_targets(args, verb)
    infos = _lookup_all(args[0])
    if args[1:] and "all" in args[0].split(","):
        raise UsageError("names cannot be given with the \"all\" category")
    return [Target(info, list(args[1:])) for info in infos]


def _slash_targets(args: list[str], verb: str) -> list[Target]:
    if not all("/" in a for a in args):
        if "/" not in args[0]:
            raise UsageError(
                "there is no need to specify a resource type as a separate argument when "
                f"passing arguments in resource/name form (e.g. 'tkctl {verb} resource/"
                f"<resource_name>' instead of 'tkctl {verb} resource resource/<resource_name>')"
            )
        raise UsageError("arguments in resource/name form must have a single resource and name")
    targets: dict[str, Target] = {}
    for arg in args:
        kind, _, name = arg.partition("/")
        if not kind or not name or "/" in name:
            raise UsageError("arguments in resource/name form must have a single resource and name")
        info = lookup(kind)
        targets.setdefault(info.name, Target(info)).names.append(name)
    return list(targets.values())


def manifest_namespace(ctx: Context, info: ResourceInfo, obj: Obj) -> str:
    """The namespace an object from a manifest goes to; kubectl's error if `-n` disagrees."""
    if not info.namespaced:
        return ""
    own = str((obj.get("metadata") or {}).get("namespace") or "")
    if own and ctx.explicit_namespace and own != ctx.namespace:
        raise UsageError(
            f'the namespace from the provided object "{own}" does not match the namespace '
            f'"{ctx.namespace}". You must pass \'--namespace={own}\' to perform this operation.'
        )
    return own or ctx.namespace


def mapping_error(m: manifests.Manifest, exc: errors.ApiError, namespace: str = "") -> str:
    md = m.obj.get("metadata") or {}
    return (f'resource mapping not found for name: "{md.get("name", "")}" namespace: '
            f'"{namespace}" from "{m.source}": {exc.message}')


def load_manifests(ctx: Context, args: argparse.Namespace) -> list[manifests.Manifest]:
    return manifests.load(args.filename, recursive=getattr(args, "recursive", False),
                          stdin=ctx.stdin)


def targets_from_files(ctx: Context, args: argparse.Namespace,
                       resources: list[str] | None = None) -> list[Target]:
    """Targets naming each object in the `-f` manifests (for get, delete, label, ...).
    `resources`: the verb's TYPE/NAME arguments, which must then be empty."""
    if resources:
        raise UsageError("arguments cannot be given together with -f")
    out: list[Target] = []
    for m in load_manifests(ctx, args):
        try:
            info = for_kind(str(m.obj["apiVersion"]), str(m.obj["kind"]))
        except errors.NotFound as e:
            ctx.error(mapping_error(m, e))
            continue
        name = str((m.obj.get("metadata") or {}).get("name") or "")
        ns = manifest_namespace(ctx, info, m.obj)
        out.append(Target(info, [name], {name: ns}, m.source))
    return out


def verb_targets(ctx: Context, args: argparse.Namespace, resources: list[str], verb: str, *,
                 missing: str, selecting: bool, exclusive: bool = False) -> list[Target]:
    """What a verb (delete, label, scale, ...) acts on: the `-f` objects, or its TYPE NAME /
    TYPE/NAME arguments, with kubectl's usage errors: nothing given (`missing`), a type with
    neither names nor a selector, and (`exclusive`) names together with a selector."""
    if args.filename:
        return targets_from_files(ctx, args, resources)
    if not resources:
        raise UsageError(missing)
    targets = parse_targets(resources, verb)
    for t in targets:
        if t.names and selecting and exclusive:
            raise UsageError("name cannot be provided when a selector is specified")
        if not t.names and not selecting:
            raise UsageError("resource(s) were provided, but no name was specified")
    return targets


def namespace_of(ctx: Context, target: Target, name: str | None = None) -> str:
    if not target.info.namespaced:
        return ""
    if name is not None and name in target.namespaces:
        return target.namespaces[name]
    return ctx.namespace


def with_type(obj: Obj, info: ResourceInfo) -> Obj:
    """List items may omit apiVersion/kind; printers need them."""
    obj.setdefault("apiVersion", info.api_version)
    obj.setdefault("kind", info.kind)
    return obj


@dataclass
class Query:
    """How to select objects when no names are given."""

    all_namespaces: bool = False
    label_selector: str = ""
    field_selector: str = ""
    ignore_not_found: bool = False


async def fetch(ctx: Context, target: Target, query: Query) -> list[Obj]:
    """The target's objects: each named one (NotFound reported, the rest still fetched) or all
    that match the selectors."""
    info = target.info
    if not target.names:
        ns = None if query.all_namespaces else namespace_of(ctx, target)
        items, _ = await ctx.client.list_all(
            info.name, ns, label_selector=query.label_selector,
            field_selector=query.field_selector,
        )
        return [with_type(i, info) for i in items]
    out: list[Obj] = []
    for name in target.names:
        try:
            out.append(with_type(
                await ctx.client.get(info.name, name, namespace_of(ctx, target, name)), info))
        except errors.NotFound as e:
            if not query.ignore_not_found:
                ctx.api_error(e)
        except errors.ApiError as e:
            ctx.api_error(e)
    return out


def no_resources(ctx: Context, info: ResourceInfo | None, all_namespaces: bool) -> str:
    """kubectl's `No resources found in default namespace.` (or without a namespace)."""
    if all_namespaces or (info is not None and not info.namespaced):
        return "No resources found"
    return f"No resources found in {ctx.namespace} namespace."
