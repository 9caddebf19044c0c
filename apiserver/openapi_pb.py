"""A Swagger 2.0 document (the JSON of `/openapi/v2`) as gnostic's protobuf `openapi.v2.Document`.

kubectl and client-go before 1.29 fetch `/openapi/v2` with only
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and proto-decode the answer
into gnostic's messages (github.com/google/gnostic-models, openapiv2/OpenAPIv2.proto), which
kube-openapi's handler produces by parsing its JSON with gnostic. This module writes the same
messages from the JSON document with a small wire writer: no generated code, no .proto file, only
the field numbers below, transcribed from OpenAPIv2.proto (package openapi.v2).

gnostic's mapping, which kubectl relies on:
- JSON maps are repeated `Named*` messages (`name` = 1, `value` = 2), in the JSON's order.
- Every `x-*` key is a `NamedAny` in the message's `vendor_extension` field, its value an
  `Any{yaml = 2}` holding the value as YAML text; kubectl YAML-decodes it
  (`x-kubernetes-group-version-kind` maps kinds to definitions; `x-kubernetes-patch-*` drive the
  strategic merge patch of apply and diff).
- A schema's `type` is a `TypeItem` (a list of strings), `items` an `ItemsItem` (a list of
  schemas), `additionalProperties` a schema or a boolean, `properties` a `Properties` list.
- A parameter is a `ParametersItem`: a body parameter, a non-body one in its sub-schema by `in`
  (query, path, header, formData; their field numbers differ), or a `$ref`.

proto3 rules as Go's marshaller applies them: scalars equal to their default are left out,
sub-messages are written whenever the JSON has the key (kubectl tests a schema's `properties`
for presence), and a boolean in a oneof is written even when false. A key this module does not
know raises ValueError rather than being dropped: the document would silently lose what kubectl
may need. Pure and deterministic.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

# Wire types.
_VARINT, _I64, _LEN = 0, 1, 2

Encoder = Callable[["_Out", int, Any], None]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Out:
    """One message being written: fields appended in the order they are given."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def key(self, field: int, wire: int) -> None:
        self.parts.append(_varint(field << 3 | wire))

    def blob(self, field: int, data: bytes) -> None:
        self.key(field, _LEN)
        self.parts.append(_varint(len(data)))
        self.parts.append(data)

    def varint(self, field: int, value: int) -> None:
        self.key(field, _VARINT)
        self.parts.append(_varint(value))

    def done(self) -> bytes:
        return b"".join(self.parts)


# --- field encoders: (out, field number, JSON value) -------------------------------------------


def _string(out: _Out, field: int, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"field {field}: a string expected, got {value!r}")
    if value:
        out.blob(field, value.encode())


def _strings(out: _Out, field: int, values: Any) -> None:
    if not isinstance(values, list):
        raise ValueError(f"field {field}: a list of strings expected, got {values!r}")
    for v in values:
        if not isinstance(v, str):
            raise ValueError(f"field {field}: a string expected, got {v!r}")
        out.blob(field, v.encode())


def _bool(out: _Out, field: int, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"field {field}: a boolean expected, got {value!r}")
    if value:
        out.varint(field, 1)


def _int64(out: _Out, field: int, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {field}: an integer expected, got {value!r}")
    if value:
        out.varint(field, value)


def _double(out: _Out, field: int, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {field}: a number expected, got {value!r}")
    if value:
        out.key(field, _I64)
        out.parts.append(struct.pack("<d", float(value)))


def yaml_text(value: Any) -> str:
    """A JSON value as the YAML text of gnostic's `Any.yaml` (block style, as gnostic's
    yaml.Marshal writes it; no `...` document end after a bare scalar)."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True,
                          width=1 << 30)
    return text.removesuffix("...\n")


def _any(value: Any) -> bytes:
    out = _Out()
    out.blob(2, yaml_text(value).encode())  # Any.yaml; Any.value (1) is unused by gnostic
    return out.done()


def _any_field(out: _Out, field: int, value: Any) -> None:
    out.blob(field, _any(value))


def _anys(out: _Out, field: int, values: Any) -> None:
    if not isinstance(values, list):
        raise ValueError(f"field {field}: a list expected, got {values!r}")
    for v in values:
        out.blob(field, _any(v))


def _message(encode: Callable[[Any], bytes]) -> Encoder:
    def write(out: _Out, field: int, value: Any) -> None:
        out.blob(field, encode(value))
    return write


def _messages(encode: Callable[[Any], bytes]) -> Encoder:
    def write(out: _Out, field: int, values: Any) -> None:
        if not isinstance(values, list):
            raise ValueError(f"field {field}: a list expected, got {values!r}")
        for v in values:
            out.blob(field, encode(v))
    return write


def _named(encode: Callable[[Any], bytes]) -> Encoder:
    """A JSON map as repeated `Named*{name = 1, value = 2}`, in the map's order."""
    def write(out: _Out, field: int, values: Any) -> None:
        if not isinstance(values, Mapping):
            raise ValueError(f"field {field}: an object expected, got {values!r}")
        for name, v in values.items():
            entry = _Out()
            _string(entry, 1, name)
            entry.blob(2, encode(v))
            out.blob(field, entry.done())
    return write


def _named_map(field: int, encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A message whose one field is such a map (Definitions, Properties, SecurityRequirement...)."""
    writer = _named(encode)

    def encode_map(value: Any) -> bytes:
        out = _Out()
        writer(out, field, value)
        return out.done()
    return encode_map


Spec = tuple[tuple[str, int, Encoder], ...]


def _fields(obj: Any, spec: Spec, extensions: int | None, what: str,
            out: _Out | None = None) -> bytes:
    """Write the JSON object's keys by `spec` (json key, field number, encoder), in field-number
    order, then its `x-*` keys as NamedAny at `extensions`. Unknown keys are an error."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what}: an object expected, got {obj!r}")
    out = out or _Out()
    known = {key for key, _, _ in spec}
    for key, field, encode in spec:
        if key in obj:
            encode(out, field, obj[key])
    unknown = [k for k in obj if k not in known and not (extensions and k.startswith("x-"))]
    if unknown:
        raise ValueError(f"{what}: no protobuf field for {sorted(unknown)} "
                         "(add it to apiserver/openapi_pb.py)")
    if extensions:
        for key, value in obj.items():
            if key.startswith("x-"):
                entry = _Out()
                _string(entry, 1, key)
                entry.blob(2, _any(value))
                out.blob(extensions, entry.done())
    return out.done()


def _spec(*rows: tuple[str, int, Encoder]) -> Spec:
    return tuple(sorted(rows, key=lambda r: r[1]))


# --- messages ----------------------------------------------------------------------------------


def _external_docs(obj: Any) -> bytes:
    return _fields(obj, _spec(("description", 1, _string), ("url", 2, _string)), 3,
                   "externalDocs")


def _schema(obj: Any) -> bytes:
    return _fields(obj, _SCHEMA, 31, "schema")


def _type_item(value: Any) -> bytes:
    out = _Out()
    _strings(out, 1, [value] if isinstance(value, str) else value)
    return out.done()


def _items_item(value: Any) -> bytes:
    out = _Out()
    for schema in value if isinstance(value, list) else [value]:
        out.blob(1, _schema(schema))
    return out.done()


def _additional_properties(value: Any) -> bytes:
    out = _Out()
    if isinstance(value, bool):
        out.varint(2, int(value))  # a oneof member: written even when false
    else:
        out.blob(1, _schema(value))
    return out.done()


_SCHEMA = _spec(
    ("$ref", 1, _string), ("format", 2, _string), ("title", 3, _string),
    ("description", 4, _string), ("default", 5, _any_field), ("multipleOf", 6, _double),
    ("maximum", 7, _double), ("exclusiveMaximum", 8, _bool), ("minimum", 9, _double),
    ("exclusiveMinimum", 10, _bool), ("maxLength", 11, _int64), ("minLength", 12, _int64),
    ("pattern", 13, _string), ("maxItems", 14, _int64), ("minItems", 15, _int64),
    ("uniqueItems", 16, _bool), ("maxProperties", 17, _int64), ("minProperties", 18, _int64),
    ("required", 19, _strings), ("enum", 20, _anys),
    ("additionalProperties", 21, _message(_additional_properties)),
    ("type", 22, _message(_type_item)), ("items", 23, _message(_items_item)),
    ("allOf", 24, _messages(_schema)), ("properties", 25, _message(_named_map(1, _schema))),
    ("discriminator", 26, _string), ("readOnly", 27, _bool),
    ("externalDocs", 29, _message(_external_docs)), ("example", 30, _any_field),
)


def _primitives_spec(first: int) -> tuple[tuple[str, int, Encoder], ...]:
    """The validation fields PrimitivesItems, Header and the non-body parameter sub-schemas share,
    numbered consecutively from `first` (type) to multipleOf."""
    names: tuple[tuple[str, Encoder], ...] = (
        ("type", _string), ("format", _string), ("items", _message(_primitives_items)),
        ("collectionFormat", _string), ("default", _any_field), ("maximum", _double),
        ("exclusiveMaximum", _bool), ("minimum", _double), ("exclusiveMinimum", _bool),
        ("maxLength", _int64), ("minLength", _int64), ("pattern", _string),
        ("maxItems", _int64), ("minItems", _int64), ("uniqueItems", _bool), ("enum", _anys),
        ("multipleOf", _double))
    return tuple((name, first + i, encode) for i, (name, encode) in enumerate(names))


def _primitives_items(obj: Any) -> bytes:  # PrimitivesItems: type = 1 ... multipleOf = 17
    return _fields(obj, _spec(*_primitives_spec(1)), 18, "items")


_PARAM_HEAD = (("required", 1, _bool), ("in", 2, _string), ("description", 3, _string),
               ("name", 4, _string))
# NonBodyParameter's oneof: `in` → (field, sub-schema spec, vendor_extension field). Query and
# formData have allowEmptyValue = 5, which moves everything after it by one.
_NON_BODY: dict[str, tuple[int, Spec, int]] = {
    "header": (1, _spec(*_PARAM_HEAD, *_primitives_spec(5)), 22),
    "formData": (2, _spec(*_PARAM_HEAD, ("allowEmptyValue", 5, _bool), *_primitives_spec(6)),
                 23),
    "query": (3, _spec(*_PARAM_HEAD, ("allowEmptyValue", 5, _bool), *_primitives_spec(6)), 23),
    "path": (4, _spec(*_PARAM_HEAD, *_primitives_spec(5)), 22),
}
_BODY = _spec(("description", 1, _string), ("name", 2, _string), ("in", 3, _string),
              ("required", 4, _bool), ("schema", 5, _message(_schema)))


def _json_reference(obj: Any) -> bytes:
    return _fields(obj, _spec(("$ref", 1, _string), ("description", 2, _string)), None,
                   "reference")


def _parameter(obj: Any) -> bytes:
    """Parameter{body_parameter = 1 | non_body_parameter = 2}."""
    where = obj.get("in") if isinstance(obj, Mapping) else None
    out = _Out()
    if where == "body":
        out.blob(1, _fields(obj, _BODY, 6, "body parameter"))
    elif where in _NON_BODY:
        field, spec, extensions = _NON_BODY[where]
        inner = _Out()
        inner.blob(field, _fields(obj, spec, extensions, f"{where} parameter"))
        out.blob(2, inner.done())
    else:
        raise ValueError(f"parameter: unknown `in` {where!r}")
    return out.done()


def _parameters_item(obj: Any) -> bytes:
    """ParametersItem{parameter = 1 | json_reference = 2}."""
    out = _Out()
    if isinstance(obj, Mapping) and "$ref" in obj:
        out.blob(2, _json_reference(obj))
    else:
        out.blob(1, _parameter(obj))
    return out.done()


def _schema_item(obj: Any) -> bytes:
    """SchemaItem{schema = 1 | file_schema = 2}."""
    out = _Out()
    if isinstance(obj, Mapping) and obj.get("type") == "file":
        out.blob(2, _fields(obj, _spec(
            ("format", 1, _string), ("title", 2, _string), ("description", 3, _string),
            ("default", 4, _any_field), ("required", 5, _strings), ("type", 6, _string),
            ("readOnly", 7, _bool), ("externalDocs", 8, _message(_external_docs)),
            ("example", 9, _any_field)), 10, "file schema"))
    else:
        out.blob(1, _schema(obj))
    return out.done()


def _header(obj: Any) -> bytes:  # Header: type = 1 ... multipleOf = 17, description = 18
    return _fields(obj, _spec(*_primitives_spec(1), ("description", 18, _string)), 19,
                   "header")


_RESPONSE = _spec(("description", 1, _string), ("schema", 2, _message(_schema_item)),
                  ("headers", 3, _message(_named_map(1, _header))),
                  ("examples", 4, _message(_named_map(1, _any))))


def _response_value(obj: Any) -> bytes:
    """ResponseValue{response = 1 | json_reference = 2}."""
    out = _Out()
    if isinstance(obj, Mapping) and "$ref" in obj:
        out.blob(2, _json_reference(obj))
    else:
        out.blob(1, _fields(obj, _RESPONSE, 5, "response"))
    return out.done()


def _responses(obj: Any) -> bytes:
    """Responses{response_code = 1 (NamedResponseValue), vendor_extension = 2}."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"responses: an object expected, got {obj!r}")
    out = _Out()
    _named(_response_value)(out, 1, {k: v for k, v in obj.items() if not k.startswith("x-")})
    return _fields({k: v for k, v in obj.items() if k.startswith("x-")}, (), 2, "responses",
                   out)


def _string_array(value: Any) -> bytes:
    out = _Out()
    _strings(out, 1, value)
    return out.done()


_security_requirement = _named_map(1, _string_array)


def _operation(obj: Any) -> bytes:
    return _fields(obj, _spec(
        ("tags", 1, _strings), ("summary", 2, _string), ("description", 3, _string),
        ("externalDocs", 4, _message(_external_docs)), ("operationId", 5, _string),
        ("produces", 6, _strings), ("consumes", 7, _strings),
        ("parameters", 8, _messages(_parameters_item)), ("responses", 9, _message(_responses)),
        ("schemes", 10, _strings), ("deprecated", 11, _bool),
        ("security", 12, _messages(_security_requirement))), 13, "operation")


def _path_item(obj: Any) -> bytes:
    return _fields(obj, _spec(
        ("$ref", 1, _string), ("get", 2, _message(_operation)), ("put", 3, _message(_operation)),
        ("post", 4, _message(_operation)), ("delete", 5, _message(_operation)),
        ("options", 6, _message(_operation)), ("head", 7, _message(_operation)),
        ("patch", 8, _message(_operation)), ("parameters", 9, _messages(_parameters_item))),
        10, "path item")


def _paths(obj: Any) -> bytes:
    """Paths{vendor_extension = 1, path = 2 (NamedPathItem)}."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"paths: an object expected, got {obj!r}")
    out = _Out()
    _fields({k: v for k, v in obj.items() if k.startswith("x-")}, (), 1, "paths", out)
    _named(_path_item)(out, 2, {k: v for k, v in obj.items() if not k.startswith("x-")})
    return out.done()


def _security_definitions_item(obj: Any) -> bytes:
    """SecurityDefinitionsItem's oneof by `type` (and `flow` for oauth2)."""
    typ = obj.get("type") if isinstance(obj, Mapping) else None
    out = _Out()
    if typ == "basic":
        out.blob(1, _fields(obj, _spec(("type", 1, _string), ("description", 2, _string)), 3,
                            "basic security"))
    elif typ == "apiKey":
        out.blob(2, _fields(obj, _spec(("type", 1, _string), ("name", 2, _string),
                                       ("in", 3, _string), ("description", 4, _string)), 5,
                            "apiKey security"))
    else:
        raise ValueError(f"securityDefinitions: no protobuf encoding here for type {typ!r}")
    return out.done()


def _contact(obj: Any) -> bytes:
    return _fields(obj, _spec(("name", 1, _string), ("url", 2, _string),
                              ("email", 3, _string)), 4, "contact")


def _license(obj: Any) -> bytes:
    return _fields(obj, _spec(("name", 1, _string), ("url", 2, _string)), 3, "license")


def _info(obj: Any) -> bytes:
    return _fields(obj, _spec(
        ("title", 1, _string), ("version", 2, _string), ("description", 3, _string),
        ("termsOfService", 4, _string), ("contact", 5, _message(_contact)),
        ("license", 6, _message(_license))), 7, "info")


def _tag(obj: Any) -> bytes:
    return _fields(obj, _spec(("name", 1, _string), ("description", 2, _string),
                              ("externalDocs", 3, _message(_external_docs))), 4, "tag")


_DOCUMENT = _spec(
    ("swagger", 1, _string), ("info", 2, _message(_info)), ("host", 3, _string),
    ("basePath", 4, _string), ("schemes", 5, _strings), ("consumes", 6, _strings),
    ("produces", 7, _strings), ("paths", 8, _message(_paths)),
    ("definitions", 9, _message(_named_map(1, _schema))),
    ("parameters", 10, _message(_named_map(1, _parameter))),
    ("responses", 11, _message(_named_map(1, lambda r: _fields(r, _RESPONSE, 5, "response")))),
    ("security", 12, _messages(_security_requirement)),
    ("securityDefinitions", 13, _message(_named_map(1, _security_definitions_item))),
    ("tags", 14, _messages(_tag)), ("externalDocs", 15, _message(_external_docs)),
)


def encode_document(doc: Mapping[str, Any]) -> bytes:
    """The Swagger 2.0 JSON document (parsed) as a serialized gnostic `openapi.v2.Document`."""
    return _fields(doc, _DOCUMENT, 16, "document")


def iter_fields(data: bytes) -> Iterable[tuple[int, int | bytes]]:
    """Read one message's fields back: (field number, varint value or length-delimited bytes;
    64-bit fields as their 8 bytes). For tests and debugging; strict about truncation."""
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == _VARINT:
            yield field, varint()
        elif wire == _LEN:
            size = varint()
            if i + size > n:
                raise ValueError("truncated length-delimited field")
            yield field, data[i:i + size]
            i += size
        elif wire == _I64:
            if i + 8 > n:
                raise ValueError("truncated 64-bit field")
            yield field, data[i:i + 8]
            i += 8
        else:
            raise ValueError(f"unexpected wire type {wire}")
