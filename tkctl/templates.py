"""The output formats that carry an argument: `-o jsonpath=TEMPLATE`, `-o jsonpath-file=FILE`,
`-o custom-columns=SPEC` and `-o custom-columns-file=FILE`.

They are how scripts read kubectl's output (`-o jsonpath='{.spec.clusterIP}'`,
`-o custom-columns=NAME:.metadata.name,NODE:.spec.nodeName`), so a template is checked before
anything is fetched, with kubectl's messages, and printed as kubectl prints it: a jsonpath
template exactly, without an added newline, against the object itself when one name was asked
for and against a `List` otherwise; custom columns as a table with one row per object, `<none>`
for a path with no value, several values joined by commas, each value as Go's `fmt.Sprint`.
The template language itself is tkctl/jsonpath.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tkctl import cli, printers
from tkctl.context import UsageError
from tkctl.jsonpath import JSONPathError, Template, go_value, parse, relaxed

Obj = dict[str, Any]

TEMPLATE_FORMATS = ("jsonpath", "jsonpath-file", "custom-columns", "custom-columns-file")


@dataclass(frozen=True)
class Column:
    header: str
    template: Template


@dataclass(frozen=True)
class Output:
    """A parsed `-o` value: `format` is one of printers.OUTPUT_FORMATS, "" (the table),
    "jsonpath" (with `template`) or "custom-columns" (with `columns`)."""

    format: str
    template: Template | None = None
    columns: list[Column] = field(default_factory=list)


def parse_output(value: str, plain: tuple[str, ...] = printers.OUTPUT_FORMATS) -> Output:
    """`-o`'s value, checked; UsageError with kubectl's wording for anything wrong."""
    name, _, arg = value.partition("=")
    if name not in TEMPLATE_FORMATS:
        cli.check_output(value, (*plain, *TEMPLATE_FORMATS))
        return Output(value)
    from_file = name.endswith("-file")
    if from_file and arg:
        arg = _read(name, arg)
    if name.startswith("jsonpath"):
        if not arg:
            raise UsageError("template format specified but no template given")
        return Output("jsonpath", template=_parse(arg))
    if not arg:
        raise UsageError("custom-columns format specified but no custom columns given")
    return Output("custom-columns",
                  columns=parse_columns_file(arg) if from_file else parse_columns(arg))


def _read(name: str, path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise UsageError(f"error reading --output {name}={path}: {e.strerror}") from None


def _parse(template: str) -> Template:
    try:
        return parse(template)
    except JSONPathError as e:
        raise UsageError(str(e)) from None


def parse_columns(spec: str) -> list[Column]:
    """`NAME:.metadata.name,NODE:{.spec.nodeName}`."""
    pairs = []
    for part in spec.split(","):
        header, colon, path = part.partition(":")
        if not colon:
            raise UsageError(f"unexpected custom-columns spec: {part}, expected "
                             "<header>:<json-path-expr>")
        pairs.append((header, path))
    return _columns(pairs)


def parse_columns_file(text: str) -> list[Column]:
    """A custom-columns file, as kubectl reads it: a line of headers, then a line of paths."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) != 2 or len(lines[0]) != len(lines[1]):
        raise UsageError("a custom-columns file needs exactly two lines, headers then paths, "
                         "with as many paths as headers")
    return _columns(list(zip(lines[0], lines[1], strict=True)))


def _columns(pairs: list[tuple[str, str]]) -> list[Column]:
    columns = []
    for header, path in pairs:
        try:
            columns.append(Column(header, parse(relaxed(path))))
        except JSONPathError as e:
            raise UsageError(str(e)) from None
    return columns


def jsonpath_text(template: Template, objs: list[Obj], *, single: bool,
                  allow_missing_keys: bool = True) -> str:
    """What `-o jsonpath` prints for `objs`; UsageError if the template fails on them."""
    data = objs[0] if single and len(objs) == 1 else printers.as_list(objs)
    try:
        return template.execute(data, allow_missing_keys=allow_missing_keys)
    except JSONPathError as e:
        raise UsageError(str(e)) from None


def column_cell(column: Column, obj: Obj) -> str:
    try:
        values = column.template.results(obj)
    except JSONPathError as e:
        raise UsageError(str(e)) from None
    return ",".join(go_value(v) for v in values) if values else "<none>"


def custom_column_rows(columns: list[Column], objs: list[Obj], *,
                       headers: bool = True) -> list[list[str]]:
    rows = [[column_cell(c, o) for c in columns] for o in objs]
    return [[c.header for c in columns], *rows] if headers else rows
