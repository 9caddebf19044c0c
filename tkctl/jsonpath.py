"""Kubernetes' JSONPath template language, for `tkctl get -o jsonpath=…` and `-o custom-columns`.

Scripts written against kubectl pass templates like
`{range .items[*]}{.metadata.name}{"\\t"}{.status.phase}{"\\n"}{end}` and parse the output, so
the language has to be kubectl's own dialect (k8s.io/client-go/util/jsonpath), not one of the
other JSONPaths: plain text outside `{}` is printed verbatim, the results of one `{}` are joined
by single spaces, strings print raw, maps and lists print as Go's compact `json.Marshal` (keys
sorted), floats print as Go's `fmt.Print` would, and a missing key prints nothing unless the
caller asks for kubectl's `--allow-missing-template-keys=false`. Error texts are upstream's.

Upstream walks a flat node list and tracks `{range}`/`{end}` with counters; here a template is
parsed into a tree (text, actions, ranges with bodies) so that nesting is checked when the
template is parsed. The places where this module knowingly differs from upstream are marked
"Deviation" below; each is a case where upstream's output is an accident (a dropped result, an
error that depends on evaluation order) rather than something a script could rely on.

Pure logic over JSON-shaped data (dicts, lists, str, int, float, bool, None); no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["JSONPathError", "Template", "go_value", "parse", "relaxed"]


class JSONPathError(ValueError):
    """A template that does not parse, or that fails on the data it is executed on.

    `template` is the template as given and `reason` upstream's bare message (for example
    `unclosed action` or `name is not found`); str(error) is kubectl's wording around both.
    """

    def __init__(self, message: str, *, template: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.template = template
        self.reason = reason or message


class _Fail(Exception):
    """Raised inside parsing and evaluation; parse() and execute() add the template to it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Steps: one action `{…}` is a sequence of steps, each mapping the list of current values to a
# new list (a field of each, the elements of each, …), exactly as upstream's evalList does.
# ---------------------------------------------------------------------------------------------


class _NoValue:
    """The root when it is null: upstream's invalid reflect.Value, which `{@}` prints as
    `<no value>` (a null reached through a field prints `null`)."""

    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE = _NoValue()


class _Step:
    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        raise NotImplementedError


def _run_steps(steps: list[_Step], values: list[Any], allow_missing: bool) -> list[Any]:
    for step in steps:
        values = step.apply(values, allow_missing)
    return values


@dataclass
class _Field(_Step):
    name: str

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        if not values:
            return []
        # Values that are not maps (lists, strings, null) simply have no such field.
        found = [v[self.name] for v in values if isinstance(v, Mapping) and self.name in v]
        if not found and not allow_missing:
            raise _Fail(f"{self.name} is not found")
        return found


class _Current(_Step):
    """`{.}` and the empty field in `.items.[0]`: the current values themselves.

    Deviation: upstream reads these as the map key "" (so `{.}` prints nothing); kubectl users
    write `{.}` meaning "the object", which is what `{@}` and `{$}` already give.
    """

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        return values


def _children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        # Go iterates maps in random order; document order is the useful deterministic choice.
        return list(value.values())
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        # Upstream indexes a Go string, which yields its UTF-8 bytes as numbers.
        return list(value.encode("utf-8"))
    return []


class _Wildcard(_Step):
    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        out: list[Any] = []
        for v in values:
            out.extend(_children(v))
        return out


class _Recursive(_Step):
    """`..`: every value that has children, itself first, depth first (upstream's order)."""

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        out: list[Any] = []
        for v in values:
            kids = _children(v)
            if kids:
                out.append(v)
                out.extend(self.apply(kids, allow_missing))
        return out


@dataclass
class _Slice(_Step):
    """`[i]`, `[start:end:step]`, `[*]`. `derived` marks the end implied by a single index."""

    start: int | None
    end: int | None
    step: int | None
    derived: bool

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if v is None or v is _NO_VALUE:
                continue
            if not isinstance(v, list | tuple):
                raise _Fail(f"{_go_type(v)} is not array or slice")
            n = len(v)
            start = 0 if self.start is None else self.start
            if start < 0:
                start += n
            end = n if self.end is None else self.end
            if end < 0 or (end == 0 and self.derived):
                end += n
            if start == end:
                # An empty selection is allowed through. Deviation: upstream returns at this
                # point and so drops the values of every later list (`{.a[*][*]}` over
                # `[[], [1]]` prints nothing there); here the other lists still count.
                continue
            # Out-of-range indexes are errors even when missing keys are allowed, as upstream:
            # `{.items[0].metadata.name}` on an empty list fails in kubectl too.
            if start >= n or start < 0:
                raise _Fail(f"array index out of bounds: index {start}, length {n}")
            if end > n or end < 0:
                raise _Fail(f"array index out of bounds: index {end - 1}, length {n}")
            if start > end:
                raise _Fail(f"starting index {start} is greater than ending index {end}")
            step = 1
            if self.step is not None:
                if self.step <= 0:
                    raise _Fail("step must be > 0")
                step = self.step
            out.extend(v[start:end:step])
        return out


@dataclass
class _Union(_Step):
    """`[0,2]`, `['a','b.c']`: each branch over all the values, branch after branch."""

    branches: list[list[_Step]]

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        out: list[Any] = []
        for branch in self.branches:
            out.extend(_run_steps(branch, values, allow_missing))
        return out


@dataclass
class _Text(_Step):
    """A quoted string: replaces the current values with itself, once (as upstream)."""

    text: str

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        return [self.text]


@dataclass
class _Constant(_Step):
    """A number or true/false: one copy per current value (as upstream)."""

    value: int | float | bool

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        return [self.value] * len(values)


_OPERATORS = frozenset({"==", "!=", "<", "<=", ">", ">="})


@dataclass
class _Filter(_Step):
    """`[?(@.x)]` (op None: x exists) or `[?(@.x OP y)]`, both sides evaluated per element."""

    left: list[_Step]
    op: str | None
    right: list[_Step]

    def apply(self, values: list[Any], allow_missing: bool) -> list[Any]:
        out: list[Any] = []
        for v in values:
            if not isinstance(v, list | tuple):
                raise _Fail(f"{_go_value(v)} is not array or slice and cannot be filtered")
            for item in v:
                if self._keep(item, allow_missing):
                    out.append(item)
        return out

    def _keep(self, item: Any, allow_missing: bool) -> bool:
        if self.op is None:
            # Existence: a value that is there (even null or false) passes; a path that cannot
            # be followed (missing key in strict mode, bad index) means "not there". Deviation:
            # upstream keeps the element when an index in the path is out of range.
            try:
                return bool(_run_steps(self.left, [item], allow_missing))
            except _Fail:
                return False
        lefts = _run_steps(self.left, [item], allow_missing)
        if not lefts:
            return False
        if len(lefts) > 1:
            raise _Fail("can only compare one element at a time")
        rights = _run_steps(self.right, [item], allow_missing)
        if not rights:
            return False
        if len(rights) > 1:
            raise _Fail("can only compare one element at a time")
        return _compare(lefts[0], self.op, rights[0])


def _kind(value: Any) -> str:
    # Go's text/template basicKind: only scalars compare; null, maps and lists do not.
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise _Fail("invalid type for comparison")


def _equal(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        # Upstream does not convert: an int field never equals 1.0, nor the string "1".
        raise _Fail("incompatible types for comparison")
    return bool(a == b)


def _less(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        raise _Fail("incompatible types for comparison")
    if ka == "bool":
        raise _Fail("invalid type for comparison")
    return bool(a < b)


def _compare(a: Any, op: str, b: Any) -> bool:
    # Composed the way Go's template package composes them, so that errors match too.
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op == "<":
        return _less(a, b)
    if op == ">=":
        return not _less(a, b)
    less_or_equal = _less(a, b) or _equal(a, b)
    return less_or_equal if op == "<=" else not less_or_equal


# ---------------------------------------------------------------------------------------------
# Template tree
# ---------------------------------------------------------------------------------------------


@dataclass
class _Action:
    steps: list[_Step]


@dataclass
class _Range:
    steps: list[_Step]
    body: list[_Node]
    source: str


_Node = str | _Action | _Range


class Template:
    """A parsed template; execute() it on each object (or on one List object)."""

    def __init__(self, source: str, nodes: list[_Node]) -> None:
        self.source = source
        self._nodes = nodes

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def execute(self, data: Any, *, allow_missing_keys: bool = True) -> str:
        """The text the template makes of `data`; JSONPathError if evaluation fails.

        allow_missing_keys=True is kubectl get's default (`--allow-missing-template-keys`):
        a key that is not there prints nothing instead of failing.
        """
        out: list[str] = []
        try:
            _execute(self._nodes, _NO_VALUE if data is None else data, allow_missing_keys, out)
        except _Fail as e:
            raise JSONPathError(
                f"error executing jsonpath {_go_quote(self.source)}: {e.reason}",
                template=self.source, reason=e.reason,
            ) from None
        return "".join(out)

    def results(self, data: Any) -> list[Any]:
        """The values of the template's first `{}` (upstream's FindResults, missing keys
        allowed): what a custom-columns cell shows, each printed with `go_value`."""
        for node in self._nodes:
            if isinstance(node, _Action | _Range):
                try:
                    found = _run_steps(node.steps, [_NO_VALUE if data is None else data], True)
                except _Fail as e:
                    raise JSONPathError(
                        f"error executing jsonpath {_go_quote(self.source)}: {e.reason}",
                        template=self.source, reason=e.reason) from None
                return [v for v in found if v is not _NO_VALUE]
        return []


def go_value(value: Any) -> str:
    """Go's `fmt.Sprint` of a decoded JSON value: `map[app:web]`, `[a b]`, `<nil>`."""
    return _go_value(value)


def _execute(nodes: list[_Node], current: Any, allow_missing: bool, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Action):
            results = _run_steps(node.steps, [current], allow_missing)
            out.append(" ".join(_format(v) for v in results))
        else:
            # Inside a range, `@`, `$` and a leading `.` all refer to the element: upstream
            # runs the body as a template of its own with the element as its root. Deviation:
            # over no elements upstream still runs the body once, on nothing, which fails in
            # strict mode as soon as the body names a field; here an empty range prints nothing.
            for item in _run_steps(node.steps, [current], allow_missing):
                _execute(node.body, _NO_VALUE if item is None else item, allow_missing, out)


def parse(template: str) -> Template:
    """Parse a kubectl JSONPath template; JSONPathError (kubectl's wording) if it is malformed."""
    try:
        nodes = _parse_template(template)
    except _Fail as e:
        raise JSONPathError(
            f"error parsing jsonpath {template}, {e.reason}", template=template, reason=e.reason,
        ) from None
    return Template(template, nodes)


# kubectl's RelaxedJSONPathExpression (pkg/cmd/get/customcolumn.go) accepts these four shapes.
_RELAXED = re.compile(r"\{\.?([^{}]+)\}|\.?([^{}]+)")


def relaxed(expr: str) -> str:
    """kubectl's RelaxedJSONPathExpression: `spec.x`, `.spec.x`, `{spec.x}` → `{.spec.x}`.

    Used for custom-columns and --sort-by specs. The empty string stays empty, as upstream.
    """
    if not expr:
        return expr
    m = _RELAXED.fullmatch(expr)
    if m is None:
        reason = ("unexpected path string, expected a 'name1.name2' or '.name1.name2' or "
                  "'{name1.name2}' or '{.name1.name2}'")
        raise JSONPathError(f"{reason}: got {expr!r}", template=expr, reason=reason)
    return "{." + (m.group(1) or m.group(2)) + "}"


# ---------------------------------------------------------------------------------------------
# Parser. It follows upstream's scanner rule by rule (what ends a field name, how quotes and
# filters are delimited, how `[...]` is split) because those rules decide what a template means.
# ---------------------------------------------------------------------------------------------

# Characters that end a field name or identifier (upstream's isTerminator).
_TERMINATORS = frozenset(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"(-?[0-9]*)(:-?[0-9]*)?(:-?[0-9]*)?")
_DICT_KEY = re.compile(r"'([^']*)'")
_FILTER = re.compile(r"([^!<>=]+)([!<>=]+)(.+)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")


def _parse_template(src: str) -> list[_Node]:
    root: list[_Node] = []
    # Open ranges, innermost last: (the body being filled, the range node).
    stack: list[tuple[list[_Node], _Range | None]] = [(root, None)]
    pos = 0
    while pos < len(src):
        brace = src.find("{", pos)
        if brace < 0:
            stack[-1][0].append(src[pos:])
            break
        if brace > pos:
            stack[-1][0].append(src[pos:brace])
        scanner = _Scanner(src, brace + 1)
        steps, keyword = scanner.action()
        pos = scanner.pos
        if keyword == "range":
            rng = _Range(steps, [], src[brace:pos])
            stack[-1][0].append(rng)
            stack.append((rng.body, rng))
        elif keyword == "end":
            if len(stack) == 1:
                raise _Fail("not in range, nothing to end")
            stack.pop()
        else:
            stack[-1][0].append(_Action(steps))
    if len(stack) > 1:
        opened = stack[-1][1]
        assert opened is not None
        raise _Fail(f"unclosed range: {opened.source} has no matching {{end}}")
    return root


def _parse_sub(text: str) -> list[_Step]:
    """Steps of a fragment (a union branch, a bracket key, a filter side), as upstream re-parses."""
    steps, _ = _Scanner(text, 0, nested=True).action()  # nested: never a range/end keyword
    return steps


class _Scanner:
    """Reads one action's steps from `src` at `pos`, to its closing brace (nested: to the end)."""

    def __init__(self, src: str, pos: int, *, nested: bool = False) -> None:
        self.src = src
        self.pos = pos
        self.nested = nested

    def _at(self, prefix: str) -> bool:
        return self.src.startswith(prefix, self.pos)

    def action(self) -> tuple[list[_Step], str | None]:
        steps: list[_Step] = []
        keyword: str | None = None
        src = self.src
        while True:
            if self.pos >= len(src):
                if self.nested:
                    break
                raise _Fail("unclosed action")
            c = src[self.pos]
            if c == "}" and not self.nested:
                self.pos += 1
                break
            if self._at("[?("):
                steps.append(self._filter())
            elif self._at(".."):
                if steps and isinstance(steps[-1], _Recursive):
                    raise _Fail("invalid multiple recursive descent")
                steps.append(_Recursive())
                self.pos += 2
                if self.pos < len(src) and _is_alnum(src[self.pos]):
                    steps.append(self._field())
            elif c in "\r\n":
                raise _Fail("unclosed action")
            elif c in " @$":
                # `@` and `$` name the current object, which is where evaluation starts anyway.
                self.pos += 1
            elif c == "[":
                steps.extend(self._brackets())
            elif c in "\"'":
                steps.append(_Text(self._quoted()))
            elif c == ".":
                self.pos += 1
                steps.append(self._field())
            elif c in "+-" or c.isdecimal():
                steps.append(self._number())
            elif _is_alnum(c):
                word = self._word()
                if word in ("true", "false"):
                    steps.append(_Constant(word == "true"))
                elif word in ("range", "end") and not self.nested and not steps and not keyword:
                    keyword = word
                else:
                    # Upstream finds this out only when it evaluates the action; it can never
                    # work, so it is a syntax error here (as are a stray {end}, an unclosed range
                    # and an unknown filter operator).
                    raise _Fail(f"unrecognized identifier {word}")
            else:
                raise _Fail(f"unrecognized character in action: {_go_rune(c)}")
        if keyword == "end" and steps:
            raise _Fail("{end} takes no arguments")
        return steps, keyword

    def _scan_name(self) -> str:
        src, start = self.src, self.pos
        while self.pos < len(src):
            c = src[self.pos]
            if c == "\\":
                # An escaped character (`kubernetes\.io`) never ends the name.
                self.pos = min(self.pos + 2, len(src))
                continue
            if c in _TERMINATORS:
                break
            self.pos += 1
        return src[start:self.pos]

    def _field(self) -> _Step:
        raw = self._scan_name()
        if raw == "*":
            return _Wildcard()
        if raw == "":
            return _Current()
        # Upstream drops every backslash: `a\.b` is the key "a.b".
        return _Field(raw.replace("\\", ""))

    def _word(self) -> str:
        start = self.pos
        while self.pos < len(self.src) and self.src[self.pos] not in _TERMINATORS:
            self.pos += 1
        return self.src[start:self.pos]

    def _number(self) -> _Step:
        src, start = self.src, self.pos
        if src[self.pos] in "+-":
            self.pos += 1
        while self.pos < len(src) and (src[self.pos] == "." or src[self.pos].isdecimal()):
            self.pos += 1
        text = src[start:self.pos]
        if not _NUMBER.fullmatch(text):
            raise _Fail(f"cannot parse number {text}")
        if "." in text:
            return _Constant(float(text))
        return _Constant(int(text))

    def _quoted(self) -> str:
        src, start = self.src, self.pos
        quote = src[self.pos]
        self.pos += 1
        while True:
            if self.pos >= len(src) or src[self.pos] == "\n":
                raise _Fail("unterminated quoted string")
            c = src[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            self.pos += 1
            if c == quote:
                break
        literal = src[start:self.pos]
        try:
            return _unquote(literal[1:-1], quote)
        except ValueError:
            raise _Fail(f"unquote string {literal} error invalid syntax") from None

    def _brackets(self) -> list[_Step]:
        src = self.src
        end = self.pos + 1
        while end < len(src) and src[end] not in "]\n":
            end += 1
        if end >= len(src) or src[end] == "\n":
            raise _Fail("unterminated array")
        inner = src[self.pos + 1:end]
        self.pos = end + 1
        if inner == "*":
            inner = ":"
        parts = inner.split(",")
        if len(parts) > 1:
            # Upstream splits on every comma, so a quoted key cannot contain one.
            return [_Union([_parse_sub("[" + p.strip(" ") + "]") for p in parts])]
        key = _DICT_KEY.fullmatch(inner)
        if key is not None:
            if key.group(1) == "":
                return [_Field("")]
            # As upstream, `['a.b']` is the path .a.b: a key containing dots needs `['a\.b']`.
            return _parse_sub("." + key.group(1))
        m = _SLICE.fullmatch(inner)
        if m is None:
            raise _Fail(f"invalid array index {inner}")
        start = _index(m.group(1)) if m.group(1) else None
        if m.group(2):
            return [_Slice(start, _index(m.group(2)[1:]), _index(m.group(3)[1:]) if m.group(3)
                           else None, derived=False)]
        # A single index i selects [i:i+1]; `[]` is index 0, as upstream.
        return [_Slice(start, (start or 0) + 1, None, derived=True)]

    def _filter(self) -> _Step:
        src = self.src
        self.pos += 3
        start = self.pos
        quote: str | None = None
        while True:
            if self.pos >= len(src) or src[self.pos] == "\n":
                raise _Fail("unterminated filter")
            c = src[self.pos]
            if quote is not None:
                if c == "\\":
                    self.pos += 2
                    continue
                if c == quote:
                    quote = None
            elif c in "\"'":
                quote = c
            elif c == ")":
                break
            self.pos += 1
        body = src[start:self.pos]
        self.pos += 1
        if not self._at("]"):
            raise _Fail("unclosed array expect ]")
        self.pos += 1
        m = _FILTER.fullmatch(body)
        if m is None:
            return _Filter(_parse_sub(body), None, [])
        op = m.group(2)
        if op not in _OPERATORS:
            raise _Fail(f"unrecognized filter operator {op}")
        return _Filter(_parse_sub(m.group(1)), op, _parse_sub(m.group(3)))


def _index(text: str) -> int | None:
    if text == "":
        return None
    if text == "-":
        raise _Fail("array index - is not a number")
    return int(text)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalpha() or c.isdecimal()


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\"}


def _unquote(body: str, quote: str) -> str:
    """Go's strconv.Unquote rules, for either quote character (upstream's UnquoteExtend)."""
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError(body)
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e].encode()
        elif e == quote:
            out += e.encode()
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i:i + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(body)
            value = int(digits, 16)
            i += width
            if e == "x":
                out.append(value)  # a raw byte, as in Go
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                raise ValueError(body)
            else:
                out += chr(value).encode("utf-8")
        elif e in "01234567":
            digits = body[i - 1:i + 2]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise ValueError(body)
            value = int(digits, 8)
            if value > 255:
                raise ValueError(body)
            out.append(value)
            i += 2
        else:
            raise ValueError(body)
    return out.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Output: Go's fmt.Print for scalars and encoding/json for maps and lists.
# ---------------------------------------------------------------------------------------------


def _format(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return _json(value)
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        # A JSON null prints as `null` (upstream's "null jsonpath serialization" fix), where
        # plain %v would print <nil>.
        return "null"
    return _go_value(value)


def _go_value(value: Any) -> str:
    """What Go's `%v` prints for a decoded JSON value (also used in error messages)."""
    if value is None:
        return "<nil>"
    if value is _NO_VALUE:
        return "<invalid reflect.Value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value, json_style=False)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    return str(value)


def _go_type(value: Any) -> str:
    """Go's name for the type a value has after decoding into interface{} (for messages)."""
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    for t, name in ((bool, "bool"), (int, "int64"), (float, "float64"), (str, "string")):
        if isinstance(value, t):
            return name
    return type(value).__name__


def _json(value: Any) -> str:
    """Go's json.Marshal: compact, map keys sorted, `<>&` escaped, floats Go's way."""
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_json_string(k)}:{_json(v)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Fail(f"json: unsupported value: {_go_float(value, json_style=False)}")
        return _go_float(value, json_style=True)
    return _json_string(str(value))


def _json_string(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    # Go's encoder also escapes HTML-significant characters and the JavaScript line separators.
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _go_float(f: float, *, json_style: bool) -> str:
    """A float64 as Go's fmt %v (json_style=False) or encoding/json (json_style=True) prints it.

    Both use the shortest digits that round-trip (Python's repr finds the same digits); they
    differ in when to switch to an exponent: %v from 1e+06 up and below 1e-04, encoding/json
    from 1e21 up and below 1e-6 (and it writes `1e-7`, not `1e-07`).
    """
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    _, digit_tuple, exponent = Decimal(repr(abs(f))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    point = len(digits) + exponent  # value = 0.<digits> × 10**point
    exp10 = point - 1
    if json_style:
        use_e = abs(f) < 1e-6 or abs(f) >= 1e21
    else:
        use_e = exp10 < -4 or exp10 >= 6
    if use_e:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        if json_style and -10 < exp10 < 0:
            return f"{sign}{mantissa}e-{-exp10}"
        return f"{sign}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_quote(s: str) -> str:
    """Roughly Go's %q, for naming the template in execution errors as kubectl does."""
    return json.dumps(s, ensure_ascii=False)


def _go_rune(c: str) -> str:
    """Go's %#U: `U+002A '*'`, without the character when it is not printable."""
    code = f"U+{ord(c):04X}"
    return f"{code} '{c}'" if c.isprintable() else code
