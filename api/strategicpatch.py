"""Strategic merge patch, applied on the server: what `kubectl apply` and `kubectl patch` send.

JSON merge patch (api.patch) can only replace a list whole, so a client that wants to change
one container's image must resend every container. Kubernetes' answer is the strategic merge
patch: the same JSON shape, but lists that upstream tags `patchStrategy: merge` (see
api.patchmeta) merge element by element, matched by a merge key (`containers` by `name`, `env`
by `name`, `ports` by `containerPort`), and a few `$` directives express what plain JSON cannot:

- `{"$patch": "replace"}` in a map, or as an item of a list, replaces that map or list whole;
  `{"$patch": "delete"}` in a map empties it; `{"$patch": "delete", "name": "x"}` as a list item
  removes the item whose merge key is "x". (`$patch: merge`, the default, is accepted and
  ignored; upstream rejects it, no client sends it.)
- `"$deleteFromPrimitiveList/finalizers": ["a"]` removes values from a list of primitives.
- `"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]` states the order of a merged
  list (kubectl apply always sends it, so applied manifests keep their order).
- `"$retainKeys": ["type"]` in a map clears every key it does not name (a Deployment strategy
  switching from RollingUpdate to Recreate drops `rollingUpdate`).

Everything else is JSON merge patch: maps merge recursively, `null` deletes, lists without a
merge strategy (tolerations, command, args) and scalars are replaced, and fields the model does
not know (or loosely typed `dict[str, Any]` fields) merge as RFC 7386 says.

Semantics follow k8s.io/apimachinery/pkg/util/strategicpatch (patch.go) as the apiserver runs
it (MergeParallelList, IgnoreUnmatchedNulls), including its ordering rule for merged lists
without `$setElementOrder`: the patch's items come in the patch's order, and each item the
patch does not mention stays where it was relative to them (so `[c]` merged into `[a, b]` gives
`[c, a, b]`, and `[b]` into `[a, b]` keeps `[a, b]`). Where upstream drops a map that carries
a directive when the field is new (`{"$patch": "replace", ...}` for a field the object lacks),
or fails with an internal error, this module does the evident thing or answers BadRequest.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Hashable, Iterable
from typing import Any, Final

from pydantic import BaseModel

from api import errors
from api.patchmeta import FieldMeta, field_meta, model_field, strip_optional

DIRECTIVE: Final = "$patch"
RETAIN_KEYS: Final = "$retainKeys"
SET_ELEMENT_ORDER: Final = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST: Final = "$deleteFromPrimitiveList"
_DIRECTIVES = ("replace", "delete", "merge")


class _Omit:
    """The value a patch leaves no trace of (`null`, or a map carrying `$patch: delete`)."""


_OMIT: Final = _Omit()

Obj = dict[str, Any]


def strategic_merge_patch(original: Obj, patch: Obj, model: type[BaseModel]) -> Obj:
    """Apply a strategic merge `patch` to `original`, the JSON form of a `model` object.

    Returns a new object; neither argument is modified. A patch the user got wrong (a merged
    list item without its merge key, an unknown `$patch` value, a directive of the wrong type)
    raises BadRequest, or Invalid where upstream answers 422 (lists of lists, content outside
    `$retainKeys`), with the field path in the message and in `causes`.
    """
    if not isinstance(patch, dict):
        raise errors.BadRequest(message="a strategic merge patch must be a JSON object")
    if not isinstance(original, dict):
        raise errors.BadRequest(message="the object to patch is not a JSON object")
    try:
        return _merge_map(copy.deepcopy(original), patch, model, "")
    except RecursionError:
        raise errors.BadRequest(
            message="invalid strategic merge patch: nested too deeply") from None


# --- maps ---------------------------------------------------------------------------------


def _merge_map(original: Obj, patch: Obj, schema: Any, path: str) -> Obj:
    """Merge `patch` into `original`, which this module owns (a copy) and may change."""
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        rest = {k: v for k, v in patch.items() if k != DIRECTIVE}
        if directive == "replace":
            # The patch's content is the whole new map (its own directives still apply).
            return _merge_map({}, rest, schema, path)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise _bad(path, f"unknown $patch directive {directive!r}: use one of "
                       f"{', '.join(repr(d) for d in _DIRECTIVES)}")
        patch = rest

    pending = dict(patch)  # consumed as the directives take their keys
    if RETAIN_KEYS in pending:
        _retain_keys(original, pending.pop(RETAIN_KEYS), pending, path)
    # Ordered lists first: each takes its list out of `pending`, merged and ordered at once.
    for key in [k for k in pending if k.startswith(SET_ELEMENT_ORDER)]:
        _set_element_order(original, pending, key, schema, path)

    for key, value in pending.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            field = _directive_field(key, DELETE_FROM_PRIMITIVE_LIST, path)
            _delete_from_primitive_list(original, field, value, _join(path, key))
            continue
        sub = _join(path, key)
        child, fm = _child(schema, key)
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not (fm and fm.replaces):
            original[key] = _merge_map(current, value, child, sub)
        elif isinstance(current, list) and isinstance(value, list) and fm and fm.merges:
            original[key] = _merge_list(current, value, _item_schema(child), fm.merge_key, sub)
        else:
            # New field, a different JSON type, an atomic list or a scalar: the patch's value.
            new = _fresh(value, child, fm, sub)
            if new is _OMIT:
                original.pop(key, None)
            else:
                original[key] = new
    return original


def _fresh(value: Any, schema: Any, fm: FieldMeta | None, path: str) -> Any:
    """The patch's value where the object has nothing to merge it into: nulls and directives
    are consumed, not stored (upstream's removeDirectives + discardNullValuesFromPatch)."""
    if value is None:
        return _OMIT
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return _OMIT
        return _merge_map({}, value, schema, path)
    if isinstance(value, list):
        if fm is not None and fm.merges:
            return _merge_list([], value, _item_schema(schema), fm.merge_key, path)
        # An atomic list is taken as sent, like JSON merge patch; only list-level directive
        # items (`{"$patch": "replace"}`, which is what replacing means anyway) are dropped.
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict) and DIRECTIVE in item:
                _check_directive(item[DIRECTIVE], f"{path}[{i}]")
                continue
            out.append(copy.deepcopy(item))
        return out
    return value


def _retain_keys(original: Obj, retain: Any, pending: Obj, path: str) -> None:
    """`$retainKeys`: drop every key of `original` the list does not name; the patch may only
    set keys the list names (it describes the whole map the client wants)."""
    where = _join(path, RETAIN_KEYS)
    if not isinstance(retain, list) or not all(isinstance(k, str) for k in retain):
        raise _bad(where, "must be a list of field names")
    keep = set(retain)
    for key, value in pending.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in keep:
            raise _invalid(where, f"the patch sets {key!r}, which the $retainKeys list does not "
                           "name")
    for key in [k for k in original if k not in keep]:
        del original[key]


# --- lists --------------------------------------------------------------------------------

Keyed = list[tuple[Hashable, Any]]  # list items with the key that identifies them


def _merge_list(original: list[Any], patch: list[Any], item_schema: Any, merge_key: str,
                path: str) -> list[Any]:
    """A list with strategy `merge`: objects merge by `merge_key`, primitives as a set."""
    if not original and not patch:
        return []
    if _element_kind(original, patch, path) != "map":
        values = _dedup([*original, *patch])
        return _order([(_key(v), v) for v in values], [_key(v) for v in patch],
                      [_key(v) for v in original])
    if not merge_key:
        raise _bad(path, "this list of objects has no merge key, so a patch cannot merge into it")

    base = list(original)
    plain: list[tuple[int, Obj]] = []
    replace = False
    for i, item in enumerate(patch):
        if DIRECTIVE not in item:
            plain.append((i, item))
            continue
        directive = item[DIRECTIVE]
        _check_directive(directive, f"{path}[{i}]")
        if directive == "delete":
            if merge_key not in item:
                raise _bad(f"{path}[{i}]", f'a "$patch: delete" item must name the item to '
                           f'delete by the merge key {merge_key!r}')
            gone = _key(item[merge_key])
            base = [o for o in base if not (merge_key in o and _key(o[merge_key]) == gone)]
        elif directive == "replace":
            replace = True  # the other items are the whole new list

    if replace:
        for i, item in plain:
            _require_merge_key(item, merge_key, f"{path}[{i}]")
        return [_merge_map({}, item, item_schema, f"{path}[{i}]") for i, item in plain]

    merged: Keyed = [(_item_key(o, merge_key), o) for o in base]
    server_order = [k for k, _ in merged]
    at: dict[Hashable, int] = {}
    for pos, (k, _) in enumerate(merged):
        at.setdefault(k, pos)  # with duplicates, the first one merges (as upstream)
    patch_order: list[Hashable] = []
    for i, item in plain:
        sub = f"{path}[{i}]"
        _require_merge_key(item, merge_key, sub)
        k = _key(item[merge_key])
        patch_order.append(k)
        found = at.get(k)
        if found is None:
            at[k] = len(merged)
            merged.append((k, _merge_map({}, item, item_schema, sub)))
        else:
            merged[found] = (k, _merge_map(merged[found][1], item, item_schema, sub))
    return _order(merged, patch_order, server_order)


def _set_element_order(original: Obj, pending: Obj, key: str, schema: Any, path: str) -> None:
    """`$setElementOrder/<field>`: merge `<field>` (if the patch has it) and put the result in
    the stated order; items the order does not name (the server's own) keep their place."""
    field = _directive_field(key, SET_ELEMENT_ORDER, path)
    where, sub = _join(path, key), _join(path, field)
    order = pending.pop(key)
    if not isinstance(order, list):
        raise _bad(where, "must be a list")
    child, fm = _child(schema, field)
    merge_key = fm.merge_key if fm else ""
    current = original.get(field)
    if current is not None and not isinstance(current, list):
        raise _bad(sub, f"is not a list, so {key} cannot order it")
    in_patch = field in pending
    patch_list = pending.pop(field, None)
    if in_patch and not isinstance(patch_list, list):
        raise _bad(sub, f"must be a list when {key} is given")
    _check_order_matches(patch_list or [], order, merge_key, where, sub)

    if current is not None and patch_list is not None:
        merged = (_merge_list(current, patch_list, _item_schema(child), merge_key, sub)
                  if fm and fm.merges else _fresh(patch_list, child, fm, sub))
    elif patch_list is not None:
        merged = _fresh(patch_list, child, fm, sub)
    elif current is not None:
        merged = current
    else:
        return
    by_key = bool(merge_key) and any(isinstance(v, dict) for v in [*merged, *order])
    if by_key:
        for i, entry in enumerate(order):
            if not isinstance(entry, dict):
                raise _bad(f"{where}[{i}]", f"must be an object naming the merge key "
                           f"{merge_key!r}")
            _require_merge_key(entry, merge_key, f"{where}[{i}]")
        for v in merged:
            if not isinstance(v, dict):
                raise _bad(sub, "the items of this list must be objects")
        original[field] = _order([(_item_key(v, merge_key), v) for v in merged],
                                 [_key(e[merge_key]) for e in order],
                                 [_item_key(v, merge_key) for v in current or []])
    else:
        original[field] = _order([(_key(v), v) for v in merged], [_key(v) for v in order],
                                 [_key(v) for v in current or []])


def _check_order_matches(patch_list: list[Any], order: list[Any], merge_key: str, where: str,
                         sub: str) -> None:
    """The items of the patch list must appear in `$setElementOrder`, in the same relative order
    (upstream's validatePatchWithSetOrderList). Deleted items and list directives do not count.
    """
    if not patch_list or not order:
        return
    if merge_key:
        for i, item in enumerate(patch_list):
            if not isinstance(item, dict):
                raise _bad(f"{sub}[{i}]", "the items of this list must be objects")
            if DIRECTIVE not in item:
                _require_merge_key(item, merge_key, f"{sub}[{i}]")
        for i, entry in enumerate(order):
            if not isinstance(entry, dict) or merge_key not in entry:
                raise _bad(f"{where}[{i}]", f"must be an object naming the merge key "
                           f"{merge_key!r}")
    items = [v for v in patch_list if not (isinstance(v, dict) and DIRECTIVE in v)]
    p = o = 0
    while p < len(items) and o < len(order):
        if merge_key:
            same = _key(items[p][merge_key]) == _key(order[o][merge_key])
        else:
            same = _key(items[p]) == _key(order[o])
        if same:
            p += 1
        o += 1
    if p < len(items):
        raise _bad(where, f"the items of {sub.rsplit('.', 1)[-1]} in the patch must all appear "
                   "in this list, in the same order")


def _delete_from_primitive_list(original: Obj, field: str, values: Any, where: str) -> None:
    """`$deleteFromPrimitiveList/<field>`: remove every occurrence of the given values."""
    if not isinstance(values, list):
        raise _bad(where, "must be a list of the values to remove")
    current = original.get(field)
    if current is None:
        return  # nothing to delete from; the directive never adds the field
    if not isinstance(current, list):
        raise _bad(where, f"{field!r} is not a list")
    if not current and not values:
        return
    if _element_kind(current, values, where) == "map":
        raise _bad(where, "only lists of primitive values can be deleted from this way; remove "
                   'an object from a merged list with {"$patch": "delete", <merge key>: ...}')
    drop = {_key(v) for v in values}
    original[field] = [v for v in current if _key(v) not in drop]


def _order(merged: Keyed, patch_order: list[Hashable], server_order: list[Hashable]) -> list[Any]:
    """Upstream's normalizeElementOrder + mergeSortedSlice: the items the patch names in the
    patch's order, each item only the server has kept before the first patch item that the
    server had after it."""
    named = set(patch_order)
    patch_rank = _ranks(patch_order)
    server_rank = _ranks(server_order)
    ours = sorted((kv for kv in merged if kv[0] in named), key=lambda kv: patch_rank[kv[0]])
    theirs = sorted((kv for kv in merged if kv[0] not in named),
                    key=lambda kv: server_rank.get(kv[0], len(server_rank)))
    out: list[Any] = []
    i = j = 0
    while i < len(theirs) or j < len(ours):
        if j >= len(ours):
            take_theirs = True
        elif i >= len(theirs):
            take_theirs = False
        else:
            a, b = server_rank.get(theirs[i][0]), server_rank.get(ours[j][0])
            take_theirs = a is not None and b is not None and a < b
        if take_theirs:
            out.append(theirs[i][1])
            i += 1
        else:
            out.append(ours[j][1])
            j += 1
    return out


# --- helpers ------------------------------------------------------------------------------


def _child(schema: Any, key: str) -> tuple[Any, FieldMeta | None]:
    """The type of `key`'s value inside a map typed `schema`, and the field's patch metadata.
    (None, None) for fields the model does not know, which then merge as JSON merge patch."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        info = model_field(schema, key)
        if info is None:
            return None, None
        return strip_optional(info.annotation), field_meta(schema, key)
    if typing.get_origin(schema) is dict:
        args = typing.get_args(schema)
        return (strip_optional(args[1]) if len(args) == 2 else None), None
    return None, None


def _item_schema(schema: Any) -> Any:
    if typing.get_origin(schema) is list:
        args = typing.get_args(schema)
        return strip_optional(args[0]) if args else None
    return None


def _key(value: Any) -> Hashable:
    """A hashable identity for a JSON value with JSON's equality: 1 == 1.0, but true != 1."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _item_key(item: Any, merge_key: str) -> Hashable:
    # A stored item without the merge key matches no patch item but keeps its place.
    if isinstance(item, dict) and merge_key in item:
        return _key(item[merge_key])
    return ("unkeyed", id(item))


def _ranks(keys: list[Hashable]) -> dict[Hashable, int]:
    ranks: dict[Hashable, int] = {}
    for pos, k in enumerate(keys):
        ranks.setdefault(k, pos)
    return ranks


def _dedup(values: Iterable[Any]) -> list[Any]:
    seen: set[Hashable] = set()
    out = []
    for v in values:
        k = _key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def _element_kind(original: list[Any], patch: list[Any], path: str) -> str:
    """The one JSON type of the items of both lists (upstream merges no mixed lists)."""
    kinds = {_kind(v) for v in [*original, *patch]}
    if "list" in kinds:
        raise _invalid(path, "lists of lists cannot be merged")
    if len(kinds) > 1:
        raise _bad(path, f"the items of a merged list must all have one type, found "
                   f"{', '.join(sorted(kinds))}")
    return kinds.pop() if kinds else ""


def _require_merge_key(item: Obj, merge_key: str, path: str) -> None:
    if merge_key not in item:
        raise _bad(path, f"does not contain the merge key {merge_key!r}, which identifies the "
                   "items of this list")


def _check_directive(directive: Any, path: str) -> None:
    if directive not in _DIRECTIVES:
        raise _bad(path, f"unknown $patch directive {directive!r}: use one of "
                   f"{', '.join(repr(d) for d in _DIRECTIVES)}")


def _directive_field(key: str, prefix: str, path: str) -> str:
    """The field a `$prefix/<field>` key names."""
    head, sep, field = key.partition("/")
    if head != prefix or not sep or not field:
        raise _bad(_join(path, key), f'a {prefix} directive is written "{prefix}/<field>"')
    return field


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bad(path: str, message: str) -> errors.BadRequest:
    text = f"{path}: {message}" if path else message
    return errors.BadRequest(message=f"invalid strategic merge patch: {text}",
                             causes=[errors.Cause(path, message)])


def _invalid(path: str, message: str) -> errors.Invalid:
    text = f"{path}: {message}" if path else message
    return errors.Invalid(message=f"invalid strategic merge patch: {text}",
                          causes=[errors.Cause(path, message)])
