"""Bounded decoders: JSON and YAML text from anyone, turned into plain data with known limits.

Every byte a user controls reaches the models as JSON or YAML first: request bodies on both of
the apiserver's fronts, manifests that tkctl reads, patches, kubeconfigs, embedded JSON inside
protobuf bodies. Python's own decoders have no limits that fail cleanly: `json.loads` of a
50,000-deep array raises RecursionError (a 500, or tkctl's "internal error"), and PyYAML follows
aliases without counting, so a 445-byte "billion laughs" document becomes gigabytes the moment it
is serialized. This module is the one place that decodes such text, with upstream's limits where
Python can afford them (docs/deviations.md, "Limits on input"):

- nesting depth: MAX_DEPTH levels of arrays and objects (upstream's decoders allow 10,000, which
  Python's recursion would not survive; real objects nest about 20 deep);
- YAML aliases: go-yaml's "excessive aliasing" rule (what kubectl and kube-apiserver use through
  sigs.k8s.io/yaml), counting what every alias expands to; a scalar counts one node per
  SCALAR_CHUNK bytes, so a long aliased string is no way around it;
- YAML gives what JSON can hold, as sigs.k8s.io/yaml's YAML-to-JSON conversion does: timestamps
  stay strings, `!!set` is a map of nulls, keys become strings, and NaN or infinities are refused
  (JSON has none, and the stored object must be JSON every client can read).

Failures are `DecodeError` (JSON) or a `yaml.MarkedYAMLError` (YAML, with its line), so callers
keep their own wording around a message in API words. No I/O.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

# Levels of arrays/objects a document may nest. Everything that walks objects recursively
# (codec, strategic merge patch, apply's field sets) stays far from Python's recursion limit.
MAX_DEPTH: Final = 100
# go-yaml (decode.go): aliases may be most of a small document, a tenth of a huge one.
ALIAS_RATIO_RANGE_LOW: Final = 400_000
ALIAS_RATIO_RANGE_HIGH: Final = 4_000_000
# A scalar of this many bytes weighs as much as one node in the alias count.
SCALAR_CHUNK: Final = 64

# --------------------------------------------------------------------------------------------
# Shared words
# --------------------------------------------------------------------------------------------


class DecodeError(ValueError):
    """Text a bounded decoder refuses; str() says what is wrong in API words."""


class LimitError(DecodeError):
    """Well-formed (as far as read) but beyond a limit: too deep, too many aliases."""


def depth_message(limit: int = MAX_DEPTH) -> str:
    """Upstream's words for a document that nests too deeply (encoding/json, go-yaml)."""
    return f"exceeded max depth of {limit}"


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages (never a Python class name)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")


def json_too_deep(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of JSON text nest deeper than `limit`, found without
    parsing (so without recursion) in C-speed passes: escaped backslashes and quotes are
    dropped, so that every remaining `"` opens or closes a string; what lies outside strings
    is reduced to its brackets; each pass then removes the innermost `[]` pairs, and a text
    that still has pairs after `limit` passes nests deeper. Text that is not balanced is left
    to the parser, which says where it breaks."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    outside = b"".join(data.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    brackets = outside.translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # empty, or unbalanced
        brackets = shorter
    return b"[]" in brackets


def check_json_depth(raw: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    """LimitError if JSON text nests deeper than `max_depth`: for callers that parse it
    themselves (loads_json does this first)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # Fewer brackets than the limit cannot nest beyond it: most bodies skip the scan.
    if data.count(b"[") + data.count(b"{") > max_depth and json_too_deep(data, max_depth):
        raise LimitError(depth_message(max_depth))


def _no_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not a valid JSON number")


def loads_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` with the depth limit checked first, and NaN/Infinity refused (Python's
    decoder takes them; no other JSON reader does). DecodeError otherwise."""
    check_json_depth(raw, max_depth)
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise DecodeError(f"{e.msg} at line {e.lineno}, column {e.colno}") from None
    except UnicodeDecodeError:
        raise DecodeError("it is not UTF-8 text") from None
    except RecursionError:  # not reached below MAX_DEPTH; a guard, not a path
        raise LimitError(depth_message(max_depth)) from None
    except ValueError as e:  # int() beyond sys.get_int_max_str_digits() digits
        if isinstance(e, DecodeError):
            raise
        raise DecodeError(f"a number has more than {sys.get_int_max_str_digits()} "
                          "digits") from None


# --------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------


class YAMLLimitError(yaml.MarkedYAMLError):
    """A YAML document beyond a limit; a MarkedYAMLError, so callers report its line."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def allowed_alias_ratio(decodes: int) -> float:
    """go-yaml's allowedAliasRatio: 99% of a document may come from aliases up to 400,000
    decoded nodes, sliding to 10% at 4,000,000."""
    if decodes <= ALIAS_RATIO_RANGE_LOW:
        return 0.99
    if decodes >= ALIAS_RATIO_RANGE_HIGH:
        return 0.10
    span = ALIAS_RATIO_RANGE_HIGH - ALIAS_RATIO_RANGE_LOW
    return 0.99 - 0.89 * ((decodes - ALIAS_RATIO_RANGE_LOW) / span)


class _JSONConstructor(yaml.constructor.SafeConstructor):
    """SafeConstructor, but everything it builds is something JSON can hold (as
    sigs.k8s.io/yaml gives): YAML 1.1 timestamps stay the strings they were written as, a
    set is a map of nulls, keys are strings, numbers are finite."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        self.flatten_mapping(node)  # merge keys (`<<: *base`)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, dict | list):
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       "found a key that is not a scalar", key_node.start_mark)
            # Keys as sigs.k8s.io/yaml's conversion writes them: `1`, `true`, `null`, `1.5`;
            # converted before they meet in a dict, where 1 and true would be one key.
            if not isinstance(key, str):
                key = json.dumps(key)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


def _timestamp(loader: _JSONConstructor, node: ScalarNode) -> Any:
    return loader.construct_scalar(node)


def _set(loader: _JSONConstructor, node: MappingNode) -> Any:
    # A YAML set is a mapping whose values are null; so it is in JSON. (A generator, as
    # PyYAML's collection constructors are, so that aliases into it resolve.)
    data: dict[Any, Any] = {}
    yield data
    data.update(loader.construct_mapping(node))


def _binary(loader: _JSONConstructor, node: ScalarNode) -> Any:
    raw = yaml.constructor.SafeConstructor.construct_yaml_binary(loader, node)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConstructorError(None, None, "!!binary data is not UTF-8 text, which JSON "
                               "cannot hold", node.start_mark) from None


def _int(loader: _JSONConstructor, node: ScalarNode) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    except ValueError:  # beyond sys.get_int_max_str_digits()
        raise ConstructorError(None, None, "integer has too many digits",
                               node.start_mark) from None


def _float(loader: _JSONConstructor, node: ScalarNode) -> Any:
    value = yaml.constructor.SafeConstructor.construct_yaml_float(loader, node)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConstructorError(None, None, f"{node.value} (NaN or an infinity) is not a "
                               "number JSON can hold", node.start_mark)
    return value


_JSONConstructor.yaml_constructors = {
    **yaml.constructor.SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:timestamp": _timestamp,
    "tag:yaml.org,2002:set": _set,
    "tag:yaml.org,2002:binary": _binary,
    "tag:yaml.org,2002:int": _int,
    "tag:yaml.org,2002:float": _float,
}


class BoundedLoader(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
    _JSONConstructor, yaml.resolver.Resolver,
):
    """PyYAML's SafeLoader with limits, checked while the node graph is composed, before a
    single Python object is built: nesting depth, aliases that refer to themselves, and
    go-yaml's excessive-aliasing rule over what aliases expand to."""

    def __init__(self, stream: str | bytes) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _JSONConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._decodes = 0  # nodes of this document, aliases counted as what they expand to
        self._aliased = 0  # of which through aliases
        self._weights: dict[int, int] = {}  # id(node) -> its expanded size, once composed

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # `[[[[...` is refused as the scanner meets it: the scanner reads ahead to the end of a
        # flow collection (it might be a key), so the composer's check would come after a
        # scan of the whole nesting, quadratic in its depth.
        if self.flow_level >= MAX_DEPTH:
            raise YAMLLimitError(depth_message(), self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_document(self) -> Node | None:
        # go-yaml counts per document (kubectl splits a stream before decoding).
        self._decodes = self._aliased = 0
        self._weights.clear()
        return super().compose_document()

    def _count(self, weight: int, aliased: bool, mark: yaml.Mark | None) -> None:
        self._decodes += weight
        if aliased:
            self._aliased += weight
        if self._aliased > 100 and self._decodes > 1000 and \
                self._aliased / self._decodes > allowed_alias_ratio(self._decodes):
            raise YAMLLimitError("document contains excessive aliasing", mark)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an unknown alias: PyYAML's own error follows
                weight = self._weights.get(id(target))
                if weight is None:  # its anchor is still being composed: `&a [*a]`
                    raise YAMLLimitError(f"anchor '{event.anchor}' value contains itself",
                                         event.start_mark)
                self._count(weight, True, event.start_mark)
            return super().compose_node(parent, index)
        # Depth counts arrays and objects, as json_too_deep does: a scalar adds no level.
        collection = isinstance(self.peek_event(), yaml.SequenceStartEvent | yaml.MappingStartEvent)
        if collection:
            if self._depth >= MAX_DEPTH:
                raise YAMLLimitError(depth_message(), self.peek_event().start_mark)
            self._depth += 1
        before = self._decodes
        try:
            node = super().compose_node(parent, index)
        finally:
            if collection:
                self._depth -= 1
        if node is None:  # not reached: PyYAML composes a node for every event it is asked
            return node
        own = 1
        if isinstance(node, ScalarNode):
            own += len(node.value) // SCALAR_CHUNK
        self._count(own, False, node.start_mark)
        self._weights[id(node)] = self._decodes - before
        return node


def load_yaml(text: str | bytes) -> Any:
    """One YAML document (None for an empty one), bounded. yaml.YAMLError otherwise."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml_all(text: str | bytes) -> list[Any]:
    """Every document of a YAML stream, bounded. yaml.YAMLError otherwise."""
    loader = BoundedLoader(text)
    try:
        out = []
        while loader.check_data():
            out.append(loader.get_data())
        return out
    finally:
        loader.dispose()


def yaml_problem(e: yaml.YAMLError) -> tuple[str, int | None]:
    """(what is wrong, its 1-based line or None) of a YAML error, without the excerpt of the
    offending text that str(e) quotes."""
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        return (e.problem or e.context or "invalid YAML"), (mark.line + 1 if mark else None)
    return str(e).splitlines()[0] if str(e) else "invalid YAML", None

