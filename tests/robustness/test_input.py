"""The Input suite: hostile input to every decoder and to both API fronts, in bounded runs.

What a new user or an attacker can send, tinykube must refuse in one clean line that names what
is wrong: never an internal error (a 500, gRPC INTERNAL/UNKNOWN, tkctl's "internal error"),
never unbounded memory, and the server answers the next request. Each kind of hostile input is
tried against each decoder on its own (fast, pure), then through the real fronts of one
apiserver (the shared `cluster` fixture): gRPC envelopes (raw, not our client, so they can carry
anything), Kubernetes' HTTP API with JSON, YAML and protobuf bodies, and tkctl's manifest reader.

- malformed: random bytes, random JSON and YAML, random protobuf messages and envelopes;
- oversize: 100,000-character names and values, numbers with thousands of digits;
- deeply nested: 50,000 levels of arrays, anywhere a free-form field allows nesting;
- aliased: YAML alias bombs ("billion laughs"), self-referencing anchors;
- out of range: every integer field of every kind, one past its upstream Go type's range;
- type-confused: every field of every kind given a value of another JSON type.

The five reproducers of issue 20's input findings are the `test_issue20_*` tests. Runs are
bounded (`max_examples`, deadlines) so that the file takes seconds, not minutes.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import random
import socket
import ssl
import tempfile
import threading
import time
import tracemalloc
import types
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from api import codec, decoding, protobuf
from api.durations import parse_duration
from api.errors import (
    GRPC_MESSAGE_MAX,
    STATUS_METADATA_KEY,
    STATUS_METADATA_MAX,
    ApiError,
    BadRequest,
    Cause,
    Invalid,
    UnsupportedMediaType,
    invalid,
)
from api.meta import GoInt, K8sModel, go_int
from api.proto import tinykube_pb2 as pb
from api.proto import tinykube_pb2_grpc as pb_grpc
from api.quantity import QuantityError, cpu_millis, parse_quantity, to_bytes
from api.resources import RESOURCES, ResourceInfo
from api.selectors import parse_field_selector, parse_label_selector
from client.config import ClientConfig, ConfigError, load_kubeconfig
from harness.cluster import Cluster
from tkctl.commands import execute
from tkctl.manifests import ManifestError, parse

# Bounded runs: few examples, each with a deadline (generous: CI machines are shared and slow;
# what a deadline catches here is unbounded work, which takes far longer).
PURE = settings(max_examples=60, deadline=timedelta(seconds=10),
                suppress_health_check=[HealthCheck.too_slow])
FRONT = settings(max_examples=25, deadline=timedelta(seconds=20),
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Hostile documents
# --------------------------------------------------------------------------------------------


def alias_bomb(levels: int = 9, fan_out: int = 9, header: str = "") -> str:
    """The "billion laughs": each level lists the previous one `fan_out` times, so a few hundred
    bytes stand for fan_out**levels strings. The issue's was 445 bytes for 10^9."""
    lines = [header, 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * fan_out) + "]")
    return "\n".join(line for line in lines if line) + "\n"


MANIFEST_BOMB = alias_bomb(header="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}")
DEEP = 50_000  # levels of nesting in the issue's report


def deep_json(levels: int, leaf: str = "1") -> str:
    return "[" * levels + leaf + "]" * levels


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False,
                                                                       allow_infinity=False)
    | st.text(max_size=16),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return 1 + max((depth_of(v) for v in items), default=0)
    return 0


def nested(levels: int, leaf: Any = 1) -> Any:
    """`levels` arrays and objects, alternating, around `leaf` (iterative: any depth)."""
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"a": value}
    return value


# --------------------------------------------------------------------------------------------
# The models, walked: every field's path and what JSON it takes
# --------------------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _members(ann: Any) -> list[Any]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return [ann]


def _strip(ann: Any) -> tuple[Any, tuple[Any, ...]]:
    if typing.get_origin(ann) is typing.Annotated:
        args = typing.get_args(ann)
        return args[0], tuple(args[1:])
    return ann, ()


def json_types(ann: Any, metadata: tuple[Any, ...] = ()) -> set[str] | None:
    """The JSON types a field takes (None: anything, a free-form value)."""
    out: set[str] = set()
    for member in _members(ann):
        bare, meta = _strip(member)
        meta = meta + metadata
        origin = typing.get_origin(bare)
        if bare is Any:
            return None
        if origin is list:
            out.add("array")
        elif origin is dict or (isinstance(bare, type) and issubclass(bare, BaseModel)):
            out.add("object")
        elif bare is bool:
            out.add("boolean")
        elif bare is int or bare is float:
            out.add("number")
        elif bare is str:
            out.add("string")
            if any("quantity" in repr(m).lower() or "_coerce" in repr(m) for m in meta):
                out.add("number")  # resource.Quantity: `cpu: 1` is a quantity too
        else:
            return None
    return out


def fields(model: type[BaseModel], prefix: Path_ = (), depth: int = 0
           ) -> Iterator[tuple[Path_, Any, tuple[Any, ...]]]:
    """(path, annotation, metadata) of every field reachable from `model`: lists through
    element 0, maps through key "k"."""
    if depth > 14:
        return
    for name, f in model.model_fields.items():
        path = (*prefix, f.alias or name)
        yield path, f.annotation, tuple(f.metadata)
        yield from _inner(f.annotation, path, depth)


def _inner(ann: Any, path: Path_, depth: int) -> Iterator[tuple[Path_, Any, tuple[Any, ...]]]:
    for member in _members(ann):
        bare, _ = _strip(member)
        origin = typing.get_origin(bare)
        if origin is list:
            (elem,) = typing.get_args(bare)
            yield (*path, 0), elem, ()
            yield from _inner(elem, (*path, 0), depth + 1)
        elif origin is dict:
            elem = typing.get_args(bare)[1]
            if elem is not Any:
                yield (*path, "k"), elem, ()
                yield from _inner(elem, (*path, "k"), depth + 1)
        elif isinstance(bare, type) and issubclass(bare, BaseModel):
            yield from fields(bare, path, depth + 1)


def field_path(path: Path_, model: type[BaseModel]) -> str:
    """A path as the codec names it: `spec.containers[0].ports[0].containerPort`,
    `metadata.labels[k]`."""
    out = ""
    for elem in path:
        if isinstance(elem, int) or (elem == "k" and out):
            out += f"[{elem}]"
        else:
            out = f"{out}.{elem}" if out else str(elem)
    return out


def with_value(base: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    """A copy of `base` with `value` at `path`, creating what lies between."""
    out = json.loads(json.dumps(base))
    cur: Any = out
    for elem, nxt in itertools.pairwise(path):
        want: Any = [] if isinstance(nxt, int) else {}
        if isinstance(cur, list):
            while len(cur) <= elem:  # type: ignore[operator]
                cur.append(json.loads(json.dumps(want)))
            if not isinstance(cur[elem], type(want)):  # type: ignore[index]
                cur[elem] = want  # type: ignore[index]
            cur = cur[elem]  # type: ignore[index]
        else:
            if not isinstance(cur.get(elem), type(want)):
                cur[elem] = want
            cur = cur[elem]
    last = path[-1]
    if isinstance(cur, list):
        while len(cur) <= last:  # type: ignore[operator]
            cur.append(None)
        cur[last] = value  # type: ignore[index]
    else:
        cur[last] = value
    return out


def base_object(info: ResourceInfo) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "fz"}
    if info.namespaced:
        md["namespace"] = "default"
    return {"apiVersion": info.api_version, "kind": info.kind, "metadata": md}


STORED = sorted(name for name, info in RESOURCES.items() if not info.virtual)
INT_FIELDS: list[tuple[str, Path_, GoInt]] = sorted(
    {(name, path, gi)
     for name, info in RESOURCES.items()
     for path, ann, meta in fields(info.model)
     for gi in [go_int(meta) or next((go_int(_strip(m)[1]) for m in _members(ann)
                                      if go_int(_strip(m)[1])), None)]
     if gi is not None},
    key=lambda t: (t[0], t[1]))
ALL_FIELDS: list[tuple[str, Path_, set[str] | None]] = [
    (name, path, json_types(ann, meta))
    for name in STORED for path, ann, meta in fields(RESOURCES[name].model)
]
CONFUSED = {"string": "x", "number": 7, "boolean": True, "array": [1], "object": {"a": 1}}


def out_of_range(gi: GoInt, data: st.DataObject) -> int:
    return data.draw(st.sampled_from([gi.max + 1, gi.min - 1, 2**70, -(2**70), 2**64]))


def range_cause(e: ApiError, path: str, gi: GoInt) -> Cause | None:
    return next((c for c in e.causes if c.field == path
                 and f"must be within the {gi.name} range" in c.message), None)


# --------------------------------------------------------------------------------------------
# Decoders: the codec (every kind)
# --------------------------------------------------------------------------------------------


def _all_models() -> set[type[K8sModel]]:
    out: set[type[K8sModel]] = set()
    todo: list[type[K8sModel]] = [K8sModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in out and sub.__module__.startswith("api."):
                out.add(sub)
                todo.append(sub)
    return out


def test_every_integer_field_has_an_upstream_range() -> None:
    """No model may have an unbounded integer: each is an Int32 or an Int64 (api.meta), and the
    protobuf table, written from upstream's Go types, agrees."""
    seen = 0
    for model in _all_models():
        table = {spec.partition(" ")[0]: spec.partition(" ")[2].lstrip("*")
                 for spec in protobuf.FIELDS.get(model, {}).values()}
        for name, f in model.model_fields.items():
            alias = f.alias or name
            for member in _members(f.annotation):
                bare, meta = _strip(member)
                for inner in [bare, *typing.get_args(bare)]:  # list[int], dict[str, int]
                    assert inner is not int or bare is int, f"{model.__name__}.{alias}"
                if bare is not int:
                    continue
                gi = go_int(meta + tuple(f.metadata))
                assert gi is not None, f"{model.__name__}.{alias}: an int with no Go type"
                seen += 1
                want = table.get(alias)
                if want not in (None, "IntOrString"):
                    assert want == gi.name, f"{model.__name__}.{alias}: {gi.name} != {want}"
    assert seen > 60
    assert len(INT_FIELDS) > 60


@pytest.mark.parametrize(("resource", "path", "gi"), INT_FIELDS,
                         ids=[f"{r}:{field_path(p, RESOURCES[r].model)}"
                              for r, p, _ in INT_FIELDS])
def test_out_of_range_integers_are_refused_naming_the_field(resource: str, path: Path_,
                                                            gi: GoInt) -> None:
    info = RESOURCES[resource]
    where = field_path(path, info.model)
    for value in (gi.max + 1, gi.min - 1, 2**70):
        with pytest.raises(Invalid) as e:
            codec.decode(info, with_value(base_object(info), path, value))
        cause = range_cause(e.value, where, gi)
        assert cause is not None, (where, e.value.causes)
        assert cause.message == (f"Invalid value: {value}: must be within the {gi.name} range")
    for value in (gi.max, gi.min):  # the edges are in range
        try:
            codec.decode(info, with_value(base_object(info), path, value))
        except Invalid as e:
            assert range_cause(e, where, gi) is None


@PURE
@given(data=st.data())
def test_type_confused_fields_are_refused_naming_the_field(data: st.DataObject) -> None:
    resource, path, want = data.draw(st.sampled_from([f for f in ALL_FIELDS if f[2]]))
    assert want is not None
    info = RESOURCES[resource]
    wrong = data.draw(st.sampled_from(sorted(set(CONFUSED) - want)))
    doc = with_value(base_object(info), path, CONFUSED[wrong])
    where = field_path(path, info.model)
    with pytest.raises(ApiError) as e:
        codec.decode(info, doc)
    if where in ("apiVersion", "kind"):
        assert isinstance(e.value, BadRequest)
        return
    assert isinstance(e.value, Invalid), e.value
    assert any(c.field == where or c.field.startswith((where + ".", where + "["))
               for c in e.value.causes), (where, e.value.causes)


@PURE
@given(data=st.data(), levels=st.sampled_from([decoding.MAX_DEPTH + 1, 500, 2000]))
def test_deep_nesting_anywhere_is_a_bad_request(data: st.DataObject, levels: int) -> None:
    """However the body was decoded (protobuf's embedded JSON, a patch's result), the codec
    refuses data that nests beyond the limit with a BadRequest naming where it does, never
    with a RecursionError."""
    resource, path, _ = data.draw(st.sampled_from(ALL_FIELDS))
    info = RESOURCES[resource]
    with pytest.raises(BadRequest, match=decoding.depth_message()):
        codec.decode(info, with_value(base_object(info), path, nested(levels)))


def test_metadata_null_is_metadata_absent() -> None:
    """Upstream's decoders take null as absent; `metadata:` (empty in YAML) is null."""
    for name in STORED:
        info = RESOURCES[name]
        obj, _ = codec.decode(info, {"apiVersion": info.api_version, "kind": info.kind,
                                     "metadata": None, "spec": None})
        assert obj.metadata.name is None


@PURE
@given(resource=st.sampled_from(STORED), data=JSON_VALUES)
def test_random_json_at_the_top_is_an_api_error(resource: str, data: Any) -> None:
    try:
        codec.decode(RESOURCES[resource], data)
    except ApiError:
        pass


# --------------------------------------------------------------------------------------------
# Decoders: JSON and YAML (api.decoding)
# --------------------------------------------------------------------------------------------


@PURE
@given(value=JSON_VALUES, levels=st.integers(0, 3 * decoding.MAX_DEPTH // 2))
def test_json_loader_keeps_what_fits_and_refuses_what_nests_too_deep(value: Any,
                                                                     levels: int) -> None:
    doc = nested(levels, value)
    raw = json.dumps(doc)
    assert decoding.json_too_deep(raw) == (depth_of(doc) > decoding.MAX_DEPTH)
    if depth_of(doc) > decoding.MAX_DEPTH:
        with pytest.raises(decoding.LimitError, match="exceeded max depth of 100"):
            decoding.loads_json(raw)
    else:
        assert decoding.loads_json(raw) == json.loads(raw)


@PURE
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
       | st.sampled_from([b"NaN", b"[-Infinity]", b'{"a": Infinity}', b"1" * 5000,
                          deep_json(DEEP).encode(), b'"\\', b"\xff\xfe", b"\x00"]))
def test_json_loader_refuses_only_with_decode_errors(raw: bytes) -> None:
    try:
        value = decoding.loads_json(raw)
    except decoding.DecodeError as e:
        assert str(e) and "Error" not in str(e)  # API words, not a Python class name
        return
    json.dumps(value, allow_nan=False)  # what it keeps, any JSON reader can read


YAML_ALPHABET = st.sampled_from([*"ab:-[]{}&*!|>'\"#,.? \n\t01eE<", "!!set", "!!binary", ".nan",
                                 "<<: *a", "&a", "*a", "2001-01-01"])


@PURE
@given(text=st.lists(YAML_ALPHABET, max_size=40).map("".join) | st.text(max_size=60))
def test_yaml_loader_gives_json_or_a_yaml_error(text: str) -> None:
    try:
        docs = decoding.load_yaml_all(text)
    except yaml.YAMLError:
        return
    json.dumps(docs, allow_nan=False)  # timestamps, sets, binary, keys: all JSON


@pytest.mark.parametrize(("levels", "fan_out"), [(9, 9), (6, 30), (4, 200), (20, 2)])
def test_yaml_alias_bombs_are_refused_in_bounded_memory(levels: int, fan_out: int) -> None:
    bomb = alias_bomb(levels, fan_out)
    tracemalloc.start()
    try:
        with pytest.raises(yaml.MarkedYAMLError, match="excessive aliasing"):
            decoding.load_yaml(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"{peak / 2**20:.0f} MiB for a {len(bomb)}-byte document"


def test_yaml_aliases_that_manifests_use_still_load() -> None:
    doc = decoding.load_yaml(
        "base: &base {app: web, tier: fe}\n"
        "a: {<<: *base, extra: x}\n"
        "b: [*base, *base]\n"
        "long: &s " + "x" * 10_000 + "\n"
        "again: [*s, *s, *s]\n")
    assert doc["a"] == {"app": "web", "tier": "fe", "extra": "x"}
    assert len(json.dumps(doc)) > 40_000
    big = decoding.load_yaml_all("\n---\n".join(
        f"metadata: {{name: c{i}, labels: &l {{a: b}}}}\nspec: {{selector: *l}}"
        for i in range(300)))
    assert len(big) == 300


@pytest.mark.parametrize("text", [
    "a: &a [*a]", "a: &a {b: *a}", deep_json(DEEP), "- " * 2000 + "x",
    "a: " + "9" * 5000, "a: .inf", "a: !!binary //79", "a: !!python/object:os.system x",
])
def test_yaml_loader_limits(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as e:
        decoding.load_yaml(text)
    assert "Error" not in (getattr(e.value, "problem", "") or "")


# --------------------------------------------------------------------------------------------
# Decoders: Kubernetes protobuf bodies (api.protobuf)
# --------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


PB_LEAF = (st.tuples(st.integers(1, 16), st.integers(0, 2**64 - 1))
           .map(lambda t: varint(t[0] << 3) + varint(t[1]))
           | st.tuples(st.integers(1, 16), st.binary(max_size=8)).map(lambda t: ld(*t))
           | st.tuples(st.integers(1, 16), st.sampled_from([b"{}", b"[1,{}]", b"1Mi",
                                                            deep_json(500).encode()]))
           .map(lambda t: ld(*t)))
PB_MESSAGE = st.recursive(
    st.lists(PB_LEAF, max_size=4).map(b"".join),
    lambda inner: st.lists(st.tuples(st.integers(1, 16), inner).map(lambda t: ld(*t)) | PB_LEAF,
                           max_size=4).map(b"".join),
    max_leaves=24)
PB_KINDS = sorted({(RESOURCES[n].api_version, RESOURCES[n].kind) for n in STORED
                   if RESOURCES[n].model in protobuf.FIELDS})


@PURE
@given(kind=st.sampled_from(PB_KINDS), raw=PB_MESSAGE | st.binary(max_size=64))
def test_protobuf_bodies_decode_to_in_range_json_or_a_bad_request(kind: tuple[str, str],
                                                                   raw: bytes) -> None:
    """Protobuf integers are bounded by their wire types (as Go's int32(v)), so what decodes
    never carries an out-of-range integer into the models; the rest is a clean 4xx."""
    body = protobuf.MAGIC + ld(1, ld(1, kind[0].encode()) + ld(2, kind[1].encode())) + ld(2, raw)
    try:
        out = protobuf.decode(body)
    except (BadRequest, UnsupportedMediaType):
        return
    json.dumps(out, allow_nan=False)
    info = next(i for i in RESOURCES.values() if (i.api_version, i.kind) == kind)
    try:
        codec.decode(info, out)
    except Invalid as e:
        assert not any("must be within the" in c.message for c in e.causes), e.causes


@PURE
@given(raw=st.binary(max_size=80))
def test_protobuf_envelopes_of_random_bytes_are_bad_requests(raw: bytes) -> None:
    for body in (raw, protobuf.MAGIC + raw):
        try:
            protobuf.decode(body)
        except (BadRequest, UnsupportedMediaType):
            pass


# --------------------------------------------------------------------------------------------
# Decoders: tkctl's manifests, kubeconfigs, selectors, quantities, durations
# --------------------------------------------------------------------------------------------


@PURE
@given(text=st.lists(YAML_ALPHABET, max_size=50).map("".join)
       | JSON_VALUES.map(json.dumps)
       | st.builds(lambda md: "apiVersion: v1\nkind: ConfigMap\nmetadata: " + md,
                   st.sampled_from(["", "null", "5", "[a]", "{name: 5}", "{name: [x]}",
                                    "{namespace: {a: b}}", "'x'", "{name: ok}"])))
def test_manifest_reader_gives_objects_or_one_line_errors(text: str) -> None:
    try:
        items = parse(text, "m.yaml")
    except ManifestError as e:
        assert "\n" not in str(e) and "Error" not in str(e)
        return
    for m in items:
        assert isinstance(m.obj.get("metadata", {}), dict)
        json.dumps(m.obj, allow_nan=False)


@pytest.mark.parametrize(("text", "words"), [
    (MANIFEST_BOMB, "document contains excessive aliasing"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: " + deep_json(DEEP),
     "exceeded max depth of 100"),
    ('{"apiVersion": "v1", "kind": "ConfigMap", "data": ' + deep_json(DEEP) + "}",
     "exceeded max depth of 100"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: 5\n", ".metadata accessor error"),
    ("apiVersion: v1\nkind: [5]\nmetadata: {}\n", ".kind accessor error"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {a: b}}\n",
     ".metadata.name accessor error"),
])
def test_manifest_reader_refuses_hostile_manifests(text: str, words: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ManifestError, match=words):
            parse(text, "m.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024


KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "c",
    "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443",
                                           "certificate-authority-data": "eA=="}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "n"}}],
}


@settings(PURE, max_examples=30)
@given(data=st.data())
def test_kubeconfig_loader_gives_a_config_or_a_config_error(data: st.DataObject) -> None:
    doc: Any = json.loads(json.dumps(KUBECONFIG))
    for _ in range(data.draw(st.integers(1, 3))):
        node = doc
        path = data.draw(st.sampled_from([
            ("current-context",), ("clusters",), ("clusters", 0), ("clusters", 0, "cluster"),
            ("clusters", 0, "cluster", "server"), ("users", 0, "user"), ("users", 0, "user",
                                                                          "token"),
            ("contexts", 0, "context"), ("contexts", 0, "context", "cluster"), ("contexts",),
            ("clusters", 0, "cluster", "certificate-authority-data")]))
        try:
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            pass
    text = data.draw(st.sampled_from([json.dumps(doc), yaml.safe_dump(doc),
                                      alias_bomb(), deep_json(DEEP), "\x00\xff"]))
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(text)
    try:
        assert isinstance(load_kubeconfig(f.name), ClientConfig)
    except ConfigError as e:
        assert "Traceback" not in str(e)
    finally:
        Path(f.name).unlink()


SELECTOR_TEXT = st.text(st.sampled_from(list("ab=!(),<> in-./_x9to")), max_size=40) | \
    st.text(max_size=40) | st.sampled_from(["a in (" + "x," * 5000 + "y)", "a=" + "b" * 20_000,
                                             "," * 10_000, "(" * 10_000, "a" * 20_000])


@PURE
@given(text=SELECTOR_TEXT)
def test_selectors_parse_or_are_bad_requests(text: str) -> None:
    for parse_one in (parse_label_selector,
                      lambda s: parse_field_selector(s, frozenset({"a", "metadata.name"}))):
        try:
            parse_one(text)
        except BadRequest as e:
            assert e.message


@PURE
@given(value=st.text(st.sampled_from(list("0123456789.+-eEinumkKMGTP")), max_size=30)
       | st.text(max_size=20) | st.integers(-2**80, 2**80) | st.floats()
       | st.sampled_from(["9" * 2000, "1e100", "1e101", "9" * 300 + "Ei", "0." + "0" * 500 + "1",
                          str(10**400), 10**400]))
def test_quantities_parse_or_are_quantity_errors(value: str | int | float) -> None:
    try:
        q = parse_quantity(value)
    except QuantityError:
        return
    assert isinstance(q, Decimal)
    cpu_millis(value)
    to_bytes(value)


@PURE
@given(text=st.text(st.sampled_from(list("0123456789.mshu")), max_size=30) | st.text(max_size=20)
       | st.sampled_from(["9" * 400, "9" * 30 + "h", "1e9", ""]))
def test_durations_parse_finite_or_are_value_errors(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert 0 <= seconds < float("inf")


@settings(PURE, max_examples=30)
@given(name=st.text(max_size=200) | st.integers(0, 300_000).map(lambda n: "a" * n),
       causes=st.integers(0, 300), text=st.text(max_size=200))
def test_error_metadata_stays_within_what_grpc_clients_take(name: str, causes: int,
                                                            text: str) -> None:
    e = invalid("ConfigMap", name, [Cause(f"data[{text}{i}]", f'Invalid value: "{name}": {text}'
                                          if i == 0 else f"Invalid value: {i}: {text}")
                                    for i in range(causes)])
    ((key, status),) = e.trailing_metadata()
    assert key == STATUS_METADATA_KEY and len(status) <= STATUS_METADATA_MAX
    assert len(e.grpc_details().encode("utf-8", "surrogatepass")) <= GRPC_MESSAGE_MAX
    decoded = json.loads(status)
    assert decoded["reason"] == "Invalid"
    if causes and len(name) < 50 and len(text) < 20:
        assert decoded["details"]["causes"]  # a small error is sent whole


# --------------------------------------------------------------------------------------------
# The gRPC front (raw envelopes, against the shared apiserver)
# --------------------------------------------------------------------------------------------

FUZZ_RESOURCES = ["pods", "deployments", "services", "configmaps", "nodes", "namespaces",
                  "replicasets", "leases", "events", "secrets", "bogus", ""]
VALID_POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fuzz"},
    "spec": {"containers": [{"name": "c", "image": "busybox:1",
                             "ports": [{"containerPort": 80}],
                             "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}]},
}
POD_PATHS = [("metadata", "name"), ("metadata", "labels"), ("spec", "containers"),
             ("spec", "restartPolicy"), ("spec", "nodeName"), ("spec", "tolerations"),
             ("spec", "containers", 0, "ports"), ("spec", "containers", 0, "resources", "limits"),
             ("spec", "containers", 0, "name"), ("apiVersion",), ("kind",), ("spec",)]
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fz"},
    "spec": {"selector": {"matchLabels": {"a": "b"}},
             "template": {"metadata": {"labels": {"a": "b"}},
                          "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


@pytest.fixture(scope="module")
def stub(cluster: Cluster) -> Iterator[pb_grpc.ApiStub]:
    s = pb_grpc.ApiStub(cluster.channel(sync=True))
    yield s
    answers(s)  # after this worker's last test of the gRPC front


@pytest.fixture(scope="module")
def raw_channel(cluster: Cluster) -> grpc.Channel:
    return cluster.channel(sync=True)


def clean_status(e: grpc.RpcError) -> tuple[grpc.StatusCode, dict[str, Any]]:
    """A refusal must be clean: not INTERNAL/UNKNOWN (nor gRPC's own metadata-size refusal),
    with a Kubernetes Status in the trailing metadata whose message is in API words."""
    code = e.code()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                        grpc.StatusCode.RESOURCE_EXHAUSTED), f"{code}: {e.details()}"
    md = dict(e.trailing_metadata() or ())
    status = json.loads(md[STATUS_METADATA_KEY])
    assert status["kind"] == "Status" and status["status"] == "Failure"
    assert status["message"] and "<class" not in status["message"]
    assert "Traceback" not in status["message"]
    return code, status


def grpc_error(fn: Any, req: Any) -> tuple[grpc.StatusCode, dict[str, Any]] | None:
    """Call; None on success, else the clean refusal."""
    try:
        fn(req, timeout=30)
        return None
    except grpc.RpcError as e:
        return clean_status(e)


def answers(stub: pb_grpc.ApiStub, http: Http | None = None) -> None:
    """The server still serves, on both fronts."""
    resp = stub.Get(pb.GetRequest(resource="namespaces", name="default"), timeout=30)
    assert json.loads(resp.object)["metadata"]["name"] == "default"
    if http is not None:
        code, ns = http("GET", "/api/v1/namespaces/default")
        assert code == 200 and ns["metadata"]["name"] == "default"


def causes_of(status: dict[str, Any]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in (status.get("details") or {}).get("causes") or []}


@FRONT
@given(resource=st.sampled_from(FUZZ_RESOURCES), body=st.binary(max_size=64)
       | JSON_VALUES.map(lambda v: json.dumps(v).encode())
       | st.sampled_from([deep_json(DEEP).encode(), b'{"metadata": null}', b"NaN", b"",
                          b'{"a": ' * 5000 + b"1" + b"}" * 5000]),
       ns=st.sampled_from(["default", "", "nope", "BAD NS"]))
def test_grpc_random_bodies_get_clean_errors(stub: pb_grpc.ApiStub, resource: str, body: bytes,
                                             ns: str) -> None:
    grpc_error(stub.Create, pb.CreateRequest(resource=resource, namespace=ns, object=body,
                                             dry_run=True))
    grpc_error(stub.Update, pb.UpdateRequest(resource=resource, namespace=ns, name="x",
                                             object=body, dry_run=True))


@FRONT
@given(path=st.sampled_from(POD_PATHS), value=JSON_VALUES | st.sampled_from(
    [nested(DEEP // 100), "x" * 100_000, 2**70, -(2**70), 1e308]))
def test_grpc_mutated_pods_get_clean_errors(stub: pb_grpc.ApiStub, path: tuple[Any, ...],
                                            value: Any) -> None:
    body = with_value(VALID_POD, path, value)
    grpc_error(stub.Create, pb.CreateRequest(resource="pods", namespace="default",
                                             object=json.dumps(body).encode(), dry_run=True))


FRONT_INT_FIELDS = [f for f in INT_FIELDS if f[0] in ("pods", "deployments", "services",
                                                      "replicasets", "leases", "events")]


@FRONT
@given(field=st.sampled_from(FRONT_INT_FIELDS), data=st.data())
def test_grpc_out_of_range_integers_name_the_field(stub: pb_grpc.ApiStub,
                                                   field: tuple[str, Path_, GoInt],
                                                   data: st.DataObject) -> None:
    resource, path, gi = field
    info = RESOURCES[resource]
    value = out_of_range(gi, data)
    body = with_value(base_object(info), path, value)
    answer = grpc_error(stub.Create, pb.CreateRequest(
        resource=resource, namespace="default", object=json.dumps(body).encode(), dry_run=True))
    assert answer is not None
    code, status = answer
    assert code == grpc.StatusCode.INVALID_ARGUMENT and status["code"] == 422
    where = field_path(path, info.model)
    assert causes_of(status).get(where) == (
        f"Invalid value: {value}: must be within the {gi.name} range")


FORGED_TOKENS = [base64.urlsafe_b64encode(raw).decode() for raw in (
    deep_json(5000).encode(), b'{"v": 1, "rv": 1e999, "start": []}', b"\xff", b"null")]


@FRONT
@given(label=st.text(max_size=30) | st.just("a in (" + "x," * 3000 + "y)"),
       field=st.text(max_size=30) | st.just("metadata.name=" + "x" * 100_000),
       limit=st.integers(-5, 5) | st.just(2**62),
       token=st.text(max_size=20) | st.sampled_from(FORGED_TOKENS),
       rv=st.text(max_size=8) | st.sampled_from(["9" * 5000, "-1", "1e3"]))
def test_grpc_random_list_options_get_clean_errors(stub: pb_grpc.ApiStub, label: str,
                                                   field: str, limit: int, token: str,
                                                   rv: str) -> None:
    opts = pb.ListOptions(label_selector=label, field_selector=field, limit=limit,
                          continue_token=token, resource_version=rv)
    grpc_error(stub.List, pb.ListRequest(resource="pods", namespace="default", options=opts))
    grpc_error(stub.DeleteCollection, pb.DeleteCollectionRequest(
        resource="configmaps", namespace="nope", list_options=opts,
        options=pb.DeleteOptions(dry_run=True)))


@FRONT
@given(patch_type=st.sampled_from(["merge", "json", "strategic", "apply", ""]),
       patch=JSON_VALUES.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=32)
       | st.sampled_from([b'{"spec": {"replicas": 1180591620717411303424}}',
                          b'{"a": ' * 5000 + b"1" + b"}" * 5000,
                          b'{"spec": {"template": {"spec": {"securityContext": '
                          + json.dumps(nested(150)).encode() + b"}}}}"]),
       sub=st.sampled_from(["", "status", "scale", "bogus"]))
def test_grpc_random_patches_get_clean_errors(stub: pb_grpc.ApiStub, patch_type: str,
                                              patch: bytes, sub: str) -> None:
    grpc_error(stub.Create, pb.CreateRequest(resource="deployments", namespace="default",
                                             object=json.dumps(DEPLOYMENT).encode()))
    grpc_error(stub.Patch, pb.PatchRequest(resource="deployments", namespace="default",
                                           name="fz", subresource=sub, patch_type=patch_type,
                                           patch=patch, dry_run=True))


@FRONT
@given(policy=st.text(max_size=12), grace=st.integers(-3, 100), uid=st.text(max_size=8),
       name=st.text(max_size=12))
def test_grpc_random_deletes_get_clean_errors(stub: pb_grpc.ApiStub, policy: str, grace: int,
                                              uid: str, name: str) -> None:
    opts = pb.DeleteOptions(propagation_policy=policy, grace_period_seconds=grace,
                            precondition_uid=uid, dry_run=True)
    grpc_error(stub.Delete, pb.DeleteRequest(resource="configmaps", namespace="default",
                                             name=name, options=opts))


UNARY = ["Create", "Get", "List", "Update", "Patch", "Delete", "DeleteCollection", "Bind",
         "Discovery"]


@FRONT
@given(method=st.sampled_from([*UNARY, "Watch", "Logs"]),
       raw=st.binary(max_size=40) | st.sampled_from([b"\xff\xff\xff\xff", b"\n\x03\xff\xfe\xfd",
                                                      b"\n\xff\xff\xff\xff\x0f"]))
def test_grpc_undecodable_envelopes_are_bad_requests_in_api_words(raw_channel: grpc.Channel,
                                                                  method: str,
                                                                  raw: bytes) -> None:
    path = f"/tinykube.v1.Api/{method}"
    try:
        if method in ("Watch", "Logs"):
            # What happens to decode names no real pod or watch that would run long.
            list(raw_channel.unary_stream(path, request_serializer=bytes,
                                          response_deserializer=bytes)(raw, timeout=10))
        else:
            raw_channel.unary_unary(path, request_serializer=bytes,
                                    response_deserializer=bytes)(raw, timeout=30)
        return
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return  # a Watch of something real, say: not this test's business
        code, status = clean_status(e)
    if "is not a valid" in status["message"]:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert status["message"].startswith("the request is not a valid tinykube.v1.")
        assert "DecodeError" not in status["message"]


def test_issue20_replicas_2_pow_70_is_refused(stub: pb_grpc.ApiStub) -> None:
    """Reported: a Deployment with replicas 2^70 was accepted (and its ReplicaSet controller
    then created pods until the host fell over)."""
    body = with_value(DEPLOYMENT, ("spec", "replicas"), 2**70)
    answer = grpc_error(stub.Create, pb.CreateRequest(
        resource="deployments", namespace="default", object=json.dumps(body).encode()))
    assert answer is not None
    code, status = answer
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert status["message"] == ('Deployment "fz" is invalid: spec.replicas: Invalid value: '
                                 "1180591620717411303424: must be within the int32 range")
    assert causes_of(status) == {"spec.replicas": "Invalid value: 1180591620717411303424: "
                                                  "must be within the int32 range"}


def test_issue20_a_100000_character_name_is_a_validation_error(stub: pb_grpc.ApiStub) -> None:
    """Reported: refused with gRPC's "metadata size exceeds limit" (the Status quoting the name
    twice did not fit in trailing metadata) instead of the validation error."""
    name = "a" * 100_000
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    answer = grpc_error(stub.Create, pb.CreateRequest(
        resource="configmaps", namespace="default", object=json.dumps(body).encode()))
    assert answer is not None
    code, status = answer
    assert code == grpc.StatusCode.INVALID_ARGUMENT and status["reason"] == "Invalid"
    assert "must be no more than 253 characters" in causes_of(status)["metadata.name"]
    answer = grpc_error(stub.Get, pb.GetRequest(resource="configmaps", namespace="default",
                                                name=name))
    assert answer is not None and answer[0] == grpc.StatusCode.NOT_FOUND


def test_issue20_undecodable_messages_are_answered_in_api_words(
        raw_channel: grpc.Channel) -> None:
    """Reported: `Unexpected <class 'google.protobuf.message.DecodeError'>: ...` (UNKNOWN)."""
    create = raw_channel.unary_unary("/tinykube.v1.Api/Create", request_serializer=bytes,
                                     response_deserializer=bytes)
    answer = grpc_error(create, b"\xff\xff\xff\xff")
    assert answer is not None
    assert answer[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert answer[1]["message"] == ("the request is not a valid tinykube.v1.CreateRequest "
                                    "message: its protobuf encoding is truncated or corrupt")


def test_issue20_null_metadata_and_deep_nesting_on_grpc(stub: pb_grpc.ApiStub) -> None:
    for body, words in [(b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": null}',
                         "metadata.name: Required value"),
                        (deep_json(DEEP).encode(), "exceeded max depth of 100"),
                        (b'{"apiVersion": "v1", "kind": "ConfigMap", "data": '
                         + b'{"a": [' * (DEEP // 2) + b"1" + b"]}" * (DEEP // 2) + b"}",
                         "exceeded max depth of 100")]:
        answer = grpc_error(stub.Create, pb.CreateRequest(resource="configmaps",
                                                          namespace="default", object=body))
        assert answer is not None and words in answer[1]["message"], answer


# --------------------------------------------------------------------------------------------
# The HTTP front (Kubernetes' API)
# --------------------------------------------------------------------------------------------


class Http:
    """Requests as the admin (client certificate), without the client library's help."""

    def __init__(self, cluster: Cluster) -> None:
        self.url = cluster.https_url
        user = yaml.safe_load(Path(cluster.kubeconfig).read_text())["users"][0]["user"]
        d = Path(tempfile.mkdtemp(prefix="tk-input-"))
        (d / "c.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (d / "c.key").write_bytes(base64.b64decode(user["client-key-data"]))
        self.ctx = ssl.create_default_context(cadata=cluster.ca_pem.decode())
        self.ctx.load_cert_chain(d / "c.crt", d / "c.key")
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, body: bytes | None = None,
                 ctype: str = "application/json") -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Accept": "application/json",
                                              "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        assert code < 500, (method, path, code, raw[:300])
        answer = json.loads(raw) if raw else {}
        if code >= 400:
            assert answer.get("kind") == "Status" and answer["message"], raw[:300]
            assert "<class" not in answer["message"] and "Traceback" not in answer["message"]
        return code, answer


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Iterator[Http]:
    h = Http(cluster)
    yield h
    answers(pb_grpc.ApiStub(cluster.channel(sync=True)), h)  # after the HTTP front's last test


CONTENT_TYPES = ["application/json", "application/yaml", protobuf.MEDIA_TYPE, "text/plain", ""]
HOSTILE_BODIES = [alias_bomb().encode(), MANIFEST_BOMB.encode(), deep_json(DEEP).encode(),
                  b'{"metadata": null}', b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n",
                  b"a: &a [*a]", b"x: .nan", b"- " * 3000 + b"x", b'{"a": NaN}',
                  protobuf.MAGIC + b"\xff" * 10, protobuf.MAGIC + ld(2, ld(1, b"{" * 500)),
                  b"\x00\xff"]


@FRONT
@given(ctype=st.sampled_from(CONTENT_TYPES), body=st.sampled_from(HOSTILE_BODIES)
       | st.binary(max_size=64) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
       | st.lists(YAML_ALPHABET, max_size=30).map(lambda s: "".join(s).encode()),
       where=st.sampled_from(["/api/v1/namespaces/default/configmaps",
                              "/apis/apps/v1/namespaces/default/deployments"]))
def test_http_random_bodies_get_clean_4xx(http: Http, ctype: str, body: bytes,
                                          where: str) -> None:
    http("POST", where + "?dryRun=All", body, ctype)
    http("PUT", where + "/x?dryRun=All", body, ctype)
    http("DELETE", where + "/x?dryRun=All", body, ctype)
    http("POST", "/api/v1/namespaces/default/pods/x/binding?dryRun=All", body, ctype)


@FRONT
@given(ctype=st.sampled_from(["application/merge-patch+json", "application/json-patch+json",
                              "application/strategic-merge-patch+json",
                              "application/apply-patch+yaml"]),
       body=st.sampled_from(HOSTILE_BODIES) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_http_random_patches_get_clean_4xx(http: Http, ctype: str, body: bytes) -> None:
    http("PATCH", "/api/v1/namespaces/default/configmaps/x?dryRun=All&fieldManager=m", body,
         ctype)


@FRONT
@given(field=st.sampled_from(FRONT_INT_FIELDS), data=st.data(),
       as_yaml=st.booleans())
def test_http_out_of_range_integers_name_the_field(http: Http, field: tuple[str, Path_, GoInt],
                                                   data: st.DataObject, as_yaml: bool) -> None:
    resource, path, gi = field
    info = RESOURCES[resource]
    value = out_of_range(gi, data)
    obj = with_value(base_object(info), path, value)
    body = yaml.safe_dump(obj).encode() if as_yaml else json.dumps(obj).encode()
    prefix = "/api/v1" if info.group == "" else f"/apis/{info.api_version}"
    code, status = http("POST", f"{prefix}/namespaces/default/{resource}?dryRun=All", body,
                        "application/yaml" if as_yaml else "application/json")
    assert code == 422, status
    where = field_path(path, info.model)
    assert causes_of(status).get(where) == (
        f"Invalid value: {value}: must be within the {gi.name} range"), status


def test_issue20_hostile_bodies_on_http(http: Http) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    code, status = http("POST", cms, MANIFEST_BOMB.encode(), "application/yaml")
    assert code == 400 and "excessive aliasing" in status["message"]
    code, status = http("POST", cms, deep_json(DEEP).encode())
    assert code == 400 and "exceeded max depth of 100" in status["message"]
    code, status = http("POST", cms, b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n",
                        "application/yaml")
    assert code == 422 and "metadata.name" in causes_of(status)
    code, status = http("POST", "/apis/apps/v1/namespaces/default/deployments",
                        yaml.safe_dump(with_value(DEPLOYMENT, ("spec", "replicas"), 2**70))
                        .encode(), "application/yaml")
    assert code == 422 and "spec.replicas" in causes_of(status)
    code, _ = http("DELETE", f"{cms}/x", deep_json(DEEP).encode())
    assert code == 400


def test_http_garbage_that_is_not_http(cluster: Cluster) -> None:
    """Malformed requests, bounded and on loopback: each a 4xx (or a closed connection for
    garbage that is not HTTP), never a 5xx, and the server answers afterwards."""
    rng = random.Random(14)
    host, port = cluster.https_url.removeprefix("https://").rsplit(":", 1)
    ctx = Http(cluster).ctx
    chunks = [b"GET", b"POST", b"/api/v1/", b"namespaces/", b"default/", b"pods", b"?watch=1",
              b"&limit=-1", b"%zz", b" HTTP/1.1\r\n", b"Host: x\r\n", b"Content-Length: 5\r\n",
              b"Content-Type: application/json\r\n", b"Transfer-Encoding: chunked\r\n",
              b"\r\n", b"{\"a\":", b"\x00\xff", b"PATCH /apis/apps/v1/deployments/x HTTP/1.1\r\n",
              b"/" + b"a" * 20_000]
    for _ in range(40):
        raw = b"".join(rng.choice(chunks) for _ in range(rng.randint(1, 12)))
        with socket.create_connection((host, int(port)), timeout=5) as s, \
                ctx.wrap_socket(s, server_hostname="localhost") as tls:
            tls.sendall(raw + b"\r\n\r\n")
            tls.settimeout(3)
            try:
                reply = tls.recv(64)
            except (TimeoutError, ConnectionError, ssl.SSLError):
                continue
        if reply.startswith(b"HTTP/1."):
            assert int(reply.split()[1]) < 500, (raw, reply)


# --------------------------------------------------------------------------------------------
# tkctl, end to end (in-process, against the same apiserver)
# --------------------------------------------------------------------------------------------

TKCTL_CASES = {
    "alias-bomb": (MANIFEST_BOMB, "document contains excessive aliasing"),
    "metadata-null": ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n",
                      "metadata.name: Required value"),
    "deep": ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: " + deep_json(DEEP),
             "exceeded max depth of 100"),
    "long-name": ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + "a" * 100_000 + "}\n",
                  "must be no more than 253 characters"),
    "replicas-2^70": (yaml.safe_dump(with_value(DEPLOYMENT, ("spec", "replicas"), 2**70)),
                      "spec.replicas: Invalid value: 1180591620717411303424: must be within "
                      "the int32 range"),
}


@pytest.mark.parametrize("case", sorted(TKCTL_CASES))
async def test_issue20_tkctl_refuses_hostile_manifests_in_one_line(
        cluster: Cluster, tmp_path: Path, case: str) -> None:
    """Reported: the alias bomb grew tkctl to 643 MB; `metadata: null` and 50,000-deep
    nesting printed `internal error: TypeError` / `RecursionError`."""
    text, words = TKCTL_CASES[case]
    f = tmp_path / "m.yaml"
    f.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    try:
        start = time.monotonic()
        code = await execute(["--kubeconfig", cluster.kubeconfig, "-n", "default", "apply",
                              "-f", str(f)], stdin=io.StringIO(), stdout=out, stderr=err)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = err.getvalue()
    assert code == 1, (out.getvalue(), message)
    assert words in message
    assert "internal error" not in message and "Traceback" not in message
    assert len(message.strip().splitlines()) == 1
    assert len(message) < 4096  # a long name is cited, not echoed whole
    assert peak < 64 * 1024 * 1024 and time.monotonic() - start < 60


# --------------------------------------------------------------------------------------------
# Afterwards
# --------------------------------------------------------------------------------------------


def test_server_still_serves_after_the_input_suite(stub: pb_grpc.ApiStub, http: Http) -> None:
    answers(stub, http)
