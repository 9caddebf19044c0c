"""`tkctl patch`: a JSON merge patch (RFC 7386) or JSON patch (RFC 6902) sent to the server.

kubectl's default patch type is strategic merge, which needs Go struct tags tinykube does not
have; `--type strategic` is refused with a pointer to `merge`, and without `--type` tkctl uses
merge (identical to strategic for everything but lists of named items). The patch may be JSON or
YAML, given with `-p` or `--patch-file`, as in kubectl.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from api import decoding, errors
from tkctl import cli, printers
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import Query, Target, fetch, parse_targets, ref, targets_from_files

Obj = dict[str, Any]
TYPES = ("json", "merge", "strategic")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="(TYPE NAME | TYPE/NAME)")
    cli.add_filename(p, "patch")
    p.add_argument("-p", "--patch", default=None, help="The patch to be applied (JSON or YAML)")
    p.add_argument("--patch-file", default="", help="A file containing the patch")
    p.add_argument("--type", default="", dest="patch_type",
                   help='The type of patch: "json" or "merge" (default); "strategic" is not '
                        "supported")
    p.add_argument("--subresource", default="", choices=["", "status", "scale"],
                   help='Patch this subresource ("status" or "scale")')
    cli.add_output(p, ("name", "json", "yaml"))


def patch_type(value: str) -> str:
    if value in ("", "merge"):
        return "merge"
    if value == "json":
        return "json"
    if value == "strategic":
        raise UsageError("strategic merge patch is not supported by tinykube: use --type merge "
                         "(a JSON merge patch; lists are replaced whole) or --type json")
    raise UsageError(f'--type must be one of [json merge strategic], not "{value}"')


def read_patch(args: argparse.Namespace) -> Any:
    """The patch document from `-p` or `--patch-file`, parsed as JSON or YAML."""
    if args.patch is not None and args.patch_file:
        raise UsageError("--patch and --patch-file are mutually exclusive")
    text = args.patch
    if args.patch_file:
        try:
            text = Path(args.patch_file).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"unable to read patch file: {e}") from None
    if text is None:
        raise UsageError("must specify --patch or --patch-file containing the contents of the "
                         "patch")
    try:
        doc = decoding.load_yaml(text)  # bounded: a patch is input like any manifest
    except yaml.YAMLError as e:
        raise UsageError(f"unable to parse {text!r}: {_yaml_problem(e)}") from None
    if not isinstance(doc, dict | list):
        raise UsageError(f"unable to parse {text!r}: not a JSON object or array")
    return doc


def _yaml_problem(e: yaml.YAMLError) -> str:
    return str(getattr(e, "problem", None) or e).splitlines()[0]


def _targets(ctx: Context, args: argparse.Namespace) -> list[Target]:
    if args.filename:
        return targets_from_files(ctx, args)
    targets = parse_targets(args.resources, "patch")
    if not targets or any(not t.names for t in targets):
        raise UsageError("resource(s) were provided, but no name was specified"
                         if targets else "must specify a resource type and name to patch")
    return targets


async def run(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("name", "json", "yaml"))
    kind = patch_type(args.patch_type)
    doc = read_patch(args)
    if kind == "json" and not isinstance(doc, list):
        raise UsageError("json patch must be a JSON array of operations")
    if kind == "merge" and not isinstance(doc, dict):
        raise UsageError("merge patch must be a JSON object")
    for target in _targets(ctx, args):
        for before in await fetch(ctx, target, Query()):
            await _patch_one(ctx, args, target, before, doc, kind)


async def _patch_one(ctx: Context, args: argparse.Namespace, target: Target, before: Obj,
                     doc: Any, kind: str) -> None:
    md = before.get("metadata") or {}
    name = str(md.get("name", ""))
    try:
        after = await ctx.client.patch(target.info.name, name, doc, md.get("namespace") or "",
                                       patch_type=kind, subresource=args.subresource)
    except errors.ApiError as e:
        ctx.api_error(e)
        return
    ctx.warnings()
    if args.output in ("json", "yaml"):
        ctx.print(printers.format_structured(after, args.output))
        return
    shown = f"{ref(target.info)}/{name}"
    changed = (after.get("metadata") or {}).get("resourceVersion") != md.get("resourceVersion")
    if args.output == "name":
        ctx.print(shown)
    else:
        ctx.print(f"{shown} patched" if changed else f"{shown} patched (no change)")


COMMAND = Command(
    name="patch",
    summary="Update fields of a resource",
    usage="tkctl patch (-f FILENAME | TYPE NAME) [-p PATCH|--patch-file FILE] "
          "[--type merge|json] [flags]",
    configure=configure,
    run=run,
    group="Advanced Commands",
)
