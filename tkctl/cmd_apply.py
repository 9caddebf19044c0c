"""`tkctl apply`, `create -f` and `replace -f`: sending manifests to the server.

apply is kubectl's client-side apply: create the object if it is missing (recording the manifest
in the last-applied annotation), otherwise send the three-way merge patch of `tkctl.merge`, and
say `created`, `configured` or `unchanged`. create fails on an existing object; replace sends the
manifest whole, with its resourceVersion, so a stale copy is refused with Conflict.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from api import errors
from api.resources import ResourceInfo, for_kind
from tkctl import cli, manifests, merge
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import load_manifests, manifest_namespace, mapping_error, ref

Obj = dict[str, Any]


class Step:
    """What a handler is doing, for kubectl's `error when creating "x.yaml": ...`."""

    def __init__(self, verb: str) -> None:
        self.verb = verb


Handler = Callable[[Context, ResourceInfo, Obj, str, Step], Awaitable[str]]


def configure(p: argparse.ArgumentParser) -> None:
    cli.add_filename(p, "send")
    cli.add_output(p, ("name",))


def _prepare(ctx: Context, m: manifests.Manifest) -> tuple[ResourceInfo, Obj, str] | None:
    """Map the manifest to its resource and namespace; report and skip it if it cannot be."""
    md = m.obj.get("metadata") or {}
    try:
        info = for_kind(str(m.obj["apiVersion"]), str(m.obj["kind"]))
    except errors.NotFound as e:
        ctx.error(mapping_error(m, e, str(md.get("namespace") or "")))
        return None
    ns = manifest_namespace(ctx, info, m.obj)
    obj = copy.deepcopy(m.obj)
    if info.namespaced:
        obj.setdefault("metadata", {})["namespace"] = ns
    return info, obj, ns


async def _each(ctx: Context, args: argparse.Namespace, verb: str, handler: Handler) -> None:
    cli.check_output(args.output, ("name",))
    if not args.filename:
        raise UsageError("must specify one of -f and -k")
    items = load_manifests(ctx, args)
    if not items:
        raise UsageError(f"no objects passed to {verb}")
    for m in items:
        prepared = _prepare(ctx, m)
        if prepared is None:
            continue
        info, obj, ns = prepared
        step = Step("creating" if verb == "create" else "retrieving")
        try:
            result = await handler(ctx, info, obj, ns, step)
        except errors.ApiError as e:
            ctx.warnings()
            ctx.api_error(e, verb=step.verb, source=m.source)
            continue
        ctx.warnings()
        shown = f"{ref(info)}/{(obj.get('metadata') or {}).get('name', '')}"
        ctx.print(shown if args.output == "name" else f"{shown} {result}")


def _require_name(obj: Obj) -> str:
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name and not (obj.get("metadata") or {}).get("generateName"):
        raise errors.Invalid(message="resource name may not be empty",
                             causes=[errors.Cause("metadata.name", "Required value: "
                                                  "name or generateName is required")])
    return name


async def _apply(ctx: Context, info: ResourceInfo, obj: Obj, ns: str, step: Step) -> str:
    name = _require_name(obj)
    modified = merge.with_last_applied(obj)
    try:
        current = await ctx.client.get(info.name, name, ns)
    except errors.NotFound:
        step.verb = "creating"
        await ctx.client.create(info.name, modified, ns)
        return "created"
    patch = merge.three_way_patch(merge.last_applied(current), modified, current)
    if not patch:
        return "unchanged"
    step.verb = "patching"
    await ctx.client.patch(info.name, name, patch, ns, patch_type="merge")
    return "configured"


async def _create(ctx: Context, info: ResourceInfo, obj: Obj, ns: str, step: Step) -> str:
    created = await ctx.client.create(info.name, obj, ns)
    obj.setdefault("metadata", {})["name"] = (created.get("metadata") or {}).get("name", "")
    return "created"


async def _replace(ctx: Context, info: ResourceInfo, obj: Obj, ns: str, step: Step) -> str:
    name = _require_name(obj)
    step.verb = "replacing"
    md = obj.setdefault("metadata", {})
    if not md.get("resourceVersion"):
        # No resourceVersion in the manifest: an unconditional replace of the live object.
        current = await ctx.client.get(info.name, name, ns)
        md["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion", "")
    await ctx.client.update(info.name, obj, ns)
    return "replaced"


async def run_apply(ctx: Context, args: argparse.Namespace) -> None:
    await _each(ctx, args, "apply", _apply)


async def run_create(ctx: Context, args: argparse.Namespace) -> None:
    await _each(ctx, args, "create", _create)


async def run_replace(ctx: Context, args: argparse.Namespace) -> None:
    await _each(ctx, args, "replace", _replace)


APPLY = Command(
    name="apply", summary="Apply a configuration to a resource by file name or stdin",
    usage="tkctl apply (-f FILENAME) [flags]", configure=configure, run=run_apply,
    group="Advanced Commands",
)
CREATE = Command(
    name="create", summary="Create a resource from a file or from stdin",
    usage="tkctl create -f FILENAME [flags]", configure=configure, run=run_create,
    group="Basic Commands",
)
REPLACE = Command(
    name="replace", summary="Replace a resource by file name or stdin",
    usage="tkctl replace -f FILENAME [flags]", configure=configure, run=run_replace,
    group="Advanced Commands",
)


# --- create token ---------------------------------------------------------------------------


def configure_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("serviceaccount", nargs="?", metavar="SERVICE_ACCOUNT_NAME")
    p.add_argument("--duration", default="0s",
                   help="Requested lifetime of the token (e.g. 10m, 1h); the server may return "
                        "a token with a longer or shorter lifetime. 0: the server's default")
    p.add_argument("--audience", action="append", default=[],
                   help="Intended audience of the token (repeatable); default: the apiserver's")


def token_request(args: argparse.Namespace) -> Obj:
    """The TokenRequest body (authentication.k8s.io/v1) for `create token`'s flags."""
    try:
        seconds = cli.duration(args.duration)
    except ValueError:
        raise UsageError(f'invalid argument "{args.duration}" for "--duration" flag: '
                         f'time: invalid duration "{args.duration}"') from None
    if seconds < 0:
        raise UsageError("--duration must be greater than or equal to 0")
    if seconds != int(seconds):
        raise UsageError("--duration cannot be expressed in units less than seconds")
    if any(not a for a in args.audience):
        raise UsageError("--audience must not be an empty string")
    spec: Obj = {"audiences": list(args.audience)}
    if seconds:
        spec["expirationSeconds"] = int(seconds)
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "metadata": {},
            "spec": spec}


async def run_create_token(ctx: Context, args: argparse.Namespace) -> None:
    """kubectl create token: a create on the serviceaccounts/NAME/token subresource. The token
    goes to stdout alone, so `$(tkctl create token x)` works."""
    if not args.serviceaccount:
        raise UsageError("SERVICE_ACCOUNT_NAME is required: tkctl create token NAME")
    result = await ctx.client.create(
        "serviceaccounts", token_request(args), ctx.namespace, name=args.serviceaccount,
        subresource="token",
    )
    token = (result.get("status") or {}).get("token")
    if not token:
        raise UsageError("the server returned no token")
    ctx.print(str(token))


CREATE_TOKEN = Command(
    name="create token", summary="Request a service account token",
    usage="tkctl create token SERVICE_ACCOUNT_NAME [--duration 1h] [--audience A]... [flags]",
    configure=configure_token, run=run_create_token, group="Basic Commands",
)


# --- create namespace -----------------------------------------------------------------------


def configure_namespace(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="NAME")
    cli.add_bool(p, "--dry-run", help="Only print what would be created")


async def run_create_namespace(ctx: Context, args: argparse.Namespace) -> None:
    """kubectl create namespace NAME: the one generator people type every day."""
    if not args.name:
        raise UsageError("NAME is required: tkctl create namespace NAME")
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.name}}
    await ctx.client.create("namespaces", body, dry_run=args.dry_run)
    ctx.print(f"namespace/{args.name} created{' (server dry run)' if args.dry_run else ''}")


CREATE_NAMESPACE = Command(
    name="create namespace", summary="Create a namespace with the specified name",
    usage="tkctl create namespace NAME [--dry-run] [flags]",
    configure=configure_namespace, run=run_create_namespace, group="Basic Commands",
    aliases=("create ns",),
)
