"""Turning request bodies into typed objects and back, with Kubernetes' errors and warnings.

The apiserver receives JSON from anyone; this is the one place where untrusted data meets the
models. Whatever comes in, the result is either a typed object (plus warnings for fields that were
dropped, as `kubectl apply` shows them: `unknown field "spec.replcas"`) or an `ApiError` whose
causes carry Kubernetes field paths (`spec.template.spec.containers[0].ports[0].containerPort`)
— never a pydantic traceback.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from api.decoding import MAX_DEPTH, LimitError, depth_message, json_type
from api.errors import BadRequest, Cause, Invalid, invalid
from api.meta import TypedObject
from api.resources import ResourceInfo
from api.validation import fmt_value

# --------------------------------------------------------------------------------------------
# Walking model types
# --------------------------------------------------------------------------------------------

_Shape = tuple[str, Any]  # ("model", cls) | ("list", ann) | ("dict", ann) | ("scalar", None)


def _shape(ann: Any) -> _Shape:
    """Classify a field annotation: a nested model, a list of X, a map of X, or a leaf."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _shape(typing.get_args(ann)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(members) == 1:
            return _shape(members[0])
        return ("scalar", None)  # IntOrString and friends: leaves
    if origin is list:
        return ("list", typing.get_args(ann)[0])
    if origin is dict:
        args = typing.get_args(ann)
        return ("dict", args[1] if len(args) == 2 else Any)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ("model", ann)
    return ("scalar", None)


@functools.cache
def _by_alias(cls: type[BaseModel]) -> dict[str, Any]:
    """Wire name -> annotation for a model's fields (cached: every request body walks these)."""
    out: dict[str, Any] = {}
    for name, f in cls.model_fields.items():
        out[f.alias or name] = f.annotation
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unknown_fields(model_cls: type[BaseModel], data: object, path: str = "") -> list[str]:
    """Fields in `data` that `model_cls` does not know, as Kubernetes reports them:
    `unknown field "spec.template.spec.containers[0].imagee"`.

    Walks nested models, lists and maps of models; loosely typed (`dict[str, Any]`) fields are
    opaque and never reported.
    """
    out: list[str] = []
    _walk_unknown(("model", model_cls), data, path, out)
    return out


def _walk_unknown(shape: _Shape, data: object, path: str, out: list[str]) -> None:
    kind, arg = shape
    if kind == "model" and isinstance(data, dict):
        fields = _by_alias(arg)
        for key, value in data.items():
            if not isinstance(key, str):
                continue
            sub = _join(path, key)
            if key not in fields:
                out.append(f'unknown field "{sub}"')
            else:
                _walk_unknown(_shape(fields[key]), value, sub, out)
    elif kind == "list" and isinstance(data, list):
        inner = _shape(arg)
        if inner[0] in ("model", "list", "dict"):
            for i, item in enumerate(data):
                _walk_unknown(inner, item, f"{path}[{i}]", out)
    elif kind == "dict" and isinstance(data, dict):
        inner = _shape(arg)
        if inner[0] in ("model", "list", "dict"):
            for key, item in data.items():
                _walk_unknown(inner, item, f"{path}[{key}]", out)


# --------------------------------------------------------------------------------------------
# Pydantic errors -> Kubernetes causes
# --------------------------------------------------------------------------------------------

_TYPE_NAMES = {
    "int_type": "integer", "int_parsing": "integer", "int_from_float": "integer",
    "string_type": "string", "bool_type": "boolean", "bool_parsing": "boolean",
    "float_type": "number", "float_parsing": "number", "list_type": "array",
    "dict_type": "object", "model_type": "object", "model_attributes_type": "object",
}


def _loc_path(model_cls: type[BaseModel], loc: tuple[int | str, ...], data: object) -> str:
    """Kubernetes' field path for a pydantic error location.

    pydantic locations mix field aliases, list indexes, map keys and union-member tags (`int`,
    `str`); walking them alongside the model's types tells which is which.
    """
    path = ""
    shape: _Shape = ("model", model_cls)
    for elem in loc:
        kind, arg = shape
        if kind == "model" and isinstance(elem, str):
            fields = _by_alias(arg)
            if elem not in fields:
                continue  # a union tag or validator name, not part of the path
            path = _join(path, elem)
            shape = _shape(fields[elem])
        elif kind == "list" and isinstance(elem, int):
            path += f"[{elem}]"
            shape = _shape(arg)
        elif kind == "dict":
            path += f"[{elem}]"
            shape = _shape(arg)
        else:
            continue
    return path


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return fmt_value(value)


def _causes(model_cls: type[BaseModel], err: ValidationError, data: object) -> list[Cause]:
    causes: list[Cause] = []
    # A union (IntOrString) yields one error per member at the same path; merge them.
    type_errors: dict[str, tuple[object, list[str]]] = {}
    seen: set[str] = set()
    for e in err.errors(include_url=False):
        path = _loc_path(model_cls, tuple(e["loc"]), data)
        etype = e["type"]
        if etype == "missing":
            key = f"req:{path}"
            if key not in seen:
                seen.add(key)
                causes.append(Cause(path, "Required value", "FieldValueRequired"))
            continue
        if etype in _TYPE_NAMES:
            value, names = type_errors.setdefault(path, (e.get("input"), []))
            if _TYPE_NAMES[etype] not in names:
                names.append(_TYPE_NAMES[etype])
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        key = f"{path}:{msg}"
        if key not in seen:
            seen.add(key)
            causes.append(
                Cause(path, f"Invalid value: {_describe(e.get('input'))}: {msg}",
                      "FieldValueInvalid")
            )
    valued = {c.field for c in causes}
    for path, (value, names) in type_errors.items():
        if path in valued:
            # A union member took the type and refused the value (IntOrString's int32 range);
            # "must be of type string" from the other member would only confuse.
            continue
        causes.append(
            Cause(path, f"Invalid value: {_describe(value)}: must be of type "
                  + " or ".join(names), "FieldValueTypeInvalid")
        )
    causes.sort(key=lambda c: c.field)
    return causes


# --------------------------------------------------------------------------------------------
# decode / encode
# --------------------------------------------------------------------------------------------


def _strip_nulls(data: Any, depth: int = 0, path: str = "") -> Any:
    """Drop `key: null` entries: for Go's decoder a JSON null means "not set" (YAML writes
    `metadata:` with nothing under it as null), so treat it as an omitted field.

    The one recursive walk every body takes before the models, so it also enforces the nesting
    limit (api.decoding.MAX_DEPTH) for data that was not decoded by a bounded decoder."""
    if isinstance(data, dict | list) and depth >= MAX_DEPTH:
        raise LimitError(f"{_clip(path)}: {depth_message()}")
    if isinstance(data, dict):
        return {k: _strip_nulls(v, depth + 1, _join(path, str(k)))
                for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_strip_nulls(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(data)]
    return data


def _clip(path: str) -> str:
    return path if len(path) <= 120 else path[:117] + "..."


def decode(info: ResourceInfo, data: object) -> tuple[TypedObject, list[str]]:
    """Parse a request body (already JSON-decoded) into `info.model`.

    Returns the object and the unknown-field warnings. Raises BadRequest for a body that is not
    an object or names another apiVersion/kind, and Invalid (with field-path causes) for values
    of the wrong type or missing required fields.
    """
    return decode_model(info.model, data, api_version=info.api_version, kind=info.kind)


_T = TypeVar("_T", bound=TypedObject)


def decode_model(
    model: type[_T], data: object, *, api_version: str | None = None, kind: str | None = None
) -> tuple[_T, list[str]]:
    """decode() for a model that is not a stored resource (Scale, Binding)."""
    api_version = api_version or model.API_VERSION
    kind = kind or model.KIND
    if not isinstance(data, dict):
        raise BadRequest(
            message=f"the body of a {kind} must be a JSON object, not {json_type(data)}",
            kind=kind,
        )
    # The depth limit first: nothing below (not even quoting a value) may recurse without it.
    try:
        clean = _strip_nulls(data)
    except LimitError as e:
        raise BadRequest(message=f"unable to decode {kind}: {e}", kind=kind) from None
    got_version = clean.get("apiVersion")
    if got_version is not None and got_version != api_version:
        raise BadRequest(
            message=f"the API version in the data ({fmt_plain(got_version)}) does not match the "
            f"expected API version ({api_version})",
            kind=kind,
        )
    got_kind = clean.get("kind")
    if got_kind is not None and got_kind != kind:
        raise BadRequest(
            message=f"the kind in the data ({fmt_plain(got_kind)}) does not match the expected "
            f"kind ({kind})",
            kind=kind,
        )
    warnings = unknown_fields(model, clean)
    try:
        obj = model.model_validate(clean, by_alias=True, by_name=False)
    except ValidationError as e:
        md = clean.get("metadata")
        name = md.get("name") if isinstance(md, dict) else None
        name = name if isinstance(name, str) else ""
        raise invalid(kind, name, _causes(model, e, clean)) from None
    except (RecursionError, ValueError, TypeError) as e:
        # Pathological input (absurd nesting) that pydantic gives up on outright.
        raise BadRequest(message=f"unable to decode {kind}: {e}", kind=kind) from None
    return obj, warnings


def invalid_from(model: type[BaseModel], err: ValidationError, kind: str,
                 name: str = "") -> Invalid:
    """A ValidationError raised where a model was validated without decode() (an object built
    or patched on the server), as the Invalid decode() would have raised: field paths and
    upstream's wording, never pydantic's text."""
    return invalid(kind, name, _causes(model, err, None))


def fmt_plain(value: object, limit: int = 128) -> str:
    """A value quoted in a message: strings as they are, the rest as JSON; long ones cut."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def encode(obj: TypedObject) -> bytes:
    """The stored / wire form: compact JSON of `to_dict()` (camelCase, nulls omitted)."""
    return json.dumps(obj.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()
