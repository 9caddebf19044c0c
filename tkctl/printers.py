"""How tkctl shows objects: kubectl's tables, `-o json|yaml|name|wide`, and ages.

The columns and cells of every kind are `api.printers`, the same definitions the apiserver turns
into the `meta.k8s.io/v1` Table that kubectl prints, so `tkctl get` and `kubectl get` agree. What
stays here is presentation only tkctl needs: choosing the columns (`-o wide`, `-A`,
`--show-labels`, `-L`, the kind prefix), writing cells as text, the table layout of kubectl's
tabwriter settings (min width 6, padding 3, remembered widths so that rows streamed by `get -w`
stay aligned with the header printed first), and the structured formats.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

# The `x as x` imports are re-exports: tkctl's describe and its tests use tkctl.printers.x.
from api import printers as kinds
from api.printers import NONE as NONE
from api.printers import UNKNOWN as UNKNOWN
from api.printers import age as age
from api.printers import created as created
from api.printers import format_endpoints as format_endpoints
from api.printers import format_labels as format_labels
from api.printers import human_duration as human_duration
from api.printers import meta as meta
from api.printers import name_of as name_of
from api.printers import node_roles as node_roles
from api.printers import node_status as node_status
from api.printers import service_external_ip as service_external_ip
from api.printers import service_ports as service_ports
from api.printers import spec as spec
from api.printers import status as status
from api.printers import utcnow as utcnow
from api.resources import RESOURCES

Obj = dict[str, Any]
Row = list[str]

OUTPUT_FORMATS = ("json", "yaml", "wide", "name")

# kubectl's printers.GetNewTabWriter: minwidth 6, padding 3.
_MIN_WIDTH = 6
_PADDING = 3


# --- names --------------------------------------------------------------------------------


def group_of(obj: Obj) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def kind_ref(obj: Obj) -> str:
    """`deployment.apps` or `pod`: how kubectl names a kind in `-o name` and messages."""
    kind = str(obj.get("kind", "")).lower()
    group = group_of(obj)
    return f"{kind}.{group}" if group else kind


def resource_name(obj: Obj) -> str:
    """`-o name`: `deployment.apps/nginx`, `pod/web-1`."""
    return f"{kind_ref(obj)}/{name_of(obj)}"


def format_selector(selector: Obj | None) -> str:
    """A metav1.LabelSelector as `tkctl describe` prints it: `app=nginx,tier in (a,b)`, match
    labels first, then the expressions in the order written."""
    if not selector:
        return NONE
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        parts.append(_format_requirement(expr))
    return ",".join(parts) or NONE


def _format_requirement(expr: Obj) -> str:
    key, op = expr.get("key", ""), expr.get("operator", "")
    values = ",".join(expr.get("values") or [])
    if op == "Exists":
        return key
    if op == "DoesNotExist":
        return f"!{key}"
    return f"{key} {op.lower()} ({values})"


def pod_status(pod: Obj) -> tuple[int, int, str, int]:
    """(ready containers, total containers, STATUS reason, restarts), as kubectl's printPod."""
    s = kinds.pod_status(pod)
    return s.ready, s.total, s.reason, s.restarts


# --- which printer --------------------------------------------------------------------------

# Kinds the apiserver serves. One without a printer of its own gets upstream's default table
# (NAME, CREATED AT: what kubectl shows for roles); a kind tkctl cannot map to a resource at all
# keeps tkctl's own NAME, AGE fallback.
_SERVED_KINDS = frozenset(r.kind for r in RESOURCES.values())

GENERIC = kinds.Printer((kinds.NAME, kinds.AGE),
                        lambda obj, now: [name_of(obj), age(created(obj), now)])


def printer_for(kind: str) -> kinds.Printer:
    if kind in kinds.PRINTERS:
        return kinds.PRINTERS[kind]
    return kinds.DEFAULT if kind in _SERVED_KINDS else GENERIC


def _shown(column: kinds.Column, opts: TableOptions) -> bool:
    # What kubectl does with the server's columns: priority > 0 only with -o wide.
    return opts.wide or column.priority == 0


def _text(cell: kinds.Cell) -> str:
    """A cell as tkctl writes it: Go's %v for numbers and booleans; a line break becomes a space
    so that a multi-line message stays on its row."""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    return str(cell).replace("\n", " ")


# --- tables -----------------------------------------------------------------------------------


@dataclass
class TableOptions:
    """What decorates the rows: `-o wide`, `-A`, `--show-labels`, `--no-headers`, kind prefix."""

    wide: bool = False
    with_namespace: bool = False
    show_labels: bool = False
    no_headers: bool = False
    with_kind: bool = False
    label_columns: list[str] = field(default_factory=list)  # -L app,tier


def headers_for(kind: str, opts: TableOptions) -> Row:
    cols = [c.header for c in printer_for(kind).columns if _shown(c, opts)]
    if opts.with_namespace:
        cols.insert(0, "NAMESPACE")
    cols += [key.rsplit("/", 1)[-1].upper() for key in opts.label_columns]
    if opts.show_labels:
        cols.append("LABELS")
    return cols


def row_for(obj: Obj, opts: TableOptions, now: _dt.datetime) -> Row:
    printer = printer_for(str(obj.get("kind", "")))
    cells: Row = []
    for column, cell in zip(printer.columns, printer.cells(obj, now), strict=True):
        if not _shown(column, opts):
            continue
        # kubectl prefixes the name column (format "name") with the kind when several kinds
        # share the output.
        cells.append(resource_name(obj) if opts.with_kind and column.format == "name"
                     else _text(cell))
    if opts.with_namespace:
        cells.insert(0, str(meta(obj).get("namespace") or ""))
    labels = meta(obj).get("labels") or {}
    cells += [str(labels.get(key, "")) for key in opts.label_columns]
    if opts.show_labels:
        cells.append(format_labels(meta(obj).get("labels")))
    return cells


@dataclass
class TableWriter:
    """Go's tabwriter with RememberWidths: columns never shrink between calls to `format`."""

    widths: list[int] = field(default_factory=list)

    def format(self, rows: Iterable[Row]) -> list[str]:
        rows = list(rows)
        for row in rows:
            for i, cell in enumerate(row[:-1]):
                need = max(_MIN_WIDTH, len(cell) + _PADDING)
                if i >= len(self.widths):
                    self.widths.append(need)
                else:
                    self.widths[i] = max(self.widths[i], need)
        return [self._line(row) for row in rows]

    def _line(self, row: Row) -> str:
        if not row:
            return ""
        padded = [cell.ljust(self.widths[i]) for i, cell in enumerate(row[:-1])]
        return "".join(padded) + row[-1]


def format_table(
    objs: list[Obj], opts: TableOptions, now: _dt.datetime, writer: TableWriter | None = None,
    *, headers: bool = True,
) -> list[str]:
    """The lines of one kind's table (header first unless `--no-headers`)."""
    kind = str(objs[0].get("kind", "")) if objs else ""
    rows = [row_for(o, opts, now) for o in objs]
    if headers and not opts.no_headers:
        rows.insert(0, headers_for(kind, opts))
    return (writer or TableWriter()).format(rows)


# --- structured output ----------------------------------------------------------------------


def as_list(items: list[Obj]) -> Obj:
    """What kubectl prints for several objects in -o json|yaml."""
    return {"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}}


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)


class _Dumper(yaml.SafeDumper):
    """kubectl's YAML look: `|` blocks for multi-line strings, double quotes where needed."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if "\n" in value:
        return dumper.represent_scalar(tag, value, style="|")
    implicit = dumper.resolve(yaml.ScalarNode, value, (True, False))
    if implicit != tag or value == "" or value.strip() != value:
        return dumper.represent_scalar(tag, value, style='"')
    return dumper.represent_scalar(tag, value)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=True,
                     allow_unicode=True, width=1 << 30).rstrip("\n")


def format_structured(obj: Any, output: str) -> str:
    """`-o json` or `-o yaml` of one object or list."""
    return to_json(obj) if output == "json" else to_yaml(obj)


def tabwrite(lines: list[str], padding: int = 2, min_width: int = 0) -> list[str]:
    """Go's text/tabwriter: align tab-terminated cells in column blocks of consecutive lines.

    kubectl's describe writes `Key:\\tvalue` lines through it (min width 0, padding 2), so
    nested sections align among themselves, not with the whole page.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[] for _ in rows]
    _tab_blocks(rows, widths, 0, len(rows), [], padding, min_width)
    out = []
    for row, w in zip(rows, widths, strict=True):
        cells = [c.ljust(w[i]) if i < len(w) else c for i, c in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return out


def _tab_blocks(rows: list[list[str]], widths: list[list[int]], line0: int, line1: int,
                stack: list[int], padding: int, min_width: int) -> None:
    column = len(stack)
    this = line0
    while this < line1:
        if column >= len(rows[this]) - 1:
            widths[this] = list(stack)
            this += 1
            continue
        start, width = this, min_width
        while this < line1 and column < len(rows[this]) - 1:
            width = max(width, len(rows[this][column]) + padding)
            this += 1
        _tab_blocks(rows, widths, start, this, [*stack, width], padding, min_width)
