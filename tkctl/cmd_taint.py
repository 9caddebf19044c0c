"""`tkctl taint`: add, replace and remove node taints, with kubectl's rules and words.

`tkctl taint nodes NAME KEY[=VALUE]:EFFECT ...` adds a taint; `KEY:EFFECT-` removes the taint
with that key and effect, `KEY-` every taint with that key. A taint is identified by key and
effect (Kubernetes' `Taint.MatchTaint`), so `dedicated=a:NoSchedule` and `dedicated=b:NoExecute`
are two taints; replacing the value of an existing key + effect needs `--overwrite`.

The merge is kubectl's (k8s.io/kubectl/pkg/cmd/taint/utils.go), quirks included, so the result
line says what kubectl would: the new taints come first, then the old ones they do not replace;
the operation is `modified` when `--overwrite` is given or taints were both added and removed,
`tainted` when the list grew, `untainted` otherwise. A removal that matches nothing fails the
whole node (`taint "KEY:EFFECT" not found`) and nothing is written.

The new list goes to the server as a JSON merge patch of `spec.taints` carrying the node's
resourceVersion as a precondition: the list is replaced whole, so a concurrent writer (the
node-lifecycle controller adding `node.kubernetes.io/unschedulable`, another `taint`) must not
be overwritten. On Conflict the node is read again and the merge redone, as kubectl's
`RetryOnConflict` callers do.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from api import errors
from api.selectors import label_value_errors, qualified_name_errors
from tkctl import cli, printers
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import parse_targets

Obj = dict[str, Any]
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MODIFIED, TAINTED, UNTAINTED = "modified", "tainted", "untainted"
CONFLICT_RETRIES = 5


class TaintError(Exception):
    """The taints cannot be applied to this node; str() is kubectl's message."""


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""

    def __str__(self) -> str:
        """Kubernetes' `Taint.ToString`: `key=value:effect`, parts omitted when empty."""
        text = self.key + (f"={self.value}" if self.value else "")
        return text + (f":{self.effect}" if self.effect else "")

    def matches(self, obj: Obj) -> bool:
        """`MatchTaint`: the same key and effect (the value does not count)."""
        return obj.get("key") == self.key and (obj.get("effect") or "") == self.effect

    def to_obj(self) -> Obj:
        out: Obj = {"key": self.key}
        if self.value:
            out["value"] = self.value
        out["effect"] = self.effect
        return out


# --- parsing, pure --------------------------------------------------------------------------

def is_taint_arg(arg: str) -> bool:
    return "=" in arg or ":" in arg or arg.endswith("-")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(resource arguments, taint arguments); every resource must come before the taints."""
    resources: list[str] = []
    taints: list[str] = []
    for arg in args:
        if is_taint_arg(arg):
            taints.append(arg)
        elif taints:
            raise UsageError(f"all resources must be specified before taint changes: {arg}")
        else:
            resources.append(arg)
    return resources, taints


def parse_taint(spec: str) -> Taint:
    """`key=value:effect`, `key:effect` or `key` (the last only to remove)."""
    parts = spec.split(":")
    value = effect = ""
    if len(parts) == 1:
        key = parts[0]
    elif len(parts) == 2:
        effect = parts[1]
        if effect not in EFFECTS:
            raise UsageError(f"invalid taint effect: {effect}, unsupported taint effect")
        kv = parts[0].split("=")
        if len(kv) > 2:
            raise UsageError(f"invalid taint spec: {spec}")
        key = kv[0]
        if len(kv) == 2:
            value = kv[1]
            errs = label_value_errors(value)
            if errs:
                raise UsageError(f"invalid taint spec: {spec}, {'; '.join(errs)}")
    else:
        raise UsageError(f"invalid taint spec: {spec}")
    errs = qualified_name_errors(key)
    if errs:
        raise UsageError(f"invalid taint spec: {spec}, {'; '.join(errs)}")
    return Taint(key, value, effect)


def parse_taints(specs: list[str]) -> tuple[list[Taint], list[Taint]]:
    """(taints to add, taints to remove), validated as kubectl's `parseTaints` + `Validate`."""
    add: list[Taint] = []
    remove: list[Taint] = []
    for spec in specs:
        if spec.endswith("-"):
            t = parse_taint(spec[:-1])
            remove.append(Taint(t.key, "", t.effect))
            continue
        t = parse_taint(spec)
        if not t.effect:
            raise UsageError(f"invalid taint spec: {spec}")
        if any(a.key == t.key and a.effect == t.effect for a in add):
            # Go's %v of a v1.Taint value
            raise UsageError(f"duplicated taints with the same key and effect: "
                             f"{{{t.key} {t.value} {t.effect} <nil>}}")
        add.append(t)
    conflicts = [f'{{"{r.key}":"{r.effect}"}}' for a in add for r in remove
                 if a.key == r.key and (not r.effect or a.effect == r.effect)]
    if conflicts:
        raise UsageError("can not both modify and remove the following taint(s) in the same "
                         f"command: {', '.join(conflicts)}")
    return add, remove


# --- the merge, pure ------------------------------------------------------------------------

def already_present(current: list[Obj], add: list[Taint]) -> str:
    """kubectl's `checkIfTaintsAlreadyExists`: the keys of `add` that the node has with the
    same effect, comma-joined ('' when none)."""
    return ",".join(t.key for t in add for old in current if t.matches(old))


def _aggregate(errs: list[str]) -> str:
    """k8s.io/apimachinery's NewAggregate: one error bare, several in brackets."""
    return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"


def reorganize(node_name: str, current: list[Obj], add: list[Taint], remove: list[Taint],
               overwrite: bool) -> tuple[str, list[Obj]]:
    """(operation, the node's new taints); TaintError as kubectl's `updateTaints` fails."""
    if not overwrite:
        exists = already_present(current, add)
        if exists:
            raise TaintError(f"node {node_name} already has {exists} taint(s) with same "
                             "effect(s) and --overwrite is false")
    new = [t.to_obj() for t in add]
    # Old taints not replaced by a new one keep their fields (timeAdded included).
    new += [dict(old) for old in current if not any(t.matches(old) for t in add)]
    added = len(current) != len(new)
    errs: list[str] = []
    deleted = False
    for r in remove:
        kept = [t for t in new if not (r.matches(t) if r.effect else t.get("key") == r.key)]
        # kubectl keeps only the last removal's outcome for its "modified" decision.
        deleted = len(kept) != len(new)
        if not deleted:
            errs.append(f'taint "{r}" not found')
        new = kept
    if errs:
        raise TaintError(_aggregate(errs))
    if (added and deleted) or overwrite:
        return MODIFIED, new
    return (TAINTED if added else UNTAINTED), new


# --- the verb -------------------------------------------------------------------------------

def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="NODE NAME KEY_1=VAL_1:TAINT_EFFECT_1")
    cli.add_selector(p)
    cli.add_bool(p, "--all", help="Select all nodes in the cluster")
    cli.add_bool(p, "--overwrite", help="If true, allow taints to be overwritten, otherwise "
                                        "reject taint updates that overwrite existing taints.")
    p.add_argument("--dry-run", default="none", choices=["none", "client", "server"],
                   help="none, client or server")
    cli.add_output(p, ("name", "json", "yaml"))


def node_names(resources: list[str]) -> list[str]:
    """`nodes NAME...` or `node/NAME...` into the node names (tkctl's usual argument forms,
    resolve.parse_targets); UsageError (or NotFound for an unknown type) for anything but
    nodes."""
    if not resources:
        raise UsageError("one or more resources must be specified as <resource> <name>")
    names: list[str] = []
    for target in parse_targets(resources, "taint"):
        if target.info.kind != "Node":
            raise UsageError(f"invalid resource type {target.info.name}, only node types are "
                             "supported")
        names += target.names
    return names


async def _nodes(ctx: Context, args: argparse.Namespace, names: list[str]) -> list[Obj]:
    if args.all and args.selector:
        raise UsageError("setting 'all' parameter with a non empty selector is prohibited")
    if args.all or args.selector:
        items, _ = await ctx.client.list_all("nodes", label_selector=args.selector)
        return items
    if not names:
        raise UsageError("at least one resource name must be specified since 'all' parameter "
                         "is not set")
    out = []
    for name in names:
        try:
            out.append(await ctx.client.get("nodes", name))
        except errors.ApiError as e:
            ctx.api_error(e)
    return out


async def run(ctx: Context, args: argparse.Namespace) -> None:
    cli.check_output(args.output, ("name", "json", "yaml"))
    resources, specs = split_args(args.args)
    names = node_names(resources)
    if not specs:
        raise UsageError("at least one taint update is required")
    add, remove = parse_taints(specs)
    for node in await _nodes(ctx, args, names):
        await _taint_node(ctx, args, node, add, remove)


async def _taint_node(ctx: Context, args: argparse.Namespace, node: Obj, add: list[Taint],
                      remove: list[Taint]) -> None:
    name = node["metadata"]["name"]
    for attempt in range(CONFLICT_RETRIES):
        current = list((node.get("spec") or {}).get("taints") or [])
        try:
            operation, new = reorganize(name, current, add, remove, args.overwrite)
        except TaintError as e:
            ctx.error(str(e))
            return
        result = node
        if args.dry_run == "client":
            result = {**node, "spec": {**(node.get("spec") or {}), "taints": new}}
        else:
            patch: Obj = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                          "spec": {"taints": new or None}}
            try:
                result = await ctx.client.patch("nodes", name, patch,
                                                dry_run=args.dry_run == "server")
            except errors.Conflict as e:
                if attempt + 1 == CONFLICT_RETRIES:
                    ctx.api_error(e)
                    return
                try:
                    node = await ctx.client.get("nodes", name)
                except errors.ApiError as e2:
                    ctx.api_error(e2)
                    return
                continue
            except errors.ApiError as e:
                ctx.api_error(e)
                return
        _report(ctx, args, name, result, operation)
        return


def _report(ctx: Context, args: argparse.Namespace, name: str, obj: Obj, operation: str) -> None:
    if args.output in ("json", "yaml"):
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Node")
        ctx.print(printers.format_structured(obj, args.output))
        return
    suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run, "")
    ctx.print(f"node/{name}" if args.output == "name" else f"node/{name} {operation}{suffix}")


COMMAND = Command(
    name="taint", summary="Update the taints on one or more nodes",
    usage="tkctl taint NODE NAME KEY_1=VAL_1:TAINT_EFFECT_1 ... KEY_N=VAL_N:TAINT_EFFECT_N "
          "[--overwrite] [-l selector | --all] [--dry-run=client|server]",
    configure=configure, run=run, group="Cluster Management Commands",
)
