"""`tkctl label` and `tkctl annotate`: `key=value` to set, `key-` to remove, kubectl's rules.

Changing a key that already has a different value needs `--overwrite` (kubectl's error
otherwise). The change goes to the server as a JSON merge patch on metadata.labels or
metadata.annotations, with the object's resourceVersion only when `--resource-version` is given,
so concurrent writers of other fields are not disturbed.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import Any

from api import errors
from tkctl import cli, printers
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import Query, Target, fetch, ref, verb_targets

Obj = dict[str, Any]

_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


@dataclass
class Changes:
    """What the command line asks for: keys to set and keys to remove."""

    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def is_change(arg: str) -> bool:
    return "=" in arg or arg.endswith("-")


def parse_changes(args: list[str], noun: str) -> Changes:
    """`a=b c-` into Changes; kubectl's errors for malformed or contradictory specs."""
    ch = Changes()
    for arg in args:
        if arg.endswith("-") and "=" not in arg:
            ch.remove.append(arg[:-1])
            continue
        key, _, value = arg.partition("=")
        if not key:
            raise UsageError(f"invalid {noun} spec: {arg}")
        ch.set[key] = value
    for key in ch.remove:
        if key in ch.set:
            raise UsageError(f"can not both modify and remove {noun}s in the same command")
    if noun == "label":
        for key, value in ch.set.items():
            validate_label(key, value)
    for key in [*ch.set, *ch.remove]:
        validate_key(key, noun)
    return ch


def validate_key(key: str, noun: str) -> None:
    prefix, _, name = key.rpartition("/")
    ok = bool(re.fullmatch(_NAME, name)) and len(name) <= 63
    if prefix:
        ok = ok and bool(re.fullmatch(_DNS, prefix)) and len(prefix) <= 253
    if not ok:
        raise UsageError(
            f'invalid {noun} spec: {key}: name part must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )


def validate_label(key: str, value: str) -> None:
    if value and (len(value) > 63 or not re.fullmatch(_NAME, value)):
        raise UsageError(
            f'invalid label value: "{key}={value}": a valid label must be an empty string or '
            "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )


def plan(current: dict[str, str], ch: Changes, overwrite: bool, noun: str) -> dict[str, Any]:
    """The `metadata.<labels|annotations>` merge patch; UsageError on a refused overwrite."""
    patch: dict[str, Any] = {}
    for key, value in ch.set.items():
        if key in current and current[key] != value and not overwrite:
            raise UsageError(f"'{key}' already has a value ({current[key]}), and --overwrite "
                             "is false")
        if current.get(key) != value:
            patch[key] = value
    for key in ch.remove:
        if key in current:
            patch[key] = None
    return patch


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="TYPE NAME KEY_1=VAL_1 ... KEY_N=VAL_N")
    cli.add_filename(p, "update")
    cli.add_selector(p)
    p.add_argument("--field-selector", default="", help="Selector (field query) to filter on")
    cli.add_bool(p, "--all", help="Select all resources of the given types in the namespace")
    cli.add_bool(p, "-A", "--all-namespaces", help="With -l or --all: in every namespace")
    cli.add_bool(p, "--overwrite", help="Allow existing values to be overwritten")
    p.add_argument("--resource-version", default="",
                   help="Only update if the object's resourceVersion is this one")
    cli.add_output(p, ("name", "json", "yaml"))


def _targets(ctx: Context, args: argparse.Namespace, resources: list[str]) -> list[Target]:
    return verb_targets(
        ctx, args, resources, args.verb,
        missing="one or more resources must be specified as <resource> <name> or "
                "<resource>/<name>",
        selecting=bool(args.all or args.selector or args.field_selector))


async def _run(ctx: Context, args: argparse.Namespace, noun: str) -> None:
    cli.check_output(args.output, ("name", "json", "yaml"))
    resources = [a for a in args.args if not is_change(a)]
    changes = parse_changes([a for a in args.args if is_change(a)], noun)
    if not changes.set and not changes.remove:
        raise UsageError(f"at least one {noun} update is required")
    query = Query(all_namespaces=args.all_namespaces, label_selector=args.selector,
                  field_selector=args.field_selector)
    for target in _targets(ctx, args, resources):
        try:
            objs = await fetch(ctx, target, query)
        except errors.ApiError as e:
            ctx.api_error(e)
            continue
        for obj in objs:
            await _update(ctx, args, target, obj, changes, noun)


async def _update(ctx: Context, args: argparse.Namespace, target: Target, obj: Obj,
                  changes: Changes, noun: str) -> None:
    md = obj.get("metadata") or {}
    field_name = "labels" if noun == "label" else "annotations"
    shown = f"{ref(target.info)}/{md.get('name', '')}"
    for key in changes.remove:
        if key not in (md.get(field_name) or {}):
            ctx.print_err(f'{noun} "{key}" not found.')
    try:
        delta = plan(md.get(field_name) or {}, changes, args.overwrite, noun)
    except UsageError as e:
        ctx.error(str(e))
        return
    result = obj
    if delta:
        patch: Obj = {"metadata": {field_name: delta}}
        if args.resource_version:
            patch["metadata"]["resourceVersion"] = args.resource_version
        try:
            result = await ctx.client.patch(target.info.name, str(md.get("name", "")), patch,
                                            md.get("namespace") or "", patch_type="merge")
        except errors.ApiError as e:
            ctx.api_error(e)
            return
        ctx.warnings()
    _report(ctx, args, shown, result, _verb(noun, delta))


def _verb(noun: str, delta: dict[str, Any]) -> str:
    if noun == "annotation":
        return "annotated"
    if not delta:
        return "not labeled"
    return "unlabeled" if all(v is None for v in delta.values()) else "labeled"


def _report(ctx: Context, args: argparse.Namespace, shown: str, obj: Obj, verb: str) -> None:
    if args.output in ("json", "yaml"):
        ctx.print(printers.format_structured(obj, args.output))
    else:
        ctx.print(shown if args.output == "name" else f"{shown} {verb}")


async def run_label(ctx: Context, args: argparse.Namespace) -> None:
    args.verb = "label"
    await _run(ctx, args, "label")


async def run_annotate(ctx: Context, args: argparse.Namespace) -> None:
    args.verb = "annotate"
    await _run(ctx, args, "annotation")


LABEL = Command(
    name="label", summary="Update the labels on a resource",
    usage="tkctl label [--overwrite] (-f FILENAME | TYPE NAME) KEY_1=VAL_1 ... KEY_N=VAL_N "
          "[--resource-version=version] [flags]",
    configure=configure, run=run_label, group="Settings Commands",
)
ANNOTATE = Command(
    name="annotate", summary="Update the annotations on a resource",
    usage="tkctl annotate [--overwrite] (-f FILENAME | TYPE NAME) KEY_1=VAL_1 ... KEY_N=VAL_N "
          "[--resource-version=version] [flags]",
    configure=configure, run=run_annotate, group="Settings Commands",
)
