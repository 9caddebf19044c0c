"""`tkctl get`: list or fetch objects and print them as kubectl does, or watch them change.

Several types print one table each (names prefixed with their kind, a blank line between); a
single named object in `-o json|yaml` prints bare, anything else as a `List`. `-w` prints the
current table, then one row per change from the list's resourceVersion, so nothing between the
list and the watch is missed.
"""

from __future__ import annotations

import argparse
from typing import Any

from api import errors
from tkctl import cli, printers, sorting, templates
from tkctl.context import Command, Context, UsageError
from tkctl.resolve import (
    Query,
    Target,
    fetch,
    no_resources,
    parse_targets,
    targets_from_files,
    with_type,
)

Obj = dict[str, Any]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("resources", nargs="*", metavar="TYPE[.GROUP] [NAME ...] | TYPE/NAME ...")
    p.add_argument("-o", "--output", default="",
                   help="Output format. One of: (json, yaml, wide, name, jsonpath=TEMPLATE, "
                        "jsonpath-file=FILE, custom-columns=SPEC, custom-columns-file=FILE).")
    p.add_argument("--allow-missing-template-keys", action="store_true", default=True,
                   help="If true (the default), a key a jsonpath template names that an "
                        "object lacks prints nothing; =false makes it an error.")
    # What `--allow-missing-template-keys=false` becomes (cli.normalize).
    p.add_argument("--no-allow-missing-template-keys", dest="allow_missing_template_keys",
                   action="store_false", help=argparse.SUPPRESS)
    cli.add_filename(p, "get")
    cli.add_selector(p)
    p.add_argument("--field-selector", default="",
                   help="Selector (field query) to filter on, e.g. status.phase=Running")
    cli.add_bool(p, "-A", "--all-namespaces", help="List the objects across all namespaces")
    cli.add_bool(p, "-w", "--watch", help="After listing, watch for changes")
    cli.add_bool(p, "--watch-only", help="Watch for changes without listing first")
    cli.add_bool(p, "--output-watch-events", help="Print the watch event type (ADDED, ...)")
    cli.add_bool(p, "--show-labels", help="Show all labels as the last column")
    p.add_argument("-L", "--label-columns", action="append", default=[],
                   help="Labels to show as columns (comma separated, or repeat -L)")
    cli.add_bool(p, "--no-headers", help="Don't print headers")
    cli.add_bool(p, "--ignore-not-found", help="Exit 0 when the requested object does not exist")
    p.add_argument("--sort-by", default="",
                   help="Sort list types by this JSONPath field, e.g. '{.metadata.name}' "
                        "(events default to their lastTimestamp)")


def _options(args: argparse.Namespace, target: Target | None = None) -> printers.TableOptions:
    return printers.TableOptions(
        wide=args.output == "wide",
        with_namespace=args.all_namespaces and (target is None or target.info.namespaced),
        show_labels=args.show_labels, no_headers=args.no_headers,
        label_columns=[k for v in args.label_columns for k in v.split(",") if k],
    )


def _query(args: argparse.Namespace) -> Query:
    return Query(all_namespaces=args.all_namespaces, label_selector=args.selector,
                 field_selector=args.field_selector, ignore_not_found=args.ignore_not_found)


def _targets(ctx: Context, args: argparse.Namespace) -> list[Target]:
    if args.filename:
        return targets_from_files(ctx, args, args.resources)
    if not args.resources:
        raise UsageError(
            "You must specify the type of resource to get. Use \"tkctl api-resources\" for a "
            "complete list of supported resources."
        )
    return parse_targets(args.resources, "get")


async def run(ctx: Context, args: argparse.Namespace) -> None:
    # Checked before anything is fetched: a broken template costs no request.
    args.parsed_output = templates.parse_output(args.output)
    targets = _targets(ctx, args)
    if args.watch or args.watch_only:
        await _watch(ctx, args, targets)
        return
    groups: list[tuple[Target, list[Obj]]] = []
    for target in targets:
        try:
            groups.append((target, _sorted(args, target, await fetch(ctx, target,
                                                                     _query(args)))))
        except errors.ApiError as e:
            ctx.api_error(e)
    _print(ctx, args, groups, single=_single_item(args, targets))


def _sorted(args: argparse.Namespace, target: Target, objs: list[Obj]) -> list[Obj]:
    if args.sort_by:
        return sorting.sort_by(objs, args.sort_by)
    return sorting.sort_events(objs) if target.info.name == "events" else objs


def _single_item(args: argparse.Namespace, targets: list[Target]) -> bool:
    """kubectl prints a bare object (not a List) when exactly one name was asked for."""
    return len(targets) == 1 and len(targets[0].names) == 1


def _print(ctx: Context, args: argparse.Namespace, groups: list[tuple[Target, list[Obj]]],
           *, single: bool) -> None:
    objs = [o for _, found in groups for o in found]
    out: templates.Output = args.parsed_output
    if out.template is not None:
        if objs or not ctx.failed:
            ctx.write(templates.jsonpath_text(
                out.template, objs, single=single,
                allow_missing_keys=args.allow_missing_template_keys))
        return
    if out.columns:
        if objs or not ctx.failed:
            rows = templates.custom_column_rows(out.columns, objs, headers=not args.no_headers)
            for line in printers.TableWriter().format(rows):
                ctx.print(line)
        return
    if args.output in ("json", "yaml"):
        if single and len(objs) == 1:
            ctx.print(printers.format_structured(objs[0], args.output))
        elif objs or not ctx.failed:
            ctx.print(printers.format_structured(printers.as_list(objs), args.output))
        return
    if not objs:
        if not ctx.failed and not (single and args.ignore_not_found):
            info = groups[0][0].info if len(groups) == 1 else None
            ctx.print_err(no_resources(ctx, info, args.all_namespaces))
        return
    if args.output == "name":
        for o in objs:
            ctx.print(printers.resource_name(o))
        return
    _print_tables(ctx, args, [(t, found) for t, found in groups if found])


def _print_tables(ctx: Context, args: argparse.Namespace,
                  groups: list[tuple[Target, list[Obj]]]) -> None:
    now = printers.utcnow()
    with_kind = len({t.info.name for t, _ in groups}) > 1
    first = True
    for target, found in _by_kind(groups):
        opts = _options(args, target)
        opts.with_kind = with_kind
        if not first:
            ctx.print()
        first = False
        for line in printers.format_table(found, opts, now):
            ctx.print(line)


def _by_kind(groups: list[tuple[Target, list[Obj]]]) -> list[tuple[Target, list[Obj]]]:
    """One table per resource type, even if `-f` named the type in several places."""
    merged: dict[str, tuple[Target, list[Obj]]] = {}
    for target, found in groups:
        merged.setdefault(target.info.name, (target, []))[1].extend(found)
    return list(merged.values())


# --- watch ------------------------------------------------------------------------------------


class _WatchPrinter:
    """Prints watch events in the chosen format, keeping table columns aligned across events."""

    def __init__(self, ctx: Context, args: argparse.Namespace, target: Target) -> None:
        self.ctx, self.args = ctx, args
        self.opts = _options(args, target)
        self.writer = printers.TableWriter()
        self.header_done = args.no_headers
        self.events = args.output_watch_events
        self.kind = target.info.kind

    def print(self, objs: list[Obj], event: str = "") -> None:
        out = self.args.output
        parsed: templates.Output = self.args.parsed_output
        if parsed.template is not None:
            for obj in objs:  # kubectl: the template once per object, nothing in between
                self.ctx.write(templates.jsonpath_text(
                    parsed.template, [obj], single=True,
                    allow_missing_keys=self.args.allow_missing_template_keys))
            return
        if parsed.columns:
            rows = templates.custom_column_rows(parsed.columns, objs,
                                                headers=not self.header_done)
            self.header_done = True
            for line in self.writer.format(rows):
                self.ctx.print(line)
            return
        for obj in objs:
            if out in ("json", "yaml"):
                self._structured(obj, event)
            elif out == "name":
                self.ctx.print(printers.resource_name(obj))
        if out in ("", "wide"):
            self._rows(objs, event)

    def _structured(self, obj: Obj, event: str) -> None:
        doc: Obj = {"type": event, "object": obj} if self.events and event else obj
        text = printers.format_structured(doc, self.args.output)
        self.ctx.print(text if self.args.output == "json" else f"---\n{text}")

    def _rows(self, objs: list[Obj], event: str) -> None:
        rows = [printers.row_for(o, self.opts, printers.utcnow()) for o in objs]
        if self.events:
            rows = [[event, *r] for r in rows]
        if not self.header_done:
            header = printers.headers_for(self.kind, self.opts)
            rows.insert(0, ["EVENT", *header] if self.events else header)
            self.header_done = True
        for line in self.writer.format(rows):
            self.ctx.print(line)


async def _watch(ctx: Context, args: argparse.Namespace, targets: list[Target]) -> None:
    if len(targets) != 1 or len(targets[0].names) > 1:
        count = sum(max(1, len(t.names)) for t in targets)
        raise UsageError("watch is only supported on individual resources and resource "
                         f"collections, but {count} resources were found")
    target = targets[0]
    ctx.watching = True
    ns, field_selector = _watch_scope(ctx, args, target)
    items, rv = await ctx.client.list_all(
        target.info.name, ns, label_selector=args.selector, field_selector=field_selector,
    )
    if target.names and not items:
        ctx.api_error(errors.NotFound(
            message=f'{target.info.qualified_name} "{target.names[0]}" not found'))
        return
    printer = _WatchPrinter(ctx, args, target)
    if not args.watch_only:
        _initial(ctx, args, printer, target, items)
    async for ev in ctx.client.watch(
        target.info.name, ns, resource_version=rv, label_selector=args.selector,
        field_selector=field_selector,
    ):
        if ev.type in ("ADDED", "MODIFIED", "DELETED"):
            printer.print([with_type(ev.object, target.info)], ev.type)


def _watch_scope(ctx: Context, args: argparse.Namespace, target: Target) -> tuple[str | None, str]:
    """(namespace, field selector) of the watch; one named object is watched by name."""
    field_selector = args.field_selector
    if target.names:
        name_sel = f"metadata.name={target.names[0]}"
        field_selector = f"{field_selector},{name_sel}" if field_selector else name_sel
    ns = None if args.all_namespaces else (ctx.namespace if target.info.namespaced else "")
    if target.names and target.namespaces:
        ns = target.namespaces.get(target.names[0], ns)
    return ns, field_selector


def _initial(ctx: Context, args: argparse.Namespace, printer: _WatchPrinter, target: Target,
             items: list[Obj]) -> None:
    if items:
        printer.print([with_type(o, target.info) for o in items], "ADDED")
    else:
        ctx.print_err(no_resources(ctx, target.info, args.all_namespaces))


COMMAND = Command(
    name="get",
    summary="Display one or many resources",
    usage="tkctl get [(-o|--output=)json|yaml|wide|name|jsonpath=...|custom-columns=...] "
          "(TYPE[.GROUP] [NAME | -l label] | "
          "TYPE[.GROUP]/NAME ...) [flags]",
    configure=configure,
    run=run,
    group="Basic Commands",
)
